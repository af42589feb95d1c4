"""`.npz` files in and out, safely and reproducibly.

`write_npz` writes an archive that is byte-for-byte the same for the same arrays (numpy's
`savez` stamps each member with the current time), so shipped files can be rebuilt and
compared. `read_npz` reads every member with `allow_pickle=False`: an archive holding object
arrays raises ValueError instead of running code on load.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an .npz that is byte-for-byte the same for the same arrays.

    The member timestamps are fixed and the members sorted by name; the file appears
    atomically (written beside it, then renamed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue(), compresslevel=9)
    tmp.replace(path)


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the .npz at `path`, by member name, loaded without pickle (object arrays
    raise ValueError; an unreadable file OSError or ValueError, as `numpy.load`)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}

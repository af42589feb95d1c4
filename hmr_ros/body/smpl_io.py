"""Reading SMPL model files without chumpy.

Official SMPL `.pkl` files hold some arrays as chumpy objects and the joint regressor as a
scipy sparse matrix. chumpy does not import on Python 3.11 / numpy 2, so the unpickler below
maps those classes to small stand-ins and turns them into plain numpy arrays; scipy is not
needed either. `.npz` files (the bundled synthetic model, or a user's conversion of SMPL) are
read directly.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..errors import HmrRosError
from ..npzio import read_npz

SMPL_KEYS = ("f", "v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table",
             "weights")


class SMPLFileError(HmrRosError, ValueError):
    """A body model file that cannot be used, with the reason."""


class _Opaque:
    """Stand-in for a chumpy or scipy object: keeps the pickled state, nothing else."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._state: Any = None

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __reduce__(self):  # pragma: no cover - never re-pickled
        raise TypeError("stand-in objects cannot be pickled")


class _ChumpyArray(_Opaque):
    def to_numpy(self) -> np.ndarray:
        state = self._state if isinstance(self._state, dict) else {}
        for key in ("x", "r", "_x"):
            if key in state and state[key] is not None:
                return np.asarray(state[key])
        raise SMPLFileError(
            "a chumpy object in the SMPL file holds no array under 'x'; keys: "
            + ", ".join(sorted(map(str, state)))
        )


class _SparseMatrix(_Opaque):
    def to_numpy(self) -> np.ndarray:
        state = self._state if isinstance(self._state, dict) else {}
        try:
            data = np.asarray(state["data"])
            indices = np.asarray(state["indices"])
            indptr = np.asarray(state["indptr"])
            shape = tuple(state.get("_shape") or state["shape"])
        except KeyError as err:
            raise SMPLFileError(f"sparse matrix in the SMPL file lacks {err}") from None
        fmt = state.get("format") or ("csr" if len(indptr) == shape[0] + 1 else "csc")
        dense = np.zeros(shape, dtype=np.float64)
        major = shape[0] if fmt == "csr" else shape[1]
        if len(indptr) != major + 1:
            raise SMPLFileError(f"sparse matrix indptr has {len(indptr)} entries for {shape}")
        for i in range(major):
            lo, hi = indptr[i], indptr[i + 1]
            if fmt == "csr":
                dense[i, indices[lo:hi]] = data[lo:hi]
            else:
                dense[indices[lo:hi], i] = data[lo:hi]
        return dense


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """`_codecs.encode` as Python 3 protocol-2 pickles use it (numpy's raw bytes as latin-1
    text); any other codec is refused, since codec lookup imports modules by name."""
    if encoding.lower().replace("-", "") not in ("latin1", "iso88591"):
        raise SMPLFileError(f"refused codec {encoding!r} in a pickle (only latin-1)")
    return text.encode("latin1")


_STAND_INS = (_ChumpyArray, _SparseMatrix)


def _reconstructor(cls: type, base: type, state: Any) -> Any:
    """copyreg._reconstructor for protocol 0/1 pickles of chumpy/scipy objects, restricted to
    our stand-ins (the real one calls `base.__new__`/`base.__init__` of any class)."""
    if cls not in _STAND_INS or base is not object or state is not None:
        raise SMPLFileError(f"refused copyreg reconstruction of {cls!r} from {base!r}")
    return cls()


def _numpy_names() -> dict[tuple[str, str], Any]:
    core = np._core.multiarray  # numpy 2's name; numpy 1 and Python 2 files say numpy.core
    numeric = np._core.numeric
    names: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,  # the class handed to _reconstruct
        ("numpy", "dtype"): np.dtype,  # every array's dtype is pickled as dtype(str, ...)
    }
    for mod in ("numpy.core", "numpy._core"):
        names[(f"{mod}.multiarray", "_reconstruct")] = core._reconstruct  # ndarray.__reduce__
        names[(f"{mod}.multiarray", "scalar")] = core.scalar  # numpy scalars (np.float64(1))
        names[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol 5 arrays
    return names


# The complete allow-list: (module, name) as written in the pickle -> what it becomes. Nothing
# is imported by name, so a pickle cannot reach any other callable (builtins.exec, os.system,
# a module merely named `numpy...`). What a real file needs:
# - SMPL .pkl (Python 2, protocol 2): a dict of numpy arrays and str; chumpy `Ch` for
#   v_template/shapedirs/weights (state dict with 'x' and a set of dirty vars); the joint
#   regressors as scipy csc matrices (`scipy.sparse.csc` in old scipy, `_csc` in new).
# - SMPLify gmm_08.pkl: a dict of numpy arrays.
# - Python 3 re-saves of either: `_codecs.encode` (protocol 2 bytes), numpy 2's `_core` names,
#   `_frombuffer` (protocol 5); protocol 0/1 saves of objects: copyreg._reconstructor + object.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_numpy_names(),
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "set"): set,
    ("__builtin__", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "object"): object,
    ("__builtin__", "object"): object,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("chumpy.ch", "Ch"): _ChumpyArray,
    ("scipy.sparse.csc", "csc_matrix"): _SparseMatrix,
    ("scipy.sparse._csc", "csc_matrix"): _SparseMatrix,
    ("scipy.sparse.csr", "csr_matrix"): _SparseMatrix,
    ("scipy.sparse._csr", "csr_matrix"): _SparseMatrix,
}


class _SMPLUnpickler(pickle.Unpickler):
    """Resolves only ALLOWED_GLOBALS; every other global is refused before anything of it is
    imported or called."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise SMPLFileError(
                f"refused to load {module}.{name} from a pickle: not one of the names an "
                "SMPL or SMPLify file needs (hmr_ros.body.smpl_io.ALLOWED_GLOBALS)") from None


def load_restricted_pickle(path: str | Path, what: str = "SMPL") -> Any:
    """Unpickle `path` with the allow-list above. SMPLFileError for refused names (the reason
    names the global) and for truncated or foreign files."""
    with open(path, "rb") as fh:
        try:
            return _SMPLUnpickler(fh, encoding="latin1").load()
        except SMPLFileError as err:
            raise SMPLFileError(f"{path}: {err}") from None
        except Exception as err:  # a truncated or foreign file
            raise SMPLFileError(f"{path}: not a readable {what} pickle ({err})") from err


def _plain(value: Any) -> Any:
    if isinstance(value, (_ChumpyArray, _SparseMatrix)):
        return value.to_numpy()
    return value


def read_smpl_pkl(path: str | Path) -> dict[str, Any]:
    """The arrays of an official SMPL .pkl as plain numpy (no chumpy, no scipy)."""
    raw = load_restricted_pickle(path, "SMPL")
    if not isinstance(raw, dict):
        raise SMPLFileError(f"{path}: expected a dict of arrays, found {type(raw).__name__}")
    return {k: _plain(v) for k, v in raw.items()}


def read_smpl_npz(path: str | Path) -> dict[str, Any]:
    return read_npz(path)


def read_model_file(path: str | Path) -> dict[str, Any]:
    """SMPL arrays from a .pkl or .npz file, checked for the keys and shapes smplx needs."""
    path = Path(path)
    if not path.is_file():
        raise SMPLFileError(f"body model file {path} does not exist")
    if path.suffix == ".pkl":
        arrays = read_smpl_pkl(path)
    elif path.suffix == ".npz":
        arrays = read_smpl_npz(path)
    else:
        raise SMPLFileError(f"{path}: expected a .pkl or .npz SMPL model file")
    validate(arrays, str(path))
    return arrays


def validate(arrays: dict[str, Any], where: str = "model") -> None:
    missing = [k for k in SMPL_KEYS if k not in arrays]
    if missing:
        raise SMPLFileError(f"{where}: missing SMPL keys {missing}; has {sorted(arrays)}")
    v = np.asarray(arrays["v_template"])
    if v.ndim != 2 or v.shape[1] != 3:
        raise SMPLFileError(f"{where}: v_template has shape {v.shape}, expected (V, 3)")
    n = v.shape[0]
    expect = {
        "shapedirs": (n, 3, None),
        "posedirs": (n, 3, 207),
        "J_regressor": (24, n),
        "weights": (n, 24),
        "kintree_table": (2, 24),
    }
    for key, shape in expect.items():
        got = np.shape(arrays[key])
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise SMPLFileError(f"{where}: {key} has shape {got}, expected {shape}")
    f = np.asarray(arrays["f"])
    if f.ndim != 2 or f.shape[1] != 3 or f.min() < 0 or f.max() >= n:
        raise SMPLFileError(f"{where}: faces must be (F, 3) indices into {n} vertices")


def as_struct(arrays: dict[str, Any]) -> SimpleNamespace:
    """The object smplx expects as `data_struct` (attribute access to the arrays)."""
    return SimpleNamespace(**arrays)

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

SMPL_KEYS = ("f", "v_template", "shapedirs", "posedirs", "J_regressor", "kintree_table",
             "weights")


class SMPLFileError(ValueError):
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


class _SMPLUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("chumpy"):
            return _ChumpyArray
        if module.startswith("scipy.sparse"):
            if name in ("csc_matrix", "csr_matrix"):
                return _SparseMatrix
            raise SMPLFileError(f"unsupported scipy object {module}.{name} in SMPL file")
        if (module, name) == ("_codecs", "encode"):
            # Protocol-2 pickles written by Python 3 store numpy's raw bytes through it.
            return super().find_class(module, name)
        if module.startswith("numpy") or module in ("builtins", "copy_reg", "copyreg",
                                                    "__builtin__", "collections"):
            return super().find_class(module, name)
        raise SMPLFileError(f"unexpected object {module}.{name} in SMPL file")


def _plain(value: Any) -> Any:
    if isinstance(value, (_ChumpyArray, _SparseMatrix)):
        return value.to_numpy()
    return value


def read_smpl_pkl(path: str | Path) -> dict[str, Any]:
    """The arrays of an official SMPL .pkl as plain numpy (no chumpy, no scipy)."""
    with open(path, "rb") as fh:
        try:
            raw = _SMPLUnpickler(fh, encoding="latin1").load()
        except SMPLFileError:
            raise
        except Exception as err:  # a truncated or foreign file
            raise SMPLFileError(f"{path}: not a readable SMPL pickle ({err})") from err
    if not isinstance(raw, dict):
        raise SMPLFileError(f"{path}: expected a dict of arrays, found {type(raw).__name__}")
    return {k: _plain(v) for k, v in raw.items()}


def read_smpl_npz(path: str | Path) -> dict[str, Any]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


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

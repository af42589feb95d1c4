"""Our own checkpoint format: architecture + weights + free-form metadata in one file.

A checkpoint is a `torch.save`d dict of plain types and tensors only, so it loads with
`torch.load(weights_only=True)` (no arbitrary code runs when opening a file):

    {
        "format": "hmr_ros.checkpoint",
        "format_version": 1,
        "config": ModelConfig.to_dict(),
        "state_dict": {name: Tensor},
        "meta": {...},             # free-form: source, training info, model_version, ...
        "hmr_ros_version": "x.y.z",  # informational only
    }

The state-dict checks shared with the importers of public checkpoints (`check_state_dict`,
`load_state_dict_checked`) also live here.
"""

from __future__ import annotations

import glob
import os
import pickle
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import HmrRosError
from ..version import __version__
from .config import ModelConfig, ModelConfigError
from .hmr import HMR

FORMAT = "hmr_ros.checkpoint"
FORMAT_VERSION = 1

# BatchNorm's step counter: absent from old checkpoints and unused in eval / with momentum, so a
# difference in it alone must not make a checkpoint unusable.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


class CheckpointError(HmrRosError, RuntimeError):
    """A file or dict is not a usable checkpoint (wrong format, missing entry, newer version)."""


@dataclass(frozen=True)
class StateDictDiff:
    """Differences between the state dict a model expects and the one a checkpoint provides.

    mismatched: (key, expected shape, found shape or type name) triples.
    """

    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], str], ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def describe(self, limit: int = 10) -> str:
        """Multi-line summary naming up to `limit` keys of each kind, with counts."""
        lines = []

        def block(title: str, items: Sequence[str]) -> None:
            if not items:
                return
            lines.append(f"{len(items)} {title}:")
            lines.extend(f"  {s}" for s in items[:limit])
            if len(items) > limit:
                lines.append(f"  ... and {len(items) - limit} more")

        block("missing key(s) (in the model, not in the checkpoint)", self.missing)
        block("unexpected key(s) (in the checkpoint, not in the model)", self.unexpected)
        block(
            "key(s) with a wrong shape",
            [f"{k}: expected {list(exp)}, found {got}" for k, exp, got in self.mismatched],
        )
        return "\n".join(lines)


class CheckpointKeyError(CheckpointError):
    """The checkpoint's state dict does not match the model; the message names the keys."""

    def __init__(self, message: str, diff: StateDictDiff) -> None:
        super().__init__(message)
        self.diff = diff


def _ignored(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in _IGNORED_SUFFIXES


def check_state_dict(expected: Mapping[str, Tensor], found: Mapping[str, Any]) -> StateDictDiff:
    """Compare key sets and shapes; differences in `num_batches_tracked` are ignored."""
    missing = tuple(k for k in expected if k not in found and not _ignored(k))
    unexpected = tuple(k for k in found if k not in expected and not _ignored(k))
    mismatched = []
    for k, exp in expected.items():
        if k not in found or _ignored(k):
            continue
        got = found[k]
        if not isinstance(got, Tensor):
            mismatched.append((k, tuple(exp.shape), f"a {type(got).__name__}, not a tensor"))
        elif got.shape != exp.shape:
            mismatched.append((k, tuple(exp.shape), str(list(got.shape))))
    return StateDictDiff(missing, unexpected, tuple(mismatched))


def load_state_dict_checked(
    model: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    source: str,
    hints: Sequence[str] = (),
) -> None:
    """Load `state_dict` into `model` after checking keys and shapes exactly.

    Raises CheckpointKeyError naming every kind of difference (plus `hints`, e.g. which importer
    fits better). `num_batches_tracked` entries missing from the checkpoint keep the model's
    value, and extra ones are dropped.
    """
    expected = model.state_dict()
    diff = check_state_dict(expected, state_dict)
    if not diff.ok:
        msg = f"{source}: state dict does not match the model\n{diff.describe()}"
        if hints:
            msg += "\nhint: " + "\nhint: ".join(hints)
        raise CheckpointKeyError(msg, diff)
    full = {k: v for k, v in state_dict.items() if k in expected}
    for k, v in expected.items():
        full.setdefault(k, v)  # only ignored keys can be absent here
    check_finite(full, source)
    model.load_state_dict(full, strict=True)


def check_finite(state_dict: Mapping[str, Any], source: str) -> None:
    """CheckpointError naming the tensors that hold NaN or inf: such weights give NaN bodies
    that would be published (and break scoring), so they are refused at the door."""
    bad = [k for k, v in state_dict.items()
           if isinstance(v, Tensor) and v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise CheckpointError(f"{source}: non-finite weights (NaN or inf) in {len(bad)} "
                              f"tensor(s): {', '.join(bad[:5])}{more}")


def _check_plain(obj: Any, where: str) -> None:
    # weights_only unpickling only accepts these types; reject others at save time, while the
    # caller can still see which entry is at fault.
    if obj is None or isinstance(obj, (bool, int, float, str, Tensor)):
        return
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: keys must be str, got {type(k).__name__} {k!r}")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(obj).__name__}; checkpoint metadata may only contain None, bool, "
        "int, float, str, tensors, and lists/tuples/dicts (str keys) of these"
    )


def save_checkpoint(
    path: str | os.PathLike[str], model: HMR, meta: Mapping[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` (config + weights) and `meta` to `path` atomically; returns the path.
    `dtype` (e.g. torch.float16, half the file) stores the floating-point tensors in that
    type; loading casts them back to the model's float32.

    The file is written to a temporary file in the same directory and renamed over `path`, so a
    crash never leaves a truncated checkpoint where a good one was. Raises TypeError if `meta`
    holds something other than plain types and tensors.
    """
    path = Path(path)
    meta_dict = dict(meta or {})
    _check_plain(meta_dict, "meta")
    # The default targets (runs/adapted.pt from the node's ~/save_adaptation) live in folders
    # that need not exist yet.
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        # CPU copies: a checkpoint written from a GPU process must open anywhere.
        "state_dict": {k: (v.detach().cpu().to(dtype) if dtype is not None
                           and v.is_floating_point() else v.detach().cpu())
                       for k, v in model.state_dict().items()},
        "meta": meta_dict,
        "hmr_ros_version": __version__,
    }
    with _SAVING_LOCK:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        _SAVING.add(os.path.abspath(tmp))
    _remove_orphans(path)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the checkpoint the permissions of an ordinary file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        with _SAVING_LOCK:
            _SAVING.discard(os.path.abspath(tmp))
    return path


# Temp files of saves in progress in this process (a save in another thread must not lose its
# file to the orphan sweep of a concurrent one).
_SAVING: set[str] = set()
_SAVING_LOCK = threading.Lock()


def _remove_orphans(path: Path) -> None:
    """Remove `.NAME.*.tmp` files next to `path` left by saves killed before their rename
    (SIGKILL skips the cleanup above; each one is a whole checkpoint)."""
    for orphan in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with _SAVING_LOCK:
            if os.path.abspath(orphan) in _SAVING:
                continue
        try:
            orphan.unlink()
        except OSError:  # gone already, or not ours to remove: the save goes on
            pass


@dataclass(frozen=True)
class LoadedCheckpoint:
    """Result of `load_checkpoint`: the rebuilt model (eval mode), its config and the metadata."""

    model: HMR
    config: ModelConfig
    meta: dict[str, Any] = field(default_factory=dict)


def read_checkpoint_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """`torch.load(weights_only=True)` with errors turned into CheckpointError
    (FileNotFoundError passes through). There is no way to unpickle arbitrary objects: a file
    that needs it must be converted (load it yourself, save its state dict) by someone who
    trusts it.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise  # already clear, and not a property of the file's content
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True): {e}\nhint: the file"
            " contains Python objects other than tensors and plain types; if you trust its"
            " source, load it yourself and save only its state dict (torch.save(sd, path))"
        ) from e
    except Exception as e:
        # A corrupt or foreign file surfaces as almost any exception type from the unpickler
        # (IndexError, RuntimeError, EOFError, ...); callers should only need to catch one.
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})"
        ) from e


def load_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> LoadedCheckpoint:
    """Rebuild the model saved by `save_checkpoint` from its stored config and weights.

    The model is returned in eval mode on `map_location`. Raises CheckpointError for a file that
    is not an hmr_ros checkpoint, lacks an entry, or has a newer format version;
    CheckpointKeyError if the weights do not fit the stored config.
    """
    ckpt = read_checkpoint_file(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        hint = ""
        if isinstance(ckpt, dict) and "model" in ckpt:
            hint = (
                "\nhint: this looks like a SPIN/BOA training checkpoint; use "
                "hmr_ros.model.import_spin or import_boa"
            )
        raise CheckpointError(f"{path}: not an hmr_ros checkpoint (no format {FORMAT!r}){hint}")
    for key in ("format_version", "config", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint is missing the entry {key!r}")
    version = ckpt["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(f"{path}: invalid format_version {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version} is newer than this hmr_ros supports "
            f"({FORMAT_VERSION}); update hmr_ros to read it"
        )
    try:
        config = ModelConfig.from_dict(ckpt["config"])
    except ModelConfigError as e:
        raise CheckpointError(f"{path}: invalid model config: {e}") from e
    state_dict = ckpt["state_dict"]
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state_dict).__name__}, not a dict")
    meta = ckpt.get("meta") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: 'meta' is a {type(meta).__name__}, not a dict")

    model = HMR(config)
    load_state_dict_checked(model, state_dict, source=str(path))
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu")
    model.eval()
    return LoadedCheckpoint(model=model, config=config, meta=meta)

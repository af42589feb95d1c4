"""Frames to and from an `.npz` file that loads with `allow_pickle=False`.

The benchmark caches rendered streams. A pickle cache would run code from whatever file sits
at the cache path, so the frames are stored as plain arrays plus one JSON string describing
their structure (stamps, camera sizes, which detections have keypoints or a box, ground-truth
ids). Arrays are keyed `f<i>.<field>`, `f<i>.d<j>.<field>`, `f<i>.gt<id>.<field>`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import HmrRosError
from ..npzio import read_npz
from .frame import BodyParams, CameraModel, Detection, Frame, Keypoints

CACHE_VERSION = 1
_GT_FIELDS = ("betas", "global_orient", "body_pose", "transl")


class FrameCacheError(HmrRosError, ValueError):
    """A cache file that is not one of ours (or of another version): re-render instead."""


def save_frames(path: str | Path, frames: list[Frame]) -> None:
    """Write `frames` atomically (a temp file renamed over `path`)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta: list[dict[str, Any]] = []
    for i, fr in enumerate(frames):
        arrays[f"f{i}.image"] = np.ascontiguousarray(fr.image)
        cam = None
        if fr.camera is not None:
            arrays[f"f{i}.K"] = fr.camera.K
            cam = {"width": fr.camera.width, "height": fr.camera.height,
                   "frame_id": fr.camera.frame_id}
        dets = []
        for j, det in enumerate(fr.detections):
            kp = det.keypoints
            if kp is not None:
                arrays[f"f{i}.d{j}.xy"] = kp.xy
                arrays[f"f{i}.d{j}.conf"] = kp.confidence
            if det.box is not None:
                arrays[f"f{i}.d{j}.box"] = np.asarray(det.box)
            dets.append({"id": int(det.id), "format": kp.format if kp is not None else None,
                         "box": det.box is not None})
        for pid, gt in fr.ground_truth.items():
            for name in _GT_FIELDS:
                arrays[f"f{i}.gt{int(pid)}.{name}"] = np.asarray(getattr(gt, name))
        meta.append({"stamp_ns": int(fr.stamp_ns), "index": int(fr.index), "camera": cam,
                     "detections": dets, "gt": [int(p) for p in fr.ground_truth]})
    arrays["meta"] = np.array(json.dumps({"version": CACHE_VERSION, "frames": meta},
                                         allow_nan=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:  # a file object: savez adds no second suffix
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_frames(path: str | Path) -> list[Frame]:
    """The frames written by `save_frames`; FrameCacheError for any other file."""
    try:
        data = read_npz(path)
        meta = json.loads(str(data["meta"]))
    except (OSError, ValueError, KeyError) as err:
        raise FrameCacheError(f"{path}: not a frame cache ({err})") from err
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        raise FrameCacheError(f"{path}: frame cache version {meta.get('version')!r}, "
                              f"expected {CACHE_VERSION}")
    try:
        return [_frame(i, m, data) for i, m in enumerate(meta["frames"])]
    except (KeyError, TypeError, ValueError) as err:
        raise FrameCacheError(f"{path}: inconsistent frame cache ({err!r})") from err


def _frame(i: int, m: dict[str, Any], data: dict[str, np.ndarray]) -> Frame:
    cam = m["camera"]
    camera = (CameraModel(data[f"f{i}.K"], cam["width"], cam["height"], cam["frame_id"])
              if cam is not None else None)
    dets = []
    for j, d in enumerate(m["detections"]):
        kp = (Keypoints(d["format"], data[f"f{i}.d{j}.xy"], data[f"f{i}.d{j}.conf"])
              if d["format"] is not None else None)
        box = data[f"f{i}.d{j}.box"] if d["box"] else None
        dets.append(Detection(d["id"], kp, box))
    gt = {pid: BodyParams(**{n: data[f"f{i}.gt{pid}.{n}"] for n in _GT_FIELDS})
          for pid in m["gt"]}
    return Frame(data[f"f{i}.image"], m["stamp_ns"], camera, tuple(dets), m["index"], gt)

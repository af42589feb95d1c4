"""Pictures of estimates: meshes drawn over the frames, and videos or PNG strips of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ..data.frame import CameraModel, PersonEstimate
from ..render import Light, RenderMesh, render

# Distinct, bright colours for person ids (RGB in [0, 1]).
PALETTE = np.array([
    [0.95, 0.45, 0.25], [0.25, 0.65, 0.95], [0.45, 0.85, 0.35], [0.95, 0.8, 0.2],
    [0.75, 0.4, 0.9], [0.3, 0.9, 0.85], [0.95, 0.4, 0.6], [0.6, 0.6, 0.6],
])


def colour_for(track_id: int) -> np.ndarray:
    return PALETTE[int(track_id) % len(PALETTE)]


def draw_people(image: np.ndarray, people: Sequence[PersonEstimate], faces: np.ndarray,
                camera: CameraModel, alpha: float = 0.65, label: str = "") -> np.ndarray:
    """The frame (H, W, 3) RGB with each person's mesh blended in its colour and its id."""
    h, w = image.shape[:2]
    meshes = [RenderMesh(p.vertices.astype(np.float64), faces,
                         np.tile(colour_for(p.id), (len(p.vertices), 1)))
              for p in people if p.vertices is not None]
    out = image.copy()
    if meshes:
        res = render(meshes, camera.K, w, h, image, Light((-0.2, -0.4, -0.9), 0.7, 0.45))
        mask = res.object >= 0
        out[mask] = (alpha * res.image[mask] + (1 - alpha) * image[mask]).astype(np.uint8)
    for p in people:
        x0, y0 = p.bbox_xyxy[:2]
        c = tuple(int(v) for v in colour_for(p.id) * 255)
        cv2.putText(out, f"id {p.id}", (int(max(0, x0)), int(max(12, y0 + 12))),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, c, 1, cv2.LINE_AA)
    if label:
        cv2.putText(out, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


class FrameSink:
    """Writes RGB frames to an MP4 (OpenCV) or, if no video encoder works, a PNG strip."""

    def __init__(self, path: str | Path, fps: float, strip_every: int = 10) -> None:
        self.path = Path(path)
        self.fps = fps
        self.strip_every = strip_every
        self._writer: cv2.VideoWriter | None = None
        self._strip: list[np.ndarray] = []
        self._n = 0
        self.written: Path | None = None

    def add(self, rgb: np.ndarray) -> None:
        h, w = rgb.shape[:2]
        if self._writer is None and self._n == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps,
                                     (w, h))
            self._writer = writer if writer.isOpened() else None
        if self._writer is not None:
            self._writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
        if self._n % self.strip_every == 0 and len(self._strip) < 12:
            self._strip.append(cv2.resize(rgb, (max(1, w * 240 // h), 240)))
        self._n += 1

    def close(self) -> Path | None:
        if self._writer is not None:
            self._writer.release()
            self.written = self.path
        if self._strip:
            strip = self.path.with_suffix(".png")
            cv2.imwrite(str(strip), np.concatenate(self._strip, axis=1)[:, :, ::-1])
            if self.written is None:
                self.written = strip
        return self.written

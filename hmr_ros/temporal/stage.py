"""`TemporalStage`: per tracked person a bounded history of features, and the refinement of
each frame's people in causal or lookahead mode.

Causal (`delay` 0): the bodies of frame t are refined when frame t arrives, from frames <= t:
no added latency beyond the refiner's few ms. Lookahead d: frame t's bodies are refined when
frame t + d arrives (or when the stream is flushed), from frames <= t + d; the refined result
keeps frame t's index and stamp, so what is published carries the stamp of the frame it
describes, d frame periods late (d / fps seconds: 67 ms for d = 2 at 30 Hz).

The history holds features made by whatever weights the regressor had at each frame. When
adaptation publishes new weights, the older entries stay (a window then mixes model
versions): resetting would leave almost no context, since the worker publishes several
versions per second. `FrameFeatures.version` records which weights made each entry;
`reset_on_new_weights` is the alternative (a track's history restarts at every new version),
measured by `hmr-ros bench temporal` (mode `causal_reset`).
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from ..body import BodyModel
from ..data.frame import BodyParams, Frame, FrameResult, PersonEstimate
from ..geometry import crop_cam_to_translation, matrix_to_axis_angle, rot6d_to_matrix
from .features import FrameFeatures
from .model import TemporalRefiner
from .refine import WindowSpec, refine_history

# A track unseen for this many frames leaves the history (ids are never reused, so an
# ended track would otherwise stay for ever in a long run).
EVICT_AFTER = 30


@dataclass
class _Track:
    history: deque[FrameFeatures]
    count: int = 0  # entries ever pushed: the absolute position of the next one
    last_frame: int = 0  # the stage's frame counter when last seen


@dataclass
class _Pending:
    frame: Frame
    result: FrameResult
    positions: dict[int, int] = field(default_factory=dict)  # id -> absolute position


class TemporalStage:
    def __init__(self, refiner: TemporalRefiner, body: BodyModel, spec: WindowSpec,
                 vertices: bool = True, use_global: bool = True, use_local: bool = True,
                 reset_on_new_weights: bool = False) -> None:
        if spec.past > refiner.config.max_past or spec.future > refiner.config.max_future:
            raise ValueError(f"window past {spec.past} / lookahead {spec.future} beyond the "
                             f"refiner's {refiner.config.max_past} / "
                             f"{refiner.config.max_future}")
        if spec.local_past > spec.past:
            raise ValueError("the local window cannot reach further back than the global one")
        self.refiner = refiner
        self.body = body
        self.spec = spec
        self.vertices = vertices
        self.use_global = use_global
        self.use_local = use_local
        self.reset_on_new_weights = reset_on_new_weights
        self.tracks: dict[int, _Track] = {}
        self.pending: deque[_Pending] = deque()
        self.frames = 0
        self.last_ms = 0.0  # refinement time of the last push

    @property
    def delay(self) -> int:
        """Frames between receiving a frame and emitting its refined result."""
        return self.spec.future

    def forget(self, track: int) -> None:
        self.tracks.pop(track, None)

    def push(self, frame: Frame, result: FrameResult, feats: dict[int, FrameFeatures]
             ) -> list[tuple[Frame, FrameResult]]:
        """Add frame t (its per-frame result and each person's features); return the
        refined (frame, result) pairs now ready: frame t in causal mode, frame t - d (if
        any) with lookahead."""
        t0 = time.perf_counter()
        self.frames += 1
        maxlen = self.spec.past + self.spec.future + 1
        pend = _Pending(frame, result)
        for pid, f in feats.items():
            tr = self.tracks.get(pid)
            if tr is None:
                tr = self.tracks[pid] = _Track(deque(maxlen=maxlen))
            if self.reset_on_new_weights and tr.history and tr.history[-1].version != f.version:
                tr.history.clear()  # positions keep counting: older ones fall out of reach
            tr.history.append(f)
            pend.positions[pid] = tr.count
            tr.count += 1
            tr.last_frame = self.frames
        for pid in [p for p, tr in self.tracks.items()
                    if self.frames - tr.last_frame > EVICT_AFTER]:
            del self.tracks[pid]
        self.pending.append(pend)
        out = []
        while len(self.pending) > self.delay:
            out.append(self._refine(self.pending.popleft()))
        self.last_ms = (time.perf_counter() - t0) * 1e3
        return out

    def flush(self) -> list[tuple[Frame, FrameResult]]:
        """At a stream's end: the pending frames, refined with the future they have."""
        out = [self._refine(p) for p in self.pending]
        self.pending.clear()
        return out

    def reset(self) -> None:
        self.tracks.clear()
        self.pending.clear()

    def _refine(self, pend: _Pending) -> tuple[Frame, FrameResult]:
        t0 = time.perf_counter()
        people = list(pend.result.people)
        todo, ests = [], []
        for i, person in enumerate(people):
            tr = self.tracks.get(person.id)
            pos = pend.positions.get(person.id)
            if tr is None or pos is None:
                continue  # forgotten meanwhile: the per-frame estimate stays
            first = tr.count - len(tr.history)
            if pos < first:
                continue
            hist = list(tr.history)[: pos - first + 1 + self.spec.future]
            est = refine_history(self.refiner, hist, pos - first, self.spec,
                                 self.use_global, self.use_local)
            if not np.isfinite(est).all():
                continue  # never publish a non-finite refinement: the per-frame one stays
            ests.append(est)
            todo.append((i, tr.history[pos - first]))
        if todo:
            refined = self._estimates(np.stack(ests), [f for _, f in todo],
                                      [people[i] for i, _ in todo])
            for (i, _), p in zip(todo, refined):
                people[i] = p
        ms = (time.perf_counter() - t0) * 1e3
        return pend.frame, dataclasses.replace(pend.result, people=tuple(people),
                                               latency_ms=pend.result.latency_ms + ms)

    def _estimates(self, est: np.ndarray, feats: list[FrameFeatures],
                   before: list[PersonEstimate]) -> list[PersonEstimate]:
        """(N, 157) refined vectors -> PersonEstimates in the camera frame (as the
        pipeline makes them: translation from the crop camera with the real K)."""
        e = torch.from_numpy(est).float()
        rotmat = rot6d_to_matrix(e[:, :144].reshape(-1, 24, 6))
        betas, cam = e[:, 144:154], e[:, 154:157]
        box = torch.from_numpy(np.stack([f.box for f in feats])).float()
        K = torch.from_numpy(np.stack([f.K for f in feats])).float()
        transl = crop_cam_to_translation(cam, box, K)
        with torch.inference_mode():
            body = self.body.forward_rotmat(rotmat, betas, transl)
            rotations = self.body.global_rotations(rotmat).numpy()
        aa = matrix_to_axis_angle(rotmat).numpy()
        out = []
        for k, old in enumerate(before):
            params = BodyParams(betas=betas[k].numpy().copy(), global_orient=aa[k, 0].copy(),
                                body_pose=aa[k, 1:].copy(), transl=transl[k].numpy().copy())
            out.append(dataclasses.replace(
                old, cam=cam[k].numpy().copy(), params=params, joints=body.joints[k].numpy(),
                points=body.points[k].numpy(),
                vertices=body.vertices[k].numpy() if self.vertices else None,
                rotations=rotations[k]))
        return out

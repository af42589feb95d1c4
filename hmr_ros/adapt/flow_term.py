"""The motion-cues term of adaptation: image flow against the predicted mesh's motion.

`FlowBatch` carries, for each person of the current frames, the same person one frame earlier
(consecutive frames: the paper found an interval of 1 best) and the image motion between the
two crops (`data.optical_flow.crop_flow`, computed by the worker thread, never by inference).
`flow_term` projects both frames' predicted vertices, keeps those visible in both (a z-buffer
test of each predicted mesh against itself, detached) and calls `losses.flow_loss`.

`FlowCache` keeps computed flows per (track, earlier index, index), bounded, so that a frame
picked again (steps_per_frame > 1, batch_frames > 1) is not flowed twice.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..body import BodyModel
from ..data.crop import crop_matrix
from ..data.optical_flow import CropFlow, crop_flow
from ..model.hmr import RegressorOutput
from ..render import vertex_visibility
from . import losses as L


@dataclass(frozen=True)
class FlowBatch:
    """The earlier frame of each pair and the flow between the pairs.

    images (B, 3, R, R) in [0, 1], box (B, 3), K (B, 3, 3): the people one frame before the
    current ones; forward (B, 2, R, R) image motion earlier -> current on the earlier crop's
    grid; backward (B, 2, R, R) current -> earlier on the current crop's grid; weight (B,) 1
    where the pair exists (0: no earlier frame, the term ignores that person).
    """

    images: Tensor
    box: Tensor
    K: Tensor
    forward: Tensor
    backward: Tensor
    weight: Tensor

    def to(self, device: torch.device) -> FlowBatch:
        if self.images.device == device:
            return self
        return FlowBatch(*(t.to(device) for t in (self.images, self.box, self.K, self.forward,
                                                   self.backward, self.weight)))


class FlowCache:
    """Flows by key, the oldest dropped beyond `capacity` (bytes: `nbytes`)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[tuple, CropFlow] = OrderedDict()
        self.computed = 0

    def get(self, key: tuple, crop_a: np.ndarray, box_a: np.ndarray, crop_b: np.ndarray,
            box_b: np.ndarray, preset: str) -> CropFlow:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        flow = crop_flow(crop_a, box_a, crop_b, box_b, preset)
        self.computed += 1
        self._items[key] = flow
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return flow

    @property
    def nbytes(self) -> int:
        return sum(f.nbytes for f in self._items.values())

    def __len__(self) -> int:
        return len(self._items)


def visible_in_crop(vertices: Tensor, K: Tensor, box: Tensor, faces: np.ndarray, size: int
                    ) -> Tensor:
    """(B, V) bool, detached: vertices (B, V, 3) in the camera frame seen in their crop (box
    (B, 3), K (B, 3, 3), `size` px), by a z-buffer test of the mesh against itself rendered
    at crop resolution (outside the crop counts as unseen: no flow there)."""
    v = vertices.detach().cpu().double().numpy()
    Ks, boxes = K.detach().cpu().double().numpy(), box.detach().cpu().double().numpy()
    out = [vertex_visibility(v[i], faces, crop_matrix(boxes[i], size) @ Ks[i], size, size)
           for i in range(len(v))]
    return torch.as_tensor(np.stack(out), device=vertices.device)


def flow_term(body: BodyModel, out_a: RegressorOutput, out_b: RegressorOutput,
              flow: FlowBatch, box_b: Tensor, K_b: Tensor) -> Tensor:
    """The flow loss between the earlier frames' outputs (out_a, on `flow`'s crops) and the
    current ones (out_b; boxes box_b (B, 3), K_b (B, 3, 3)). Scalar."""
    size = int(flow.images.shape[-1])
    faces = np.asarray(body.faces, dtype=np.int64)
    va = body.forward_rotmat(out_a.rotmat, out_a.betas).vertices
    vb = body.forward_rotmat(out_b.rotmat, out_b.betas).vertices
    ta = L.camera_translation(out_a.cam, flow.box, flow.K)
    tb = L.camera_translation(out_b.cam, box_b, K_b)
    visible = (visible_in_crop(va + ta[:, None], flow.K, flow.box, faces, size)
               & visible_in_crop(vb + tb[:, None], K_b, box_b, faces, size))
    uv_a = L.project_pixels(va, ta, flow.K)
    uv_b = L.project_pixels(vb, tb, K_b)
    return L.flow_loss(uv_a, uv_b, flow.forward, flow.backward, flow.box, box_b, visible,
                       flow.weight)

"""What an adaptation step consumes and reports: `FrameBatch` (crops, cameras, keypoints),
`AdaptBatch` (the newest frames, their tau-partners and the optional extra batches) and
`StepReport`; `AdaptStatus`, the worker's state as the node reports it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import losses as L
from .dapa import SyntheticBatch
from .flow_term import FlowBatch


@dataclass(frozen=True)
class FrameBatch:
    """Frames to adapt on, as tensors.

    images (B, 3, R, R) in [0, 1]; box (B, 3) crop boxes; K (B, 3, 3); keypoints (B, J, 2)
    pixels in the image; conf (B, J) (0 for unusable joints); mapping (J, 46) from SMPL
    source points to the keypoints' layout. `keys` name the samples ((track, frame index,
    crop id) each) and `prefix` (B, ...) is their frozen backbone output when an earlier step
    computed it (scopes with a frozen prefix; frozen layers never change, so it stays valid).
    """

    images: Tensor
    box: Tensor
    K: Tensor
    keypoints: Tensor
    conf: Tensor
    mapping: Tensor
    keys: tuple[tuple[int, int, int], ...] = ()
    prefix: Tensor | None = None

    @property
    def keypoints_crop(self) -> Tensor:
        return L.to_crop(self.keypoints, self.box)

    def to(self, device: torch.device) -> FrameBatch:
        """The same batch on `device` (itself when it is there already)."""
        if self.images.device == device:
            return self
        return FrameBatch(*(t.to(device) for t in (self.images, self.box, self.K,
                                                   self.keypoints, self.conf, self.mapping)),
                          keys=self.keys,
                          prefix=None if self.prefix is None else self.prefix.to(device))

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclass(frozen=True)
class AdaptBatch:
    """The newest frames and, for the motion term, the same people tau frames earlier
    (`previous`; equal to `current` for people without enough history, which makes their
    motion term zero)."""

    current: FrameBatch
    previous: FrameBatch
    replay: dict[str, Tensor] | None = None
    flow: FlowBatch | None = None  # the frames one earlier and the image flow (w_flow > 0)
    synthetic: SyntheticBatch | None = None  # DAPA's rendered crops (adapt/dapa.py)
    # The outer learning rate's factor: the frames this step stands for (adapt.worker.catch_up)
    lr_scale: float = 1.0

    def to(self, device: torch.device) -> AdaptBatch:
        """The same batch on `device` (itself when it is there already)."""
        if self.current.images.device == device:
            return self
        replay = None if self.replay is None else {k: v.to(device)
                                                   for k, v in self.replay.items()}
        flow = None if self.flow is None else self.flow.to(device)
        synthetic = None if self.synthetic is None else self.synthetic.to(device)
        return AdaptBatch(self.current.to(device), self.previous.to(device), replay, flow,
                          synthetic, self.lr_scale)


@dataclass(frozen=True)
class StepReport:
    method: str
    loss: float  # the objective that drove the update (upper level for BOA)
    terms: dict[str, float] = field(default_factory=dict)
    accepted: bool = True
    reason: str = ""
    seconds: float = 0.0
    version: int = 0


@dataclass(frozen=True)
class AdaptStatus:
    state: str
    enabled: bool
    method: str
    version: int
    steps: int
    rollbacks: int
    steps_per_second: float
    last_loss: float
    buffered: int
    dropped: int
    errors: int
    message: str
    resets: int = 0  # resets to the source weights after max_consecutive_rollbacks
    samples_used: int = 0  # samples (a frame's people) that entered a step

"""What the temporal stage reads from the regressor: per crop, the pooled global feature, the
layer3 feature map and the per-frame estimate, all from ONE forward pass with the weights the
backend answers with (so the refinement always sees the features of the estimate it refines).

Only the torch backend can give them: ONNX Runtime and TensorRT run an exported graph whose
outputs are the SMPL parameters alone (`model/export.py`), so `supports_features` is False for
them and the pipeline disables the stage with a warning (see `pipeline.build_pipeline`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..model.hmr import HMR, RegressorOutput

# The backbone stage whose output is the local feature map: layer3 keeps 1/16 of the crop
# (8 x 8 cells of 16 px at hmr_small's 128 px), fine enough to tell a wrist from an elbow and
# small enough for a ConvGRU over a few frames in a few ms on one core.
MAP_STAGE = 3


@dataclass(frozen=True)
class CropFeatures:
    """Features of a batch of crops.

    global_: (B, F) pooled backbone features (what the regressor's head reads);
    fmap: (B, C, h, w) the layer3 feature map (C = 4 * width * expansion, h = w = R / 16).
    """

    global_: Tensor
    fmap: Tensor


def map_shape(model: HMR) -> tuple[int, int]:
    """(channels, side) of the feature map `regress_with_features` returns for `model`."""
    cfg = model.config
    return 4 * cfg.width * cfg.expansion, cfg.input_size // 16


def regress_with_features(model: HMR, images: Tensor) -> tuple[RegressorOutput, CropFeatures]:
    """(B, 3, R, R) RGB in [0, 1] -> the regressor's output and its features; the output is
    bit-identical to `model(images)` (the same layers in the same order)."""
    x3 = model.prefix(images, MAP_STAGE)
    pooled = model.features_after(x3, MAP_STAGE)
    return model.regress(pooled), CropFeatures(pooled, x3)


@dataclass(frozen=True)
class FrameFeatures:
    """One person's inputs to the temporal stage at one frame (numpy, float32).

    global_: (F,); fmap: (C, h, w); pose6d: (24, 6); betas: (10,); cam: (3,) crop camera;
    box: (3,) [cx, cy, size] px; K: (3, 3) intrinsics; version: the model version that made
    them (features of different versions in one window are what adaptation does to the stage).
    """

    global_: np.ndarray
    fmap: np.ndarray
    pose6d: np.ndarray
    betas: np.ndarray
    cam: np.ndarray
    box: np.ndarray
    K: np.ndarray
    version: int = 0

    @property
    def estimate(self) -> np.ndarray:
        """(157,) the per-frame estimate as one vector: pose6d (144), betas (10), cam (3)."""
        return np.concatenate([self.pose6d.reshape(-1), self.betas, self.cam]).astype(np.float32)


def per_person(out: RegressorOutput, feats: CropFeatures, boxes: np.ndarray, K: np.ndarray,
               version: int) -> list[FrameFeatures]:
    """Split a batch (B people of one frame) into B `FrameFeatures` (copies on the CPU, so a
    later weight swap cannot change a stored history entry)."""
    g = feats.global_.detach().float().cpu().numpy()
    m = feats.fmap.detach().float().cpu().numpy()
    pose = out.pose6d.detach().float().cpu().numpy()
    betas = out.betas.detach().float().cpu().numpy()
    cam = out.cam.detach().float().cpu().numpy()
    K = np.asarray(K, dtype=np.float32)
    return [FrameFeatures(g[i].copy(), m[i].copy(), pose[i].copy(), betas[i].copy(),
                          cam[i].copy(), np.asarray(boxes[i], dtype=np.float32), K, version)
            for i in range(g.shape[0])]


def stack_window(items: list[FrameFeatures]) -> dict[str, Tensor]:
    """A window of T entries -> tensors: global (T, F), fmap (T, C, h, w), est (T, 157)."""
    return {"global": torch.from_numpy(np.stack([f.global_ for f in items])),
            "fmap": torch.from_numpy(np.stack([f.fmap for f in items])),
            "est": torch.from_numpy(np.stack([f.estimate for f in items]))}

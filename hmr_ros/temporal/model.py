"""`TemporalRefiner`: TAR's three parts, sized for one CPU core per frame and person.

1. Global temporal encoder: a small transformer over a window of per-frame tokens (pooled
   backbone feature + the regressor's estimate, plus a learned embedding of each frame's
   offset from the target frame) -> a temporal global feature g and a correction of the
   target frame's estimate (TAR's MLP initial estimate, here a residual on the regressor's).
2. Local ConvGRU: the layer3 feature maps of a local window, reduced by a 1x1 conv, run
   forward from the oldest frame to the target and backward from the newest frame (up to the
   lookahead) to the target (TAR's bidirectional ConvGRU; with no lookahead the backward pass
   sees the target frame only) -> one local map at the target frame.
3. Recurrent refinement: L iterations; each projects the current estimate's 24 joints
   (our markers; TAR uses 26 surface markers) through the real intrinsics into the crop,
   bilinearly samples the local map there, and a GRU cell (one shared over the markers,
   TAR has one per marker) updates the estimate.

The window holds only frames the mode may read (the stage builds it from frames <= t + d),
so causality is a property of the inputs, tested by perturbing the frames after them. Missing
frames at a track's start or end are filled with the nearest real one (edge padding): a track
of identical frames therefore refines to identical bodies, ACCEL exactly 0 by construction.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..body import BodyModel
from .kinematics import JointModel, estimate_joints, project_to_crop

EST_DIM = 157  # pose6d 144 + betas 10 + cam 3


@dataclass(frozen=True)
class TARConfig:
    """The refiner's architecture (saved in its checkpoint, so loading rebuilds it).

    feat_dim / map_channels: the regressor's pooled feature and layer3 channels (hmr_small:
    256 / 128); max_past / max_future: the largest offsets the position embedding knows.
    """

    feat_dim: int = 256
    map_channels: int = 128
    d_model: int = 96
    heads: int = 4
    layers: int = 2
    ff: int = 192
    max_past: int = 8
    max_future: int = 4
    local_channels: int = 24
    hidden: int = 192
    iterations: int = 3
    # The initial estimate starts from a learned weighted mean of the window's per-frame
    # estimates (weights from the encoder, starting near the target frame alone): smoothing
    # as an inductive bias, which a few thousand training frames do not teach a free MLP.
    pool: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConvGRUCell(nn.Module):
    """(B, Cin, h, w) input, (B, Ch, h, w) state -> new state (3x3 convolutions)."""

    def __init__(self, cin: int, ch: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(cin + ch, 2 * ch, 3, padding=1)
        self.cand = nn.Conv2d(cin + ch, ch, 3, padding=1)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        n = torch.tanh(self.cand(torch.cat([x, r * h], 1)))
        return (1 - z) * h + z * n


class TemporalRefiner(nn.Module):
    def __init__(self, config: TARConfig, body: BodyModel) -> None:
        super().__init__()
        c = config
        self.config = c
        self.joints = JointModel(body)
        self.token = nn.Linear(c.feat_dim + EST_DIM, c.d_model)
        self.offset_emb = nn.Embedding(c.max_past + c.max_future + 1, c.d_model)
        layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ff, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, c.layers, enable_nested_tensor=False)
        self.pool_logit = nn.Linear(c.d_model, 1)
        nn.init.zeros_(self.pool_logit.weight)
        nn.init.zeros_(self.pool_logit.bias)
        self.self_bias = nn.Parameter(torch.tensor(4.0))
        self.init_head = nn.Sequential(nn.Linear(c.d_model + EST_DIM, c.hidden), nn.GELU(),
                                       nn.Linear(c.hidden, EST_DIM))
        self.reduce = nn.Conv2d(c.map_channels, c.local_channels, 1)
        self.fwd = ConvGRUCell(c.local_channels, c.local_channels)
        self.bwd = ConvGRUCell(c.local_channels, c.local_channels)
        self.merge = nn.Conv2d(2 * c.local_channels, c.local_channels, 1)
        self.h0 = nn.Linear(c.d_model, c.hidden)
        self.gru = nn.GRUCell(24 * c.local_channels + EST_DIM + c.d_model, c.hidden)
        self.delta = nn.Linear(c.hidden, EST_DIM)
        # Corrections start at zero: an untrained refiner returns the regressor's estimate.
        for lin in (self.init_head[-1], self.delta):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def global_context(self, glob: Tensor, est: Tensor, offsets: Tensor) -> Tensor:
        """glob (B, T, F), est (B, T, 157), offsets (T,) ints in [-max_past, max_future]
        -> (B, T, d_model) the encoder's outputs."""
        x = self.token(torch.cat([glob, est], -1))
        x = x + self.offset_emb(offsets + self.config.max_past)[None]
        return self.encoder(x)

    def pooled(self, enc: Tensor, est: Tensor, target: int) -> Tensor:
        """enc (B, T, d), est (B, T, 157) -> (B, 157) the weighted mean of the window's
        estimates (the 6D rotations are re-orthonormalised downstream)."""
        logits = self.pool_logit(enc).squeeze(-1)
        onehot = torch.zeros_like(logits)
        onehot[:, target] = 1.0
        w = torch.softmax(logits + self.self_bias * onehot, dim=-1)
        return (w.unsqueeze(-1) * est).sum(1)

    def local_map(self, fmap: Tensor, target: int) -> Tensor:
        """fmap (B, T, C, h, w) with the target at position `target` -> (B, c, h, w): the
        forward state after the target and the backward state from the newest frame."""
        b, t = fmap.shape[:2]
        x = self.reduce(fmap.flatten(0, 1)).unflatten(0, (b, t))
        h = torch.zeros_like(x[:, 0])
        for k in range(target + 1):
            h = self.fwd(x[:, k], h)
        hb = torch.zeros_like(x[:, 0])
        for k in range(t - 1, target - 1, -1):
            hb = self.bwd(x[:, k], hb)
        return self.merge(torch.cat([h, hb], 1))

    def forward(self, glob: Tensor, est: Tensor, offsets: Tensor, target: int,
                fmap: Tensor, local_target: int, box: Tensor, K: Tensor,
                use_global: bool = True, use_local: bool = True) -> list[Tensor]:
        """One refinement per batch row.

        glob (B, T, F), est (B, T, 157): the global window, the target frame at position
        `target`, `offsets` (T,) each frame's offset from it; fmap (B, Tl, C, h, w): the local
        window with the target at `local_target`; box (B, 3) and K (B, 3, 3) of the target
        frame. Returns the estimates (B, 157) after the initial step and after each of the
        `iterations` refinements (the last one is the output). `use_global` / `use_local`
        switch a branch off (its input zeroed), for the ablation.
        """
        est_t = est[:, target]
        enc = self.global_context(glob, est, offsets)
        g = enc[:, target]
        if not use_global:
            g = torch.zeros_like(g)
            base = est_t
        else:
            base = self.pooled(enc, est, target) if self.config.pool else est_t
        cur = base + self.init_head(torch.cat([g, base], -1))
        outs = [cur]
        local = self.local_map(fmap, local_target)
        if not use_local:
            local = torch.zeros_like(local)
        hidden = torch.tanh(self.h0(g))
        for _ in range(self.config.iterations):
            _, joints, cam = estimate_joints(self.joints, cur)
            uv = project_to_crop(joints, cam, box, K)  # (B, 24, 2)
            # Markers are inputs: no gradient through where they sample (as TAR's sampling).
            sampled = F.grid_sample(local, uv.detach()[:, :, None], align_corners=False)
            x = torch.cat([sampled.flatten(1), cur, g], -1)
            hidden = self.gru(x, hidden)
            cur = cur + self.delta(hidden)
            outs.append(cur)
        return outs

"""ResNet backbone with torchvision's (and therefore SPIN's and BOA's) parameter names.

torchvision is not a dependency, so the network is written here. Attribute names are chosen so
that state-dict keys are exactly those of torchvision's ResNet / SPIN's HMR:
`conv1`, `bn1`, `layer1.0.conv1`, `layer1.0.bn1`, ..., `layer2.0.downsample.0` (1x1 conv) and
`layer2.0.downsample.1` (norm). The normalisation layers keep the name `bn*` even when they are
GroupNorm, because BOA's GroupNorm checkpoints use those names too.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .config import ModelConfig


def make_norm(kind: str, channels: int, gn_groups: int) -> nn.Module:
    """BatchNorm2d or GroupNorm over `channels`; both have `weight`/`bias` parameters."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(gn_groups, channels)
    raise ValueError(f"unknown norm {kind!r}; expected 'batch' or 'group'")


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by a normalisation layer that has its own shift.
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34).

    (B, Cin, H, W) -> (B, planes, H/s, W/s)
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        norm: str,
        gn_groups: int,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = make_norm(norm, planes, gn_groups)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = make_norm(norm, planes, gn_groups)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # Out-of-place add and ReLU: the adaptation engine differentiates through this twice,
        # and in-place ops on saved activations would break double backward.
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride, as torchvision/SPIN), 1x1 expand x4, residual.

    (B, Cin, H, W) -> (B, 4 * planes, H/s, W/s)
    """

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        downsample: nn.Module | None,
        norm: str,
        gn_groups: int,
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = make_norm(norm, planes, gn_groups)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = make_norm(norm, planes, gn_groups)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = make_norm(norm, planes * self.expansion, gn_groups)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCK_TYPES: dict[str, type[BasicBlock] | type[Bottleneck]] = {
    "basic": BasicBlock,
    "bottleneck": Bottleneck,
}


class ResNet(nn.Module):
    """ResNet feature extractor (no classifier): (B, 3, H, W) normalised image -> (B, F).

    F = 8 * width * expansion (2048 for ResNet-50). The input is expected to be already
    normalised (ImageNet mean/std); `HMR` does that before calling `forward_features`.
    """

    def __init__(
        self,
        block: str = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        norm: str = "batch",
        gn_groups: int = 4,
    ) -> None:
        super().__init__()
        if block not in _BLOCK_TYPES:
            raise ValueError(f"unknown block {block!r}; expected one of {sorted(_BLOCK_TYPES)}")
        if len(layers) != 4:
            raise ValueError(f"layers must have 4 entries, got {list(layers)}")
        block_type = _BLOCK_TYPES[block]
        self._norm = norm
        self._gn_groups = gn_groups
        self._block_type = block_type

        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = make_norm(norm, width, gn_groups)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = width
        self.layer1 = self._make_stage(width, layers[0], stride=1)
        self.layer2 = self._make_stage(width * 2, layers[1], stride=2)
        self.layer3 = self._make_stage(width * 4, layers[2], stride=2)
        self.layer4 = self._make_stage(width * 8, layers[3], stride=2)
        # Adaptive pooling equals SPIN's AvgPool2d(7) at 224 px and also works for other sizes.
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = width * 8 * block_type.expansion
        self._init_weights()

    @classmethod
    def from_config(cls, config: ModelConfig) -> ResNet:
        return cls(config.block, config.layers, config.width, config.norm, config.gn_groups)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        out = planes * self._block_type.expansion
        downsample = None
        if stride != 1 or self._inplanes != out:
            # Sequential so the keys are downsample.0.* (conv) and downsample.1.* (norm).
            downsample = nn.Sequential(
                _conv1x1(self._inplanes, out, stride), make_norm(self._norm, out, self._gn_groups)
            )
        mods = [
            self._block_type(
                self._inplanes, planes, stride, downsample, self._norm, self._gn_groups
            )
        ]
        self._inplanes = out
        for _ in range(1, blocks):
            mods.append(self._block_type(out, planes, 1, None, self._norm, self._gn_groups))
        return nn.Sequential(*mods)

    def _init_weights(self) -> None:
        # He init for convs (fan_out, as SPIN's normal(0, sqrt(2 / (k*k*out)))); unit-gain norms.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features_until(self, x: Tensor, stage: int) -> Tensor:
        """(B, 3, H, W) normalised image -> the feature map after `stage` (0: the stem,
        1-4: layer1-layer4), or (B, F) pooled features for stage 5."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[:stage]:
            x = layer(x)
        return self.avgpool(x).flatten(1) if stage >= 5 else x

    def features_after(self, x: Tensor, stage: int) -> Tensor:
        """The rest of `forward_features` from the output of `features_until(., stage)`."""
        if stage >= 5:
            return x
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4)[stage:]:
            x = layer(x)
        return self.avgpool(x).flatten(1)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised image -> (B, F) globally average-pooled features."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)

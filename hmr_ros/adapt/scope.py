"""Adaptation scope: which of the regressor's weights adaptation changes.

- `all`: every weight (BOA's choice).
- `layer4_head`: the last backbone stage and the regression head; the stem and layer1-3 stay
  the source's, so their output is computed once per step (`prefix_stage` 3) and the bilevel
  step runs forward and backward only through layer4 and the head.
- `head`: the head only (fc1, fc2 and the three decoders); the pooled backbone features are
  computed once per step (`prefix_stage` 5).
- `norm`: the affine weights and biases of every normalisation layer, as in test-time
  adaptation methods that only re-normalise. Nothing is frozen first (norm layers are in
  every stage), so the backward runs through the whole network, for input gradients only.
  (It once crashed: torch 2.13's CPU GroupNorm backward segfaults on a channels-last input
  that does not itself require grad, which is what a permuted HWC crop batch is when only
  the norm weights adapt; `Adapter._forward` makes the input contiguous for this scope.)

Frozen layers are identical in the student, its teacher and the source weights (they never
change), so one prefix serves all three.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

HEAD = ("fc1.", "fc2.", "decpose.", "decshape.", "deccam.")


@dataclass(frozen=True)
class Scope:
    name: str
    names: tuple[str, ...]  # the adapted parameters, in the module's order
    prefix_stage: int | None  # frozen backbone up to this stage (None: nothing frozen first)


def make_scope(model: nn.Module, name: str) -> Scope:
    params = [n for n, _ in model.named_parameters()]
    if name == "all":
        return Scope(name, tuple(params), None)
    if name == "head":
        return Scope(name, tuple(n for n in params if n.startswith(HEAD)), 5)
    if name == "layer4_head":
        return Scope(name, tuple(n for n in params if n.startswith(HEAD + ("layer4.",))), 3)
    if name == "norm":
        norms = {f"{m}.{p}" if m else p
                 for m, mod in model.named_modules()
                 if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm))
                 for p, _ in mod.named_parameters(recurse=False)}
        return Scope(name, tuple(n for n in params if n in norms), None)
    raise ValueError(f"unknown adaptation scope {name!r}")

"""The smallest regressor the tests use (32 px crops, a few thousand parameters, fast enough
to adapt dozens of times per test on 2 cores), the adaptation samples of synthetic frames, and
reading a source file's literals without importing it."""

from __future__ import annotations

import ast
from pathlib import Path

from hmr_ros.adapt.worker import AdaptSample
from hmr_ros.config import PipelineConfig
from hmr_ros.data.crop import crop_image, person_box
from hmr_ros.model import ModelConfig

MICRO = ModelConfig(name="micro", block="basic", layers=(1, 1, 1, 1), width=8, norm="group",
                    gn_groups=4, head_hidden=32, n_iter=2, input_size=32, dropout=0.0)


def adapt_samples(frames, size: int = 32, pipeline_cfg: PipelineConfig | None = None
                  ) -> list[AdaptSample]:
    """The first person of each frame as the pipeline would hand it to the worker."""
    inference = (pipeline_cfg or PipelineConfig()).inference
    out = []
    for fr in frames:
        det = fr.detections[0]
        box = person_box(det, inference)
        out.append(AdaptSample(det.id, fr.index, fr.stamp_ns, crop_image(fr.image, box, size),
                               box, fr.camera.K, det.keypoints))
    return out


def random_refiner(body, regressor, seed: int = 1, **small):
    """A small temporal refiner for `regressor`'s features whose every weight is random (the
    zero-initialised correction heads too, or its output would not depend on its inputs)."""
    import torch

    from hmr_ros.temporal.features import map_shape
    from hmr_ros.temporal.model import TARConfig, TemporalRefiner

    torch.manual_seed(seed)
    channels, _ = map_shape(regressor)
    sizes = dict(d_model=16, heads=2, layers=1, ff=32, local_channels=4, hidden=16,
                 iterations=2, **small)
    model = TemporalRefiner(TARConfig(feat_dim=regressor.feature_dim, map_channels=channels,
                                      **sizes), body)
    with torch.no_grad():
        for lin in (model.init_head[-1], model.delta):
            lin.weight.normal_(0, 0.02)
            lin.bias.normal_(0, 0.02)
    return model.eval()


def module_literals(path: Path) -> dict[str, object]:
    """Module-level NAME = <literal> assignments of a Python file, without importing it."""
    out = {}
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
    return out

"""`hmr-ros bench render`: synthetic-world rendering speed on one core.

Times whole frames of `SyntheticSequence` (people, background, occluders, sensor noise,
visibility and detector model) and the bare rasteriser + shading of one body, at 256x256 and
640x480, with one torch/OpenMP thread."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..body import BodyModel
from ..jsonio import write_json
from ..provenance import provenance
from ..render import RenderMesh, render
from ..world.domain import load_domain
from ..world.scene import SyntheticSequence
from .timing import time_calls

SIZES = ((256, 256), (640, 480))


def _domain_at(name: str, width: int, height: int):
    """The domain's camera and scene at a given image size (same field of view vertically)."""
    d = load_domain(name)
    scale = height / (d.image.height * d.image.render_scale)
    focal = d.camera.focal * d.image.render_scale * scale
    return dataclasses.replace(
        d, image=dataclasses.replace(d.image, width=width, height=height, render_scale=1.0),
        camera=dataclasses.replace(d.camera, focal=focal))


def run(out: str | Path, repeats: int = 20, domains: tuple[str, ...] = ("h36m_like",
                                                                          "pw3d_like")) -> dict:
    torch.set_num_threads(1)
    rows = []
    body = BodyModel()
    for w, h in SIZES:
        for name in domains:
            d = _domain_at(name, w, h)
            seq = SyntheticSequence(d, seed=1, duration_s=max(1.0, (repeats + 5) / d.fps))
            seq.frame(0)  # bake the background textures outside the timing
            it = iter(range(1, len(seq)))
            t = time_calls(lambda seq=seq, it=it: seq.frame(next(it)), repeats=repeats,
                           warmup=2)
            rows.append({"what": f"frame ({name})", "width": w, "height": h, "timing": t,
                         "fps": 1000.0 / t.p50_ms})
            print(f"{w}x{h} {name:10s} full frame  p50 {t.p50_ms:6.1f} ms  "
                  f"{1000.0 / t.p50_ms:5.1f} fps", flush=True)
        # The bare renderer: one body filling about 70% of the image height.
        pose = torch.zeros(1, 72)
        pose[0, 0] = np.pi
        out_b = body.forward_axis_angle(pose, torch.zeros(1, 10),
                                        torch.tensor([[0.0, 0.1, 2.6 * h / 480]]))
        v = out_b.vertices[0].numpy().astype(np.float64)
        K = np.array([[525.0 * h / 480, 0, (w - 1) / 2], [0, 525.0 * h / 480, (h - 1) / 2],
                      [0, 0, 1]])
        mesh = RenderMesh(v, body.faces, np.full((len(v), 3), 0.6), labels=body.part_ids)
        bg = np.zeros((h, w, 3), np.uint8)
        t = time_calls(lambda m=mesh, K=K, w=w, h=h, bg=bg: render([m], K, w, h, bg),
                       repeats=repeats, warmup=2)
        rows.append({"what": "rasterise + shade one body", "width": w, "height": h,
                     "timing": t, "fps": 1000.0 / t.p50_ms})
        print(f"{w}x{h} renderer only        p50 {t.p50_ms:6.1f} ms  "
              f"{1000.0 / t.p50_ms:5.1f} fps", flush=True)
    payload = {"benchmark": "render", **provenance(), "results": rows}
    path = write_json(out, payload)
    print(f"wrote {path}")
    return payload

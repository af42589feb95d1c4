"""`hmr-ros bench flow`: optical flow between person crops, against the renderer's truth.

For consecutive frames of synthetic streams, each person is cropped as the pipeline crops
them (box from the detector-noised keypoints, the regressor's input size) and OpenCV DIS runs
between the two crops in each preset. Measured per preset: milliseconds per pair (one DIS
call, one direction; and `crop_flow`, both directions with the conversion to image motion,
what the worker computes per person and step), and the end-point error (EPE, image pixels)
of the forward motion against the exact flow of the rendered surface (`world.flow`), over the
crop pixels that see this person and are not hidden in the next frame; the error of assuming
no motion at all (the mean true flow norm) is given beside it.

The motion-cues paper's check is repeated for the frozen regressor and for the regressor after
BOA adapted on the same frames (lock-step, protocol `before`): at the projected vertices it
predicts (visible in both frames, landing on the person), the error of its own predicted
displacement against the true flow, divided by the error of the DIS flow there. A ratio above
1 means the image flow knows the motion better than the model does, which is what makes it a
useful signal (the paper reports 1.3-2.7 on real video).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..data.crop import crop_image, crop_matrix
from ..data.optical_flow import PRESETS, crop_flow, dis_flow
from ..jsonio import write_json
from ..provenance import footnote, provenance
from .table import markdown_table


def _render(domain: str, seed: int, duration: float):
    """The stream's synthetic frames (rendered once) and the sequence (for the true flow)."""
    from ..world.domain import load_domain
    from ..world.scene import SyntheticSequence

    seq = SyntheticSequence(load_domain(domain), seed=seed, duration_s=duration)
    return seq, [seq.frame(i) for i in range(len(seq))]


def _pairs(seq, rendered, size: int):
    """(frame a, frame b, person index, crop_a, box_a, crop_b, box_b, true flow a -> b)."""
    from ..config import PipelineConfig
    from ..data.crop import CropError, person_box
    from ..world.flow import sequence_flow

    inference = PipelineConfig().inference
    for i in range(len(rendered) - 1):
        prev, cur = rendered[i], rendered[i + 1]
        truth = None
        for k, view in enumerate(prev.people):
            det_a = next((d for d in prev.frame.detections if d.id == view.id), None)
            det_b = next((d for d in cur.frame.detections if d.id == view.id), None)
            if det_a is None or det_b is None:
                continue
            fa, fb = prev.frame, cur.frame
            try:
                box_a = person_box(det_a, inference, fa.width, fa.height)
                box_b = person_box(det_b, inference, fb.width, fb.height)
            except CropError:
                continue
            if truth is None:
                truth = sequence_flow(seq, i)
            yield (fa, fb, k, crop_image(fa.image, box_a, size), box_a,
                   crop_image(fb.image, box_b, size), box_b, truth)


def _adapted(frames, method: str):
    """The regressor after `method` adapted on `frames` (lock-step, protocol before, the
    default configuration otherwise) and its number of accepted steps."""
    import dataclasses

    from ..config import PipelineConfig
    from ..pipeline import build_pipeline
    from ..stream.runner import run_online

    c = PipelineConfig()
    c = dataclasses.replace(c, adapt=dataclasses.replace(c.adapt, method=method))
    pipeline = build_pipeline(c, adapt=True, start=False)
    for _ in run_online(pipeline, frames, "before"):
        pass
    worker = pipeline.adaptation
    pipeline.close()
    return worker.adapter.model.eval(), worker.steps


def _crop_truth(truth, k: int, box: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The true flow (R, R, 2) at crop pixel centres (nearest image pixel) and where it is
    this person's, unhidden surface (R, R) bool."""
    inv = np.linalg.inv(crop_matrix(box, size))
    cy, cx = np.mgrid[0:size, 0:size]
    img = inv @ np.stack([cx.ravel(), cy.ravel(), np.ones(size * size)])
    h, w = truth.mask.shape
    px = np.round(img[:2]).astype(np.int64)
    on = (px[0] >= 0) & (px[0] < w) & (px[1] >= 0) & (px[1] < h)
    px[0], px[1] = px[0].clip(0, w - 1), px[1].clip(0, h - 1)
    ok = on & (truth.owner[px[1], px[0]] == k) & ~truth.occluded[px[1], px[0]]
    return (truth.flow[px[1], px[0]].reshape(size, size, 2), ok.reshape(size, size))


def _model_check(model, body, fa, fb, box_a, box_b, crop_a, crop_b, k, truth, flow
                 ) -> tuple[float, float, int]:
    """Sums of |model displacement - truth| and |DIS - truth| over the visible vertices that
    land on the person, and their count."""
    from ..adapt import losses as L
    from ..adapt.flow_term import visible_in_crop

    with torch.no_grad():
        x = torch.from_numpy(np.stack([crop_a, crop_b])).permute(0, 3, 1, 2).float() / 255.0
        out = model(x)
        v = body.forward_rotmat(out.rotmat, out.betas).vertices
        box = torch.as_tensor(np.stack([box_a, box_b]), dtype=torch.float32)
        K = torch.as_tensor(np.stack([fa.camera.K, fb.camera.K]), dtype=torch.float32)
        t = L.camera_translation(out.cam, box, K)
        uv = L.project_pixels(v, t, K)
        size = crop_a.shape[0]
        vis = visible_in_crop(v + t[:, None], K, box, body.faces, size)
        vis = vis[0] & vis[1]
        fwd = torch.from_numpy(flow.forward.astype(np.float32))[None]
        dis = L.sample_field(fwd, uv[:1], box[:1])[0]
    h, w = truth.mask.shape
    px = np.round(uv[0].numpy()).astype(np.int64)
    on = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    px = px.clip(0, [w - 1, h - 1])
    sel = vis.numpy() & on & (truth.owner[px[:, 1], px[:, 0]] == k) \
        & ~truth.occluded[px[:, 1], px[:, 0]]
    gt = truth.flow[px[sel, 1], px[sel, 0]]
    disp = (uv[1] - uv[0]).numpy()[sel]
    e_model = np.linalg.norm(disp - gt, axis=1).sum()
    e_dis = np.linalg.norm(dis.numpy()[sel] - gt, axis=1).sum()
    return float(e_model), float(e_dis), int(sel.sum())


def run(out: str | Path, domains: tuple[str, ...] = ("pw3d_like", "robot_cam"),
        seed: int = 1000, duration: float = 1.0, repeats: int = 5,
        check_preset: str = "fast", adapt_method: str = "boa_2nd") -> dict:
    from ..body import BodyModel
    from ..model.weights import load_regressor

    torch.set_num_threads(1)
    frozen = load_regressor().model.eval()
    size = frozen.config.input_size
    body = BodyModel()
    rows, checks = [], []
    for d in domains:
        seq, rendered = _render(d, seed, duration)
        models = [("frozen", frozen, 0)]
        if adapt_method and adapt_method != "none":
            model, steps = _adapted([r.frame for r in rendered], adapt_method)
            models.append((f"adapted ({adapt_method}, {steps} steps on these frames)", model,
                           steps))
        acc = {p: {"one_ms": [], "pair_ms": [], "epe": [], "zero": [], "pixels": 0}
               for p in PRESETS}
        err = {name: [0.0, 0.0, 0] for name, _, _ in models}
        pairs = 0
        for fa, fb, k, ca, ba, cb, bb, truth in _pairs(seq, rendered, size):
            pairs += 1
            gt, ok = _crop_truth(truth, k, ba, size)
            for p in PRESETS:
                dis_flow(ca, cb, p)  # warm the per-thread DIS object
                t0 = time.perf_counter()
                for _ in range(repeats):
                    dis_flow(ca, cb, p)
                t1 = time.perf_counter()
                for _ in range(repeats):
                    f = crop_flow(ca, ba, cb, bb, p)
                t2 = time.perf_counter()
                a = acc[p]
                a["one_ms"].append((t1 - t0) / repeats * 1e3)
                a["pair_ms"].append((t2 - t1) / repeats * 1e3)
                est = f.forward.astype(np.float32).transpose(1, 2, 0)
                a["epe"].append(float(np.linalg.norm(est - gt, axis=-1)[ok].sum()))
                a["zero"].append(float(np.linalg.norm(gt, axis=-1)[ok].sum()))
                a["pixels"] += int(ok.sum())
                if p == check_preset:
                    for name, model, _ in models:
                        em, ed, n = _model_check(model, body, fa, fb, ba, bb, ca, cb, k, truth,
                                                 f)
                        e = err[name]
                        e[0], e[1], e[2] = e[0] + em, e[1] + ed, e[2] + n
        for p, a in acc.items():
            n = max(a["pixels"], 1)
            rows.append({"domain": d, "preset": p, "pairs": pairs, "crop": size,
                         "dis_ms_p50": float(np.median(a["one_ms"])),
                         "crop_flow_ms_p50": float(np.median(a["pair_ms"])),
                         "crop_flow_ms_p95": float(np.percentile(a["pair_ms"], 95)),
                         "epe_px": sum(a["epe"]) / n, "zero_flow_epe_px": sum(a["zero"]) / n,
                         "pixels": a["pixels"]})
            r = rows[-1]
            print(f"{d:10s} {p:9s} DIS {r['dis_ms_p50']:5.2f} ms  crop_flow "
                  f"{r['crop_flow_ms_p50']:5.2f} ms  EPE {r['epe_px']:.2f} px "
                  f"(no motion {r['zero_flow_epe_px']:.2f})", flush=True)
        for name, _, steps in models:
            em, ed, n = err[name]
            checks.append({"domain": d, "model": name, "steps": steps, "preset": check_preset,
                           "vertices": n, "model_epe_px": em / max(n, 1),
                           "dis_epe_px": ed / max(n, 1),
                           "ratio": (em / ed) if ed > 0 else float("nan")})
            c = checks[-1]
            print(f"{d:10s} {name}: vertex motion EPE {c['model_epe_px']:.2f} px vs DIS "
                  f"{c['dis_epe_px']:.2f} px: ratio {c['ratio']:.2f}", flush=True)
    payload = {"benchmark": "flow", "seed": seed, "duration_s": duration, "repeats": repeats,
               "bytes_per_pair": 8 * size * size, "results": rows, "model_check": checks,
               **provenance()}
    path = write_json(out, payload)
    Path(path).with_suffix(".md").write_text(format_table(payload) + "\n")
    print(f"wrote {path}")
    return payload


def format_table(payload: dict) -> str:
    lines = [f"### Optical flow between person crops (seed {payload['seed']}, "
             f"{payload['duration_s']:g} s per domain, {payload['bytes_per_pair']:,} bytes "
             "per stored pair)", ""]
    lines += markdown_table(
        ["domain", "preset", "pairs", "DIS one way, ms p50", "crop_flow (both ways), ms p50",
         "p95", "EPE px", "no-motion EPE px"],
        [[r["domain"], r["preset"], r["pairs"], f"{r['dis_ms_p50']:.2f}",
          f"{r['crop_flow_ms_p50']:.2f}", f"{r['crop_flow_ms_p95']:.2f}", f"{r['epe_px']:.2f}",
          f"{r['zero_flow_epe_px']:.2f}"] for r in payload["results"]])
    lines += ["", "The regressor's own vertex motion against the image flow (the paper's "
              "check; ratio = model EPE / DIS EPE at the same vertices):", ""]
    lines += markdown_table(
        ["domain", "model", "preset", "vertices", "model EPE px", "DIS EPE px", "ratio"],
        [[c["domain"], c["model"], c["preset"], c["vertices"], f"{c['model_epe_px']:.2f}",
          f"{c['dis_epe_px']:.2f}", f"{c['ratio']:.2f}"] for c in payload["model_check"]])
    note = footnote(payload.get("environment"))
    if note:
        lines += ["", note]
    return "\n".join(lines)

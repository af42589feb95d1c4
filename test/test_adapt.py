"""Online adaptation: losses, BOA's gradients, the drift guard and the background worker."""

from __future__ import annotations

import dataclasses
import os
import pickle
import sys
import threading
import time

import numpy as np
import pytest
import torch
from micro import MICRO, adapt_samples

from hmr_ros.adapt import losses as L
from hmr_ros.adapt.methods import Adapter, StepReport
from hmr_ros.adapt.prior import MaxMixturePrior, load_prior
from hmr_ros.adapt.worker import AdaptationWorker, clone_tree
from hmr_ros.body import BodyModel
from hmr_ros.body.joints import get_joint_set
from hmr_ros.config import AdaptConfig, ConfigError, PipelineConfig, replace_path, updated
from hmr_ros.data.frame import Keypoints
from hmr_ros.geometry import perspective_project
from hmr_ros.model import HMR, load_checkpoint
from hmr_ros.model.backends import TorchBackend
from hmr_ros.pipeline import Pipeline
from hmr_ros.world.motion import library_poses


def _worker(model, body, samples=(), **cfg) -> tuple[AdaptationWorker, TorchBackend]:
    c = updated(AdaptConfig(), {"schedule": "every_frame", "tau": 2,
                                              "buffer_frames": 8, "min_keypoints": 4, **cfg})
    backend = TorchBackend(model)
    worker = AdaptationWorker(Adapter(model, body, c), c, backend.update_weights)
    for s in samples:
        worker.submit([s])
    return worker, backend


def _next_batch(worker):
    return worker.next_batch()


# ------------------------------------------------------------------ losses


def test_projection_matches_geometry_and_losses_vanish_at_truth():
    torch.manual_seed(0)
    pts = torch.randn(2, 5, 3) * 0.3
    cam = torch.tensor([[0.9, 0.05, -0.1], [1.1, 0.0, 0.2]])
    box = torch.tensor([[300.0, 200.0, 250.0], [100.0, 120.0, 90.0]])
    K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    t = L.camera_translation(cam, box, K)
    uv = L.project_pixels(pts, t, K)
    torch.testing.assert_close(uv, perspective_project(pts + t[:, None], K))
    crop = L.to_crop(uv, box)
    conf = torch.rand(2, 5)
    assert L.keypoint_loss(crop, crop, conf) == 0
    assert L.keypoint_loss(crop + 0.1, crop, torch.ones(2, 5)) == pytest.approx(0.01)
    # Motion: a common shift of prediction and keypoints is no error; a lag is.
    shift = torch.tensor([5.0, -3.0])
    assert L.motion_loss(uv + shift, uv, uv + shift, uv, conf, box) == 0
    assert L.motion_loss(uv + shift, uv, uv, uv, torch.ones(2, 5), box) > 0
    assert float(L.consistency_loss(pts, pts + 1.0)) < 1e-12  # root-centred
    assert L.shape_prior(torch.ones(3, 10)) == 10


def test_pose_prior_prefers_library_poses(tmp_path):
    prior = MaxMixturePrior()
    lib = torch.tensor(library_poses(n_clips=3, duration_s=5.0, seed=99),
                       dtype=torch.float32)
    rnd = torch.randn(len(lib), 69) * 0.6
    assert prior(lib).median() < 0.05 * prior(rnd).median()
    # A SMPLify-style gmm pickle (means/covars/weights) loads too.
    g = load_prior()
    path = tmp_path / "gmm_08.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"means": g.means, "covars": g.covars, "weights": g.weights}, fh,
                    protocol=2)
    torch.testing.assert_close(MaxMixturePrior(load_prior(path))(lib), prior(lib))


# ------------------------------------------------------------------ BOA gradients


@pytest.mark.parametrize("scope", ["all", "layer4_head", "head", "norm"])
def test_second_order_gradient_matches_finite_differences(body, frames, scope):
    """For every adaptation scope (the gradient is over the adapted weights only; scopes
    with a frozen prefix run the step from the cached prefix)."""
    torch.manual_seed(1)
    model = HMR(MICRO).double()
    body64 = BodyModel().double()
    cfg = dataclasses.replace(AdaptConfig(), inner_lr=1e-3, tau=2, buffer_frames=8,
                              min_keypoints=4, schedule="every_frame", scope=scope)
    adapter = Adapter(model, body64, cfg)
    adapter.model.double()
    adapter.teacher.double()
    adapter.prior.double()
    worker = AdaptationWorker(adapter, cfg, lambda s, v: None)
    for s in adapt_samples(frames[:4]):
        worker.submit([s])
    batch = _next_batch(worker)
    batch = dataclasses.replace(
        batch, current=_to64(batch.current), previous=_to64(batch.previous))
    g2, _, _ = adapter.bilevel_gradient(batch, second_order=True)
    g1, _, _ = adapter.bilevel_gradient(batch, second_order=False)
    params = adapter.params()
    gen = torch.Generator().manual_seed(2)
    direction = {n: torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in
                 params.items()}

    def upper_after_probe(eps: float) -> float:
        shifted = {n: (p.detach() + eps * direction[n]).requires_grad_(True)
                   for n, p in params.items()}
        lower, _ = adapter.lower(shifted, batch)
        grads = torch.autograd.grad(lower, list(shifted.values()), allow_unused=True)
        probe = {n: p - cfg.inner_lr * (g if g is not None else 0)
                 for (n, p), g in zip(shifted.items(), grads)}
        return float(adapter.upper(probe, batch)[0].detach())

    eps = 1e-6
    fd = (upper_after_probe(eps) - upper_after_probe(-eps)) / (2 * eps)
    an2 = sum(float((g2[n] * direction[n]).sum()) for n in params)
    an1 = sum(float((g1[n] * direction[n]).sum()) for n in params)
    assert an2 == pytest.approx(fd, rel=1e-6)
    # The first-order approximation misses the probe's curvature: it is measurably off (the
    # norm weights' few dimensions see little of it, 3e-4 relative, but still 1000 times
    # the second order's error).
    assert abs(an1 - fd) > (1e-4 if scope == "norm" else 1e-3) * abs(fd)
    assert abs(an1 - fd) > 1000 * abs(an2 - fd)


def _to64(fb):
    return dataclasses.replace(fb, images=fb.images.double(), box=fb.box.double(),
                               K=fb.K.double(), keypoints=fb.keypoints.double(),
                               conf=fb.conf.double(), mapping=fb.mapping.double())


@pytest.mark.parametrize("method", ["framewise", "joint", "two_stage", "boa_1st", "boa_2nd"])
def test_every_method_updates_and_publishes(method, body, frames):
    torch.manual_seed(3)
    model = HMR(MICRO)
    worker, backend = _worker(model, body, adapt_samples(frames[:4]), method=method,
                              outer_lr=1e-3, inner_lr=1e-2)
    before = backend.predict(np.stack([s.crop for s in adapt_samples(frames[:1])]))
    for _ in range(3):
        worker.core.step(_next_batch(worker))
    assert worker.steps == 3 and worker.rollbacks == 0 and backend.version == 3
    after = backend.predict(np.stack([s.crop for s in adapt_samples(frames[:1])]))
    assert not torch.equal(before.pose6d, after.pose6d)
    # Published weights are the adapter's weights.
    for k, v in worker.adapter.state_dict().items():
        assert torch.equal(backend.model.state_dict()[k], v)


def test_methods_differ_and_none_does_nothing(body, frames):
    updates = {}
    for method in ("boa_1st", "boa_2nd", "joint", "none"):
        torch.manual_seed(4)
        model = HMR(MICRO)
        w, _ = _worker(model, body, adapt_samples(frames[:4]), method="joint", outer_lr=1e-3,
                       inner_lr=5e-2)
        w.adapter.method = method
        start = w.adapter.state_dict()["fc1.weight"].clone()
        report = w.adapter.step(_next_batch(w))
        updates[method] = w.adapter.state_dict()["fc1.weight"] - start
        if method == "none":
            assert not report.accepted
    assert updates["none"].abs().max() == 0
    assert not torch.allclose(updates["boa_1st"], updates["boa_2nd"])
    assert not torch.allclose(updates["boa_2nd"], updates["joint"])


# ------------------------------------------------------------------ drift guard


def test_guard_rolls_back_nan_and_exploding_steps_and_carries_on(body, frames, caplog):
    torch.manual_seed(5)
    worker, backend = _worker(HMR(MICRO), body, adapt_samples(frames), method="boa_1st",
                              outer_lr=1e-4)
    for _ in range(11):  # some good steps give the guard a loss history
        worker.core.step(_next_batch(worker) or _rebatch(worker, frames))
    good = {k: v.clone() for k, v in worker.adapter.state_dict().items()}
    good_opt = clone_tree(worker.adapter.optimizer.state_dict()["state"])
    version = backend.version

    def assert_restored():
        for k, v in worker.adapter.state_dict().items():
            assert torch.equal(v, good[k]), k
        # The optimiser too, and after several rollbacks in a row: a rolled-back step must
        # not have changed the snapshot through tensors the optimiser shares with it.
        opt = worker.adapter.optimizer.state_dict()["state"]
        for i, entry in good_opt.items():
            for key, value in entry.items():
                assert torch.equal(opt[i][key], value), (i, key)
    real_step = worker.adapter.step

    def poisoned(batch):
        report = real_step(batch)
        with torch.no_grad():
            next(worker.adapter.model.parameters()).fill_(float("nan"))
        return report

    worker.adapter.step = poisoned
    worker.core.step(_next_batch(worker) or _rebatch(worker, frames))
    assert worker.rollbacks == 1 and "non-finite weights" in worker.status().message
    assert backend.version == version  # nothing published
    assert_restored()

    def exploding(batch):
        r = real_step(batch)
        return StepReport(r.method, 1e9, r.terms, seconds=r.seconds)

    worker.adapter.step = exploding
    worker.core.step(_rebatch(worker, frames))
    assert worker.rollbacks == 2 and "exploded" in worker.status().message
    assert_restored()

    def drifting(batch):
        r = real_step(batch)
        with torch.no_grad():
            worker.adapter.model.decpose.bias.add_(3.0)
        return r

    worker.adapter.step = drifting
    worker.core.step(_rebatch(worker, frames))
    assert worker.rollbacks == 3 and "drifted" in worker.status().message
    assert_restored()
    # And the stream carries on: a normal step is accepted again.
    worker.adapter.step = real_step
    worker.core.step(_rebatch(worker, frames))
    assert backend.version == version + 1 and worker.rollbacks == 3
    assert "rolled back" in caplog.text


def _rebatch(worker, frames):
    for s in adapt_samples(frames[-3:]):
        worker.submit([dataclasses.replace(s, index=s.index + 1000 + worker.steps * 10
                                           + worker.rollbacks)])
    return _next_batch(worker)


# ------------------------------------------------------------------ worker thread


def test_background_thread_adapts_while_inference_runs_and_stops_cleanly(body, frames):
    torch.manual_seed(6)
    model = HMR(MICRO)
    cfg = dataclasses.replace(AdaptConfig(), method="boa_1st", schedule="latest", tau=2,
                              buffer_frames=8, min_keypoints=4, outer_lr=1e-4)
    backend = TorchBackend(model)
    worker = AdaptationWorker(Adapter(model, body, cfg), cfg, backend.update_weights)
    pipe = Pipeline(backend, body, PipelineConfig(adapt=cfg), worker)
    worker.start()
    release = threading.Event()
    entered = threading.Event()
    real_step = worker.adapter.step
    calls = {"n": 0}

    def slow_step(batch):
        calls["n"] += 1
        if calls["n"] == 3:  # hold the third step until the test has stopped the worker
            entered.set()
            release.wait(10)
        return real_step(batch)

    worker.adapter.step = slow_step
    results = []
    deadline = time.monotonic() + 60
    i = 0
    def frame(k):  # an endless stream: indices keep increasing
        return dataclasses.replace(frames[k % len(frames)], index=k)

    while not entered.is_set() and time.monotonic() < deadline:
        results.append(pipe.process(frame(i)))
        i += 1
        time.sleep(0.01)
    assert entered.is_set(), "worker never reached its third step"
    version_before_stop = backend.version
    assert version_before_stop == 2 and worker.steps == 2
    # Inference does not wait for the blocked step.
    for k in range(5):
        results.append(pipe.process(frame(i + k)))
    stopper = threading.Thread(target=pipe.close)
    stopper.start()
    time.sleep(0.2)
    for k in range(5):  # still answering while the stop is pending
        results.append(pipe.process(frame(i + 5 + k)))
    release.set()
    stopper.join(20)
    assert not worker.alive
    # Every processed frame produced its person; the unfinished step was never published.
    assert all(len(r.people) == 1 for r in results)
    assert backend.version == version_before_stop
    for k, v in worker.core.last_good[0].items():
        assert torch.equal(backend.model.state_dict()[k], v)


def test_exception_becomes_status_not_a_dead_thread(body, frames, caplog):
    torch.manual_seed(7)
    worker, backend = _worker(HMR(MICRO), body, (), method="joint")
    worker.adapter.step = lambda batch: (_ for _ in ()).throw(RuntimeError("boom"))
    worker.start()
    try:
        for s in adapt_samples(frames[:3]):
            worker.submit([s])
        deadline = time.monotonic() + 20
        while worker.errors == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        st = worker.status()
        assert st.errors >= 1 and "boom" in st.message and st.state == "error"
        assert worker.alive and backend.version == 0
        assert "adaptation step failed" in caplog.text
    finally:
        worker.stop()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread niceness is Linux's")
def test_thread_nice_lowers_only_the_adaptation_thread(body, frames):
    worker, _ = _worker(HMR(MICRO), body, (), method="joint", **{"worker.thread_nice": 7})
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while worker._thread.native_id is None and time.monotonic() < deadline:
            time.sleep(0.01)
        tid = worker._thread.native_id
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, tid) != min(mine + 7, 19) and \
                time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpriority(os.PRIO_PROCESS, tid) == min(mine + 7, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
    finally:
        worker.stop()
    with pytest.raises(ConfigError, match="thread_nice"):
        replace_path(PipelineConfig(), "adapt.worker.thread_nice", 25)


def test_submit_never_waits_for_a_running_step(body, frames):
    worker, _ = _worker(HMR(MICRO), body, (), method="joint")
    gate = threading.Event()
    worker.adapter.step = lambda batch: (gate.wait(10), StepReport("joint", 0.0))[1]
    worker.start()
    samples = adapt_samples(frames[:6])
    worker.submit([samples[0]])
    time.sleep(0.3)  # the worker is now inside the blocked step
    t = threading.Thread(target=lambda: [worker.submit([s]) for s in samples[1:]])
    t.start()
    t.join(2.0)
    blocked = t.is_alive()
    gate.set()
    worker.stop()
    assert not blocked
    assert worker.buffered == 6


def test_weight_swap_during_concurrent_predictions():
    torch.manual_seed(8)
    model = HMR(MICRO)
    backend = TorchBackend(model)
    crops = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    states = [HMR(MICRO).state_dict() for _ in range(4)]
    expected = []
    for st in [model.state_dict()] + states:
        m = HMR(MICRO)
        m.load_state_dict(st)
        expected.append(TorchBackend(m).predict(crops).pose6d)
    seen, errors = [], []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                seen.append(backend.predict(crops).pose6d)
        except Exception as err:  # pragma: no cover - the test fails below
            errors.append(err)

    t = threading.Thread(target=reader)
    t.start()
    for k, st in enumerate(states, start=1):
        time.sleep(0.02)
        backend.update_weights(st, k)
    time.sleep(0.05)
    stop.set()
    t.join()
    assert not errors and len(seen) > 5 and backend.version == 4
    # Every answer is exactly one of the published weight sets, never a mixture.
    for out in seen:
        assert any(torch.equal(out, e) for e in expected)


def test_save_reset_and_resume(body, frames, tmp_path):
    torch.manual_seed(9)
    model = HMR(MICRO)
    worker, backend = _worker(model, body, adapt_samples(frames[:4]), method="framewise",
                              outer_lr=1e-3)
    source = {k: v.clone() for k, v in worker.adapter.source.items()}
    worker.core.step(_next_batch(worker))
    path = worker.save(tmp_path / "adapted.pt")
    loaded = load_checkpoint(path)
    assert loaded.meta["model_version"] == 1 and loaded.meta["method"] == "framewise"
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, worker.core.last_good[0][k])
    # Resuming from the saved weights starts where adaptation left off.
    resumed, _ = _worker(loaded.model, body, (), method="framewise")
    for k, v in resumed.adapter.state_dict().items():
        assert torch.equal(v, worker.core.last_good[0][k])
    version = worker.reset()
    assert version == 2 and backend.version == 2
    for k, v in backend.model.state_dict().items():
        assert torch.equal(v, source[k])


def test_a_track_changing_keypoint_layout_is_not_mixed(body, frames):
    """Partners tau frames back must share the current keypoints' layout."""
    worker, _ = _worker(HMR(MICRO), body, (), method="joint", schedule="latest")
    samples = adapt_samples(frames[:5])
    coco = get_joint_set("coco17")
    body25 = get_joint_set("body25")
    # The same person: first in BODY_25, then in COCO-17 (another detector took over).
    for s in samples[:3]:
        worker.submit([s])
    for s in samples[3:]:
        idx = [body25.joint_names.index(n) if n in body25.joint_names else 0
               for n in coco.joint_names]
        kp = Keypoints("coco17", s.keypoints.xy[idx], s.keypoints.confidence[idx])
        worker.submit([dataclasses.replace(s, keypoints=kp)])
    batch = _next_batch(worker)
    assert batch.current.keypoints.shape[1] == batch.previous.keypoints.shape[1] == 17
    worker.adapter.step(batch)  # runs without a shape error


def test_guard_checks_the_optimiser_and_resets_after_consecutive_rollbacks(body, frames):
    """A non-finite Adam moment was accepted, became the 'last good' snapshot, and every later
    step rolled back to it while the status said running."""
    torch.manual_seed(5)
    worker, backend = _worker(HMR(MICRO), body, adapt_samples(frames), method="boa_1st",
                              outer_lr=1e-4, **{"guard.max_consecutive_rollbacks": 3})
    for _ in range(3):
        worker.core.step(_next_batch(worker) or _rebatch(worker, frames))
    assert worker.steps == 3 and worker.adapter.optimizer.state
    real_step = worker.adapter.step

    def poisoned_moment(batch):
        report = real_step(batch)
        state = next(iter(worker.adapter.optimizer.state.values()))
        state["exp_avg_sq"].view(-1)[0] = float("inf")
        return report

    worker.adapter.step = poisoned_moment
    version = backend.version
    worker.core.step(_rebatch(worker, frames))
    assert worker.rollbacks == 1 and backend.version == version
    assert "non-finite optimiser state exp_avg_sq of " in worker.status().message
    # Every step now fails: after max_consecutive_rollbacks (3) the worker resets to the
    # source weights, publishes them and says so, instead of looping silently.
    worker.core.step(_rebatch(worker, frames))
    assert worker.core.consecutive_rollbacks == 2 and worker.resets == 0
    worker.core.step(_rebatch(worker, frames))
    st = worker.status()
    assert st.resets == 1 and worker.core.consecutive_rollbacks == 0
    assert "reset to the source weights" in st.message and "3 consecutive rollbacks" in st.message
    assert backend.version == version + 1  # the source weights, published as a new version
    for k, v in worker.adapter.model.state_dict().items():
        assert torch.equal(v, worker.adapter.source[k]), k
    assert not worker.adapter.optimizer.state  # a fresh optimiser
    # With healthy steps again the count starts over and steps are accepted.
    worker.adapter.step = real_step
    worker.core.step(_rebatch(worker, frames))
    assert worker.steps == 4 and worker.core.consecutive_rollbacks == 0


# ------------------------------------------------------------------ adaptation scope


def test_scopes_pick_their_weights(body):
    from hmr_ros.adapt.scope import make_scope

    model = HMR(MICRO)
    names = [n for n, _ in model.named_parameters()]
    full = make_scope(model, "all")
    assert full.names == tuple(names) and full.prefix_stage is None
    head = make_scope(model, "head")
    assert head.prefix_stage == 5 and head.names
    assert all(n.split(".")[0] in ("fc1", "fc2", "decpose", "decshape", "deccam")
               for n in head.names)
    l4 = make_scope(model, "layer4_head")
    assert l4.prefix_stage == 3 and set(head.names) < set(l4.names)
    assert {n.split(".")[0] for n in l4.names} - {"fc1", "fc2", "decpose", "decshape",
                                                   "deccam"} == {"layer4"}
    norm = make_scope(model, "norm")
    assert norm.names and all(".bn" in f".{n}" or "downsample.1" in n for n in norm.names)
    with pytest.raises(ValueError, match="scope"):
        make_scope(model, "everything")
    with pytest.raises(ConfigError, match="adapt.scope"):
        replace_path(PipelineConfig(), "adapt.scope", "everything")
    assert replace_path(PipelineConfig(), "adapt.scope", "norm").adapt.scope == "norm"


@pytest.mark.parametrize("scope", ["layer4_head", "head", "norm"])
def test_a_scope_changes_only_its_weights_and_its_prefix_is_computed_once(body, frames,
                                                                         scope):
    torch.manual_seed(3)
    cfg = dataclasses.replace(AdaptConfig(), tau=2, buffer_frames=8, min_keypoints=4,
                              schedule="every_frame", scope=scope, method="boa_2nd")
    adapter = Adapter(HMR(MICRO), body, cfg)
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    images = torch.rand(2, 3, MICRO.input_size, MICRO.input_size)
    full = adapter.model(images)
    via = adapter.predict(None, images)  # through the frozen prefix when the scope has one
    torch.testing.assert_close(via.rotmat, full.rotmat, atol=1e-5, rtol=1e-5)
    calls = []
    real = adapter.model.prefix
    adapter.model.prefix = lambda x, s: calls.append(id(x)) or real(x, s)
    worker = AdaptationWorker(adapter, cfg, lambda s, v: None)
    for s in adapt_samples(frames[:4]):
        worker.submit([s])
    batch = _next_batch(worker)
    report = adapter.step(batch)
    assert np.isfinite(report.loss)
    if adapter.scope.prefix_stage is not None:
        # current and previous images, each once (the teacher reuses the current prefix)
        assert len(calls) == len(set(calls)) == 2
    else:
        assert calls == []
    after = adapter.model.state_dict()
    adapted = set(adapter.scope.names)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    params = {n for n, _ in adapter.model.named_parameters()}
    assert changed & params and (changed & params) <= adapted


@pytest.mark.parametrize("scope", ["all", "layer4_head"])
def test_guard_drift_reuses_the_step_and_equals_a_full_recomputation(body, frames, scope):
    """After a step the guard's student-teacher gap runs only the student again: the teacher's
    points and the frozen prefix come from the step, and the gap equals the one computed from
    scratch with full forwards and the full body model."""
    torch.manual_seed(4)
    cfg = dataclasses.replace(AdaptConfig(), tau=2, buffer_frames=8, min_keypoints=4,
                              schedule="every_frame", scope=scope, method="boa_2nd")
    adapter = Adapter(HMR(MICRO), body, cfg)
    worker = AdaptationWorker(adapter, cfg, lambda s, v: None)
    for s in adapt_samples(frames[:4]):
        worker.submit([s])
    batch = _next_batch(worker)
    adapter.step(batch)
    teacher_calls = []
    real_teacher = adapter.teacher.forward
    adapter.teacher.forward = lambda *a, **k: teacher_calls.append(1) or real_teacher(*a, **k)
    gap = adapter.drift(batch.current.images)
    assert teacher_calls == []  # the step's teacher points served the guard
    with torch.no_grad():
        images = batch.current.images
        s, t = adapter.model(images), adapter.teacher(images)
        ps = body.forward_rotmat(s.rotmat, s.betas).points
        pt = body.forward_rotmat(t.rotmat, t.betas).points
        want = float(((ps - ps[:, :1]) - (pt - pt[:, :1])).norm(dim=-1).mean())
    assert gap > 0 and gap == pytest.approx(want, rel=1e-4, abs=1e-7)
    # Other images, or a teacher that moved, are never answered from the step's cache.
    adapter.update_teacher()
    teacher_calls.clear()
    adapter.drift(batch.current.images)
    assert teacher_calls == [1]
    adapter.drift(batch.previous.images)
    assert teacher_calls == [1, 1]


def test_a_samples_frozen_prefix_is_computed_once_across_steps(body, frames):
    """A frame's sample is the current one in one step and the tau-partner in a later one:
    its frozen prefix is computed once, and the steps are the same as when recomputed."""
    def run(keep: bool):
        torch.manual_seed(6)
        cfg = dataclasses.replace(AdaptConfig(), tau=2, buffer_frames=8, min_keypoints=4,
                                  schedule="every_frame", scope="layer4_head",
                                  method="boa_2nd")
        adapter = Adapter(HMR(MICRO), body, cfg)
        worker = AdaptationWorker(adapter, cfg, lambda s, v: None)
        if not keep:
            worker.core.after_step = lambda batch: None
        sizes = []
        real = adapter.model.prefix
        adapter.model.prefix = lambda x, s: sizes.append(len(x)) or real(x, s)
        for s in adapt_samples(frames[:6]):
            worker.submit([s])
        losses = []
        while (batch := _next_batch(worker)) is not None:
            worker.core.step(batch)
            losses.append(worker.reports[-1].loss)
        return sum(sizes), losses, worker

    cached_images, cached_losses, worker = run(True)
    fresh_images, fresh_losses, _ = run(False)
    assert len(cached_losses) == len(fresh_losses) >= 4
    np.testing.assert_allclose(cached_losses, fresh_losses, rtol=1e-5)
    # Recomputed: the current and the partner images in every step. Kept: 6 frames once each,
    # plus frames 0 and 1 once more (no frame tau back: each is its own partner, within one
    # step).
    assert fresh_images == 2 * len(fresh_losses)
    assert cached_images == 6 + 2
    # Only buffered samples keep their prefix.
    live = worker.buffer.live_keys()
    assert worker.prefixes.rows and set(worker.prefixes.rows) <= live


def test_norm_scope_steps_on_channels_last_crops_without_crashing(body, frames):
    """Crop batches are permuted HWC arrays; with only the norm weights adapting, torch 2.13's
    GroupNorm backward segfaulted on them. Run in a child process so a regression fails this
    test instead of killing the suite."""
    import subprocess

    code = (
        "import sys, dataclasses, torch; sys.path.insert(0, 'test')\n"
        "from micro import MICRO\n"
        "from hmr_ros.adapt.methods import Adapter, AdaptBatch, FrameBatch\n"
        "from hmr_ros.body import BodyModel\n"
        "from hmr_ros.config import AdaptConfig\n"
        "from hmr_ros.model import HMR\n"
        "torch.manual_seed(0)\n"
        "cfg = dataclasses.replace(AdaptConfig(), scope='norm', method='framewise')\n"
        "a = Adapter(HMR(MICRO), BodyModel(), cfg)\n"
        "r = MICRO.input_size\n"
        "img = torch.rand(2, r, r, 3).permute(0, 3, 1, 2)\n"
        "fb = FrameBatch(img, torch.tensor([[r / 2, r / 2, r]] * 2), torch.eye(3).expand(2, 3, 3),"
        " torch.rand(2, 14, 2) * r, torch.ones(2, 14),"
        " torch.zeros(14, 46).index_fill_(1, torch.arange(14), 1.0))\n"
        "before = {n: p.clone() for n, p in a.params().items()}\n"
        "rep = a.step(AdaptBatch(fb, fb, None))\n"
        "moved = sum(not torch.equal(before[n], p) for n, p in a.params().items())\n"
        "print('moved', moved, len(before))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    moved, total = map(int, done.stdout.split()[-2:])
    assert total > 0 and moved == total

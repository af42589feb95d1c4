"""The adaptation worker in its own process (`adapt.worker.kind: process`), with real child
processes, real threads and the micro regressor: weights published in the child reach the
parent's publish callback under their version, lock-step runs equal the thread worker's, a
killed child is reported and replaced from the last accepted weights, commands work through
the process and `stop` leaves no child behind.

Each child imports torch and builds its adapter (seconds on 2 cores), so the tests share
children where they can.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import time

import numpy as np
import pytest
import torch
from micro import MICRO, adapt_samples
from published import WAIT_S, Published, same_weights

from hmr_ros.adapt.methods import Adapter
from hmr_ros.adapt.process_worker import AdapterSpec, ProcessAdaptationWorker
from hmr_ros.adapt.worker import AdaptationWorker
from hmr_ros.config import AdaptConfig, PipelineConfig, replace_path, updated
from hmr_ros.model import HMR, load_checkpoint
from hmr_ros.pipeline import build_pipeline
from hmr_ros.stream.runner import run_online


def _cfg(**kw) -> AdaptConfig:
    return updated(AdaptConfig(), {
        "method": "framewise", "schedule": "every_frame", "tau": 2, "buffer_frames": 8,
        "min_keypoints": 4, "outer_lr": 1e-3, "worker.thread_nice": 0, "scope": "all", **kw})


def _started(body, frames, seed: int):
    """A micro model (seeded), the default test config, the frames' samples, a publish
    recorder and a process worker whose child is up."""
    torch.manual_seed(seed)
    model = HMR(MICRO)
    cfg = _cfg()
    published = Published()
    worker = ProcessAdaptationWorker(AdapterSpec(model, body, cfg), cfg, published)
    return model, cfg, adapt_samples(frames), published, worker


def _gone(pid: int) -> bool:
    if any(p.pid == pid for p in multiprocessing.active_children()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _saved(worker, path) -> dict[str, torch.Tensor]:
    return load_checkpoint(worker.save(path)).model.state_dict()


def test_child_weights_reach_publish_and_commands_work_through_the_process(body, frames,
                                                                           tmp_path):
    model, cfg, samples, published, worker = _started(body, frames[:4], seed=3)
    pid = worker.pid
    try:
        # The thread worker on the same model and samples is the reference.
        ref_published = Published()
        ref = AdaptationWorker(Adapter(model, body, cfg), cfg, ref_published)
        for s in samples[:3]:
            worker.submit([s])
            ref.submit([s])
            assert worker.run_pending() == ref.run_pending() == 1
        # Each step's weights reached publish under the version they were published with,
        # before run_pending returned, and equal the thread worker's ...
        assert published.versions == ref_published.versions == [1, 2, 3]
        for (v, state), (rv, ref_state) in zip(published.items, ref_published.items):
            assert v == rv and same_weights(state, ref_state)
        # ... and the child's own weights (its last good snapshot, saved by the parent).
        assert same_weights(_saved(worker, tmp_path / "a.pt"), published.last()[1])
        st = worker.status()
        assert (st.version, st.steps, worker.steps, st.state) == (3, 3, 3, "running")
        assert worker.samples_used == 3
        # set_enabled through the process: nothing adapts while disabled.
        worker.set_enabled(False)
        assert not worker.enabled and not worker.status().enabled
        worker.submit([samples[3]])
        assert worker.run_pending() == 0 and published.versions == [1, 2, 3]
        worker.set_enabled(True)
        # reset: the source weights as a new version, published before reset returns.
        assert worker.reset() == 4
        assert published.last()[0] == 4 and same_weights(published.last()[1], model.state_dict())
        saved = load_checkpoint(worker.save(tmp_path / "b.pt"))
        assert saved.meta["model_version"] == 4 and same_weights(saved.model.state_dict(),
                                                           model.state_dict())
        # Background adaptation in the child: started, it adapts on what is submitted.
        worker.start()
        assert worker.alive
        worker.submit([samples[0]])
        published.wait_for(5, at_least=True)
    finally:
        worker.stop()
    assert _gone(pid) and worker.pid is None and not worker.alive
    assert worker.status().state == "stopped"


def test_lock_step_runs_equal_the_thread_worker(weights, frames):
    """The pipeline through StreamRunner's `before` protocol, with each worker kind: the same
    picks, seeds and torch threads give the same estimates and model versions."""
    cfg = replace_path(PipelineConfig(), "inference.weights", str(weights))
    cfg = dataclasses.replace(cfg, adapt=updated(cfg.adapt, {
        "method": "framewise", "min_keypoints": 4, "outer_lr": 1e-3, "batch_frames": 2,
        "worker.thread_nice": 0}))
    results = {}
    for kind in ("thread", "process"):
        with build_pipeline(replace_path(cfg, "adapt.worker.kind", kind), start=False) as pipe:
            assert type(pipe.adaptation) is (AdaptationWorker if kind == "thread"
                                              else ProcessAdaptationWorker)
            results[kind] = [r for _, r in run_online(pipe, frames[:8], "before")]
            results[kind + " steps"] = pipe.adaptation.steps
    thread, process = results["thread"], results["process"]
    assert results["thread steps"] == results["process steps"] > 0
    assert [r.model_version for r in thread] == [r.model_version for r in process]
    assert thread[-1].model_version > 1
    for a, b in zip(thread, process):
        assert len(a.people) == len(b.people) > 0
        for pa, pb in zip(a.people, b.people):
            np.testing.assert_allclose(pa.joints, pb.joints, rtol=0, atol=1e-6)
            np.testing.assert_allclose(pa.params.body_pose, pb.params.body_pose, rtol=0,
                                       atol=1e-6)


def test_a_killed_child_is_reported_and_replaced_from_the_last_accepted_weights(
        body, frames, tmp_path):
    model, cfg, samples, published, worker = _started(body, frames[:6], seed=4)
    first = worker.pid
    try:
        worker.start()
        for s in samples[:3]:
            worker.submit([s])
        published.wait_for(3, at_least=True)
        # Adapt no further, so that the weights at the kill are the last published ones.
        worker.set_enabled(False)
        version, accepted = published.last()
        assert worker.status().version == version >= 3
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + WAIT_S
        while worker.restarts < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.restarts == 1 and worker.pid not in (None, first) and _gone(first)
        # The death stays in the status (errors and message: what /diagnostics shows) ...
        st = worker.status()
        assert st.errors >= 1 and "died" in st.message and "restarted" in st.message
        assert st.steps >= 3  # counts go on across children
        # ... and the new child starts from the last accepted weights, not the source.
        assert st.version == version
        snapshot = _saved(worker, tmp_path / "restarted.pt")
        assert same_weights(snapshot, accepted) and not same_weights(snapshot, model.state_dict())
        assert worker.alive and not worker.enabled
        worker.set_enabled(True)
        worker.submit([samples[3]])
        after = published.wait_for(version + 1, at_least=True)
        assert not same_weights(after, accepted)
        versions = published.versions
        assert versions == sorted(versions) and len(set(versions)) == len(versions)
    finally:
        second = worker.pid
        worker.stop()
    assert _gone(second) and not any(p.name == "hmr_ros-adaptation"
                                     for p in multiprocessing.active_children())


def test_a_child_that_cannot_start_is_a_clear_error(body, tmp_path):
    cfg = _cfg(**{"dualnet.weight": 0.1, "dualnet.aux": str(tmp_path / "missing.pt")})
    with pytest.raises(RuntimeError, match="adaptation process did not start: "
                                           "FileNotFoundError.*missing.pt"):
        ProcessAdaptationWorker(AdapterSpec(HMR(MICRO), body, cfg), cfg, lambda s, v: None)
    assert not any(p.name == "hmr_ros-adaptation" for p in multiprocessing.active_children())


_ORPHAN = """
import sys, time
sys.path.insert(0, {test!r})
from micro import MICRO
from hmr_ros.adapt.process_worker import AdapterSpec, ProcessAdaptationWorker
from hmr_ros.body import BodyModel
from hmr_ros.config import AdaptConfig
from hmr_ros.model import HMR

if __name__ == "__main__":
    cfg = AdaptConfig()
    worker = ProcessAdaptationWorker(AdapterSpec(HMR(MICRO), BodyModel(), cfg), cfg,
                                     lambda s, v: None)
    print(worker.pid, flush=True)
    time.sleep(120)
"""


def _ended(pid: int) -> bool:
    """Gone or a zombie (a container's init may not reap orphans)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_child_ends_when_its_parent_is_killed(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN.format(test=str(Path(__file__).parent)))
    root = str(Path(__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env,
                              text=True)
    try:
        child = int(parent.stdout.readline())
        assert not _ended(child)
        parent.kill()  # no atexit, no finaliser: the child must notice by itself
        parent.wait(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while not _ended(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _ended(child), "the adaptation process outlived its killed parent"
    finally:
        parent.kill()
        parent.stdout.close()

"""`hmr-ros bench soak`: a stream that never repeats, sampled while adaptation runs."""

from __future__ import annotations

import itertools
import json

from hmr_ros.bench.soak import endless_frames, rss_mb
from hmr_ros.cli import main


def test_the_endless_stream_runs_on_across_segments_with_new_people():
    frames = list(itertools.islice(endless_frames("h36m_like", 7, segment_s=0.2, scale=0.2),
                                   15))
    segments = [s for s, _ in frames]
    assert segments[0] == 0 and segments[-1] >= 2  # 6 frames per segment at 30 fps
    stamps = [f.stamp_ns for _, f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert [f.index for _, f in frames] == list(range(15))
    ids = {s: {d.id for d in f.detections} for s, f in frames}
    assert ids[0] and not ids[0] & ids[1] and not ids[1] & ids[2]  # never the same person
    for _, f in frames:
        assert set(f.ground_truth) == {d.id for d in f.detections}
    first = frames[0][1].image
    assert not any((f.image == first).all() for s, f in frames if s > 0)  # not a loop


def test_bench_soak_samples_memory_threads_and_adaptation(tmp_path, weights):
    assert rss_mb() > 10
    rc = main(["bench", "soak", "--minutes", "0.25", "--sample", "3", "--segment", "0.5",
               "--scale", "0.2", "--domain", "h36m_like", "--tag", "t",
               "--out-dir", str(tmp_path), "--weights", str(weights)])
    assert rc == 0
    data = json.loads((tmp_path / "soak_t.json").read_text())
    assert data["done"] and data["machine"] and data["environment"]
    s = data["summary"]
    assert s["frames"] > 0 and s["segments"] >= 2 and s["worker_alive_throughout"]
    assert s["rss_mb"]["start"] > 0 and s["rss_mb"]["end"] >= s["rss_mb"]["start"] * 0.5
    samples = data["samples"]
    assert len(samples) >= 3 and samples[-1]["frames"] == s["frames"]
    assert [x["elapsed_s"] for x in samples] == sorted(x["elapsed_s"] for x in samples)
    assert all(x["threads"] >= 2 and x["worker_alive"] for x in samples)  # + adaptation
    assert "soak" in (tmp_path / "soak_t.md").read_text()

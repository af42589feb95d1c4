"""`hmr-ros bench node`: the ROS node measured as robots run it.

Per case (adaptation on/off, markers on/off) it launches `launch/adapt.launch.py` (through
`hmr_ros.ros.launch_file`, a LaunchService) and plays a bag into it from a second process
(`hmr_ros.ros.player`, reliable QoS, the recorded rate), which also records when each image
was published and when its bodies came back. The bag is a synthetic robot_cam stream with
`people` people, with its keypoints topic or (`camera_only`) without, the node then finding
people itself (`keypoints_topic:=none`); or a video file as a camera (`video`, at `rate` Hz,
always camera-only). Reported: input and output rates, drops, latency publish -> receipt
p50/p95/p99, the node's own pipeline p95 from /diagnostics (same run), their ratio, bodies per
answered message and distinct body ids, the adaptation steps and samples used per second,
and the player's CPU time (its cost is part of the machine's load). This module starts
processes only; it imports no ROS (layer 7).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..jsonio import write_json
from ..provenance import footnote, provenance

CAMERA = "/bench_cam"
NODE = "/hmr_ros"


@dataclass(frozen=True)
class Case:
    name: str
    adapt: bool
    markers: bool
    hri: bool = True  # REP-155 /humans/bodies/* output (when hri_msgs is installed)
    keypoints_first: bool = False  # the player sends each frame's keypoints before its image


CASES = {
    "adapt": Case("adapt", True, True),
    "no_adapt": Case("no_adapt", False, True),
    "adapt_no_markers": Case("adapt_no_markers", True, False),
    "adapt_no_hri": Case("adapt_no_hri", True, True, hri=False),
    "adapt_keypoints_first": Case("adapt_keypoints_first", True, True, keypoints_first=True),
}


@dataclass(frozen=True)
class NodeResult:
    """One case, one repeat. Latencies in ms, rates in Hz."""

    case: str
    repeat: int
    images_sent: int
    answered: int
    dropped: int
    input_hz: float
    output_hz: float
    output_ratio: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    pipeline_p95_ms: float
    latency_over_pipeline_p95: float
    adaptation_steps: int
    model_versions: int
    player_cpu_s: float
    player_late_ms_max: float
    bodies_per_message: float = 0.0  # over the answered images
    body_ids: int = 0  # distinct ids over the run (tracking: fewer is steadier)
    # samples that entered an adaptation step per second of play (the node's last
    # /diagnostics, about 1 s before the end)
    adaptation_samples_per_second: float = 0.0


def summarize(record: dict[str, Any], case: str, repeat: int = 0) -> NodeResult:
    """A player record (`hmr_ros.ros.player.PlayRecord` as JSON) -> the reported numbers."""
    sent = record["published"]
    got = record["received"]
    lat = np.array([(got[k] - t) * 1e3 for k, t in sent.items() if k in got])
    span = max(record["play_ended"] - record["play_started"], 1e-9)
    n_sent, n_got = len(sent), len(lat)
    diag = record.get("diagnostics", {})
    pipeline_p95 = float(diag.get("latency p95 (ms)", "nan"))

    def pct(q: float) -> float:
        return float(np.percentile(lat, q)) if n_got else float("nan")

    steps = record.get("status_steps") or [0]
    versions = record.get("status_versions") or [0]
    ids = record.get("ids", {})
    counts = [len(ids.get(k, [])) for k in sent if k in got]
    used = float(diag.get("adaptation samples used", "0") or 0)
    return NodeResult(
        case=case, repeat=repeat, images_sent=n_sent, answered=n_got, dropped=n_sent - n_got,
        input_hz=(n_sent - 1) / span if n_sent > 1 else 0.0,
        output_hz=(n_got - 1) / span if n_got > 1 else 0.0,
        output_ratio=n_got / n_sent if n_sent else 0.0,
        latency_p50_ms=pct(50), latency_p95_ms=pct(95), latency_p99_ms=pct(99),
        pipeline_p95_ms=pipeline_p95,
        latency_over_pipeline_p95=pct(95) / pipeline_p95 if pipeline_p95 > 0 else float("nan"),
        adaptation_steps=int(max(steps) - min(steps)),
        model_versions=len(set(versions)),
        player_cpu_s=float(record.get("cpu_s", float("nan"))),
        player_late_ms_max=float(record.get("late_ms_max", float("nan"))),
        bodies_per_message=float(np.mean(counts)) if counts else 0.0,
        body_ids=len({i for v in ids.values() for i in v}),
        adaptation_samples_per_second=used / span)


def require_ros() -> None:
    missing = [m for m in ("rclpy", "launch", "launch_ros") if importlib.util.find_spec(m) is None]
    try:
        if importlib.util.find_spec("hmr_ros.msg") is None:
            missing.append("hmr_ros.msg")
    except ModuleNotFoundError:
        missing.append("hmr_ros.msg")
    if missing:
        raise SystemExit(f"bench node needs the ROS 2 workspace ({', '.join(missing)} missing): "
                         "scripts/ros2_ws.sh, then . .ros2_ws/activate (README, ROS 2 without "
                         "a ROS install)")


def make_bag(path: Path, fps: float, width: int, height: int, seconds: float, seed: int,
             people: int = 1) -> Path:
    """A robot_cam stream of `people` people at the asked rate and size (rendered once,
    reused)."""
    from ..synth import write_stream_bag
    from ..world.domain import load_domain
    from ..world.scene import SyntheticSequence

    if path.exists():
        return path
    d = load_domain("robot_cam")
    scale = width / d.image.width
    if abs(d.image.height * scale - height) > 1:
        raise SystemExit(f"bench node: {width}x{height} does not keep robot_cam's "
                         f"{d.image.width}x{d.image.height} aspect")
    d = dataclasses.replace(d, fps=fps, image=dataclasses.replace(d.image, render_scale=scale))
    print(f"rendering {seconds:g} s of robot_cam at {width}x{height}, {fps:g} Hz -> {path}",
          flush=True)
    return write_stream_bag(SyntheticSequence(d, seed=seed, duration_s=seconds,
                                              n_people=people), path, progress=False)


def make_video_bag(path: Path, video: Path, rate: float | None, seconds: float) -> Path:
    """`video` as a camera's bag (images and CameraInfo, no keypoints) at `rate` Hz
    (default: the file's), at most `seconds` long (written once, reused)."""
    from ..data.video import VideoReader
    from ..synth import write_video_bag

    if path.exists():
        return path
    with VideoReader(video, fps=rate) as reader:
        limit = max(1, int(round(seconds * reader.info.fps)))
    print(f"writing {limit} frames of {video} as a camera bag -> {path}", flush=True)
    return write_video_bag(video, path, fps=rate, limit=limit)


def run_case(bag: Path, case: Case, work: Path, repeat: int, extra: dict[str, str],
             transports: str = "", camera_only: bool = False) -> NodeResult:
    env = dict(os.environ)
    if transports:  # Fast DDS builtin transports of BOTH processes (node and player)
        env["FASTDDS_BUILTIN_TRANSPORTS"] = transports
    env.update(ROS_DOMAIN_ID=str(random.randint(101, 200)), PYTHONUNBUFFERED="1",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    env.setdefault("OMP_NUM_THREADS", "1")
    work.mkdir(parents=True, exist_ok=True)
    log = open(work / "launch.log", "w")  # noqa: SIM115 - closed below
    args = {"camera": CAMERA, "image_qos": "reliable", "adapt": str(case.adapt).lower(),
            "markers": str(case.markers).lower(), "hri": str(case.hri).lower(),
            **({"keypoints_topic": "none"} if camera_only else {}), **extra}
    # Camera-only: the bag's keypoints (if any) are not played, the node finds people itself.
    exclude = ["--exclude", "/camera/keypoints"] if camera_only else []
    launch = subprocess.Popen(
        [sys.executable, "-m", "hmr_ros.ros.launch_file", "adapt.launch.py",
         *[f"{k}:={v}" for k, v in args.items()]],
        cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    out = work / "play.json"
    try:
        player = subprocess.run(
            [sys.executable, "-m", "hmr_ros.ros.player", str(bag), "--remap",
             f"/camera={CAMERA}", "--node", NODE, "--out", str(out), "--linger", "2",
             "--ready-timeout", "180", "--markers" if case.markers else "--no-markers",
             *exclude, *(["--keypoints-first"] if case.keypoints_first else [])],
            cwd=work, env=env, capture_output=True, text=True, timeout=900)
        if player.returncode != 0:
            launched = (work / "launch.log").read_text()
            raise SystemExit(f"bench node: the player failed ({case.name}):\n"
                             f"{player.stdout}{player.stderr}\n{launched}")
    finally:
        try:
            os.killpg(launch.pid, signal.SIGINT)
            launch.wait(30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(launch.pid, signal.SIGKILL)
        log.close()
    return summarize(json.loads(out.read_text()), case.name, repeat)


def markdown(results: list[NodeResult], meta: dict[str, Any]) -> str:
    source = (f"{meta['video']} at {meta['rate'] or 'its'} Hz, camera only" if meta.get("video")
              else f"{meta['width']}x{meta['height']} at {meta['fps']:g} Hz, "
                   f"{meta.get('people', 1)} people"
                   f"{', camera only' if meta.get('camera_only') else ', keypoints topic'}")
    lines = [f"# hmr-ros bench node ({source}, {meta['seconds']:g} s, reliable QoS, Fast DDS "
             f"transports {meta['fastdds_transports']})", "",
             "| case | repeat | in Hz | out Hz | out/in | dropped | latency p50 / p95 / p99 ms "
             "| pipeline p95 ms | p95 ratio | bodies/msg | ids | adapt steps | samples/s "
             "| player CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r.case} | {r.repeat} | {r.input_hz:.1f} | {r.output_hz:.1f} | "
            f"{r.output_ratio:.3f} | {r.dropped} | {r.latency_p50_ms:.0f} / "
            f"{r.latency_p95_ms:.0f} / {r.latency_p99_ms:.0f} | {r.pipeline_p95_ms:.1f} | "
            f"{r.latency_over_pipeline_p95:.2f} | {r.bodies_per_message:.2f} | {r.body_ids} | "
            f"{r.adaptation_steps} | {r.adaptation_samples_per_second:.1f} | "
            f"{r.player_cpu_s:.1f} |")
    by = {}
    for r in results:
        by.setdefault(r.case, []).append(r.latency_p95_ms)
    if "adapt" in by and "no_adapt" in by:
        ratio = np.median(by["adapt"]) / np.median(by["no_adapt"])
        lines += ["", f"Latency p95 with adaptation / without (medians over repeats): "
                      f"{ratio:.2f}"]
    lines += ["", f"Command: `{meta['command']}`", "", footnote(meta.get("environment"))]
    return "\n".join(lines) + "\n"


def run(out_dir: str | Path = "bench/results", tag: str = "cpu", fps: float = 30.0,
        width: int = 640, height: int = 480, seconds: float = 10.0,
        cases: tuple[str, ...] = tuple(CASES), repeats: int = 1, seed: int = 5,
        work: str | Path | None = None, extra: dict[str, str] | None = None,
        transports: str = "", people: int = 1, camera_only: bool = False,
        video: str | Path | None = None, rate: float | None = None) -> list[NodeResult]:
    require_ros()
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        raise SystemExit(f"bench node: unknown case(s) {unknown}; choose from {list(CASES)}")
    work = Path(work or Path("runs") / "bench_node").resolve()  # the children run in it
    if video is not None:
        video = Path(video).resolve()
        camera_only = True
        bag = make_video_bag(work / f"{video.stem}_{rate or 'file'}hz_{seconds:g}s", video,
                             rate, seconds)
    else:
        bag = make_bag(work / f"robot_cam_{width}x{height}_{fps:g}hz_{seconds:g}s_s{seed}"
                       f"{f'_p{people}' if people != 1 else ''}", fps, width, height, seconds,
                       seed, people)
    results = []
    for rep in range(repeats):
        for name in cases:  # interleaved, so slow drifts of the machine hit every case alike
            t0 = time.monotonic()
            r = run_case(bag, CASES[name], work / f"{name}_{rep}", rep, extra or {}, transports,
                         camera_only)
            results.append(r)
            print(f"{name:>17} #{rep}: in {r.input_hz:5.1f} Hz, out {r.output_hz:5.1f} Hz "
                  f"({r.output_ratio:.1%}), latency p50/p95 {r.latency_p50_ms:.0f}/"
                  f"{r.latency_p95_ms:.0f} ms, pipeline p95 {r.pipeline_p95_ms:.1f} ms, "
                  f"{r.bodies_per_message:.2f} bodies/msg, {r.body_ids} ids, "
                  f"{r.adaptation_steps} steps, {r.adaptation_samples_per_second:.1f} samples/s "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    meta = {"fps": fps, "width": width, "height": height, "seconds": seconds, "seed": seed,
            "people": people, "camera_only": camera_only,
            "video": str(video) if video is not None else None, "rate": rate,
            "fastdds_transports": transports or os.environ.get("FASTDDS_BUILTIN_TRANSPORTS",
                                                               "DEFAULT"),
            "repeats": repeats, **provenance(),
            "command": "hmr-ros bench node " + " ".join(sys.argv[3:]) if len(sys.argv) > 3
            else "hmr-ros bench node"}
    out_dir = Path(out_dir)
    write_json(out_dir / f"node_{tag}.json", {"meta": meta,
                                              "results": [asdict(r) for r in results]})
    (out_dir / f"node_{tag}.md").write_text(markdown(results, meta))
    print(f"wrote {out_dir / f'node_{tag}.json'} and .md", flush=True)
    return results

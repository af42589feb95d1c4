"""Score the NODE's recorded output against ground truth in the same bag (no ROS needed).

`hmr-ros eval BAG` runs the Python pipeline itself over a bag's images, every frame, in lock
step. This module instead reads what the running node published (`~/bodies`, recorded with
`ros2 bag record` while the input bag was played, see docs/ros.md) next to the played ground
truth (`/ground_truth/bodies` in `hmr-ros synth` bags), matches them by header stamp and
computes the same metrics (`hmr_ros.eval.evaluate.StreamEvaluator`). Frames the node dropped
(it always takes the newest image) count as missed detections, so `detected` shows how much of
the stream the node kept up with at the played rate.

    python -m hmr_ros.eval.bag_eval RECORDED_BAG [--bodies TOPIC] [--ground-truth TOPIC]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.frame import Frame, FrameResult, PersonEstimate
from ..messages.bag import BODIES, BagError, BagReader
from ..messages.bodies import msg_to_bodies
from ..messages.factory import ConversionError, stamp_to_ns
from .evaluate import pose_bodies

_EMPTY = np.zeros((1, 1, 3), np.uint8)


def pick_topics(reader: BagReader, bodies: str = "", ground_truth: str = "") -> tuple[str, str]:
    """The estimate and ground-truth SMPLBodyArray topics (given, or the only candidates:
    ground truth has 'ground_truth' in its name, estimates do not)."""
    topics = reader.topics_of(BODIES)
    for name, given in (("bodies", bodies), ("ground-truth", ground_truth)):
        if given and given not in topics:
            raise BagError(f"--{name} {given} is not an SMPLBodyArray topic of {reader.path}; "
                           f"topics: {reader.describe()}")
    truth = [t for t in topics if "ground_truth" in t or "groundtruth" in t]
    est = [t for t in topics if t not in truth]
    ground_truth = ground_truth or (truth[0] if len(truth) == 1 else "")
    bodies = bodies or (est[0] if len(est) == 1 else "")
    if not ground_truth or not bodies:
        raise BagError(f"{reader.path}: cannot tell the estimate and ground-truth topics apart "
                       f"among {topics or 'no SMPLBodyArray topics'}; pass --bodies and "
                       "--ground-truth")
    return bodies, ground_truth


def _estimates(body: Any, msg: Any) -> tuple[tuple[PersonEstimate, ...], int]:
    params = msg_to_bodies(msg)
    if not params:
        return (), int(msg.model_version)
    ids, out = pose_bodies(body, params)
    people = tuple(PersonEstimate(
        id=i, box=np.zeros(3, np.float32), cam=np.zeros(3, np.float32), params=params[i],
        joints=out.joints[k].numpy(), points=out.points[k].numpy(),
        vertices=out.vertices[k].numpy(), keypoints=None, confidence=1.0)
        for k, i in enumerate(ids))
    return people, int(msg.model_version)


def evaluate_recorded(path: str | Path, bodies: str = "", ground_truth: str = "",
                      body_model: str | None = None) -> dict[str, float]:
    """Metrics of the recorded estimates against the recorded ground truth (mm, see
    `hmr_ros.eval.evaluate`), plus frames, estimated frames and the model versions seen."""
    from ..body import BodyModel
    from .evaluate import StreamEvaluator

    with BagReader(path) as reader:
        bodies, ground_truth = pick_topics(reader, bodies, ground_truth)
        truth: dict[int, Any] = {}
        estimates: dict[int, Any] = {}
        for m in reader.messages([bodies, ground_truth]):
            stamp = stamp_to_ns(m.msg.header.stamp)
            (truth if m.topic == ground_truth else estimates)[stamp] = m.msg
    if not truth:
        raise BagError(f"{path}: no ground truth on {ground_truth}")
    body = BodyModel(body_model)
    ev = StreamEvaluator(body)
    versions = []
    matched = 0
    for index, stamp in enumerate(sorted(truth)):
        try:
            gt = msg_to_bodies(truth[stamp])
        except ConversionError as err:
            raise BagError(f"{ground_truth} at {stamp}: {err}") from None
        people: tuple[PersonEstimate, ...] = ()
        version = 0
        if stamp in estimates:
            matched += 1
            people, version = _estimates(body, estimates[stamp])
            versions.append(version)
        frame = Frame(image=_EMPTY, stamp_ns=stamp, camera=None, index=index, ground_truth=gt)
        ev.add(frame, FrameResult(index, stamp, people, version, 0.0))
    out = ev.summary()
    out["frames"] = float(len(truth))
    out["estimated_frames"] = float(matched)
    out["unmatched_estimates"] = float(len(set(estimates) - set(truth)))
    out["first_model_version"] = float(versions[0]) if versions else float("nan")
    out["last_model_version"] = float(versions[-1]) if versions else float("nan")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hmr_ros.eval.bag_eval",
        description="Score the hmr_ros node's recorded ~/bodies against recorded ground truth.")
    parser.add_argument("bag", help="bag recorded with `ros2 bag record` (see docs/ros.md)")
    parser.add_argument("--bodies", default="", help="estimate topic (default: auto)")
    parser.add_argument("--ground-truth", default="", help="ground-truth topic (default: auto)")
    parser.add_argument("--body-model", default=None, help="SMPL file (default: bundled)")
    parser.add_argument("--out", default=None, help="write the metrics as JSON here")
    args = parser.parse_args(argv)
    try:
        res = evaluate_recorded(args.bag, args.bodies, args.ground_truth, args.body_model)
    except BagError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from ..eval.run import format_table

    print(format_table({Path(args.bag).name: res}))
    print(f"estimated {res['estimated_frames']:.0f} of {res['frames']:.0f} frames; model "
          f"version {res['first_model_version']:.0f} -> {res['last_model_version']:.0f}")
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""hmr_ros/Keypoints2DArray <-> `Detection`s (2D keypoints and boxes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..body.joints import get_joint_set
from ..data.frame import Detection, Keypoints
from .factory import ConversionError, MessageFactory, make_header


def detections_to_msg(factory: MessageFactory, detections: Sequence[Detection], stamp_ns: int,
                      frame_id: str) -> Any:
    people = []
    for det in detections:
        if det.keypoints is None:
            continue
        kp = det.keypoints
        people.append(factory.new(
            "hmr_ros/msg/Keypoints2D", id=max(int(det.id), 0), format=kp.format,
            x=factory.array(kp.xy[:, 0], np.float32), y=factory.array(kp.xy[:, 1], np.float32),
            confidence=factory.array(kp.confidence, np.float32)))
    return factory.new("hmr_ros/msg/Keypoints2DArray",
                       header=make_header(factory, stamp_ns, frame_id), people=people)


def msg_to_detections(msg: Any) -> tuple[Detection, ...]:
    """hmr_ros/Keypoints2DArray -> detections (ConversionError names the bad person)."""
    out = []
    for i, p in enumerate(msg.people):
        x, y = np.asarray(p.x, np.float32), np.asarray(p.y, np.float32)
        c = np.asarray(p.confidence, np.float32)
        try:
            js = get_joint_set(str(p.format))
        except KeyError as err:
            raise ConversionError(f"person {i}: {err.args[0]}") from None
        if not (len(x) == len(y) == len(c) == len(js)):
            raise ConversionError(f"person {i}: format {js.name} has {len(js)} joints, got "
                                  f"x {len(x)}, y {len(y)}, confidence {len(c)}")
        out.append(Detection(int(p.id), Keypoints(js.name, np.stack([x, y], 1), c)))
    return tuple(out)



"""Fuzzing the doors (issue 13): images, keypoint arrays, crop boxes and config values.

Property: no traceback. Each input gets a clear error (ValueError and its subclasses:
ConfigError, CropError) or a counted skip, and every estimate produced is finite and comes from
a crop box that is a sane crop of the image. The CI profile tries a few hundred examples in
total; `HYPOTHESIS_PROFILE=long` tries 20x more.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from hmr_ros.config import ConfigError, PipelineConfig, replace_path, to_flat_dict  # noqa: E402
from hmr_ros.data.crop import CropError, check_box, crop_image  # noqa: E402
from hmr_ros.data.frame import CameraModel, Detection, Frame, Keypoints  # noqa: E402

settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.function_scoped_fixture])
settings.register_profile("long", parent=settings.get_profile("ci"), derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
SCALE = 20 if os.environ.get("HYPOTHESIS_PROFILE") == "long" else 1

# Coordinates as a careless or hostile source sends them.
COORD = st.one_of(st.floats(-50, 400), st.floats(allow_nan=True, allow_infinity=True),
                  st.sampled_from([0.0, -1.0, 1e6, -1e6, 1e30, float("nan"), float("inf")]))
CONF = st.one_of(st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True))


@pytest.fixture(scope="module")
def pipeline(weights):
    from hmr_ros.pipeline import build_pipeline

    cfg = replace_path(PipelineConfig(), "inference.weights", str(weights))
    pipe = build_pipeline(cfg, adapt=False)
    pipe.warn_missing_camera = False
    return pipe


@st.composite
def frames(draw):
    h = draw(st.one_of(st.integers(1, 24), st.integers(25, 240), st.just(1)))
    w = draw(st.one_of(st.integers(1, 24), st.integers(25, 320), st.just(1)))
    dtype = draw(st.sampled_from([np.uint8, np.uint8, np.uint8, np.float32, np.uint16]))
    channels = draw(st.sampled_from([3, 3, 3, 1, 4]))
    image = np.full((h, w, channels), draw(st.integers(0, 255)), dtype)
    dets = []
    for pid in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["person", "garbage", "box"]))
        if kind == "person":  # a plausible person, maybe scaled or shifted off the image
            cx, cy = draw(st.floats(-w, 2 * w)), draw(st.floats(-h, 2 * h))
            size = draw(st.floats(1, 4 * max(h, w)))
            rng = np.random.default_rng(draw(st.integers(0, 99)))
            xy = np.stack([cx + rng.uniform(-.3, .3, 17) * size,
                           cy + rng.uniform(-.5, .5, 17) * size], 1)
            xy = xy * draw(st.sampled_from([1.0, 1.0, 1e6, -1.0]))
        else:
            xy = draw(hnp.arrays(np.float64, (17, 2), elements=COORD))
        conf = draw(hnp.arrays(np.float64, (17,), elements=CONF))
        box = None
        if kind == "box":
            box = np.array(draw(st.lists(COORD, min_size=4, max_size=4)))
        dets.append(Detection(pid, Keypoints("coco17", xy, conf), box))
    camera = CameraModel.from_focal(draw(st.floats(1, 5000)), w, h)
    return Frame(image, 0, draw(st.sampled_from([camera, None])), tuple(dets), 0)


@settings(max_examples=120 * SCALE)
@given(frame=frames())
def test_pipeline_gives_finite_estimates_from_sane_crops_or_counted_skips(pipeline, frame):
    try:
        result = pipeline.process(frame)
    except ValueError as err:  # a clear error for an image that is not RGB uint8
        assert frame.image.dtype != np.uint8 or frame.image.shape[2] != 3, err
        return
    assert len(result.people) + len(result.skipped) == len(frame.detections)
    for p in result.people:
        check_box(p.box, frame.width, frame.height)  # raises if the crop was not sane
        for arr in (p.joints, p.points, p.cam, p.params.betas, p.params.transl,
                    p.params.body_pose, p.params.global_orient):
            assert np.all(np.isfinite(arr))


@settings(max_examples=80 * SCALE)
@given(xy=hnp.arrays(np.float64, st.tuples(st.integers(0, 20), st.just(2)), elements=COORD),
       conf=hnp.arrays(np.float64, st.integers(0, 20), elements=CONF))
def test_keypoints_are_finite_or_refused(xy, conf):
    try:
        kp = Keypoints("coco17", xy, conf)
    except ValueError:
        assert len(xy) != 17 or len(conf) != 17
        return
    assert np.all(np.isfinite(kp.xy)) and np.all((kp.confidence >= 0) & (kp.confidence <= 1))


@settings(max_examples=80 * SCALE)
@given(h=st.integers(1, 64), w=st.integers(1, 64), box=st.lists(COORD, min_size=3, max_size=3),
       size=st.sampled_from([8, 32]))
def test_crop_image_gives_a_crop_or_a_crop_error(h, w, box, size):
    image = np.full((h, w, 3), 100, np.uint8)
    try:
        crop = crop_image(image, np.array(box), size)
    except CropError:
        return
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8


FLOAT_KEYS = sorted(k for k, v in to_flat_dict(PipelineConfig()).items() if isinstance(v, float))


@settings(max_examples=100 * SCALE)
@given(key=st.sampled_from(FLOAT_KEYS),
       value=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.sampled_from(["nan", "inf", "-1e-3", "abc", "", None, True, [1]])))
def test_config_values_are_accepted_finite_or_refused_with_config_error(key, value):
    try:
        cfg = replace_path(PipelineConfig(), key, value)
    except ConfigError as err:
        # One line that names the field refused (its section may group several fields).
        assert "\n" not in str(err) and key.rsplit(".", 1)[-1] in str(err), (key, str(err))
        return
    got = to_flat_dict(cfg)[key]
    assert isinstance(got, float) and math.isfinite(got)
    assert got == float(value)  # the value given, neither clamped nor replaced by a default


# ------------------------------------------------------------------------ messages and bags

from hmr_ros import messages as msgs  # noqa: E402
from hmr_ros.messages.definitions import hmr_typestore  # noqa: E402

TYPESTORE = hmr_typestore()
FACTORY = msgs.RosbagsFactory(TYPESTORE)
NUMBER = st.one_of(st.floats(-1e4, 1e4), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, -1.0, 1e-300, 1e300]))


@settings(max_examples=80 * SCALE)
@given(k=st.lists(NUMBER, min_size=9, max_size=9), w=st.integers(-5, 5000),
       h=st.integers(-5, 5000))
def test_camera_info_gives_a_camera_or_a_conversion_error(k, w, h):
    msg = msgs.camera_to_msg(FACTORY, CameraModel.from_focal(100.0, 64, 48), 0)
    msg.k = np.asarray(k, np.float64)
    msg.width, msg.height = max(w, 0), max(h, 0)
    try:
        cam = msgs.msg_to_camera(msg)
    except msgs.ConversionError as err:
        K = np.asarray(k, np.float64).reshape(3, 3)
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            assert str(err) == "CameraInfo has no valid K (uncalibrated camera?)"
        else:
            assert str(err) == ("CameraInfo: image size must be positive, got "
                                f"{msg.width}x{msg.height}")
        return
    assert cam.width > 0 and cam.height > 0 and np.all(np.isfinite(cam.K)) and cam.focal > 0


@settings(max_examples=80 * SCALE)
@given(enc=st.sampled_from([*msgs.SUPPORTED_ENCODINGS, "yuv422", "16UC1", "", "rgb16"]),
       h=st.integers(0, 40), w=st.integers(0, 40), step_extra=st.integers(-8, 8),
       length=st.integers(0, 6000))
def test_image_messages_give_rgb_or_a_conversion_error(enc, h, w, step_extra, length):
    msg = msgs.image_to_msg(FACTORY, np.zeros((2, 2, 3), np.uint8), 0, "cam")
    channels = {"mono8": 1, "8UC1": 1, "rgba8": 4, "bgra8": 4}.get(enc, 3)
    msg.encoding, msg.height, msg.width = enc, h, w
    msg.step = max(w * channels + step_extra, 0)
    msg.data = np.arange(length, dtype=np.uint8)
    try:
        img = msgs.msg_to_image(msg)
    except msgs.ConversionError as err:
        # The first limit the message breaks, with its numbers.
        if enc not in msgs.SUPPORTED_ENCODINGS:
            assert str(err).startswith(f"unsupported image encoding {enc!r}; supported: ")
        elif h == 0 or w == 0:
            assert str(err) == f"empty image {w}x{h}"
        elif msg.step < w * channels:
            assert str(err) == (f"step {msg.step} is shorter than a row of {w} {enc} pixels "
                                f"({w * channels})")
        else:
            assert str(err) == (f"image data has {length} bytes, expected step*height = "
                                f"{msg.step * h}")
        return
    assert img.shape == (h, w, 3) and img.dtype == np.uint8


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    """A 6-frame stream bag (images, CameraInfo, keypoints, truth) as bytes to mutate."""
    from hmr_ros.synth import write_stream_bag
    from hmr_ros.world.domain import load_domain
    from hmr_ros.world.scene import SyntheticSequence

    d = load_domain("robot_cam")
    d = dataclasses.replace(d, image=dataclasses.replace(d.image, render_scale=0.2))
    path = write_stream_bag(SyntheticSequence(d, seed=3, duration_s=0.15),
                            tmp_path_factory.mktemp("fuzzbag") / "bag", progress=False)
    (mcap,) = sorted(path.glob("*.mcap"))
    return path, mcap.name, mcap.read_bytes()


@settings(max_examples=25 * SCALE)
@given(data=st.data())
def test_mutated_bags_give_frames_or_a_bag_error(small_bag, tmp_path_factory, data):
    """Flipped bytes, truncation, zeroed ranges: the bag is refused with BagError, or its
    readable frames come out (bad messages skipped); nothing else escapes."""
    from hmr_ros.messages.bag import BagError, BagReader, detect_topics
    from hmr_ros.stream.frames import bag_frames

    src, name, raw = small_bag
    blob = bytearray(raw)
    kind = data.draw(st.sampled_from(["flip", "truncate", "zero"]))
    at = data.draw(st.integers(0, len(blob) - 1))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 16))):
            i = data.draw(st.integers(0, len(blob) - 1))
            blob[i] ^= data.draw(st.integers(1, 255))
    elif kind == "truncate":
        blob = blob[:at]
    else:
        blob[at:at + data.draw(st.integers(1, 4096))] = bytes(min(4096, len(blob) - at))
    out = tmp_path_factory.mktemp("mutated")
    (out / "metadata.yaml").write_bytes((src / "metadata.yaml").read_bytes())
    (out / name).write_bytes(bytes(blob))
    try:
        with BagReader(out) as reader:
            frames = list(bag_frames(reader, detect_topics(reader)))
    except BagError as err:
        assert str(out) in str(err)  # the bag refused
        return
    for f in frames:
        assert f.image.ndim == 3 and f.image.dtype == np.uint8

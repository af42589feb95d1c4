"""Bad input gets a clear error or a counted skip, never a traceback or a silent wrong
answer (issue 13): configuration files and values, strict JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hmr_ros import jsonio
from hmr_ros.cli import main
from hmr_ros.config import ConfigError, PipelineConfig, load_config_file, replace_path


@pytest.mark.parametrize("text,match", [
    ("adapt: {method: boa_1st\n", r"not valid YAML \(line \d+, column \d+\)"),
    ("adapt:\n  method: [boa\n", "not valid YAML"),
    ("- adapt.method: boa_1st\n- 3\n", "expected a mapping .* found a list"),
    ("42\n", "found a int"),
    ("adapt.nope: 1\n", "unknown config key"),
])
def test_bad_config_files_give_one_line_config_errors(tmp_path, text, match, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config_file(str(path))
    assert "\n" not in str(info.value)
    # Through the command line: exit status 2 and one line on stderr, no traceback.
    assert main(["replay", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                 "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hmr-ros replay: error: ") and err.count("\n") == 1, err
    assert str(path) in err or "unknown config key" in err


def test_empty_config_file_is_the_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("# nothing\n")
    assert load_config_file(str(path)) == PipelineConfig()


@pytest.mark.parametrize("key", ["adapt.outer_lr", "adapt.inner_lr"])
@pytest.mark.parametrize("value", [-1e-3, 0.0, float("nan"), float("inf"), "nan", "-inf"])
def test_learning_rates_must_be_positive_and_finite(key, value):
    """A negative or NaN outer_lr gave torch's traceback; inf inner_lr made every step roll
    back with nobody told why."""
    with pytest.raises(ConfigError, match=key.split(".")[1] + "|finite"):
        replace_path(PipelineConfig(), key, value)


def test_every_float_setting_must_be_finite():
    for key in ("inference.box_scale", "adapt.loss.keypoints", "detector.tracker.timeout_s",
                "adapt.guard.disagreement"):
        with pytest.raises(ConfigError, match=f"{key} must be a finite number"):
            replace_path(PipelineConfig(), key, float("nan"))
    with pytest.raises(ConfigError, match="max_consecutive_rollbacks"):
        replace_path(PipelineConfig(), "adapt.guard.max_consecutive_rollbacks", 0)


def test_set_value_that_is_not_yaml_is_a_config_error(tmp_path, capsys):
    from hmr_ros.config import parse_value

    with pytest.raises(ConfigError, match="cannot read value"):
        parse_value("[1, 2")


def test_strict_json_writes_null_for_non_finite():
    payload = {"a": float("nan"), "b": [1.0, float("inf"), np.float32("nan")],
               "c": np.arange(3), "d": (np.int64(4), True), "e": {"f": -math.inf}}
    text = jsonio.dumps(payload)
    assert json.loads(text) == {"a": None, "b": [1.0, None, None], "c": [0, 1, 2],
                                "d": [4, True], "e": {"f": None}}
    from hmr_ros.jsonio import write_json

    path = write_json(__import__("pathlib").Path(__import__("tempfile").mkdtemp()) / "m.json",
                      payload)
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()


def test_write_json_is_strict_and_leaves_no_temporary(tmp_path):
    from hmr_ros.jsonio import write_json

    path = write_json(tmp_path / "sub" / "r.json",
                      {"x": np.float32(0.5), "y": [float("nan")], "p": tmp_path})
    assert json.loads(path.read_text()) == {"x": 0.5, "y": [None], "p": str(tmp_path)}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
    with pytest.raises(TypeError):
        write_json(tmp_path / "bad.json", {"x": object()})


# ------------------------------------------------------------------ validation at the door


@pytest.fixture(scope="module")
def pipeline(weights):
    from hmr_ros.pipeline import build_pipeline

    cfg = replace_path(PipelineConfig(), "inference.weights", str(weights))
    return build_pipeline(cfg, adapt=False)


def _person(pid: int, xy, conf=None):
    from hmr_ros.body.joints import get_joint_set
    from hmr_ros.data.frame import Detection, Keypoints

    n = len(get_joint_set("coco17"))
    xy = np.broadcast_to(np.asarray(xy, np.float64), (n, 2)) if np.ndim(xy) == 1 else xy
    conf = np.ones(n) if conf is None else conf
    return Detection(pid, Keypoints("coco17", xy, conf))


def _standing(cx: float, cy: float, h: float) -> np.ndarray:
    """17 COCO-ish keypoints of a person `h` px tall centred at (cx, cy)."""
    rng = np.random.default_rng(0)
    return np.stack([cx + rng.uniform(-0.2, 0.2, 17) * h, cy + rng.uniform(-0.5, 0.5, 17) * h],
                    axis=1)


def _frame(image, *dets):
    from hmr_ros.data.frame import CameraModel, Frame

    h, w = image.shape[:2]
    return Frame(image, 0, CameraModel.from_focal(500.0, w, h), tuple(dets), 7)


def test_far_off_keypoints_drop_that_person_not_the_frame(pipeline):
    """Keypoints x1e6 made a box of absurd size: cv2.error bad_array_new_length in the crop.
    Keypoints all off the image gave a body from a black crop, published and adapted on."""
    image = np.full((120, 160, 3), 90, np.uint8)
    good = _person(1, _standing(80, 60, 80))
    huge = _person(2, _standing(80, 60, 80) * 1e6)
    off = _person(3, _standing(80, 60, 80) + [1000.0, 0.0])
    res = pipeline.process(_frame(image, good, huge, off))
    assert [p.id for p in res.people] == [1]
    assert len(res.skipped) == 2
    assert res.skipped[0].startswith("person 2: only 0 of 17 confident keypoints lie on")
    assert res.skipped[1].startswith("person 3: only 0 of 17")
    assert np.all(np.isfinite(res.people[0].joints))


@pytest.mark.parametrize("shape", [(1, 1, 3), (8, 300, 3), (15, 15, 3)])
def test_tiny_images_give_no_estimate(pipeline, shape):
    """A 1x1 image gave a body estimated from a black crop."""
    image = np.zeros(shape, np.uint8)
    det = _person(1, np.array([[0.0, 0.0], [0.5, 0.5], [0.2, 0.8], [0.9, 0.1]] * 4
                              + [[0.3, 0.3]]) * np.array(shape[1::-1]))
    res = pipeline.process(_frame(image, det))
    assert res.people == () and len(res.skipped) == 1
    assert "too small" in res.skipped[0]


def test_box_checks():
    from hmr_ros.data.crop import CropError, check_box, crop_image

    assert check_box(np.array([50.0, 50.0, 80.0]), 100, 100).tolist() == [50.0, 50.0, 80.0]
    with pytest.raises(CropError, match="more than 2x"):
        check_box(np.array([50.0, 50.0, 250.0]), 100, 100)
    with pytest.raises(CropError, match="of the box lies on the image"):
        check_box(np.array([140.0, 140.0, 80.0]), 100, 100)
    with pytest.raises(CropError, match="not finite"):
        check_box(np.array([np.nan, 50.0, 80.0]), 100, 100)
    # crop_image itself refuses garbage and survives an absurd box (it was a cv2.error).
    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(CropError):
        crop_image(img, np.array([np.inf, 0.0, 10.0]), 32)
    assert crop_image(img, np.array([0.0, 0.0, 1e6]), 32).shape == (32, 32, 3)
    with pytest.raises(CropError):
        crop_image(img, np.array([0.0, 0.0, 1e-9]), 32)


def test_non_finite_estimates_are_dropped(pipeline, monkeypatch):
    """NaN out of the regressor (e.g. NaN weights reached at run time) is not published."""
    image = np.full((120, 160, 3), 90, np.uint8)
    real = pipeline.backend.predict

    def nan_first(crops):
        import dataclasses

        out = real(crops)
        cam = out.cam.clone()
        cam[0] = float("nan")
        return dataclasses.replace(out, cam=cam)

    monkeypatch.setattr(pipeline.backend, "predict", nan_first)
    res = pipeline.process(_frame(image, _person(1, _standing(60, 60, 70)),
                                  _person(2, _standing(100, 60, 70))), keep_crops=True)
    assert [p.id for p in res.people] == [2] and len(res.crops) == 1
    assert res.skipped == ("person 1: non-finite estimate",)

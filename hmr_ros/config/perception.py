"""The perception sections: `inference` (regressor, body model, crop), `detector` (with its
HOG and tracker sections) and `temporal` (refinement)."""

from __future__ import annotations

from dataclasses import dataclass

from .choices import Backend, DetectorKind, Gender, TemporalBranches, TemporalMode
from .coerce import ConfigError, Section, option, section


@dataclass(frozen=True)
class InferenceConfig(Section):
    """The regressor, the body model and the per-person crop of the inference path."""

    weights: str = option("", "checkpoint path; empty = the bundled default regressor")
    body_model: str = option("", "SMPL .pkl/.npz or folder; empty = the bundled synthetic model")
    gender: Gender = option("neutral", "SMPL model gender: neutral | male | female")
    keypoint_threshold: float = option(0.1, "keypoints at or below this confidence are ignored")
    min_keypoints: int = option(4, "fewer usable keypoints: fall back to the box, else skip "
                                   "the person")
    box_scale: float = option(1.3, "enlargement of the keypoint box to the square crop")
    fallback_focal: float = option(525.0, "px, used (with a warning) when no CameraInfo is "
                                          "known")
    max_people: int = option(8, "the largest people first; others are skipped")
    vertices: bool = option(True, "compute mesh vertices (needed for markers and PVE)")
    # torch's intra-op pool is process-wide: inference and adaptation each run their ops on
    # their own Python thread, with this many pool threads per op.
    threads: int = option(1, "torch threads per op of the inference path: 1 suits 2 cores "
                             "(one core per path); about cores / 2 on larger machines")
    backend: Backend = option("torch", "torch | onnxruntime | tensorrt")
    device: str = option("cpu", "cpu | cuda (torch, onnxruntime's CUDA provider; tensorrt is "
                                "cuda)")
    half: bool = option(False, "fp16 on CUDA (torch .half(), TensorRT fp16 engine)")
    engine_cache: str = option("", "folder for exported ONNX / TensorRT engines "
                                   "(\"\" = ~/.cache/hmr_ros)")

    def validate(self, p: str) -> None:
        if self.fallback_focal <= 0 or self.box_scale <= 0 or self.max_people < 1 or \
                self.threads < 1:
            raise ConfigError(f"{p.rstrip('.')}: fallback_focal, box_scale, max_people and "
                              "threads must be positive")


@dataclass(frozen=True)
class HogConfig(Section):
    """OpenCV's HOG people detector of `detector.kind=mediapipe_hog`."""

    every: int = option(5, "run the HOG people detector on every n-th frame (followers and "
                           "tracks fill the gaps; in its thread: offered every n-th frame, "
                           "skipped while it is busy)")
    thread: bool = option(False, "run HOG in its own low-priority thread, its boxes joining "
                                 "the proposals of the frame after it finishes (camera rate: "
                                 "the node's config/adapt.yaml sets it); false: in the frame "
                                 "path (reproducible replays, slower)")
    nice: int = option(10, "added to the OS niceness of the HOG thread (Linux; 0-19)")
    upscale: float = option(1.5, "HOG's window is 64x128 px: upscale to find smaller people")
    scale: float = option(1.1, "step between HOG's pyramid levels: 1.05 finds about as many "
                               "people on vtest.avi at twice the time")
    threshold: float = option(1.0, "minimum HOG SVM score of a person box")

    def validate(self, p: str) -> None:
        if self.every < 1 or self.upscale <= 0 or self.scale <= 1.0:
            raise ConfigError(f"{p}every must be >= 1, {p}upscale positive and {p}scale > 1")
        if not 0 <= self.nice <= 19:
            raise ConfigError(f"{p}nice must be in 0..19, got {self.nice}")


@dataclass(frozen=True)
class TrackerConfig(Section):
    """Greedy matching of detections to tracks by predicted box and keypoints."""

    match_threshold: float = option(0.2, "lowest match score (IoU / keypoint similarity) "
                                         "accepted")
    min_hits: int = option(2, "detections a new track needs before it gets an id and is "
                              "output: one-frame false detections never get an id (a person's "
                              "first frame is not estimated)")
    timeout_s: float = option(1.0, "a track unseen this long is lost (its id is never reused)")
    retrack: bool = option(False, "replace ids that came with the input (e.g. an upstream "
                                  "topic)")

    def validate(self, p: str) -> None:
        if not 0.0 <= self.match_threshold <= 1.0:
            raise ConfigError(f"{p}match_threshold must be in [0, 1]")
        if self.min_hits < 1 or self.timeout_s <= 0:
            raise ConfigError(f"{p}min_hits must be >= 1 and {p}timeout_s positive")


@dataclass(frozen=True)
class DetectorConfig(Section):
    """2D keypoints and person tracking for inputs that bring no keypoints (video files,
    folders of images, webcams, bags without a keypoint topic); see `hmr_ros/detect/`."""

    kind: DetectorKind = option(
        "auto", "auto: mediapipe_hog where OpenCV has its HOG people detector, else mediapipe, "
                "and only for inputs without keypoints; none: no detector; mediapipe: "
                "BlazePose on the whole image (one person); mediapipe_hog: several people, each "
                "followed by a BlazePose graph of their own, new ones found by BlazePose in HOG "
                "person boxes and the tracks' predicted boxes")
    model_complexity: int = option(1, "BlazePose landmark model: 0 lite, 1 full, 2 heavy "
                                      "(bundled: 1)")
    min_detection_confidence: float = option(0.5, "BlazePose's person detector in each image "
                                                  "or box")
    min_visible: int = option(8, "landmarks with visibility > 0.5 needed to keep a detected "
                                 "pose")
    crop_size: int = option(256, "px, person boxes are resampled to this square before "
                                 "BlazePose")
    box_scale: float = option(1.25, "enlargement of a person box to the square BlazePose sees")
    max_people: int = option(8, "detections per image, the largest first")
    threads: int = option(2, "mediapipe_hog: BlazePose calls of one frame run in parallel on "
                             "this many threads (MediaPipe runs each graph on one core)")
    follow: bool = option(True, "mediapipe_hog: follow each person found with their own "
                                "BlazePose graph in video mode on a crop around their last "
                                "landmarks (the landmark model only; the person detector runs "
                                "for proposals and lost people); false: BlazePose detects "
                                "afresh in every box of every frame")
    nms_iou: float = option(0.5, "two poses are one person when their keypoint boxes overlap "
                                 "more than this (or their landmarks agree): the duplicate "
                                 "from a second box around the same person is dropped")
    focal: float = option(0.0, "intrinsics of inputs without CameraInfo (video files, folders, "
                               "webcams): the focal in px, or 0 for that of a camera with "
                               "default_hfov_deg horizontal field of view")
    default_hfov_deg: float = option(60.0, "assumed field of view when focal is 0 (a typical "
                                           "webcam)")
    hog: HogConfig = section(HogConfig, "HOG people boxes")
    tracker: TrackerConfig = section(TrackerConfig, "the multi-person tracker")

    def validate(self, p: str) -> None:
        if self.model_complexity not in (0, 1, 2):
            raise ConfigError(f"{p}model_complexity must be 0, 1 or 2")
        if not (0.0 <= self.min_detection_confidence <= 1.0 and 0.0 < self.nms_iou <= 1.0):
            raise ConfigError(f"{p}min_detection_confidence must be in [0, 1], {p}nms_iou in "
                              "(0, 1]")
        if min(self.max_people, self.crop_size, self.threads) < 1 or self.min_visible < 0:
            raise ConfigError(f"{p}max_people, crop_size and threads must be >= 1, "
                              f"min_visible >= 0")
        if self.box_scale <= 0 or self.focal < 0:
            raise ConfigError(f"{p}box_scale must be positive, focal >= 0 (0 = from "
                              "default_hfov_deg)")
        if not 1.0 <= self.default_hfov_deg <= 179.0:
            raise ConfigError(f"{p}default_hfov_deg must be in [1, 179] degrees")


@dataclass(frozen=True)
class TemporalConfig(Section):
    """Temporal-aware refinement of the per-frame bodies (`hmr_ros/temporal/`). Needs the
    torch backend (its features); with another backend it is disabled with a warning."""

    enabled: bool = option(False, "refine the bodies with temporal context (TAR; torch "
                                  "backend only)")
    mode: TemporalMode = option("causal", "causal (frames <= t, no added delay) | lookahead "
                                          "(frames <= t + d)")
    lookahead: int = option(2, "d, frames, in lookahead mode: bodies are published d frames "
                               "late")
    window: int = option(9, "frames the global temporal encoder reads (the target and those "
                            "before)")
    local_window: int = option(5, "frames the local ConvGRU reads before and at the target")
    branches: TemporalBranches = option("both", "both | global | local (the other branch's "
                                                "input zeroed: ablation)")
    weights: str = option("", "refiner checkpoint; empty = the bundled weights/tar_small_h36m.pt")

    def validate(self, p: str) -> None:
        if not (self.lookahead >= 1 and 1 <= self.local_window <= self.window):
            raise ConfigError(f"{p.rstrip('.')}: lookahead must be >= 1 and 1 <= local_window "
                              "<= window (the refiner's own limits are checked when it loads: "
                              "the bundled one knows lookahead <= 4, window <= 9)")

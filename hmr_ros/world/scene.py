"""The synthetic world: people moving in a scene, filmed by a domain's camera.

`SyntheticSequence` turns a domain (camera, scene, people, sensor, detector) and a seed into a
stream of frames with ground truth: the rendered image, K, each person's SMPL parameters in the
camera frame, their 3D points, exact and detector-noised 2D keypoints with visibility from the
z-buffer (self-occlusion and occluders), and the person box. `render_training_crop` draws one
person directly into a square crop at the regressor's input size, for pretraining sets. The
people (`person.py`) and what the camera records of them (`sensor.py`) have their own modules.

World frame: metres, y up, floor at y = 0. Camera frame: x right, y down, z forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..body import BodyModel
from ..body.joints import NUM_SOURCE, get_joint_set
from ..data.crop import box_from_keypoints, crop_matrix
from ..data.frame import BodyParams, CameraModel, Detection, Frame, Keypoints
from ..geometry import perspective_project
from ..render import Light, RenderMesh, box_mesh, render
from .appearance import sample_appearance
from .background import Backdrop, render_background, sample_background
from .domain import DomainConfig
from .motion import MotionClip, generate_motion
from .person import Person, sample_betas
from .sensor import (
    JOINT_DEPTH_MARGIN,
    LANDMARK_DEPTH_MARGIN,
    apply_sensor,
    detector_noise,
    visible_points,
)


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def look_at(cam_pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera-to-world rotation (3, 3) whose columns are the camera's x (right), y (down) and
    z (forward) axes in the world (y up), looking from cam_pos to target without roll."""
    fwd = target - cam_pos
    fwd = fwd / np.linalg.norm(fwd)
    right = np.cross(fwd, np.array([0.0, 1.0, 0.0]))
    if np.linalg.norm(right) < 1e-6:  # looking straight up or down
        right = np.array([1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return np.stack([right, down, fwd], axis=1)


def _rot(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    m = np.eye(3)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def _smooth(x: np.ndarray, window: int) -> np.ndarray:
    """Moving average along axis 0 with edge padding (window in frames, odd)."""
    if window <= 1 or len(x) < 2:
        return x.copy()
    pad = window // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], pad, 0)])
    kernel = np.ones(window) / window
    return np.stack([np.convolve(xp[:, k], kernel, mode="valid") for k in range(x.shape[1])], 1)


def camera_intrinsics(domain: DomainConfig, rng: np.random.Generator | None) -> CameraModel:
    """The rendered stream's camera: focal and principal point with per-sequence jitter."""
    w, h = domain.render_size
    s = domain.image.render_scale
    f = domain.camera.focal * s
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    if rng is not None:
        f *= 1.0 + domain.camera.focal_jitter * rng.standard_normal()
        cx += domain.camera.principal_jitter * w * rng.standard_normal()
        cy += domain.camera.principal_jitter * h * rng.standard_normal()
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    return CameraModel(K, w, h)


@dataclass(frozen=True)
class PersonView:
    """What the camera sees of one person in one frame (ground truth and detector output)."""

    id: int
    params: BodyParams
    points3d: np.ndarray  # (46, 3) camera frame
    keypoints_gt: Keypoints  # exact projection in the detector's format, confidence = visible
    keypoints: Keypoints  # after the detector noise model
    box: np.ndarray | None  # (4,) tight box of the visible pixels, or None if unseen
    visible_pixels: int


@dataclass(frozen=True)
class SyntheticFrame:
    frame: Frame
    people: tuple[PersonView, ...]
    label: np.ndarray  # (H, W) body part id of the visible surface, -1 elsewhere
    object: np.ndarray  # (H, W) 0.. person index, then occluders; -1 background
    depth: np.ndarray  # (H, W) metres, +inf background


@dataclass(frozen=True)
class _Occluder:
    start: float  # s
    size: tuple[float, float, float]  # width, height, depth (m)
    origin: np.ndarray  # (3,) world position at `start`
    velocity: np.ndarray  # (3,) m/s
    colour: np.ndarray


class SyntheticSequence:
    """A deterministic synthetic video of `n_people` people in a domain.

    Everything random is drawn from `seed` when the sequence is created; `frame(i)` renders
    frame i on demand (so frames can be rendered in any order or in parallel and are always
    the same bytes). Frame i has stamp `start_ns + i / fps`.
    """

    def __init__(self, domain: DomainConfig, seed: int, duration_s: float, n_people: int = 1,
                 body: BodyModel | None = None, start_ns: int = 1_700_000_000_000_000_000,
                 spacing: float = 1.2) -> None:
        self.domain = domain
        self.seed = seed
        self.body = body or BodyModel()
        self.fps = domain.fps
        self.n_frames = max(1, int(round(duration_s * self.fps)))
        self.start_ns = start_ns
        rng = np.random.default_rng(seed)
        self.camera = camera_intrinsics(domain, rng)
        cam = domain.camera
        self.people: list[Person] = []
        for k in range(n_people):
            motion = generate_motion(int(rng.integers(1 << 31)), self.n_frames / self.fps,
                                     self.fps, domain.people.actions)
            motion = motion.slice(0, self.n_frames)
            offset = np.array([(k - (n_people - 1) / 2.0) * spacing, 0.0])
            app = sample_appearance(rng, domain.people.clothing)
            self.people.append(Person(k + 1, self.body, motion, sample_betas(rng, domain), app,
                                       offset, int(rng.integers(1 << 30))))
        self.distance = _u(rng, cam.distance)
        self.cam_height = _u(rng, cam.height)
        self.look_height = _u(rng, cam.look_at_height)
        self.azimuth = np.deg2rad(_u(rng, cam.azimuth))
        self.roll = np.deg2rad(cam.roll_deg) * rng.standard_normal()
        # Handheld shake: a few sinusoids per axis around shake_hz, scaled to shake_deg std.
        t = np.arange(self.n_frames) / self.fps
        self.shake = np.zeros((self.n_frames, 3))
        if cam.shake_deg > 0:
            for axis in range(3):
                for _ in range(3):
                    f = cam.shake_hz * rng.uniform(0.5, 1.8)
                    self.shake[:, axis] += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
            self.shake *= np.deg2rad(cam.shake_deg) / np.sqrt(1.5)
        roots = np.mean([p.world_root for p in self.people], axis=0)  # (T, 3)
        slow = _smooth(roots[:, [0, 2]], int(1.0 * self.fps) | 1)
        fast = _smooth(roots[:, [0, 2]], int(0.3 * self.fps) | 1)
        self.track = slow
        self.aim = slow + cam.follow * (fast - slow)
        centre = roots[:, [0, 2]].mean(0)
        extent = np.abs(roots[:, [0, 2]] - centre).max() + self.distance + 3.0
        self.backdrop = Backdrop(sample_background(
            rng, domain.scene.background, (float(centre[0]), float(centre[1])), float(extent)))
        sc = domain.scene
        self.ambient = _u(rng, sc.ambient)
        self.intensity = _u(rng, sc.intensity)
        az, el = rng.uniform(-np.pi, np.pi), np.deg2rad(rng.uniform(30, 70))
        self.light_world = np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])
        self.blur = _u(rng, domain.sensor.blur_sigma)
        self.gain = 1.0 + domain.sensor.gain_std * rng.standard_normal(3)
        self.gamma = _u(rng, domain.sensor.gamma)
        self.occluders = self._sample_occluders(rng)
        self.frame_seeds = rng.integers(1 << 31, size=self.n_frames)

    def __len__(self) -> int:
        return self.n_frames

    def _sample_occluders(self, rng: np.random.Generator) -> list[_Occluder]:
        sc = self.domain.scene
        duration = self.n_frames / self.fps
        n = rng.poisson(sc.occluders_per_10s * duration / 10.0) if sc.occluders_per_10s else 0
        out = []
        hfov = np.arctan(self.camera.width / (2 * self.camera.K[0, 0]))
        for _ in range(n):
            start = rng.uniform(-1.0, duration)
            i = int(np.clip(start * self.fps, 0, self.n_frames - 1))
            rot, pos = self.pose(i)
            depth = self.distance * rng.uniform(0.35, 0.75)
            half = depth * np.tan(hfov) + 0.6
            side = rng.choice([-1.0, 1.0])
            speed = _u(rng, sc.occluder_speed)
            right = rot[:, 0] * np.array([1.0, 0.0, 1.0])
            right /= np.linalg.norm(right)
            fwd = rot[:, 2] * np.array([1.0, 0.0, 1.0])
            fwd /= np.linalg.norm(fwd)
            size = (_u(rng, sc.occluder_width), _u(rng, sc.occluder_height),
                    rng.uniform(0.1, 0.4))
            origin = pos * np.array([1.0, 0.0, 1.0]) + fwd * depth - right * side * half
            origin[1] = size[1] / 2.0
            out.append(_Occluder(start, size, origin, right * side * speed,
                                 rng.uniform(0.1, 0.9, 3)))
        return out

    def pose(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Camera-to-world rotation (3, 3) and camera position (3,) at frame i."""
        offset = np.array([np.sin(self.azimuth), 0.0, np.cos(self.azimuth)]) * self.distance
        pos = np.array([self.track[i, 0], self.cam_height, self.track[i, 1]]) + offset
        target = np.array([self.aim[i, 0], self.look_height, self.aim[i, 1]])
        rot = look_at(pos, target) @ _rot(2, self.roll)
        sx, sy, sz = self.shake[i]
        rot = rot @ _rot(0, sx) @ _rot(1, sy) @ _rot(2, sz)
        return rot, pos

    def stamp_ns(self, i: int) -> int:
        return self.start_ns + int(round(i * 1e9 / self.fps))

    def frame(self, i: int) -> SyntheticFrame:
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} outside 0..{self.n_frames - 1}")
        rng = np.random.default_rng(self.frame_seeds[i])
        rot, pos = self.pose(i)
        K, w, h = self.camera.K, self.camera.width, self.camera.height
        states = [p.state(i, rot, pos) for p in self.people]
        meshes = [p.mesh(s.vertices) for p, s in zip(self.people, states)]
        t = i / self.fps
        for occ in self.occluders:
            centre = occ.origin + occ.velocity * (t - occ.start)
            v, f = box_mesh(centre, occ.size)
            meshes.append(RenderMesh((v - pos) @ rot, f, np.tile(occ.colour, (8, 1)),
                                     smooth=False))
        bright = self.ambient + 0.6 * self.intensity
        shadows = [(s.root_world[0], s.root_world[2], 0.35) for s in states]
        bg = self.backdrop.render(K, rot, pos, w, h, bright, shadows)
        light = Light(tuple(rot.T @ self.light_world), self.intensity, self.ambient)
        res = render(meshes, K, w, h, bg, light)
        image = apply_sensor(rng, res.image, self.blur, self.gain, self.gamma,
                        self.domain.sensor.noise_std)
        views, detections, truth = [], [], {}
        js = get_joint_set(self.domain.detector.format)
        mapping = js.matrix()
        margins_src = np.r_[np.full(24, JOINT_DEPTH_MARGIN),
                            np.full(NUM_SOURCE - 24, LANDMARK_DEPTH_MARGIN)]
        margins = np.maximum(mapping @ margins_src, LANDMARK_DEPTH_MARGIN)
        for k, s in enumerate(states):
            mine = res.object == k
            box = None
            if mine.any():
                ys, xs = np.nonzero(mine)
                box = np.array([xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5],
                               dtype=np.float32)
            joints3d = mapping @ s.points
            uv, vis = visible_points(joints3d, K, res.object, res.depth, k, margins)
            in_image = (uv[:, 0] >= -0.5) & (uv[:, 0] <= w - 0.5) & (uv[:, 1] >= -0.5) \
                & (uv[:, 1] <= h - 0.5) & (joints3d[:, 2] > 0.05)
            gt = Keypoints(js.name, uv.astype(np.float32), vis.astype(np.float32))
            box_h = float(box[3] - box[1]) if box is not None else 100.0
            kp = detector_noise(rng, uv, vis, in_image, box_h, self.domain)
            views.append(PersonView(s.id, s.params, s.points.astype(np.float32), gt, kp, box,
                                    int(mine.sum())))
            if box is not None:
                detections.append(Detection(s.id, kp, box))
            truth[s.id] = s.params
        frame = Frame(image=image, stamp_ns=self.stamp_ns(i), camera=self.camera,
                      detections=tuple(detections), index=i, ground_truth=truth)
        return SyntheticFrame(frame, tuple(views), res.label, res.object, res.depth)

    def __iter__(self):
        for i in range(self.n_frames):
            yield self.frame(i)


# ------------------------------------------------------------------------ training crops


@dataclass(frozen=True)
class TrainingCrop:
    """One person rendered straight into a square crop, with labels.

    image (R, R, 3) uint8; pose (24, 3) axis-angle (root in the camera frame); betas (10,);
    transl (3,) camera frame; points3d (46, 3) camera frame; points2d (46, 2) normalised crop
    coordinates; visible (46,) bool; box (3,) [cx, cy, size] in the full image; K (3, 3) of the
    full image.
    """

    image: np.ndarray
    pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    points3d: np.ndarray
    points2d: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    K: np.ndarray


def render_training_crop(domain: DomainConfig, rng: np.random.Generator, body: BodyModel,
                         motion: MotionClip, input_size: int, supersample: int = 2,
                         box_jitter: float = 0.08) -> TrainingCrop:
    """A random frame of `motion` with a random person and camera of `domain`, cropped the way
    inference crops (a box from the detector's keypoints, with scale and centre jitter)."""
    seq_seed = int(rng.integers(1 << 31))
    seq_rng = np.random.default_rng(seq_seed)
    cam = domain.camera
    camera = camera_intrinsics(domain, seq_rng)
    K = camera.K
    i = int(rng.integers(len(motion)))
    clip = motion.slice(i, i + 1)
    person = Person(1, body, clip, sample_betas(seq_rng, domain),
                     sample_appearance(seq_rng, domain.people.clothing), np.zeros(2),
                     int(seq_rng.integers(1 << 30)))
    root = person.world_root[0]
    az = np.deg2rad(_u(seq_rng, cam.azimuth))
    dist = _u(seq_rng, cam.distance)
    pos = np.array([root[0] + dist * np.sin(az), _u(seq_rng, cam.height),
                    root[2] + dist * np.cos(az)])
    # The aim wanders as it does in a stream (follow < 1, shake), so people are not always
    # centred; the crop recentres them anyway.
    wander = (1.0 - cam.follow) * 0.4 * seq_rng.standard_normal(2)
    target = np.array([root[0] + wander[0], _u(seq_rng, cam.look_at_height), root[2] + wander[1]])
    rot = look_at(pos, target) @ _rot(2, np.deg2rad(cam.roll_deg) * seq_rng.standard_normal())
    if cam.shake_deg > 0:
        for axis in range(3):
            rot = rot @ _rot(axis, np.deg2rad(cam.shake_deg) * seq_rng.standard_normal())
    state = person.state(0, rot, pos)
    js = get_joint_set(domain.detector.format)
    joints2d = perspective_project(js.matrix() @ state.points, K, min_depth=None)
    box = box_from_keypoints(joints2d, np.ones(len(joints2d)))
    box = box * np.array([1.0, 1.0, 1.0 + box_jitter * rng.standard_normal()])
    box[:2] += box_jitter * 0.5 * box[2] * rng.standard_normal(2)
    r = input_size * supersample
    A = crop_matrix(box, r)
    K_crop = A @ K
    sc = domain.scene
    ambient, intensity = _u(seq_rng, sc.ambient), _u(seq_rng, sc.intensity)
    style = sample_background(seq_rng, sc.background, (float(root[0]), float(root[2])), 8.0)
    bg = render_background(style, K_crop, rot, pos, r, r, ambient + 0.6 * intensity,
                           [(root[0], root[2], 0.35)])
    az_l, el_l = seq_rng.uniform(-np.pi, np.pi), np.deg2rad(seq_rng.uniform(30, 70))
    light_w = np.array([np.cos(el_l) * np.sin(az_l), np.sin(el_l), np.cos(el_l) * np.cos(az_l)])
    res = render([person.mesh(state.vertices)], K_crop, r, r, bg,
                 Light(tuple(rot.T @ light_w), intensity, ambient))
    image = cv2.resize(res.image, (input_size, input_size), interpolation=cv2.INTER_AREA)
    # Sensor effects at the crop's resolution: blur scaled from stream pixels to crop pixels.
    scale = input_size / box[2]
    gain = 1.0 + domain.sensor.gain_std * seq_rng.standard_normal(3)
    image = apply_sensor(rng, image, _u(seq_rng, domain.sensor.blur_sigma) * scale, gain,
                    _u(seq_rng, domain.sensor.gamma), domain.sensor.noise_std)
    margins = np.r_[np.full(24, JOINT_DEPTH_MARGIN), np.full(NUM_SOURCE - 24,
                                                             LANDMARK_DEPTH_MARGIN)]
    _, vis = visible_points(state.points, K_crop, res.object, res.depth, 0, margins)
    uv = perspective_project(state.points, K, min_depth=None)
    points2d = (uv - box[:2]) / (box[2] / 2.0)
    return TrainingCrop(
        image=image, pose=state.params.full_pose().astype(np.float32),
        betas=state.params.betas.astype(np.float32), transl=state.params.transl,
        points3d=state.points.astype(np.float32), points2d=points2d.astype(np.float32),
        visible=vis, box=box.astype(np.float32), K=K.astype(np.float32))

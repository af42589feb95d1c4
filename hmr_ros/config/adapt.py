"""The `adapt` section: online adaptation and its method sections (losses, teacher, Adam,
drift guard, source replay, motion cues, DAPA, DualNet, the adaptation thread)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from .choices import (
    DapaPose,
    DapaTexture,
    FlowPreset,
    InnerMode,
    Method,
    Schedule,
    Scope,
    WorkerKind,
)
from .coerce import ConfigError, Section, option, section


@dataclass(frozen=True)
class LossConfig(Section):
    """Weights of the single-frame terms L_F and of the motion terms of L_T (BOA's values)."""

    keypoints: float = option(10.0, "L_F: confidence-weighted 2D reprojection")
    pose_prior: float = option(1e-4, "L_F: GMM pose prior")
    shape_prior: float = option(2e-6, "L_F: squared betas")
    motion: float = option(0.1, "L_T: 2D keypoint motion over tau frames")
    anchor: float = option(0.0, "L_T: pose and shape near the frozen source model's estimate")

    def validate(self, p: str) -> None:
        weights = dataclasses.asdict(self)
        if any(v < 0 for v in weights.values()):
            raise ConfigError(f"{p}* loss weights must be >= 0, got {weights}")


@dataclass(frozen=True)
class TeacherConfig(Section):
    """The mean teacher (an EMA of the student) and its consistency term in L_T."""

    weight: float = option(0.1, "L_T: mean-teacher consistency")
    decay: float = option(0.1, "teacher = decay * teacher + (1 - decay) * student")

    def validate(self, p: str) -> None:
        if self.weight < 0:
            raise ConfigError(f"{p}weight must be >= 0, got {self.weight}")
        if not 0.0 <= self.decay < 1.0:
            raise ConfigError(f"{p}decay must be in [0, 1)")


@dataclass(frozen=True)
class AdamConfig(Section):
    """Adam of the upper level (and of every baseline)."""

    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")

    def validate(self, p: str) -> None:
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ConfigError(f"{p}beta1 and beta2 must be in [0, 1)")


@dataclass(frozen=True)
class GuardConfig(Section):
    """The drift guard (adapt/guard.py): rolls back steps that go wrong."""

    loss_factor: float = option(20.0, "roll back when a loss exceeds this times the median")
    disagreement: float = option(0.25, "m, roll back when student and teacher drift apart")
    max_consecutive_rollbacks: int = option(
        10, "after this many rollbacks in a row, reset to the source weights (said in the "
            "status) instead of rolling back to the same snapshot for ever")

    def validate(self, p: str) -> None:
        if self.loss_factor <= 1.0 or self.disagreement <= 0:
            raise ConfigError(f"{p}loss_factor must be > 1, {p}disagreement > 0")
        if self.max_consecutive_rollbacks < 1:
            raise ConfigError(f"{p}max_consecutive_rollbacks must be >= 1")


@dataclass(frozen=True)
class FlowConfig(Section):
    """Motion cues (adapt/flow_term.py, docs/adaptation_tuning.md "Motion cues"): the image
    flow between consecutive crops against the projected mesh's displacement."""

    weight: float = option(0.0, "L_T += weight * the flow term (OpenCV DIS on the adaptation "
                                "thread, over vertices visible in both frames); 0 = off. The "
                                "keypoint motion term stays; set adapt.loss.motion to 0 to "
                                "replace it")
    preset: FlowPreset = option("fast", "OpenCV DIS preset: ultrafast | fast | medium")

    def validate(self, p: str) -> None:
        if self.weight < 0:
            raise ConfigError(f"{p}weight must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class ReplayConfig(Section):
    """Labelled source crops replayed as BOA's L_S."""

    count: int = option(0, "source crops rendered at start for L_S (0 = no replay)")
    weight: float = option(0.1, "L_F: labelled source replay (only with count > 0)")

    def validate(self, p: str) -> None:
        if self.weight < 0:
            raise ConfigError(f"{p}weight must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class DapaConfig(Section):
    """DAPA (adapt/dapa.py): labelled synthetic crops in the target's own looks as an extra
    supervised term L_syn (BOA's L_S, both levels; the baselines' single objective)."""

    weight: float = option(0.0, "weight of L_syn; 0 = off. Rendered on the adaptation thread "
                                "every `every` steps, `batch` crops at a time")
    noise: float = option(0.5, "s in z * (1 + s * eps), eps ~ U[0, 1] (the paper's code: 0.5)")
    batch: int = option(2, "synthetic crops per step")
    every: int = option(1, "render a new synthetic batch every this many steps (reused "
                           "between)")
    pose: DapaPose = option("target", "target (perturbed estimates) | random (pose VAE prior "
                                      "samples)")
    texture: DapaTexture = option("target", "target (part colours from the crops) | plain "
                                            "(grey body)")
    history: int = option(8, "recent crops per person for colours and the background median")
    vae: str = option("", "pose VAE .npz; empty = the shipped weights/pose_vae.npz")

    def validate(self, p: str) -> None:
        if self.weight < 0:
            raise ConfigError(f"{p}weight must be >= 0, got {self.weight}")
        if min(self.batch, self.every, self.history) < 1 or self.noise < 0:
            raise ConfigError(f"{p}batch, {p}every and {p}history must be >= 1, "
                              f"{p}noise >= 0")


@dataclass(frozen=True)
class DualNetConfig(Section):
    """DualNet (adapt/dualnet.py): the auxiliary regressor's pseudo-SMPL term, meta-training's
    test-time loss, meant with the DualNet start (inference.weights =
    weights/hmr_small_dualnet.pt), whose auxiliary network is beside it."""

    weight: float = option(0.0, "L_F += weight * the pseudo-SMPL term against the auxiliary "
                                "regressor's prediction for the same crops; 0 = off")
    aux: str = option("", "auxiliary checkpoint; empty = weights/hmr_small_dualnet.pt.aux.pt")

    def validate(self, p: str) -> None:
        if self.weight < 0:
            raise ConfigError(f"{p}weight must be >= 0, got {self.weight}")


@dataclass(frozen=True)
class WorkerConfig(Section):
    """Where and how the adaptation thread runs."""

    # A thread shares the inference process's interpreter: its Python-level work (batch
    # assembly, the optimiser's loop, the guard) competes for the GIL with inference and the
    # ROS executor. A process has its own interpreter and gets weights back through shared
    # memory (adapt/process_worker.py).
    kind: WorkerKind = option("thread", "thread: adapt in a thread of the inference process "
                                        "| process: in a child process of its own (own "
                                        "interpreter and GIL; weights come back through "
                                        "shared memory; restarted from the last accepted "
                                        "weights if it dies)")
    threads: int = option(1, "with kind process: torch threads of the adaptation process")

    # Higher niceness lets the inference and ROS threads preempt the adaptation thread when
    # the CPUs are busy, so adaptation takes the time they leave.
    thread_nice: int = option(10, "added to the OS niceness of the adaptation thread (Linux; "
                                  "0-19)")
    device: str = option("", "where the adapter's copies (student, teacher, source) and its "
                             "steps live: \"\" = the inference device, or cpu | cuda | "
                             "cuda:N; published weights move to the backend's device")
    save_path: str = option("", "where `save` writes adapted weights (empty: "
                                "runs/adapted.pt)")
    catch_up: int = option(1, "with schedule latest: a step stands for the frames that "
                              "arrived since the previous one, up to this many, its outer "
                              "learning rate scaled by their count (1 = off); lock-step runs "
                              "step on every frame, so they are unchanged")

    def validate(self, p: str) -> None:
        if self.threads < 1:
            raise ConfigError(f"{p}threads must be >= 1, got {self.threads}")
        if self.catch_up < 1:
            raise ConfigError(f"{p}catch_up must be >= 1, got {self.catch_up}")
        if not 0 <= self.thread_nice <= 19:
            raise ConfigError(f"{p}thread_nice must be in 0..19, got {self.thread_nice}")
        if not re.fullmatch(r"(cpu|cuda(:\d+)?)?", self.device):
            raise ConfigError(f"{p}device must be empty (the inference device), cpu, cuda or "
                              f"cuda:N, got {self.device!r}")


@dataclass(frozen=True)
class AdaptConfig(Section):
    """Online adaptation (BOA and its baselines). Loss weights, Adam betas, tau and the
    teacher follow BOA (CVPR 2021); the two learning rates are tuned for our regressor."""

    enabled: bool = option(True, "adapt online from the start (switch with "
                                 "~/set_adaptation or this parameter at run time)")
    method: Method = option("boa_2nd", "none | framewise (B1) | joint (B3) | two_stage | "
                                       "boa_1st | boa_2nd")
    # layer4_head at outer_lr 1e-4 by the rule of docs/adaptation_tuning.md: the best
    # PA-MPJPE on both tuning domains' report seeds and 2.7x the lock-step steps/s of all at
    # 3e-5.
    scope: Scope = option("layer4_head", "the weights that adapt: all (BOA; with outer_lr "
                                         "3e-5) | layer4_head | head | norm")
    schedule: Schedule = option("latest", "every_frame | every_n | latest (newest frame, as "
                                          "fast as possible)")
    every_n: int = option(2, "with schedule every_n: adapt on every n-th frame")
    steps_per_frame: int = option(1, "adaptation steps on one frame before taking the next")
    batch_frames: int = option(1, "frames per step: the newest plus recent ones of the same "
                                  "people")
    buffer_frames: int = option(16, "recent frames kept per person (>= tau + 1)")
    tau: int = option(5, "frames between the two ends of the motion term")
    keypoint_threshold: float = option(0.2, "keypoints below this confidence do not enter "
                                            "the losses")
    min_keypoints: int = option(6, "people with fewer usable keypoints are not adapted on")
    # Rates tuned on pw3d_like streams (seeds 100, 101; docs/adaptation_tuning.md): BOA's own
    # 8e-6 / 3e-6 leave our small regressor under-adapted, larger probes are unstable.
    inner_lr: float = option(1e-3, "lower-level step (BOA's weight probe); BOA: 8e-6")
    inner_mode: InnerMode = option("sgd", "sgd (BOA) | adam: probe preconditioned like the "
                                          "outer Adam")
    outer_lr: float = option(1e-4, "Adam on the upper level (and every baseline); BOA: 3e-6; "
                                   "scope all: 3e-5")
    reset_each_frame: bool = option(
        False, "per-frame test-time optimisation (EFT's and DualNet's protocol, `hmr-ros bench "
               "tto`): back to the start weights with a fresh optimiser before each frame's "
               "steps_per_frame steps. For evaluation: in the node it throws away what "
               "adaptation learnt at every frame")
    loss: LossConfig = section(LossConfig, "loss weights")
    teacher: TeacherConfig = section(TeacherConfig, "mean teacher")
    adam: AdamConfig = section(AdamConfig, "Adam of the upper level")
    guard: GuardConfig = section(GuardConfig, "drift guard")
    replay: ReplayConfig = section(ReplayConfig, "source replay (L_S)")
    flow: FlowConfig = section(FlowConfig, "motion cues from optical flow")
    dapa: DapaConfig = section(DapaConfig, "DAPA synthetic supervision")
    dualnet: DualNetConfig = section(DualNetConfig, "DualNet's pseudo-SMPL term")
    worker: WorkerConfig = section(WorkerConfig, "the adaptation thread")

    def validate(self, p: str) -> None:
        if not (self.inner_lr > 0 and self.outer_lr > 0):
            raise ConfigError(f"{p}inner_lr and {p}outer_lr must be > 0, got "
                              f"{self.inner_lr} and {self.outer_lr}")
        if self.tau < 1 or self.buffer_frames < self.tau + 1:
            raise ConfigError(f"{p}tau must be >= 1 and {p}buffer_frames >= tau + 1")
        if min(self.every_n, self.steps_per_frame, self.batch_frames) < 1:
            raise ConfigError(f"{p}every_n, steps_per_frame and batch_frames must be >= 1")

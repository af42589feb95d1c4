"""The choices of the configuration's `Literal` fields, and their tuples."""

from __future__ import annotations

from typing import Literal

Backend = Literal["torch", "onnxruntime", "tensorrt"]
Method = Literal["none", "framewise", "joint", "two_stage", "boa_1st", "boa_2nd"]
Schedule = Literal["every_frame", "every_n", "latest"]
FlowPreset = Literal["ultrafast", "fast", "medium"]  # OpenCV DIS (data/optical_flow.py)
# Which weights adaptation changes (adapt/scope.py): all of them (BOA), the last backbone
# stage and the head, the head only, or the normalisation layers' affine weights.
Scope = Literal["all", "layer4_head", "head", "norm"]
InnerMode = Literal["sgd", "adam"]
DapaPose = Literal["target", "random"]
DapaTexture = Literal["target", "plain"]
DetectorKind = Literal["auto", "none", "mediapipe", "mediapipe_hog"]
TemporalMode = Literal["causal", "lookahead"]
TemporalBranches = Literal["both", "global", "local"]
Gender = Literal["neutral", "male", "female"]
# Where adaptation steps run (adapt/worker.py, adapt/process_worker.py): a thread of the
# inference process, or a child process with its own interpreter (and GIL).
WorkerKind = Literal["thread", "process"]

BACKENDS = Backend.__args__
METHODS = Method.__args__
SCHEDULES = Schedule.__args__
FLOW_PRESETS = FlowPreset.__args__
SCOPES = Scope.__args__
DAPA_POSES = DapaPose.__args__
DAPA_TEXTURES = DapaTexture.__args__
DETECTORS = DetectorKind.__args__
TEMPORAL_MODES = TemporalMode.__args__
TEMPORAL_BRANCHES = TemporalBranches.__args__
WORKER_KINDS = WorkerKind.__args__

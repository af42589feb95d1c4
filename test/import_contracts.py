"""The import contracts of hmr_ros, checked by test/test_layers.py. Edit them here.

Names are modules or packages relative to `hmr_ros` ("data.frame" is hmr_ros.data.frame,
"__init__" the package itself, "msg" the messages a colcon build generates); a name covers its
submodules. Every import counts: at module level, inside functions, under `TYPE_CHECKING`.
A contract also holds through chains: if a may not import c, neither may a import b that
imports c.

LAYERS, lowest first: every module belongs to the layer of its longest matching name and
imports only its own layer and lower ones. A new module inside a listed package needs nothing;
a new top-level module or package needs its name in one layer here (one line), then
`python test/test_layers.py --write-docs` rewrites the "Layers" section of
docs/architecture.md, which the test compares with this file.

CONTRACTS: rules inside the layers. `Forbidden`: the modules never import those names (a
module may always import itself and its own submodules). `Independent`: none of the names
imports another. `Layers`: inside a package, lowest first, a group never imports a later
group, and names joined by " | " in one group import neither each other; modules of the
package left out are free. `ignore` lists import edges ("a -> b") a contract does not count,
each with its reason in the rule.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Forbidden:
    rule: str
    modules: tuple[str, ...]
    forbidden: tuple[str, ...]
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class Independent:
    rule: str
    modules: tuple[str, ...]
    ignore: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layers:
    rule: str
    package: str
    layers: tuple[str, ...]
    ignore: tuple[str, ...] = ()


# (name, modules, what), lowest first.
LAYERS: list[tuple[str, tuple[str, ...], str]] = [
    ("foundation", ("__init__", "version", "jsonio", "npzio", "resources", "envcheck",
                    "provenance", "progress", "logs", "geometry", "errors", "config",
                    "threads"),
     "strict JSON, package files, which OpenCV, the environment of a result, progress bars, "
     "throttled warnings, background threads' OS priority, rotations and cameras, "
     "`HmrRosError` (the base of every user error), the one typed configuration and its one "
     "coercion"),
    ("records", ("data.frame", "body"),
     "`Frame`, `CameraModel`, `Keypoints`, `Detection`, `BodyParams`, `PersonEstimate`, "
     "`FrameResult`; the SMPL body model"),
    # Right above the records: messages need only them and the foundation, so any part may
    # convert to and from messages.
    ("messages", ("messages",),
     "the ROS-free message layer: conversions by message family, TF frames, CDR, .msg "
     "definitions, rosbag2 I/O"),
    ("parts", ("data", "render", "world", "model", "detect"),
     "crops, video input, frame cache; the rasteriser and shading (the world's and DAPA's); "
     "the synthetic world; the regressor, checkpoints and backends; keypoint sources, "
     "tracker, `DetectionStage`"),
    ("adaptation", ("adapt",),
     "losses, methods, pose prior, drift guard, `AdaptationWorker` and its process twin"),
    ("temporal", ("temporal",),
     "TAR-style temporal refinement: `TemporalRefiner`, the per-track `TemporalStage` "
     "(causal / lookahead), the regressor's features, the refiner's checkpoints"),
    ("pipeline", ("pipeline", "source_replay"),
     "`Pipeline` (Frame -> FrameResult), `build_pipeline`; the source replay set its callers "
     "hand it"),
    ("stream", ("stream",),
     "every input's frames by one rule (`frames.py`), the one runner (`runner.py`), the bag "
     "sink"),
    ("eval", ("eval",),
     "metrics, `StreamEvaluator`, the evaluator / keypoint-error / overlay sinks, "
     "`hmr-ros eval`, scoring a recorded bag"),
    ("commands", ("replay", "demo", "synth", "train", "train_temporal", "pose_vae_train",
                  "train_meta", "train_meta_config", "meta_gradient", "bench", "cli",
                  "cli_train", "cli_export"),
     "the `hmr-ros` commands"),
    ("ros", ("ros", "msg"),
     "the rclpy node, its parameters, input adapter, sink and diagnostics, the bag player and "
     "recorder and the launch runner"),
]

# Names that exist only in a built workspace, not in the source tree.
GENERATED = ("msg",)

CONTRACTS = [
    # records
    Forbidden("data.frame holds the records alone: it imports no other module of data/",
              ("data.frame",), ("data",)),
    Forbidden("body/ is below data.frame, whose keypoints use its joint sets: it imports "
              "nothing of data/", ("body",), ("data",)),
    Forbidden("body.joints (the joint sets) is the base of body/: it imports none of it",
              ("body.joints",), ("body",)),
    Layers("inside config/: the coercion and section machinery, the choices, then the "
           "sections", "config", ("coerce | choices", "adapt | perception")),
    # messages
    Forbidden("messages.factory (message construction, ConversionError) is the base of "
              "messages/: it imports none of it", ("messages.factory",), ("messages",)),
    # parts
    Forbidden("data/ is the parts' base: it imports none of world/, model/, detect/",
              ("data",), ("world", "model", "detect")),
    Independent("the synthetic world, the regressor and the detectors are independent parts; "
                "detect.base names world.scene's sequences in type hints only (the synthetic "
                "keypoint source takes any such sequence)", ("world", "model", "detect"),
                ignore=("detect.base -> world.scene",)),
    Layers("inside world/: the domains, motions and looks are independent; the scene "
           "assembles them", "world", ("domain | motion | appearance", "background", "scene")),
    Layers("inside world.motion: joint limits, then motion blocks, then actions and gaits, "
           "then clips", "world.motion", ("limits", "blocks", "actions | gait", "clip")),
    Layers("inside model/: the network, then what stores and exports it, then the inference "
           "backends", "model", ("config | errors", "resnet", "hmr", "checkpoint | export",
                                 "importers | weights", "backends")),
    Forbidden("model.backends.base (the Backend interface) is imported by the backends and "
              "imports none of them", ("model.backends.base",), ("model.backends",)),
    Forbidden("detect.base (the keypoint source interface) is imported by detect/ and "
              "imports none of it", ("detect.base",), ("detect",)),
    # adaptation and temporal
    Forbidden("adapt.losses (pure functions of tensors) imports nothing else in adapt/",
              ("adapt.losses",), ("adapt",)),
    Layers("inside adapt/: tensor losses and helpers, the seed methods' terms, the step's batch "
           "records, the batch and gradient builders, the adapter, then the guard and the "
           "augmenters, the step core, the worker, and the process worker (its child's side, "
           "the child's handle, the parent's side) on top",
           "adapt", ("losses | device | commands | scope | prior | dualnet | samples | "
                     "shared_weights", "flow_term | dapa", "batch", "bilevel | assemble",
                     "methods", "guard | augment", "stepper", "worker", "process_child",
                     "process_handle", "process_worker")),
    Layers("inside temporal/: window, kinematics and the regressor's features, then the "
           "refiner network, then refinement and checkpoints, then the per-track stage",
           "temporal", ("window | kinematics | features", "model", "refine | checkpoint",
                        "stage")),
    # commands
    Forbidden("the commands below the benchmarks import neither bench/ nor the cli "
              "dispatcher", ("replay", "demo", "synth", "train", "train_meta",
                             "train_temporal", "pose_vae_train"), ("bench", "cli")),
    Forbidden("bench/ is dispatched by the cli and never imports it", ("bench",), ("cli",)),
]

"""The synthetic world is a ROS-free source of Frames: it may build on the foundations, the body
models, the renderer (`hmr_ros.render`) and the records of data/ (`data/frame.py`,
`data/crop.py`), never on the stream, the learning code, the models, the pipeline and its
source replay set, the entry points or ROS (docs/architecture.md, "Layers" and "The
synthetic world")."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hmr_ros

ROOT = Path(hmr_ros.__file__).parent
WORLD = ROOT / "world"
ALLOWED_DATA = ("hmr_ros.data.frame", "hmr_ros.data.crop")
FORBIDDEN = ("hmr_ros.ros", "hmr_ros.pipeline", "hmr_ros.source_replay", "hmr_ros.adapt",
             "hmr_ros.model", "hmr_ros.eval", "hmr_ros.bench", "hmr_ros.cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Absolute names of every module `source` imports, at any depth of the file (function-level
    imports included) and through `importlib.import_module("...")` with a literal name.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are
    resolved against `module` (a package resolves `.` to itself).
    """
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names if alias.name != "*")
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name)
                       and node.func.id in ("import_module", "__import__")))):
            out.add(node.args[0].value)
    return out


def violations(imports: set[str]) -> list[str]:
    """Imports a world module may not make."""
    bad = []
    for name in sorted(imports):
        if not name.startswith("hmr_ros."):
            continue
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
            bad.append(name)
        elif name.startswith("hmr_ros.data.") and not any(
                name == a or name.startswith(a + ".") for a in ALLOWED_DATA):
            bad.append(name)
    return bad


def _world_files() -> list[Path]:
    return sorted(WORLD.rglob("*.py"))


def test_the_import_reader_finds_what_the_layer_rule_forbids():
    # A module deep in the package, with a lazy import, a relative import that climbs out of the
    # world, a from-package import of a data module and an importlib call: all must be caught.
    source = (
        "from ...geometry import axis_quaternion_np\n"
        "from ...data import frame, bag\n"
        "def f():\n"
        "    from ...pipeline import Pipeline\n"
        "    import importlib\n"
        "    return importlib.import_module('hmr_ros.ros.node')\n"
        "class C:\n"
        "    def g(self):\n"
        "        from ...data.synth import write_trainset\n"
    )
    found = imported_modules(source, "hmr_ros.world.motion.x", is_package=False)
    assert {"hmr_ros.geometry", "hmr_ros.data.frame", "hmr_ros.pipeline",
            "hmr_ros.ros.node", "hmr_ros.data.synth"} <= found
    bad = violations(found)
    assert {"hmr_ros.data.bag", "hmr_ros.data.synth", "hmr_ros.pipeline",
            "hmr_ros.ros.node"} <= set(bad)
    assert not [b for b in bad if b.startswith(("hmr_ros.geometry", "hmr_ros.data.frame"))]
    # In a package's __init__, "." is the package itself.
    assert "hmr_ros.world.motion.clip" in imported_modules(
        "from .clip import generate_motion\n", "hmr_ros.world.motion", is_package=True)


def test_world_modules_import_only_lower_layers():
    files = _world_files()
    names = {_module_name(p) for p in files}
    assert {"hmr_ros.world.scene", "hmr_ros.world.domain", "hmr_ros.world.motion",
            "hmr_ros.world.motion.clip"} <= names
    seen: set[str] = set()
    offenders = {}
    for path in files:
        found = imported_modules(path.read_text(), _module_name(path),
                                 path.name == "__init__.py")
        seen |= found
        bad = violations(found)
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert not offenders, offenders
    # The reader really saw the world's imports (an empty scan would pass vacuously).
    assert {"hmr_ros.data.frame", "hmr_ros.data.crop", "hmr_ros.geometry",
            "hmr_ros.body.joints", "hmr_ros.world.motion"} <= seen


def test_importing_the_world_loads_no_higher_layer():
    """Transitively too: what the world's imports import must stay below it."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import hmr_ros.world as w\n"
        "for m in pkgutil.walk_packages(w.__path__, 'hmr_ros.world.'):\n"
        "    importlib.import_module(m.name)\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('hmr_ros'))))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = set(res.stdout.split())
    assert "hmr_ros.world.scene" in loaded and "hmr_ros.world.motion.gait" in loaded
    assert violations(loaded) == []

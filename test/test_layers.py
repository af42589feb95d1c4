"""The package's layers import downward only, and no module imports itself back in a cycle.

The layers (docs/architecture.md, "Layers"), lowest first. A module may import modules of its
own layer or of a lower one, never of a higher one; this is read from the source (every
`import` and `from ... import`, including those inside functions), so a lazy import cannot
hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "hmr_ros"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("hmr_ros", "hmr_ros.version", "hmr_ros.jsonio", "hmr_ros.npzio",
                    "hmr_ros.resources",
                    "hmr_ros.envcheck", "hmr_ros.provenance", "hmr_ros.progress", "hmr_ros.logs",
                    "hmr_ros.geometry", "hmr_ros.config")),
    ("records", ("hmr_ros.data.frame", "hmr_ros.body")),
    ("parts", ("hmr_ros.data", "hmr_ros.render", "hmr_ros.world", "hmr_ros.model",
               "hmr_ros.detect")),
    ("adaptation", ("hmr_ros.adapt",)),
    ("temporal", ("hmr_ros.temporal",)),
    ("pipeline", ("hmr_ros.pipeline", "hmr_ros.source_replay")),
    ("messages", ("hmr_ros.messages",)),
    ("stream", ("hmr_ros.stream",)),
    ("eval", ("hmr_ros.eval",)),
    ("commands", ("hmr_ros.replay", "hmr_ros.demo", "hmr_ros.synth", "hmr_ros.train",
                  "hmr_ros.train_temporal", "hmr_ros.pose_vae_train", "hmr_ros.train_meta",
                  "hmr_ros.bench", "hmr_ros.cli", "hmr_ros.__main__")),
    ("ros", ("hmr_ros.ros", "hmr_ros.msg")),
]


def layer_of(module: str) -> int:
    """Index of the layer whose longest prefix matches `module`."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise KeyError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[str, int, bool]]:
    """(imported hmr_ros module, line, runs at import time) for every import in the file:
    False for imports inside functions and under `if TYPE_CHECKING:` (never executed). For
    `from X import name`, `X.name` counts when it is a module, else `X`."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    typing_only = {id(n) for node in tree.body if isinstance(node, ast.If)
                   and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in node.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno, id(node) in top) for a in node.names
                    if a.name.split(".")[0] == "hmr_ros" and id(node) not in typing_only]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "hmr_ros":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                is_mod = (PKG.parent / Path(*sub.split("."))).with_suffix(".py").exists() or \
                    (PKG.parent / Path(*sub.split(".")) / "__init__.py").exists()
                out.append((sub if is_mod else target, node.lineno,
                            id(node) in top and id(node) not in typing_only))
    return out


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def test_every_module_has_a_layer():
    for name in all_modules():
        layer_of(name)


def test_imports_run_downward_only():
    upward = []
    for name, path in all_modules().items():
        mine = layer_of(name)
        for target, line, _ in imports_of(path):
            if target == "hmr_ros.msg":  # the colcon-built messages: ros/ only (layer ros)
                theirs = len(LAYERS) - 1
            else:
                theirs = layer_of(target)
            if theirs > mine:
                upward.append(f"{path.relative_to(PKG.parent)}:{line} ({LAYERS[mine][0]}) "
                              f"imports {target} ({LAYERS[theirs][0]})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


# Run time does not depend on the synthetic world: adaptation and the pipeline draw with the
# renderer (`hmr_ros.render`), and the source replay set reaches the pipeline from its caller.
WORLD_FREE = ("hmr_ros.adapt", "hmr_ros.pipeline", "hmr_ros.render", "hmr_ros.temporal")


def test_adaptation_and_the_pipeline_do_not_import_the_world():
    found = []
    for name, path in all_modules().items():
        if not any(name == p or name.startswith(p + ".") for p in WORLD_FREE):
            continue
        for target, line, _ in imports_of(path):
            if target == "hmr_ros.world" or target.startswith("hmr_ros.world."):
                found.append(f"{path.relative_to(PKG.parent)}:{line} imports {target}")
    assert not found, "imports of the synthetic world:\n" + "\n".join(found)


def _typing_only(path: Path, line: int) -> bool:
    tree = ast.parse(path.read_text())
    return any(isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING")
               and node.lineno <= line <= (node.end_lineno or node.lineno) for node in tree.body)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    """Between modules, over every import that runs (lazy ones too; `TYPE_CHECKING` ones
    never run). A package's __init__ re-exporting its own modules is not a cycle with them."""
    mods = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        edges = set()
        for target, line, _ in imports_of(path):
            if _typing_only(path, line):
                continue
            if target in mods and target != name and not name.startswith(target + "."):
                edges.add(target)
        graph[name] = edges
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_upward_and_lazy_imports(tmp_path):
    """The scan can fail: a lazy upward import inside a function is reported."""
    fake = tmp_path / "hmr_ros"
    (fake / "data").mkdir(parents=True)
    (fake / "ros").mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "data" / "__init__.py").write_text("")
    (fake / "ros" / "__init__.py").write_text("")
    (fake / "ros" / "engine.py").write_text("X = 1\n")
    (fake / "data" / "crop.py").write_text("def f():\n    from ..ros.engine import X\n")
    globals()["PKG"] = fake
    try:
        found = imports_of(fake / "data" / "crop.py")
        assert found == [("hmr_ros.ros.engine", 2, False)]
        with pytest.raises(AssertionError, match="data/crop.py:2 .* imports hmr_ros.ros.engine"):
            test_imports_run_downward_only()
    finally:
        globals()["PKG"] = Path(__file__).resolve().parents[1] / "hmr_ros"

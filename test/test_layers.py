"""The package's import contracts hold (test/import_contracts.py): layers import downward only,
the rules inside the layers hold, no module imports itself back in a cycle, and the "Layers"
section of docs/architecture.md is the one written from the contracts.

Imports are read from the source (every `import` and `from ... import`, including those inside
functions), so a lazy import cannot hide a dependency. `python test/test_layers.py --write-docs`
rewrites the generated part of that docs section.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from pathlib import Path

import pytest
from import_contracts import CONTRACTS, GENERATED, LAYERS, Forbidden, Independent, Layers

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hmr_ros"
DOC = ROOT / "docs" / "architecture.md"
BEGIN = "<!-- written from test/import_contracts.py: python test/test_layers.py --write-docs -->"
END = "<!-- end of the contracts -->"
HOW_TO_ADD = ("add its name to one layer of LAYERS in test/import_contracts.py, then run "
              "`python test/test_layers.py --write-docs`")


def covers(name: str, module: str) -> bool:
    """Whether the contract name `name` ("data.frame", "__init__") covers `module`."""
    if name == "__init__":
        return module == "hmr_ros"
    full = f"hmr_ros.{name}"
    return module == full or module.startswith(full + ".")


def layer_of(module: str) -> int:
    """Index of the layer whose longest name covers `module`."""
    best, best_len = None, -1
    for i, (_, names, _) in enumerate(LAYERS):
        for n in names:
            if covers(n, module) and len(n) > best_len:
                best, best_len = i, len(n)
    if best is None:
        raise KeyError(f"{module} is in no layer: {HOW_TO_ADD}")
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
            out += [(a.name, node.lineno, id(node) in top and id(node) not in typing_only)
                    for a in node.names if a.name.split(".")[0] == "hmr_ros"]
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


def import_graph() -> dict[str, dict[str, str]]:
    """module -> {imported module: "path:line" of its first import}, over every import."""
    graph: dict[str, dict[str, str]] = {}
    for name, path in all_modules().items():
        edges = graph.setdefault(name, {})
        for target, line, _ in imports_of(path):
            edges.setdefault(target, f"{path.relative_to(PKG.parent)}:{line}")
    return graph


def chain(graph: dict[str, dict[str, str]], start: str, bad, skip=frozenset()) -> list[str]:
    """The shortest import chain [start, ..., m] to a module m with bad(m); [] if none.
    Edges (a, b) in `skip` are not followed."""
    prev = {start: start}
    todo = deque([start])
    while todo:
        m = todo.popleft()
        for t in sorted(graph.get(m, {})):
            if t in prev or (m, t) in skip:
                continue
            prev[t] = m
            if bad(t):
                out = [t]
                while out[-1] != start:
                    out.append(prev[out[-1]])
                return out[::-1]
            todo.append(t)
    return []


def rules_of(contract) -> list[tuple[str, tuple[str, ...]]]:
    """(name, the names it may not import) for every name a contract constrains."""
    if isinstance(contract, Forbidden):
        return [(n, contract.forbidden) for n in contract.modules]
    if isinstance(contract, Independent):
        return [(n, tuple(o for o in contract.modules if o != n)) for n in contract.modules]
    assert isinstance(contract, Layers), contract
    groups = [[f"{contract.package}.{n.strip()}" for n in g.split("|")] for g in contract.layers]
    out = []
    for i, group in enumerate(groups):
        above = tuple(n for g in groups[i + 1:] for n in g)
        out += [(n, above + tuple(o for o in group if o != n)) for n in group]
    return out


def broken(contract, graph: dict[str, dict[str, str]]) -> list[str]:
    """The import chains that break `contract`, one per module that breaks it."""
    skip = {tuple(f"hmr_ros.{x.strip()}" for x in e.split("->")) for e in contract.ignore}
    out = []
    for name, forbidden in rules_of(contract):
        for m in sorted(graph):
            if not covers(name, m):
                continue

            def bad(t: str, m: str = m, forbidden: tuple[str, ...] = forbidden) -> bool:
                own = t == m or t.startswith(m + ".")  # a module and its submodules
                return not own and any(covers(f, t) for f in forbidden)

            found = chain(graph, m, bad, skip)
            if found:
                out.append(f"{' -> '.join(found)} (first import: {graph[m][found[1]]})")
    return out


def named_modules(contract) -> set[str]:
    """Every name a contract mentions."""
    names = {x for n, forbidden in rules_of(contract) for x in (n, *forbidden)}
    return names | {x.strip() for e in contract.ignore for x in e.split("->")}


def exists(name: str) -> bool:
    path = PKG / Path(*name.split("."))
    return (name in GENERATED or name == "__init__" or path.with_suffix(".py").is_file()
            or path.is_dir())


def doc_name(name: str) -> str:
    """A layer's module as the docs write it: `geometry.py`, `data/frame.py`, `body/`."""
    if name in GENERATED:
        return f"`hmr_ros.{name}`"
    path = name.replace(".", "/")
    return f"`{path}/`" if (PKG / path).is_dir() else f"`{path}.py`"


def contracts_markdown() -> str:
    """The part of docs/architecture.md's "Layers" section written from the contracts."""
    rows = [f"| {name} | {', '.join(map(doc_name, names))} | {what} |"
            for name, names, what in LAYERS]
    rules = [f"- {c.rule}" + (f" (lowest first: {', '.join(f'`{g}`' for g in c.layers)})"
                              if isinstance(c, Layers) else "") + "." for c in CONTRACTS]
    return "\n".join([BEGIN, "", "| layer | modules | what |", "|---|---|---|", *rows, "",
                      "Inside the layers:", "", *rules, "", END])


def _doc_parts() -> tuple[str, str, str]:
    text = DOC.read_text()
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise AssertionError(f"{DOC} needs one {BEGIN!r} and one {END!r} line in \"Layers\"")
    head, rest = text.split(BEGIN)
    old, tail = rest.split(END)
    return head, BEGIN + old + END, tail


def write_docs() -> None:
    head, _, tail = _doc_parts()
    DOC.write_text(head + contracts_markdown() + tail)


def test_every_module_has_a_layer():
    missing = []
    for name in all_modules():
        try:
            layer_of(name)
        except KeyError as err:
            missing.append(str(err.args[0]))
    assert not missing, "\n".join(missing)


def test_the_contracts_name_modules_that_exist():
    names = {n for _, layer, _ in LAYERS for n in layer}
    names |= {n for c in CONTRACTS for n in named_modules(c)}
    gone = sorted(n for n in names if not exists(n))
    assert not gone, (f"test/import_contracts.py names modules that do not exist: {gone}; "
                      "rename or remove them there")


def _layer_or_none(module: str) -> int | None:
    try:
        return layer_of(module)
    except KeyError:  # test_every_module_has_a_layer reports it
        return None


def test_imports_run_downward_only():
    upward = []
    for name, path in all_modules().items():
        mine = _layer_or_none(name)
        for target, line, _ in imports_of(path):
            theirs = _layer_or_none(target)
            if mine is not None and theirs is not None and theirs > mine:
                upward.append(f"{path.relative_to(PKG.parent)}:{line} ({LAYERS[mine][0]}) "
                              f"imports {target} ({LAYERS[theirs][0]})")
    assert not upward, "imports that run upward:\n" + "\n".join(upward)


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, str]]:
    return import_graph()


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.rule[:60])
def test_the_contracts_inside_the_layers_hold(contract, graph):
    found = broken(contract, graph)
    assert not found, f"{contract.rule}; broken by:\n" + "\n".join(found)


def test_the_docs_show_the_contracts():
    _, shown, _ = _doc_parts()
    assert shown == contracts_markdown(), (
        f"the \"Layers\" section of {DOC.relative_to(ROOT)} differs from "
        "test/import_contracts.py: run `python test/test_layers.py --write-docs`")


def _typing_lines(path: Path) -> set[int]:
    """The lines of a file's top-level `if TYPE_CHECKING:` blocks."""
    return {n for node in ast.parse(path.read_text()).body if isinstance(node, ast.If)
            and ast.unparse(node.test).endswith("TYPE_CHECKING")
            for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)}


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
        typing_lines = _typing_lines(path)
        for target, line, _ in imports_of(path):
            if line in typing_lines:
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
        assert broken(Forbidden("r", ("data",), ("ros",)), import_graph()) == [
            "hmr_ros.data.crop -> hmr_ros.ros.engine (first import: hmr_ros/data/crop.py:2)"]
    finally:
        globals()["PKG"] = ROOT / "hmr_ros"


def test_each_kind_of_contract_sees_chains_and_its_ignores():
    graph = {"hmr_ros.adapt.losses": {"hmr_ros.geometry": "l:1"},
             "hmr_ros.geometry": {"hmr_ros.adapt.batch": "g:2"},
             "hmr_ros.world.scene": {"hmr_ros.model.hmr": "s:3"},
             "hmr_ros.model.hmr": {"hmr_ros.model.config": "h:4"},
             "hmr_ros.model.config": {"hmr_ros.model.resnet": "c:5"}}
    assert broken(Forbidden("r", ("adapt.losses",), ("adapt",)), graph) == [
        "hmr_ros.adapt.losses -> hmr_ros.geometry -> hmr_ros.adapt.batch (first import: l:1)"]
    assert broken(Forbidden("r", ("adapt.batch",), ("adapt",)), graph) == []
    assert len(broken(Independent("r", ("world", "model")), graph)) == 1
    assert broken(Independent("r", ("world", "model"), ("world.scene -> model.hmr",)),
                  graph) == []
    assert broken(Layers("r", "model", ("config", "hmr")), graph) == []  # hmr is above
    assert broken(Layers("r", "model", ("hmr", "config")), graph) == [
        "hmr_ros.model.hmr -> hmr_ros.model.config (first import: h:4)"]
    assert broken(Layers("r", "model", ("config | resnet",)), graph) == [
        "hmr_ros.model.config -> hmr_ros.model.resnet (first import: c:5)"]


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        sys.exit("usage: python test/test_layers.py --write-docs")
    write_docs()

"""The floor plan (docs/design.md §2) as a test: the import graph of ``ssp_ros`` and ``ssp_train``, read
with ``ast`` (every import, also those inside functions), has no cycle, and every import points down the map:
core → wings (deploy, eval, ros) → cli, with ``ssp_train`` apart; the runtime never imports ``ssp_train``."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ssp_ros", "ssp_train")

# Floors of the map, lowest first. A module may import modules on its own floor or below, never above.
# "pkg.*" stands for a package and every module in it; any other entry is one module.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("ssp_ros", "ssp_ros.errors", "ssp_ros.resources"),
    ("ssp_ros.schema", "ssp_ros.config"),
    ("ssp_ros.classes", "ssp_ros.geometry", "ssp_ros.frames"),
    ("ssp_ros.models.*", "ssp_ros.synthetic.*", "ssp_ros.sky_band", "ssp_ros.matching", "ssp_ros.registration",
     "ssp_ros.letterbox", "ssp_ros.propagation", "ssp_ros.io", "ssp_ros.backends.*"),
    ("ssp_ros.pipeline",),
    ("ssp_ros.deploy.*",),
    ("ssp_ros.eval.*",),
    ("ssp_ros.ros.*",),
    ("ssp_train.*",),
    ("ssp_ros.cli.*",),
)


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every module of the two packages (a package is its ``__init__``)."""
    found = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module → the modules of the two packages it imports. ``from pkg import name`` points at ``pkg.name``
    when that is a module (else at ``pkg``), as Python resolves it."""
    mods = modules(root)

    def owner(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                if target.split(".")[0] in PACKAGES and (found := owner(target)) and found != name:
                    graph[name].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(set(graph) | {m for targets in graph.values() for m in targets}):
        if node not in index:
            visit(node)
    return found


def floor_of(module: str) -> int | None:
    """The floor of ``module`` in FLOORS, None when the map does not place it."""
    for level, entries in enumerate(FLOORS):
        for entry in entries:
            package = entry.removesuffix(".*")
            if module == entry or (entry.endswith(".*") and (module == package or module.startswith(package + "."))):
                return level
    return None


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_runtime_never_imports_the_training_package():
    bad = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                 if a.startswith("ssp_ros") and b.startswith("ssp_train"))
    assert bad == []


def test_every_module_is_on_the_map():
    assert sorted(m for m in modules() if floor_of(m) is None) == [], "add new modules to FLOORS"


def test_imports_point_down_the_map():
    up = sorted(f"{a} (floor {floor_of(a)}) -> {b} (floor {floor_of(b)})"
                for a, targets in import_graph().items() for b in targets if (floor_of(b) or 0) > (floor_of(a) or 0))
    assert up == []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_drone_config_and_the_sequence_io_import_nothing_synthetic():
    """The scene schema and the generator stay out of the drone's config, the node and the core's frame I/O."""
    graph = import_graph()
    for module in ("ssp_ros.schema", "ssp_ros.config", "ssp_ros.io", "ssp_ros.pipeline", "ssp_ros.ros.main"):
        assert sorted(m for m in reachable(graph, module) if m.startswith("ssp_ros.synthetic")) == [], module


def test_the_map_catches_an_upward_import():
    """The check itself: a core module that imported the pipeline, or a wing, would be reported."""
    assert floor_of("ssp_ros.geometry") < floor_of("ssp_ros.pipeline") < floor_of("ssp_ros.eval.metrics")
    assert floor_of("ssp_ros.ros.node") < floor_of("ssp_ros.cli.main") and floor_of("ssp_ros.nowhere") is None


def test_the_walker_sees_what_python_imports(tmp_path):
    """The walker against a made-up package: relative, function-level and ``from pkg import module`` imports
    are edges, and a cycle through a function-level import is found."""
    pkg = tmp_path / "ssp_ros"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import A\n")
    (pkg / "sub" / "a.py").write_text("A = 1\ndef f():\n    from ssp_ros.b import B\n")
    (pkg / "b.py").write_text("from ssp_ros.sub import a\nB = 2\n")
    (tmp_path / "ssp_train").mkdir()
    (tmp_path / "ssp_train" / "__init__.py").write_text("")
    graph = import_graph(tmp_path)
    assert graph["ssp_ros.sub"] == {"ssp_ros.sub.a"}
    assert graph["ssp_ros.b"] == {"ssp_ros.sub.a"}
    assert cycles(graph) == [["ssp_ros.b", "ssp_ros.sub.a"]]


def test_the_node_entry_point_loads_no_training_evaluation_or_torch():
    code = ("import sys, ssp_ros.ros.main; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ssp_train', 'torch', 'av') "
            "or m.startswith(('ssp_ros.eval', 'ssp_ros.deploy', 'ssp_ros.cli'))); print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"

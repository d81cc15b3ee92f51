"""The floor plan (docs/design.md §2) as a test: the import graph of ``ssp_ros`` and ``ssp_train``, read
with ``ast`` (every import, also those inside functions), has no cycle, and every import between two rooms points
to a lower floor: the core in its own order → deploy → eval → ros → tools → cli. ``ssp_train`` stands apart and
above the runtime: it imports the runtime up to ``eval``, never ``ros``, ``tools`` or ``cli``; the runtime never
imports it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"ssp_ros": ".", "ssp_train": "training"}  # package → the folder (under the repository) that holds it

# Floors of the map, lowest first; each entry is a room: "pkg.*" stands for a package and every module in it, any
# other entry is one module. An import between two rooms points to a lower floor; inside a room it may go anywhere
# (no cycle, though). Each core module sits on the lowest floor its imports allow.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("ssp_ros", "ssp_ros.errors", "ssp_ros.geometry", "ssp_ros.sky_band"),
    ("ssp_ros.resources", "ssp_ros.frames", "ssp_ros.letterbox", "ssp_ros.schema"),
    ("ssp_ros.config", "ssp_ros.classes", "ssp_ros.io"),
    ("ssp_ros.matching", "ssp_ros.models.*", "ssp_ros.synthetic.*"),
    ("ssp_ros.registration", "ssp_ros.backends.*"),
    ("ssp_ros.propagation",),
    ("ssp_ros.pipeline", "ssp_ros.stabiliser"),
    ("ssp_ros.segmenter_pipeline",),
    ("ssp_ros.deploy.*",),
    ("ssp_ros.eval.*",),
    ("ssp_ros.ros.*",),
    ("ssp_ros.tools.*",),
    ("ssp_ros.cli.*",),
)
TRAINING = "ssp_train.*"  # apart and above the runtime, one room
TRAINING_REACH = "ssp_ros.eval"  # the highest floor training imports from


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name → file, for every module of the two packages (a package is its ``__init__``)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in (root / folder / package).rglob("*.py"):
            parts = path.relative_to(root / folder).with_suffix("").parts
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


def _holds(entry: str, module: str) -> bool:
    package = entry.removesuffix(".*")
    return module == entry or (entry.endswith(".*") and (module == package or module.startswith(package + ".")))


def room_of(module: str) -> str | None:
    """The FLOORS entry (or ``TRAINING``) that holds ``module``; None when the map does not place it."""
    return next((entry for entries in (*FLOORS, (TRAINING,)) for entry in entries if _holds(entry, module)), None)


def floor_of(module: str) -> int | None:
    """The floor of ``module``, 1 = lowest; None for training and for a module the map does not place."""
    return next((level for level, entries in enumerate(FLOORS, 1) for entry in entries if _holds(entry, module)),
                None)


def misplaced_imports(graph: dict[str, set[str]]) -> list[str]:
    """The imports between two rooms that break the map: a runtime import not to a lower floor (or to training,
    or off the map), a training import above ``TRAINING_REACH``'s floor."""

    def where(module: str) -> str:
        floor = floor_of(module)
        return "training" if room_of(module) == TRAINING else "off the map" if floor is None else f"floor {floor}"

    reach = floor_of(TRAINING_REACH)
    bad = []
    for a, targets in graph.items():
        for b in targets:
            here, there = floor_of(a), floor_of(b)
            if room_of(a) == room_of(b) is not None:
                continue
            if room_of(a) == TRAINING:
                fine = room_of(b) == TRAINING or (there is not None and there <= reach)
            else:
                fine = here is not None and there is not None and there < here
            if not fine:
                bad.append(f"{a} ({where(a)}) -> {b} ({where(b)})")
    return sorted(bad)


def test_the_import_graph_has_no_cycle():
    assert cycles(import_graph()) == []


def test_the_runtime_never_imports_the_training_package():
    bad = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                 if a.startswith("ssp_ros") and b.startswith("ssp_train"))
    assert bad == []


def test_every_module_is_on_the_map():
    assert sorted(m for m in modules() if room_of(m) is None) == [], "add new modules to FLOORS"


def test_imports_point_down_the_map():
    assert misplaced_imports(import_graph()) == []


def test_each_core_room_is_on_the_lowest_floor_its_imports_allow():
    """The core's floors are its real order: a room one floor higher than the highest room it imports (floor 1 if
    it imports none of the core), so that no floor holds a room that could sit lower."""
    graph, core = import_graph(), floor_of("ssp_ros.pipeline")
    imported: dict[str, set[int]] = defaultdict(set)
    for a, targets in graph.items():
        imported[room_of(a)] |= {floor_of(b) for b in targets if room_of(b) != room_of(a)}
    loose = sorted(f"{room} (floor {level}, lowest {max(imported[room], default=0) + 1})"
                   for level, entries in enumerate(FLOORS[:core], 1) for room in entries
                   if level != max(imported[room], default=0) + 1)
    assert loose == []


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A made-up source tree under ``root``: relative path → text (packages get their ``__init__``)."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for folder in path.relative_to(root).parents[:-1]:
            (root / folder / "__init__.py").touch()
        path.write_text(text)
    return root


CLEAN = {"ssp_ros/registration.py": "from ssp_ros import matching\n", "ssp_ros/matching.py": "",
         "ssp_ros/models/warp.py": "import numpy\n", "ssp_ros/ros/node.py": "from ssp_ros.pipeline import P\n",
         "ssp_ros/pipeline.py": "P = 1\n", "training/ssp_train/engine.py": "from ssp_ros.eval import metrics\n",
         "ssp_ros/eval/metrics.py": ""}


def test_the_check_passes_a_tree_that_follows_the_map(tmp_path):
    assert misplaced_imports(import_graph(_tree(tmp_path, CLEAN))) == []


def test_the_check_catches_an_upward_import_inside_the_core(tmp_path):
    """The mutation: ``models/warp.py`` (floor 4) importing the registrar (floor 5)."""
    tree = _tree(tmp_path, {**CLEAN, "ssp_ros/models/warp.py": "def f():\n    from ssp_ros import registration\n"})
    assert misplaced_imports(import_graph(tree)) == [
        "ssp_ros.models.warp (floor 4) -> ssp_ros.registration (floor 5)"]


def test_the_check_catches_an_import_between_two_rooms_of_one_floor(tmp_path):
    tree = _tree(tmp_path, {**CLEAN, "ssp_ros/matching.py": "from ssp_ros.models import warp\n"})
    assert misplaced_imports(import_graph(tree)) == ["ssp_ros.matching (floor 4) -> ssp_ros.models.warp (floor 4)"]


def test_the_check_catches_training_importing_the_node_or_the_runtime_importing_training(tmp_path):
    tree = _tree(tmp_path, {**CLEAN, "training/ssp_train/engine.py": "from ssp_ros.ros import node\n",
                            "ssp_ros/tools/bench.py": "import ssp_train.engine\n"})
    assert misplaced_imports(import_graph(tree)) == [
        "ssp_ros.tools.bench (floor 12) -> ssp_train.engine (training)",
        "ssp_train.engine (training) -> ssp_ros.ros.node (floor 11)"]


def test_the_map_orders_core_wings_and_cli():
    assert floor_of("ssp_ros.errors") < floor_of("ssp_ros.config") < floor_of("ssp_ros.registration") < \
        floor_of("ssp_ros.pipeline") < floor_of("ssp_ros.deploy.export") < floor_of("ssp_ros.eval.metrics") < \
        floor_of("ssp_ros.ros.node") < floor_of("ssp_ros.tools.replay") < floor_of("ssp_ros.cli.main")
    assert floor_of("ssp_train.engine") is None and room_of("ssp_train.engine") == TRAINING
    assert room_of("ssp_ros.nowhere") is None


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


def test_the_walker_sees_what_python_imports(tmp_path):
    """The walker against a made-up package: relative, function-level and ``from pkg import module`` imports
    are edges, and a cycle through a function-level import is found."""
    pkg = tmp_path / "ssp_ros"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import A\n")
    (pkg / "sub" / "a.py").write_text("A = 1\ndef f():\n    from ssp_ros.b import B\n")
    (pkg / "b.py").write_text("from ssp_ros.sub import a\nB = 2\n")
    (tmp_path / "training" / "ssp_train").mkdir(parents=True)
    (tmp_path / "training" / "ssp_train" / "__init__.py").write_text("")
    graph = import_graph(tmp_path)
    assert graph["ssp_ros.sub"] == {"ssp_ros.sub.a"}
    assert graph["ssp_ros.b"] == {"ssp_ros.sub.a"}
    assert cycles(graph) == [["ssp_ros.b", "ssp_ros.sub.a"]]


def test_the_node_entry_point_loads_no_tool_training_evaluation_or_torch():
    """``ssp_node``'s entry module in a fresh interpreter: no eval, tools, deploy, CLI, training, torch or PyAV."""
    code = ("import sys, ssp_ros.ros.main; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ssp_train', 'torch', 'av') "
            "or m.startswith(('ssp_ros.eval', 'ssp_ros.tools', 'ssp_ros.deploy', 'ssp_ros.cli'))); print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]"

"""Generate ``test/data/rclpy_humble_api.json``: what rclpy (and the message packages the node uses) offer on
ROS 2 Humble, read from the humble branch of local git mirrors with ``git show`` and ``ast`` (nothing of the
humble code is imported or copied: only names, parameter names, bases and message field names).

    python test/tools/humble_api_table.py             # (re)write test/data/rclpy_humble_api.json
    python test/tools/humble_api_table.py --check     # exit 1 if the checked-in table is not what this generates
    python test/tools/humble_api_table.py --ref jazzy --out /tmp/jazzy.json   # the same table for another branch

Mirrors: ``--mirror DIR`` (default /work/.mirror or $SSP_GIT_MIRROR) holding bare repositories as
``<owner>+<name>/repo`` (the layout of the fetch tool): ros2+rclpy, ros2+rcl_interfaces, ros2+common_interfaces
and ros-perception+vision_msgs. The table is read by test/test_rclpy_humble_api.py.

Table layout (``modules`` maps a dotted module name to its public names):

* ``{"kind": "function", "params": [...]}``: parameters written as in a ``def``: ``"name"``, ``"name="`` (has a
  default), ``"/"`` (end of positional-only), ``"*"`` (start of keyword-only), ``"*args"``, ``"**kwargs"``. A
  function taking ``**kwargs`` may add ``kwargs_used`` (keys it reads: ``kwargs.get('k')``, ``kwargs.pop('k')``,
  ``kwargs['k']``), ``kwargs_keys`` (the only keys it accepts, where the code validates them) and ``forwards``
  (where it passes ``**kwargs`` on: ``"super:<name>"``, ``"self:<name>"`` or a dotted name). Methods add
  ``"decorator": "staticmethod" | "classmethod"`` where they have one.
* ``{"kind": "class", "bases": [dotted...], "methods": {...}, "properties": [...], "attributes": [...],
  "instance_attributes": [...], "classes": {nested...}}``: public methods plus ``__init__``/``__new__``/
  ``__call__``/``__enter__``/``__exit__``; ``attributes`` are class-level assignments (enum members, constants),
  ``instance_attributes`` the public ``self.x = ...`` of its methods.
* ``{"kind": "import", "target": dotted}`` (``from x import y``), ``{"kind": "module", "target": dotted}``
  (``import x``), ``{"kind": "alias", "target": dotted}`` (``Name = other.name``) and ``{"kind": "variable"}``.
  Names imported only under ``if TYPE_CHECKING:`` are left out (they do not exist at run time).

``extension_enums`` lists the enums of rclpy's C extension (``rclpy_implementation``, e.g. ``SignalHandlerOptions``
and lifecycle's ``TransitionCallbackReturnType``): their values and methods, from the pybind11 sources
(``py::enum_<...>(m, "Name").value("X", ...).def("m", ...)``). ``interfaces`` maps a message package to its
``msg`` (fields, constants) and ``srv`` (request, response) types.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "test" / "data" / "rclpy_humble_api.json"
DEFAULT_MIRROR = Path(os.environ.get("SSP_GIT_MIRROR", "/work/.mirror"))
RCLPY_REPO = "ros2/rclpy"
RCLPY_PREFIX = "rclpy/rclpy/"
# message packages: (repository, ref, packages); vision_msgs has no humble branch: its ``ros2`` branch is what
# humble builds from source and releases (LabelInfo/VisionClass appear in 4.1.0; the node guards the import)
INTERFACES = (
    ("ros2/rcl_interfaces", None, ("rcl_interfaces", "builtin_interfaces", "lifecycle_msgs")),
    ("ros2/common_interfaces", None, ("std_msgs", "sensor_msgs", "diagnostic_msgs", "std_srvs")),
    ("ros-perception/vision_msgs", "4.1.1", ("vision_msgs",)),
)
KEPT_DUNDERS = {"__init__", "__new__", "__call__", "__enter__", "__exit__"}
# rclpy/impl/rcutils_logger.py: ``get_filters_from_kwargs`` rejects every keyword that is not a ``params`` key of
# one of the module's LoggingFilter classes (the logger's once/throttle/skip_first options)
FILTER_VALIDATOR = ("rclpy.impl.rcutils_logger", "get_filters_from_kwargs")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def mirror_path(mirror: Path, name: str) -> Path:
    base = mirror / name.replace("/", "+")
    return base / "repo" if (base / "repo").exists() else base


def public(name: str) -> bool:
    return not name.startswith("_")


def module_name(path: str) -> str:
    parts = path[len("rclpy/"):-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def params_of(args: ast.arguments) -> list[str]:
    out: list[str] = []
    positional = [*args.posonlyargs, *args.args]
    first_default = len(positional) - len(args.defaults)
    for i, arg in enumerate(positional):
        out.append(arg.arg + ("=" if i >= first_default else ""))
        if args.posonlyargs and i == len(args.posonlyargs) - 1:
            out.append("/")
    if args.vararg is not None:
        out.append("*" + args.vararg.arg)
    elif args.kwonlyargs:
        out.append("*")
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        out.append(arg.arg + ("=" if default is not None else ""))
    if args.kwarg is not None:
        out.append("**" + args.kwarg.arg)
    return out


def dotted(node: ast.AST) -> str | None:
    """``a.b.c`` of a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = dotted(node.value)
        return None if head is None else f"{head}.{node.attr}"
    return None


def is_type_checking(test: ast.AST) -> bool:
    return dotted(test) in {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


class ModuleReader:
    """The public API of one rclpy module, from its source."""

    def __init__(self, modname: str, is_package: bool, source: str) -> None:
        self.modname = modname
        self.package = modname if is_package else modname.rpartition(".")[0]
        self.tree = ast.parse(source)
        self.scope: dict[str, str] = {}  # every name bound at module level -> dotted target

    def resolve(self, expr: ast.AST) -> str | None:
        name = dotted(expr)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        target = self.scope.get(head, head)
        return f"{target}.{rest}" if rest else target

    def absolute(self, module: str | None, level: int) -> str:
        if not level:
            return module or ""
        base = self.package.split(".")
        base = base[:len(base) - (level - 1)]
        return ".".join([*base, module] if module else base)

    def statements(self, body: list[ast.stmt]):
        """Module-level statements, through if/try blocks (not ``if TYPE_CHECKING:``)."""
        for stmt in body:
            if isinstance(stmt, ast.If):
                if not is_type_checking(stmt.test):
                    yield from self.statements(stmt.body)
                yield from self.statements(stmt.orelse)
            elif isinstance(stmt, ast.Try):
                for block in (stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody):
                    yield from self.statements(block)
            else:
                yield stmt

    def read(self) -> dict[str, Any]:
        names: dict[str, Any] = {}
        statements = list(self.statements(self.tree.body))
        for stmt in statements:  # first the scope, so that a base or alias defined later still resolves
            if isinstance(stmt, ast.ImportFrom):
                source = self.absolute(stmt.module, stmt.level)
                for alias in stmt.names:
                    self.scope[alias.asname or alias.name] = f"{source}.{alias.name}"
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    self.scope[alias.asname or alias.name.partition(".")[0]] = alias.name if alias.asname else \
                        alias.name.partition(".")[0]
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.scope[stmt.name] = f"{self.modname}.{stmt.name}"
        for stmt in statements:
            if isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    local = alias.asname or alias.name
                    if public(local) and alias.name != "*":
                        names[local] = {"kind": "import", "target": self.scope[local]}
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    local = alias.asname or alias.name.partition(".")[0]
                    if public(local):
                        names[local] = {"kind": "module", "target": self.scope[local]}
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if public(stmt.name):
                    names[stmt.name] = self.function(stmt)
            elif isinstance(stmt, ast.ClassDef):
                if public(stmt.name):
                    names[stmt.name] = self.klass(stmt)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    if not isinstance(target, ast.Name):
                        continue
                    if target.id == "__all__" and isinstance(stmt.value, (ast.List, ast.Tuple)):
                        names["__all__"] = {"kind": "all", "names": sorted(
                            e.value for e in stmt.value.elts if isinstance(e, ast.Constant))}
                    elif public(target.id):
                        alias = self.resolve(stmt.value) if stmt.value is not None else None
                        names[target.id] = {"kind": "alias", "target": alias} if alias else {"kind": "variable"}
        if (self.modname, FILTER_VALIDATOR[1]) == FILTER_VALIDATOR and FILTER_VALIDATOR[1] in names:
            names[FILTER_VALIDATOR[1]]["kwargs_keys"] = sorted(self.filter_params())
        return names

    def filter_params(self) -> set[str]:
        keys: set[str] = set()
        for cls in (s for s in self.tree.body if isinstance(s, ast.ClassDef)):
            for stmt in cls.body:
                if (isinstance(stmt, ast.Assign) and [dotted(t) for t in stmt.targets] == ["params"]
                        and isinstance(stmt.value, ast.Dict)):
                    keys |= {k.value for k in stmt.value.keys if isinstance(k, ast.Constant)}
        return keys

    def function(self, fn: ast.FunctionDef | ast.AsyncFunctionDef, slots: list[str] | None = None) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": "function", "params": params_of(fn.args)}
        for deco in fn.decorator_list:
            if dotted(deco) in {"staticmethod", "classmethod"}:
                record["decorator"] = dotted(deco)
        kwarg = fn.args.kwarg.arg if fn.args.kwarg is not None else None
        if kwarg is None:
            return record
        used: set[str] = set()
        forwards: set[str] = set()
        validated = False
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                func = node.func
                if (isinstance(func, ast.Attribute) and dotted(func.value) == kwarg and func.attr in {"get", "pop"}
                        and node.args and isinstance(node.args[0], ast.Constant)):
                    used.add(node.args[0].value)
                if any(k.arg is None and dotted(k.value) == kwarg for k in node.keywords):
                    target = self.call_target(func)
                    if target:
                        forwards.add(target)
            elif (isinstance(node, ast.Subscript) and dotted(node.value) == kwarg
                  and isinstance(node.slice, ast.Constant)):
                used.add(node.slice.value)
            elif isinstance(node, ast.Assert) and slots is not None and "__slots__" in ast.unparse(node.test):
                validated = True  # QoSProfile: assert all('_' + key in self.__slots__ for key in kwargs.keys())
        if used:
            record["kwargs_used"] = sorted(str(k) for k in used)
        if forwards:
            record["forwards"] = sorted(forwards)
        if validated:
            record["kwargs_keys"] = sorted(s[1:] for s in slots if s.startswith("_") and not s.startswith("__"))
        return record

    def call_target(self, func: ast.AST) -> str | None:
        if isinstance(func, ast.Attribute):
            inner = func.value
            if isinstance(inner, ast.Call) and dotted(inner.func) == "super":
                return f"super:{func.attr}"
            if dotted(inner) in {"self", "cls"}:
                return f"self:{func.attr}"
        return self.resolve(func)

    def klass(self, cls: ast.ClassDef) -> dict[str, Any]:
        bases = [self.resolve(b.value if isinstance(b, ast.Subscript) else b) for b in cls.bases]
        record: dict[str, Any] = {"kind": "class", "bases": [b or "?" for b in bases], "methods": {},
                                  "properties": [], "attributes": [], "instance_attributes": [], "classes": {}}
        slots = None
        for stmt in cls.body:
            if isinstance(stmt, ast.Assign) and [dotted(t) for t in stmt.targets] == ["__slots__"] \
                    and isinstance(stmt.value, (ast.List, ast.Tuple)):
                slots = [e.value for e in stmt.value.elts if isinstance(e, ast.Constant)]
        instance: set[str] = set()
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                decorators = [dotted(d) or "" for d in stmt.decorator_list]
                for node in ast.walk(stmt):
                    targets = node.targets if isinstance(node, ast.Assign) else \
                        [node.target] if isinstance(node, (ast.AnnAssign, ast.AugAssign)) else []
                    for target in targets:
                        if isinstance(target, ast.Attribute) and dotted(target.value) == "self" \
                                and public(target.attr):
                            instance.add(target.attr)
                if any(d.endswith((".setter", ".deleter")) for d in decorators):
                    continue
                if not (public(stmt.name) or stmt.name in KEPT_DUNDERS):
                    continue
                if "property" in decorators or any(d.endswith("cached_property") for d in decorators):
                    record["properties"].append(stmt.name)
                else:
                    record["methods"][stmt.name] = self.function(stmt, slots if stmt.name == "__init__" else None)
            elif isinstance(stmt, ast.ClassDef) and public(stmt.name):
                record["classes"][stmt.name] = self.klass(stmt)
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                for target in targets:
                    for name in (target.elts if isinstance(target, ast.Tuple) else [target]):
                        if isinstance(name, ast.Name) and public(name.id):
                            record["attributes"].append(name.id)
        record["properties"] = sorted(set(record["properties"]))
        record["attributes"] = sorted(set(record["attributes"]))
        record["instance_attributes"] = sorted(instance - set(record["methods"]) - set(record["properties"]))
        return {k: v for k, v in record.items() if v or k in {"kind", "bases", "methods"}}


def rclpy_table(repo: Path, ref: str) -> dict[str, Any]:
    paths = [p for p in git(repo, "ls-tree", "-r", "--name-only", ref, RCLPY_PREFIX).split()
             if p.endswith(".py") and "/test/" not in p]
    modules = {}
    for path in sorted(paths):
        modname = module_name(path)
        reader = ModuleReader(modname, path.endswith("/__init__.py"), git(repo, "show", f"{ref}:{path}"))
        modules[modname] = {"path": path, "names": reader.read()}
    return modules


ENUM = re.compile(r'py::enum_<[^;]*?>\s*\(\s*\w+\s*,\s*"(\w+)"')


def extension_enums(repo: Path, ref: str) -> dict[str, Any]:
    enums: dict[str, Any] = {}
    for path in git(repo, "ls-tree", "-r", "--name-only", ref, "rclpy/src/rclpy/").split():
        if not path.endswith(".cpp"):
            continue
        text = git(repo, "show", f"{ref}:{path}")
        for match in ENUM.finditer(text):
            chain = text[match.end():text.index(";", match.end())]
            enums[match.group(1)] = {"values": re.findall(r'\.value\(\s*"(\w+)"', chain),
                                     "methods": re.findall(r'\.def\(\s*"(\w+)"', chain)}
    return enums


FIELD = re.compile(r"^(?P<type>[\w/]+(?:<=\d+)?(?:\[[<=\d]*\])?)\s+(?P<name>\w+)(?P<const>\s*=)?")


def interface_fields(text: str) -> tuple[list[str], list[str]]:
    fields, constants = [], []
    for line in text.splitlines():
        match = FIELD.match(line.split("#", 1)[0].strip())
        if match:
            (constants if match.group("const") else fields).append(match.group("name"))
    return fields, constants


def interfaces_table(mirror: Path, branch: str) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for repo_name, ref, packages in INTERFACES:
        repo = mirror_path(mirror, repo_name)
        ref = ref or branch
        commit = git(repo, "rev-parse", f"{ref}^{{commit}}").strip()
        files = git(repo, "ls-tree", "-r", "--name-only", ref).split()
        for package in packages:
            entry: dict[str, Any] = {"source": f"{repo_name}@{ref}", "commit": commit, "msg": {}, "srv": {}}
            for path in sorted(f for f in files if f.startswith(f"{package}/") and f.endswith((".msg", ".srv"))):
                kind, name = path.rsplit(".", 1)[1], Path(path).stem
                text = git(repo, "show", f"{ref}:{path}")
                if kind == "msg":
                    fields, constants = interface_fields(text)
                    entry["msg"][name] = {"fields": fields, **({"constants": constants} if constants else {})}
                else:
                    request, response = (*re.split(r"^---[ \t]*$", text, maxsplit=1, flags=re.M), "")[:2]
                    entry["srv"][name] = {"request": interface_fields(request)[0],
                                          "response": interface_fields(response)[0]}
            table[package] = entry
    return table


def build(mirror: Path, ref: str) -> dict[str, Any]:
    repo = mirror_path(mirror, RCLPY_REPO)
    commit = git(repo, "rev-parse", f"{ref}^{{commit}}").strip()
    version = re.search(r"<version>([^<]+)</version>", git(repo, "show", f"{ref}:rclpy/package.xml"))
    return {
        "generated_by": "python test/tools/humble_api_table.py" + ("" if ref == "humble" else f" --ref {ref}"),
        "rclpy": {"repository": RCLPY_REPO, "branch": ref, "commit": commit,
                  "version": version.group(1) if version else None},
        "modules": rclpy_table(repo, ref),
        "extension_enums": extension_enums(repo, ref),
        "interfaces": interfaces_table(mirror, ref),
    }


def dump(value: Any, indent: int = 0) -> str:
    """JSON with one key per line and short lists (parameters, fields) on one line, for readable diffs."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f'{pad} {json.dumps(k)}: {dump(v, indent + 1)}' for k, v in sorted(value.items())]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value):
        return json.dumps(value)
    if isinstance(value, list):
        return "[\n" + ",\n".join(f"{pad} {dump(v, indent + 1)}" for v in value) + f"\n{pad}]"
    return json.dumps(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR, help="directory of <owner>+<name> mirrors")
    parser.add_argument("--ref", default="humble", help="branch of rclpy and of the message repositories")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    text = dump(build(args.mirror, args.ref)) + "\n"
    if args.check:
        if not args.out.exists() or args.out.read_text() != text:
            print(f"{args.out} is not what {parser.prog} generates: rerun it", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The node runs ROS 2 Humble on the drone (JetPack 6) while CI runs Jazzy: every rclpy API our code uses must
exist on rclpy's humble branch, with the keyword arguments we pass.

The reference is ``test/data/rclpy_humble_api.json``, generated from the humble branch by
``python test/tools/humble_api_table.py`` (names, parameter names and bases read with ``ast``; the humble commit is
in the file). Three parts:

* static: every ``import rclpy...``/``from rclpy... import``, every attribute chain on an rclpy name and the
  keywords and positional count of every call of one, in ``ssp_ros/**/*.py`` and ``launch/*.py`` (and the
  message types, constants and constructor fields of the message packages the table has);
* runtime, on the real rclpy: every rclpy function, method and property our code (frames of ``ssp_ros``
  modules) touches, with the keywords it passes, while three drivers run in-process: the plain node
  (test_rclpy_transport's ``segmenter``: frames to masks, parameters, ~/reset, logging), ``ssp_node``'s
  ``main()`` until an external shutdown, and the lifecycle node through its transitions;
* a guard: APIs that humble lacks (Iron/Jazzy additions) are reported by the same checks.

A new code path to cover is one more ``drive_*`` function and one more test calling it under ``api_recorder``.
"""

from __future__ import annotations

import ast
import builtins
import enum
import functools
import importlib
import inspect
import json
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_harness import HUNG_S
from tools import humble_api_table as generator  # test/tools: the table's generator
from tools.humble_api_table import dotted

ROOT = Path(__file__).resolve().parents[1]
TABLE_PATH = ROOT / "test" / "data" / "rclpy_humble_api.json"
SOURCES = sorted((ROOT / "ssp_ros").rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))  # ssp_ros/ros/ and more
TIMEOUT_S = HUNG_S  # a wait with no progress to watch: only a hung test reaches it (node_harness.py)
EXTENSION = "rclpy.impl.implementation_singleton.rclpy_implementation"  # rclpy's C extension module

try:
    import rclpy
except ImportError:  # the static checks still run
    rclpy = None
if rclpy is not None:  # the in-process rclpy fixture of test_rclpy_transport.py: the node
    from test_rclpy_transport import segmenter  # noqa: F401 - a pytest fixture used by name
needs_rclpy = pytest.mark.skipif(rclpy is None, reason="rclpy is not importable: pip install -e '.[ros]' or "
                                                       "source ROS 2 (the static checks do not need it)")


# --------------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Found:
    """What a dotted name is on humble: ``kind`` module, function, class, method, property, attribute,
    instance attribute, interface (a message type; ``record``: its fields), member (a field or constant of a
    message, a value of an enum of the C extension), external (not rclpy: not checked) or opaque (a value, a C
    extension object, something the table cannot see inside)."""

    kind: str
    where: str
    record: Any = None
    owner: str | None = None  # the class of a method


@dataclass(frozen=True)
class Missing:
    reason: str


class HumbleApi:
    """Lookups in the humble table: names through imports and aliases, class members through the MRO, and
    whether a call's keywords and positional count fit the humble signature."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.table = table
        self.modules: dict[str, Any] = table["modules"]
        self.interfaces: dict[str, Any] = table.get("interfaces", {})
        self.enums: dict[str, Any] = table.get("extension_enums", {})

    # names
    def resolve(self, name: str, _depth: int = 0) -> Found | Missing:
        if _depth > 20:
            return Found("opaque", name)
        parts = name.split(".")
        if parts[0] in self.interfaces:
            return self._interface(parts)
        if parts[0] != "rclpy":
            return Found("external", name)
        for i in range(len(parts), 0, -1):
            module = ".".join(parts[:i])
            if module in self.modules:
                return self._in_module(module, parts[i:], _depth)
        return Missing(f"humble has no module {name}")

    def _in_module(self, module: str, rest: list[str], depth: int) -> Found | Missing:
        if not rest:
            return Found("module", module)
        name, rest = rest[0], rest[1:]
        record = self.modules[module]["names"].get(name)
        if record is None:
            if f"{module}.{name}" in self.modules:
                return self._in_module(f"{module}.{name}", rest, depth)
            return Missing(f"humble's {module} has no '{name}'")
        kind = record["kind"]
        if kind in {"import", "module", "alias"}:
            return self.resolve(".".join([record["target"], *rest]), depth + 1)
        if kind == "class":
            return self._in_class(f"{module}.{name}", record, rest)
        if kind == "function":
            return Found("function", f"{module}.{name}", record) if not rest else \
                Missing(f"humble's {module}.{name} is a function: no '{'.'.join(rest)}'")
        if f"{module}.{name}" == EXTENSION and rest and rest[0] in self.enums:
            return self._enum(rest[0], rest[1:])
        return Found("opaque", f"{module}.{name}")

    def _enum(self, name: str, rest: list[str]) -> Found | Missing:
        """An enum of the C extension (pybind11): its values and methods, plus what every pybind11 enum has."""
        spec = self.enums[name]
        where = f"{EXTENSION}.{name}"
        if not rest:
            return Found("class", where, {"bases": [], "methods": {}})
        if rest[0] in spec["values"] or rest[0] in spec["methods"] or rest[0] in {"name", "value", "__members__"}:
            return Found("member", f"{where}.{rest[0]}")
        return Missing(f"humble's C extension enum {name} has no '{rest[0]}' (it has {', '.join(spec['values'])})")

    def _in_class(self, where: str, record: dict[str, Any], rest: list[str]) -> Found | Missing:
        if not rest:
            return Found("class", where, record)
        found = self.member(where, rest[0])
        if isinstance(found, Missing) or len(rest) == 1:
            return found
        if found.kind == "class":
            return self._in_class(found.where, found.record, rest[1:])
        return Found("opaque", f"{found.where}.{'.'.join(rest[1:])}")

    def class_record(self, where: str) -> dict[str, Any] | None:
        found = self.resolve(where)
        return found.record if isinstance(found, Found) and found.kind == "class" else None

    def mro(self, where: str) -> list[str]:
        """C3 linearisation over the table's classes; bases outside the table end a line (``external``)."""
        record = self.class_record(where)
        if record is None:
            return [where]
        bases = []
        for base in record["bases"]:
            found = self.resolve(base) if base.startswith("rclpy.") else Found("external", base)
            bases.append(found.where if isinstance(found, Found) and found.kind == "class" else base)
        lines = [self.mro(b) for b in bases] + [bases]
        out = [where]
        while any(lines):
            for line in lines:
                head = line[0] if line else None
                if head is not None and not any(head in other[1:] for other in lines):
                    break
            else:
                return out + [b for line in lines for b in line]  # inconsistent: keep going, in order
            out.append(head)
            lines = [line[1:] if line and line[0] == head else line for line in lines]
        return out

    def member(self, where: str, name: str) -> Found | Missing:
        unknown_bases = []
        for cls in self.mro(where):
            record = self.class_record(cls)
            if record is None:  # a base outside rclpy (enum.IntEnum, Exception, a C extension type)
                verdict = external_has(cls, name)
                if verdict:
                    return Found("external", f"{cls}.{name}")
                if verdict is None:
                    unknown_bases.append(cls)
                continue
            if name in record.get("methods", {}):
                return Found("method", f"{cls}.{name}", record["methods"][name], owner=cls)
            if name in record.get("classes", {}):
                return Found("class", f"{cls}.{name}", record["classes"][name])
            for key, kind in (("properties", "property"), ("attributes", "attribute"),
                              ("instance_attributes", "instance attribute")):
                if name in record.get(key, []):
                    return Found(kind, f"{cls}.{name}", owner=cls)
        if unknown_bases:
            return Found("opaque", f"{where}.{name}")  # may come from a base the table cannot see
        return Missing(f"humble's {where} has no '{name}'")

    # calls
    def check_call(self, name: str, n_args: int | None, keywords: tuple[str, ...]) -> list[str]:
        """Problems calling ``name`` (a function, a class or ``Class.method``) with ``n_args`` positional
        arguments (None: unknown, e.g. ``*args``) and these keywords; [] when humble takes it."""
        found = self.resolve(name)
        if isinstance(found, Missing):
            return [found.reason]
        if found.kind == "class":
            signatures = [self.member(found.where, m) for m in ("__init__", "__new__")]
            signatures = [s for s in signatures if isinstance(s, Found) and s.kind == "method"]
            return [p for s in signatures for p in self._check_signature(name, s, True, n_args, keywords)]
        if found.kind == "method":
            return self._check_signature(name, found, True, n_args, keywords)
        if found.kind == "function":
            return self._check_signature(name, found, False, n_args, keywords)
        if found.kind == "interface":  # a message: keywords only, each a field
            return [f"{name}: messages take keyword arguments only"] * bool(n_args) + [
                f"{name}: humble's {found.where} has no field '{k}'" for k in keywords if k not in found.record]
        if found.kind in {"external", "opaque"} or found.where.startswith(EXTENSION):
            return []
        return [f"{name}: humble's {found.where} is a {found.kind}, not callable"]

    def _check_signature(self, name: str, fn: Found, bound: bool, n_args: int | None,
                         keywords: tuple[str, ...]) -> list[str]:
        params = fn.record["params"]
        if bound and fn.record.get("decorator") != "staticmethod" and params:
            params = params[1:]
        problems = []
        positional: list[str | None] = []
        for p in params:
            if p == "/":
                continue
            if p == "*" or p.startswith("**"):
                break
            positional.append(None if p.startswith("*") else p)  # None: *args, no limit
            if p.startswith("*"):
                break
        if n_args is not None and None not in positional and n_args > len(positional):
            problems.append(f"{name}: humble's {fn.where}({', '.join(fn.record['params'])}) takes "
                            f"{len(positional)} positional arguments, {n_args} given")
        for keyword in keywords:
            if self.accepts(fn, keyword) is False:
                problems.append(f"{name}: humble's {fn.where}({', '.join(fn.record['params'])}) has no keyword "
                                f"'{keyword}'")
        return problems

    def accepts(self, fn: Found, keyword: str, _seen: frozenset[str] = frozenset()) -> bool | None:
        """True/False: whether humble's function takes this keyword; None: it takes ``**kwargs`` that go where
        the table cannot follow."""
        record = fn.record
        params = record["params"]
        named = params[params.index("/") + 1:] if "/" in params else params
        if keyword in [p.rstrip("=") for p in named if not p.startswith("*")]:
            return True
        if not any(p.startswith("**") for p in params):
            return False
        if keyword in record.get("kwargs_keys", []) or keyword in record.get("kwargs_used", []):
            return True
        if "kwargs_keys" in record:
            return False
        verdicts = []
        for target in record.get("forwards", []):
            if target in _seen:
                continue
            forwarded = self._forward(fn, target)
            if isinstance(forwarded, Found) and forwarded.kind == "class":
                forwarded = self.member(forwarded.where, "__init__")
            if isinstance(forwarded, Found) and forwarded.kind in {"method", "function"}:
                verdicts.append(self.accepts(forwarded, keyword, _seen | {target}))
        if False in verdicts:
            return False
        if True in verdicts:
            return True
        return False if record.get("kwargs_used") and record.get("forwards") is None else None

    def _forward(self, fn: Found, target: str) -> Found | Missing:
        how, _, name = target.partition(":")
        if how == "self" and fn.owner:
            return self.member(fn.owner, name)
        if how == "super" and fn.owner:
            for cls in self.mro(fn.owner)[1:]:
                found = self.member(cls, name)
                if isinstance(found, Found) and found.owner == cls:
                    return found
            return Missing(f"no super().{name}")
        return self.resolve(target)

    # message packages
    def _interface(self, parts: list[str]) -> Found | Missing:
        package = self.interfaces[parts[0]]
        if len(parts) < 3:
            return Found("module", ".".join(parts))
        kind, type_name, rest = parts[1], parts[2], parts[3:]
        types = package.get(kind)
        if types is None:
            return Missing(f"humble's {parts[0]} has no '{kind}'")
        if type_name not in types:
            return Missing(f"humble's {parts[0]} ({package['source']}) has no {kind}/{type_name}")
        where = ".".join(parts[:3])
        spec = types[type_name]
        if kind == "msg":
            members = spec["fields"] + spec.get("constants", [])
            if not rest:
                return Found("interface", where, spec["fields"])
        else:
            members = ["Request", "Response"]
            if rest[:1] in (["Request"], ["Response"]):
                fields = spec[rest[0].lower()]
                return Found("interface", f"{where}.{rest[0]}", fields) if len(rest) == 1 else \
                    Found("member", f"{where}.{rest[0]}.{rest[1]}") if rest[1] in fields else \
                    Missing(f"humble's {where}.{rest[0]} has no '{rest[1]}'")
            if not rest:
                return Found("opaque", where)
        if rest[0] in members or external_has("object", rest[0]):
            return Found("member", f"{where}.{rest[0]}")
        return Missing(f"humble's {where} has no field or constant '{rest[0]}'")


def external_has(cls: str, name: str) -> bool | None:
    """Whether a base class outside rclpy (``enum.IntEnum``, ``Exception``, ``typing.NamedTuple``) has ``name``;
    None when it cannot be told (a C extension type, a generic)."""
    module, _, attr = cls.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module), attr) if module else getattr(builtins, attr)
    except (ImportError, AttributeError):
        return None
    if not isinstance(obj, type):
        return None
    if issubclass(obj, enum.Enum) and name in {"name", "value"}:
        return True
    return hasattr(obj, name)


@functools.lru_cache(maxsize=1)
def load_api() -> HumbleApi:
    return HumbleApi(json.loads(TABLE_PATH.read_text()))


@pytest.fixture(scope="module")
def api() -> HumbleApi:
    return load_api()


# -------------------------------------------------------------------------------------------------- static part


@dataclass(frozen=True)
class Use:
    """One use of an rclpy (or message package) name in our source."""

    where: str  # path:line
    name: str  # dotted, after the file's imports
    kind: str  # import, attribute or call
    n_args: int | None = None
    keywords: tuple[str, ...] = ()


def tracked(module: str, api: HumbleApi) -> bool:
    root = module.partition(".")[0]
    return root == "rclpy" or root in api.interfaces


def scan(source: str, path: str, api: HumbleApi) -> list[Use]:
    """The rclpy and message-package uses of one file: imports, attribute chains on imported names, calls."""
    tree = ast.parse(source, filename=path)
    bound: dict[str, str] = {}  # local name -> dotted (imports anywhere in the file: ours sit in functions)
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if tracked(alias.name, api):
                    uses.append(Use(f"{path}:{node.lineno}", alias.name, "import"))
                    bound[alias.asname or alias.name.partition(".")[0]] = alias.name if alias.asname else \
                        alias.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and tracked(node.module, api):
            for alias in node.names:
                uses.append(Use(f"{path}:{node.lineno}", f"{node.module}.{alias.name}", "import"))
                bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def expand(expr: ast.AST) -> str | None:
        name = dotted(expr)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        return None if head not in bound else f"{bound[head]}.{rest}" if rest else bound[head]

    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = expand(node.func)
            if name is not None:
                starred = any(isinstance(a, ast.Starred) for a in node.args)
                uses.append(Use(f"{path}:{node.lineno}", name, "call", None if starred else len(node.args),
                                tuple(k.arg for k in node.keywords if k.arg is not None)))
        elif isinstance(node, ast.Attribute) and id(node) not in inner and id(node) not in callees:
            name = expand(node)
            if name is not None:
                uses.append(Use(f"{path}:{node.lineno}", name, "attribute"))
    return uses


def check_use(api: HumbleApi, use: Use) -> list[str]:
    """Problems of one static use on humble; [] when humble has it."""
    if use.kind == "call":
        problems = api.check_call(use.name, use.n_args, use.keywords)
    else:
        found = api.resolve(use.name)
        problems = [found.reason] if isinstance(found, Missing) else []
    return [f"{use.where}: {use.name}: {p}" for p in problems]


def static_uses(api: HumbleApi) -> list[Use]:
    return [use for path in SOURCES for use in scan(path.read_text(), str(path.relative_to(ROOT)), api)]


def test_the_table_is_from_humble(api) -> None:
    info = api.table["rclpy"]
    assert info["branch"] == "humble" and len(info["commit"]) == 40 and info["version"].startswith("3.3.")
    for module in ("rclpy", "rclpy.node", "rclpy.lifecycle", "rclpy.lifecycle.node", "rclpy.lifecycle.publisher",
                   "rclpy.lifecycle.managed_entity", "rclpy.qos", "rclpy.qos_overriding_options",
                   "rclpy.executors", "rclpy.exceptions", "rclpy.parameter", "rclpy.publisher",
                   "rclpy.subscription", "rclpy.client", "rclpy.service", "rclpy.clock", "rclpy.time",
                   "rclpy.logging", "rclpy.impl.rcutils_logger", "rclpy.utilities", "rclpy.signals", "rclpy.task"):
        assert module in api.modules, module
    for package in ("rcl_interfaces", "std_msgs", "sensor_msgs", "diagnostic_msgs", "std_srvs"):
        assert api.interfaces[package]["source"].endswith("@humble"), package


def test_the_table_is_what_the_generator_makes_from_the_mirror() -> None:
    """Regenerating from the humble branch gives the checked-in file (skipped where the mirrors are absent)."""
    repos = [generator.mirror_path(generator.DEFAULT_MIRROR, r)
             for r in (generator.RCLPY_REPO, *(i[0] for i in generator.INTERFACES))]
    if not all(r.exists() for r in repos):
        pytest.skip(f"the git mirrors are not here ({generator.DEFAULT_MIRROR}): cannot regenerate the table")
    head = generator.git(repos[0], "rev-parse", "humble^{commit}").strip()
    if head != load_api().table["rclpy"]["commit"]:
        pytest.skip(f"the mirror's humble is at {head}, the table's at {load_api().table['rclpy']['commit']}: "
                    "rerun python test/tools/humble_api_table.py to move the table on")
    assert generator.dump(generator.build(generator.DEFAULT_MIRROR, "humble")) + "\n" == TABLE_PATH.read_text(), \
        "test/data/rclpy_humble_api.json is stale: run python test/tools/humble_api_table.py"


def test_every_static_rclpy_use_exists_on_humble(api) -> None:
    uses = static_uses(api)
    names = {u.name for u in uses}
    # the scan sees the entry point's calls (a scan that finds nothing would pass vacuously)
    assert {"rclpy.init", "rclpy.create_node", "rclpy.ok", "rclpy.spin_once", "rclpy.try_shutdown",
            "rclpy.executors.ExternalShutdownException", "rclpy.qos.QoSProfile"} <= names, sorted(names)
    problems = [p for use in uses for p in check_use(api, use)]
    assert not problems, "APIs that rclpy humble lacks:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------------------------- runtime part


@dataclass(frozen=True)
class Call:
    """One rclpy function, method or property our code used at run time."""

    name: str  # dotted: module.function, module.Class.method, module.Class (constructor)
    kind: str  # call, get (property read) or set (property write)
    n_args: int
    keywords: tuple[str, ...]


@dataclass
class Recorder:
    """Wraps rclpy's Python functions, methods and properties; records those called from ``ssp_ros`` frames."""

    calls: dict[Call, str] = field(default_factory=dict)  # -> first place (path:line)
    inject: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra keywords for the real call
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, call: Call, frame: Any) -> None:
        where = f"{os.path.relpath(frame.f_code.co_filename, ROOT)}:{frame.f_lineno}"
        with self.lock:
            self.calls.setdefault(call, where)

    def install(self, monkeypatch: pytest.MonkeyPatch, api: HumbleApi) -> None:
        done: set[int] = set()
        for module_name in sorted(api.modules):
            try:
                with warnings.catch_warnings():  # e.g. Jazzy's "importing 'qos_event' is deprecated"
                    warnings.simplefilter("ignore")
                    module = importlib.import_module(module_name)
            except Exception:  # noqa: BLE001 - a module this rclpy lacks or cannot load: nothing to wrap
                continue
            for name, obj in list(vars(module).items()):
                if name.startswith("_"):
                    continue
                if inspect.isfunction(obj) and obj.__module__.startswith("rclpy") and wrappable(obj):
                    monkeypatch.setattr(module, name, self.function(obj, f"{module_name}.{name}"))
                elif isinstance(obj, type) and obj.__module__ == module_name and id(obj) not in done:
                    done.add(id(obj))
                    self.wrap_class(monkeypatch, obj)

    def wrap_class(self, monkeypatch: pytest.MonkeyPatch, cls: type) -> None:
        if issubclass(cls, (enum.Enum, BaseException, tuple)):
            return
        for name, raw in list(vars(cls).items()):
            if isinstance(raw, type) and raw.__qualname__ == f"{cls.__qualname__}.{name}":  # a nested class
                self.wrap_class(monkeypatch, raw)
            if name.startswith("_") and name != "__init__":
                continue
            if isinstance(raw, property):
                monkeypatch.setattr(cls, name, property(
                    self.accessor(raw.fget, name, "get") if raw.fget else None,
                    self.accessor(raw.fset, name, "set") if raw.fset else None, raw.fdel, raw.__doc__))
            elif isinstance(raw, staticmethod) and wrappable(raw.__func__):
                monkeypatch.setattr(cls, name, staticmethod(self.function(raw.__func__, qualified(cls, name))))
            elif isinstance(raw, classmethod) and wrappable(raw.__func__):
                monkeypatch.setattr(cls, name, classmethod(self.method(raw.__func__, name)))
            elif inspect.isfunction(raw) and wrappable(raw):
                monkeypatch.setattr(cls, name, self.method(raw, name))

    def function(self, fn: Callable, name: str) -> Callable:
        @functools.wraps(fn)
        def recording(*args: Any, **kwargs: Any) -> Any:
            frame = sys._getframe(1)
            if frame.f_globals.get("__name__", "").startswith("ssp_ros"):
                self.record(Call(name, "call", len(args), tuple(sorted(kwargs))), frame)
                kwargs = {**kwargs, **self.inject.get(name, {})}
            return fn(*args, **kwargs)

        return recording

    def method(self, fn: Callable, name: str) -> Callable:
        @functools.wraps(fn)
        def recording(this: Any, *args: Any, **kwargs: Any) -> Any:
            frame = sys._getframe(1)
            if frame.f_globals.get("__name__", "").startswith("ssp_ros"):
                owner = rclpy_class(this if isinstance(this, type) else type(this))
                call = Call(owner if name == "__init__" else f"{owner}.{name}", "call", len(args),
                            tuple(sorted(kwargs)))
                self.record(call, frame)
            return fn(this, *args, **kwargs)

        return recording

    def accessor(self, fn: Callable, name: str, kind: str) -> Callable:
        @functools.wraps(fn)
        def recording(this: Any, *args: Any) -> Any:
            frame = sys._getframe(1)
            if frame.f_globals.get("__name__", "").startswith("ssp_ros"):
                self.record(Call(f"{rclpy_class(type(this))}.{name}", kind, len(args), ()), frame)
            return fn(this, *args)

        return recording

    def listing(self) -> list[str]:
        with self.lock:
            items = sorted(self.calls.items(), key=lambda item: (item[0].name, item[0].kind, item[0].keywords))
        return [f"{c.name}{describe(c)}  [{where}]" for c, where in items]


def describe(call: Call) -> str:
    if call.kind != "call":
        return f" ({call.kind})"
    return f"({', '.join(['_'] * call.n_args + [k + '=' for k in call.keywords])})"


def wrappable(fn: Callable) -> bool:
    return getattr(fn, "__module__", "").startswith("rclpy") and not (
        inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn))


def qualified(cls: type, name: str = "") -> str:
    return f"{cls.__module__}.{cls.__qualname__}" + (f".{name}" if name else "")


def rclpy_class(cls: type) -> str:
    """The first rclpy class of ``cls``'s MRO (our subclasses of rclpy classes answer for their rclpy base)."""
    return next((qualified(c) for c in cls.__mro__ if c.__module__.startswith("rclpy")), qualified(cls))


def check_call_record(api: HumbleApi, call: Call) -> list[str]:
    """Problems of one recorded call on humble; [] when humble has it."""
    if call.kind == "call":
        return api.check_call(call.name, call.n_args, call.keywords)
    found = api.resolve(call.name)
    if isinstance(found, Missing):
        return [found.reason]
    if call.kind == "set" and found.kind == "property":
        owner = api.class_record(found.owner or "")
        if owner is not None and call.name.rpartition(".")[2] not in owner.get("properties", []):
            return [f"{call.name}: not settable on humble"]
    return []


@pytest.fixture
def api_recorder(monkeypatch, api) -> Iterator[Recorder]:
    """rclpy's functions and methods wrapped to record what ``ssp_ros`` calls; the logger's call-site lookup
    skips this file's wrappers (rclpy keeps a list of such files for exactly this), so each call site of ours
    still logs at one severity."""
    from rclpy.impl import rcutils_logger
    from rclpy.signals import SignalHandlerOptions

    here = os.path.realpath(__file__)
    callers = rcutils_logger._internal_callers  # changed in place: rclpy adds its own files to this very list
    callers.append(here)
    recorder = Recorder()
    # main() inits the default context: without rclpy's SIGINT/SIGTERM handlers, which belong to pytest here
    recorder.inject["rclpy.init"] = {"signal_handler_options": SignalHandlerOptions.NO}
    recorder.install(monkeypatch, api)
    try:
        yield recorder
    finally:
        callers.remove(here)


def assert_humble(api: HumbleApi, recorder: Recorder, expected: set[str]) -> None:
    calls = dict(recorder.calls)
    print("\nrclpy calls recorded from ssp_ros:\n  " + "\n  ".join(recorder.listing()))
    names = {c.name for c in calls}
    assert expected <= names, f"the recorder missed {sorted(expected - names)}; it saw {sorted(names)}"
    unverified = [c.name for c in calls if not isinstance(api.resolve(c.name), Found)
                  or api.resolve(c.name).kind in {"opaque", "external"}]
    print("not verifiable from the table (C extension or non-rclpy):", unverified or "none")
    problems = [f"{where}: {c.name}{describe(c)}: {p}" for c, where in calls.items()
                for p in check_call_record(api, c)]
    assert not problems, "APIs that rclpy humble lacks:\n" + "\n".join(problems)


def rgb_image(node: Any, height: int = 96, width: int = 128) -> Any:
    from sensor_msgs.msg import Image

    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes())
    msg.header.stamp = node.get_clock().now().to_msg()
    return msg


class Camera:
    """The test's side: a publisher of frames to the node and a subscription to its masks, on ``context``; only
    masks stamped like a frame sent here count (other tests' nodes may share the ROS domain)."""

    def __init__(self, context: Any, image_topic: str, mask_topic: str) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from sensor_msgs.msg import Image

        self.node = rclpy.create_node("humble_api_camera", context=context)
        self.sent: set[tuple[int, int]] = set()
        self.masks: list = []
        self.node.create_subscription(Image, mask_topic, self._on_mask, 10)
        self.publisher = self.node.create_publisher(Image, image_topic, 10)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_mask(self, msg: Any) -> None:
        if (msg.header.stamp.sec, msg.header.stamp.nanosec) in self.sent:
            self.masks.append(msg)

    def until_a_mask(self, spin: Callable[[], None]) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not self.masks:
            assert time.monotonic() < deadline, "the node never published a mask"
            frame = rgb_image(self.node)
            self.sent.add((frame.header.stamp.sec, frame.header.stamp.nanosec))
            self.publisher.publish(frame)
            for _ in range(3):
                spin()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def call_reset(camera: Camera, node: Any) -> None:
    """Call the node's ~/reset service (std_srvs/Trigger) from the camera; the executor spins both."""
    from std_srvs.srv import Trigger

    client = camera.node.create_client(Trigger, node.resolve_service_name("~/reset"))
    assert client.wait_for_service(timeout_sec=TIMEOUT_S)
    future = client.call_async(Trigger.Request())
    camera.executor.spin_until_future_complete(future, timeout_sec=TIMEOUT_S)
    assert future.result() is not None and future.result().success
    camera.node.destroy_client(client)


def small_config(tmp_path: Path) -> Path:
    """A node config with a small untrained model (fast to build), its own input topic, no frame-age limit."""
    import yaml

    path = tmp_path / "ssp.yaml"
    path.write_text(yaml.safe_dump({"model": {"weights": None, "input_size": [32, 64]},
                                    "node": {"image_topic": "/humble_api/image", "max_age_ms": 0.0}}))
    return path


def drive_transport(node: Any, seg: Any, context: Any) -> None:
    """The node built by test_rclpy_transport's ``segmenter`` fixture (declare_parameters, SegmentationNode on
    RclpyTransport, add_ros_interfaces): frames in until masks come out, diagnostics, parameter changes in
    flight (accepted and refused), the ~/reset service, a log line at each level, close."""
    from rclpy.parameter import Parameter

    camera = Camera(context, seg.monitor.topic, node.resolve_topic_name("~/mask"))
    camera.executor.add_node(node)
    try:
        camera.until_a_mask(lambda: camera.executor.spin_once(timeout_sec=0.05))
        seg.publish_diagnostics()
        assert node.set_parameters([Parameter("propagation.max_time_gap_s", value=2.0)])[0].successful
        assert not node.set_parameters([Parameter("propagation.max_time_gap_s", value="soon")])[0].successful
        call_reset(camera, node)
        for level in ("info", "warning", "error"):
            seg.transport.log(level, f"{level} from test_rclpy_humble_api")
        seg.close()
    finally:
        camera.executor.remove_node(node)
        camera.close()


def drive_main(context: Any, tmp_path: Path) -> int:
    """``ssp_node``'s ``main()`` in this process (default context, rclpy's own spin loop) until it has sent a
    mask, then an external shutdown of the default context, as SIGINT/SIGTERM do: its exit status."""
    from ssp_ros.ros.main import main

    config = small_config(tmp_path)
    camera = Camera(context, "/humble_api/image", "/humble_api/ssp/mask")
    done = threading.Event()
    failure: list[BaseException] = []

    def run_camera() -> None:
        try:
            camera.until_a_mask(lambda: camera.executor.spin_once(timeout_sec=0.05))
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            failure.append(err)
        while not done.is_set():  # until main() has returned (it may not have reached rclpy.init yet)
            rclpy.try_shutdown()
            done.wait(0.2)

    thread = threading.Thread(target=run_camera, name="humble_api_camera", daemon=True)
    thread.start()
    try:
        status = main(["ssp_node", "--ros-args", "-r", "__ns:=/humble_api", "-p", f"config_file:={config}"])
    finally:
        done.set()
        thread.join(timeout=TIMEOUT_S)
        camera.close()
        rclpy.try_shutdown()
    if failure:
        raise failure[0]
    return status


def drive_lifecycle(context: Any, tmp_path: Path) -> None:
    """The managed node (ssp_ros/ros/lifecycle.py) through its transitions: configure, activate, frames in
    until masks come out, a parameter change, ~/reset, deactivate, cleanup, configure again, shutdown."""
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from ssp_ros.ros.lifecycle import LifecycleSegmentationNode

    success = TransitionCallbackReturn.SUCCESS
    node = LifecycleSegmentationNode(context=context, namespace="/humble_api", parameter_overrides=[
        Parameter("config_file", value=str(small_config(tmp_path)))])
    camera = Camera(context, "/humble_api/image", node.resolve_topic_name("~/mask"))
    camera.executor.add_node(node)
    try:
        assert node.trigger_configure() == success and node.trigger_activate() == success
        camera.until_a_mask(lambda: camera.executor.spin_once(timeout_sec=0.05))
        assert node.set_parameters([Parameter("propagation.max_time_gap_s", value=2.0)])[0].successful
        call_reset(camera, node)
        assert node.trigger_deactivate() == success and node.trigger_cleanup() == success
        assert node.trigger_configure() == success and node.trigger_shutdown() == success
    finally:
        camera.executor.remove_node(node)
        camera.close()
        node.close()
        node.destroy_node()


def core(node: str = "rclpy.node.Node", publisher: str = "rclpy.publisher.Publisher") -> set[str]:
    """What any run of the node calls (so the recorder is seen to work), on these node and publisher classes."""
    return {f"{node}.{m}" for m in ("declare_parameter", "get_parameter", "create_subscription", "create_service",
                                    "add_on_set_parameters_callback", "get_logger", "get_clock")} | {
        f"{publisher}.publish", "rclpy.parameter.Parameter.value", "rclpy.qos.QoSProfile",
        "rclpy.impl.rcutils_logger.RcutilsLogger.info"}


@needs_rclpy
def test_the_transport_paths_use_only_humble_api(api, api_recorder, request) -> None:
    node, seg = request.getfixturevalue("segmenter")  # built after the recorder is in place
    drive_transport(node, seg, request.getfixturevalue("context"))
    assert_humble(api, api_recorder, core() | {
        "rclpy.node.Node.create_publisher", "rclpy.publisher.Publisher.get_subscription_count",
        "rclpy.impl.rcutils_logger.RcutilsLogger.warning", "rclpy.impl.rcutils_logger.RcutilsLogger.error"})


@needs_rclpy
def test_the_entry_point_uses_only_humble_api(api, api_recorder, request, tmp_path) -> None:
    status = drive_main(request.getfixturevalue("context"), tmp_path)
    assert status == 0, "a clean stop after an external shutdown"
    assert_humble(api, api_recorder, core() | {"rclpy.init", "rclpy.create_node", "rclpy.ok", "rclpy.spin_once",
                                             "rclpy.try_shutdown", "rclpy.node.Node.destroy_node"})


@needs_rclpy
def test_the_lifecycle_node_uses_only_humble_api(api, api_recorder, request, tmp_path) -> None:
    try:
        import ssp_ros.ros.lifecycle  # noqa: F401 - only whether it is there
    except ImportError as err:
        pytest.skip(f"no lifecycle node to drive: {err}")
    drive_lifecycle(request.getfixturevalue("context"), tmp_path)
    node = "rclpy.lifecycle.node.LifecycleNode"
    assert_humble(api, api_recorder, core(node, "rclpy.lifecycle.publisher.LifecyclePublisher") | {
        node, f"{node}.create_lifecycle_publisher", f"{node}.on_configure", f"{node}.on_activate",
        f"{node}.on_deactivate", f"{node}.on_cleanup", f"{node}.on_shutdown"})


# ----------------------------------------------------------------------------------------------------- the guard


ITERON = ("rclpy.node.Node.add_post_set_parameters_callback", "rclpy.node.Node.add_pre_set_parameters_callback",
          "rclpy.node.Node.list_parameters", "rclpy.subscription.Subscription.get_publisher_count",
          "rclpy.logging.get_logger_level", "rclpy.qos.qos_profile_best_available")


def test_apis_humble_lacks_are_reported(api) -> None:
    """Iron/Jazzy additions (absent from the humble branch, present in the table's jazzy counterpart) fail the
    same checks the node's uses go through; their humble counterparts pass."""
    for name in ITERON:
        assert isinstance(api.resolve(name), Missing), name
        assert check_use(api, Use("x.py:1", name, "attribute")), name
    assert check_call_record(api, Call("rclpy.node.Node.add_post_set_parameters_callback", "call", 1, ()))
    assert not check_call_record(api, Call("rclpy.node.Node.add_on_set_parameters_callback", "call", 1, ()))
    # keywords added after humble
    assert api.check_call("rclpy.create_node", 1, ("enable_logger_service",))
    assert api.check_call("rclpy.node.Node.create_timer", 2, ("autostart",))
    assert api.check_call("rclpy.client.Client.call", 1, ("timeout_sec",))
    assert not api.check_call("rclpy.node.Node.create_timer", 2, ("callback_group",))
    # keywords that only reach a **kwargs: the logger's filters, QoSProfile's policies, LifecycleNode -> Node
    logger = "rclpy.impl.rcutils_logger.RcutilsLogger"
    assert not api.check_call(f"{logger}.info", 1, ("throttle_duration_sec",))
    assert api.check_call(f"{logger}.info", 1, ("throttle_sec",))
    assert not api.check_call("rclpy.qos.QoSProfile", 0, ("depth", "reliability"))
    assert api.check_call("rclpy.qos.QoSProfile", 0, ("reliablity",))
    assert not api.check_call("rclpy.lifecycle.LifecycleNode", 1, ("parameter_overrides",))
    assert api.check_call("rclpy.lifecycle.LifecycleNode", 1, ("enable_logger_service",))
    assert api.check_call("rclpy.node.Node.declare_parameter", 5, ())  # too many positional arguments
    assert not api.check_call("rclpy.node.Node.declare_parameter", 3, ())
    assert api.check_call("rclpy.qos.QoSProfile", 1, ())  # QoSProfile(**kwargs)
    # enums of the C extension
    assert isinstance(api.resolve("rclpy.lifecycle.TransitionCallbackReturn.FAILURE"), Found)
    assert isinstance(api.resolve("rclpy.lifecycle.TransitionCallbackReturn.FAILED"), Missing)
    assert isinstance(api.resolve("rclpy.signals.SignalHandlerOptions.NO"), Found)
    # message types and fields
    assert not api.check_call("rcl_interfaces.msg.ParameterDescriptor", 0, ("dynamic_typing", "read_only"))
    assert api.check_call("rcl_interfaces.msg.ParameterDescriptor", 0, ("dynamic_typeing",))
    assert isinstance(api.resolve("std_srvs.srv.Trigger.Response.success"), Found)
    assert isinstance(api.resolve("sensor_msgs.msg.NoSuchImage"), Missing)


def test_the_static_scan_reports_what_humble_lacks(api) -> None:
    source = ("def main():\n"
              "    import rclpy\n"
              "    from rclpy.qos import HistoryPolicy, qos_profile_best_available\n"
              "    node = rclpy.create_node('x', enable_logger_service=True)\n"
              "    rclpy.node.Node.add_post_set_parameters_callback(node, print)\n"
              "    return HistoryPolicy.KEEP_LAST, HistoryPolicy.KEEP_SOME, rclpy.spin_once(node, timeout_sec=1)\n")
    problems = [p for use in scan(source, "fake.py", api) for p in check_use(api, use)]
    assert len(problems) == 4, problems
    assert [p.split(": ")[0] for p in problems] == ["fake.py:3", "fake.py:4", "fake.py:5", "fake.py:6"], problems


@needs_rclpy
def test_the_recorder_reports_what_humble_lacks(api, api_recorder, request) -> None:
    """A Jazzy-only method and keyword called from an ``ssp_ros`` frame are recorded and reported."""
    if not hasattr(rclpy.node.Node, "add_post_set_parameters_callback"):
        pytest.skip("this rclpy is humble-like: it has no add_post_set_parameters_callback to call")
    node = rclpy.create_node("humble_api_guard", context=request.getfixturevalue("context"))
    try:
        code = compile("node.add_post_set_parameters_callback(lambda params: None)\n"
                       "node.create_timer(10.0, lambda: None, autostart=False)\n"
                       "node.get_logger().info('guard', once=True)\n", "ssp_ros/fake.py", "exec")
        exec(code, {"__name__": "ssp_ros.fake", "node": node})  # noqa: S102 - a frame of an ssp_ros module
    finally:
        node.destroy_node()
    problems = {c.name: check_call_record(api, c) for c in api_recorder.calls}
    assert problems["rclpy.node.Node.add_post_set_parameters_callback"], problems
    assert problems["rclpy.node.Node.create_timer"], problems
    assert problems["rclpy.impl.rcutils_logger.RcutilsLogger.info"] == [], problems

"""TensorRT engine files in an exported model folder, and the sidecar that says what each was built from.

An engine only runs on the TensorRT version and GPU that built it, and only matches the graph it was built
from, so every engine ``<graph>.<precision>.engine`` has a sidecar ``<graph>.<precision>.engine.json``
holding its key: the graph's ONNX SHA-256 (as ``export.json`` records it), the TensorRT version, the GPU
name, compute capability and multiprocessor count (Jetson Orin modules share a name and compute capability
but not their SM count), the precision, the INT8 calibration set's hash, and the engine file's own SHA-256.
The runtime refuses an engine whose key differs from the running system, naming the field and the command
that rebuilds it. Nothing here imports TensorRT: the key is plain data, tested anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ssp_ros.backends.export_info import ExportInfo
from ssp_ros.config import PRECISIONS
from ssp_ros.errors import SspError

# 2: the fusion engine is built in FP32 at every run precision (tensorrt_build.FP32_GRAPHS); a format-1
# fusion.fp16.engine may compute in FP16, so format-1 sidecars are refused and the engines rebuilt
SIDECAR_FORMAT = 2
INT8_GRAPHS = ("segmenter",)  # an INT8 build quantises the segmenter only (tensorrt_build.py says why)


@dataclass(frozen=True)
class Platform:
    """What an engine is tied to besides its graph: the TensorRT version and the GPU."""

    tensorrt_version: str  # trt.__version__, e.g. "8.6.2.3"
    gpu_name: str  # e.g. "Orin"
    compute_capability: str  # "major.minor", e.g. "8.7"
    multiprocessors: int  # streaming multiprocessors, e.g. 16 on an AGX Orin 64 GB, 14 on the 32 GB

    @property
    def slug(self) -> str:
        """A file-name-safe summary, e.g. ``trt8.6.2.3-orin-sm87-16mp``."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-")
        return f"trt{self.tensorrt_version}-{gpu}-sm{self.compute_capability.replace('.', '')}-{self.multiprocessors}mp"


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine must match to be loaded; written to and checked against its sidecar."""

    graph: str  # "segmenter" or "fusion"
    onnx_sha256: str  # the graph's hash in export.json
    precision: str  # the engine's precision name ("fp32", "fp16", "int8"); the fusion engine computes in FP32
    #                 whatever its name (tensorrt_build.FP32_GRAPHS)
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    multiprocessors: int
    calibration_sha256: str | None = None  # INT8 only: calibration.CalibrationSet.sha256()

    @classmethod
    def for_graph(cls, info: ExportInfo, graph: str, precision: str, platform: Platform,
                  calibration_sha256: str | None = None) -> EngineKey:
        """The key of ``graph``'s engine at engine precision ``precision`` on ``platform``."""
        if precision not in PRECISIONS:
            raise SspError(f"precision '{precision}': expected one of {', '.join(PRECISIONS)}")
        return cls(graph=graph, onnx_sha256=info.graph(graph).sha256, precision=precision,
                   tensorrt_version=platform.tensorrt_version, gpu_name=platform.gpu_name,
                   compute_capability=platform.compute_capability, multiprocessors=platform.multiprocessors,
                   calibration_sha256=calibration_sha256)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def mismatches(self, found: dict[str, Any]) -> list[str]:
        """'field: expected X, found Y' for each field of ``found`` (a sidecar's key) that differs.

        Fields this key leaves None are not compared: a runtime loading an INT8 engine does not know which
        frames calibrated it, so its key has no ``calibration_sha256`` (the sidecar still records it)."""
        out = []
        for f in fields(self):
            expected = getattr(self, f.name)
            if expected is None:
                continue
            value = found.get(f.name, "<missing>")
            if value != expected:
                out.append(f"{f.name}: expected {expected!r}, found {value!r}")
        return out


def engine_precision(graph: str, precision: str) -> str:
    """The precision name of ``graph``'s engine when the model runs at ``precision`` (INT8 → the fusion engine
    is named fp16; it is built in FP32 at every precision, see ``tensorrt_build.FP32_GRAPHS``)."""
    if precision not in PRECISIONS:
        raise SspError(f"precision '{precision}': expected one of {', '.join(PRECISIONS)}")
    return "fp16" if precision == "int8" and graph not in INT8_GRAPHS else precision


def engine_path(folder: str | Path, graph: str, precision: str) -> Path:
    """``folder/<graph>.<precision>.engine`` for an engine precision (see ``engine_precision``)."""
    return Path(folder) / f"{graph}.{precision}.engine"


def sidecar_path(engine: Path) -> Path:
    """The JSON sidecar beside an engine file: ``segmenter.fp16.engine`` → ``segmenter.fp16.engine.json``."""
    return engine.with_name(engine.name + ".json")


def timing_cache_path(folder: str | Path, platform: Platform) -> Path:
    """The builder's timing cache for one TensorRT version and GPU (TensorRT rejects a cache from another)."""
    return Path(folder) / f"timing.{platform.slug}.cache"


def calibration_cache_path(folder: str | Path, key: EngineKey) -> Path:
    """The INT8 calibration table for this graph, calibration set and TensorRT version; the name carries
    their hash, so a changed graph or frame folder never reuses a stale table."""
    tag = hashlib.sha256(f"{key.onnx_sha256}:{key.calibration_sha256}:{key.tensorrt_version}".encode())
    return Path(folder) / f"{key.graph}.int8-{tag.hexdigest()[:12]}.calib"


def rebuild_command(folder: str | Path, precision: str) -> str:
    """The command that (re)builds the engines of ``folder`` for run precision ``precision``."""
    calib = " --calib FRAMES_DIR" if precision == "int8" else ""
    return f"ssp build-engine --onnx {folder} --{precision}{calib}"


def partial_path(path: Path) -> Path:
    """Where ``write_atomic`` stages ``path`` until it is complete."""
    return path.with_name(f".{path.name}.partial")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through ``partial_path``, so a reader never sees half a file."""
    tmp = partial_path(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise SspError(f"{path}: cannot write ({err.strerror})") from None


def write_engine(path: Path, engine: bytes, key: EngineKey, build: dict[str, Any]) -> Path:
    """Write ``engine`` to ``path`` and then its sidecar (key, engine SHA-256, ``build`` details).

    The sidecar names the engine's hash, so an engine left without its new sidecar (a crash between the
    two writes) is refused rather than trusted."""
    write_atomic(path, engine)
    sidecar = {"format": SIDECAR_FORMAT, "key": key.to_dict(), "engine_sha256": hashlib.sha256(engine).hexdigest(),
               "engine_bytes": len(engine), "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "build": build}
    write_atomic(sidecar_path(path), (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return path


def read_sidecar(engine: Path, rebuild: str) -> dict[str, Any]:
    """The sidecar of ``engine`` as a dict; an error naming the file and ``rebuild`` if absent or invalid."""
    path = sidecar_path(engine)
    if not path.is_file():
        raise SspError(f"{path}: missing, so {engine.name} cannot be checked against this TensorRT and GPU; "
                       f"rebuild with `{rebuild}`")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SspError(f"{path}: not valid JSON ({err}); rebuild with `{rebuild}`") from None
    if not isinstance(data, dict) or not isinstance(data.get("key"), dict):
        raise SspError(f"{path}: expected an object with a 'key' object; rebuild with `{rebuild}`")
    if data.get("format") != SIDECAR_FORMAT:
        raise SspError(f"{path}: sidecar format {data.get('format')!r}, this ssp_ros reads {SIDECAR_FORMAT}; "
                       f"rebuild with `{rebuild}`")
    return data


def read_checked_engine(engine: Path, key: EngineKey, rebuild: str) -> bytes:
    """The bytes of ``engine`` after checking its sidecar against ``key`` and the file against its hash.

    Every mismatching field is named (expected vs found) with the command that rebuilds the engine."""
    if not engine.is_file():
        raise SspError(f"{engine}: TensorRT engine not found; build it with `{rebuild}`")
    sidecar = read_sidecar(engine, rebuild)
    problems = key.mismatches(sidecar["key"])
    if problems:
        raise SspError(f"{engine}: built for another graph, TensorRT or GPU ({sidecar_path(engine).name}: "
                       f"{'; '.join(problems)}); rebuild with `{rebuild}`")
    data = engine.read_bytes()
    if hashlib.sha256(data).hexdigest() != sidecar.get("engine_sha256"):
        raise SspError(f"{engine}: contents do not match engine_sha256 in {sidecar_path(engine).name} (the engine "
                       f"was replaced or truncated after it was built); rebuild with `{rebuild}`")
    return data

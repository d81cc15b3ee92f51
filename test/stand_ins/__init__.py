"""Stand-ins for ``tensorrt`` and ``pycuda`` that keep the rules of the real APIs (see each module), installed
for one test: ``install(monkeypatch, "10.3.0.26")`` puts fresh copies in ``sys.modules`` as ``tensorrt``,
``pycuda``, ``pycuda.driver`` (and makes ``pycuda.autoinit`` importable) until the test ends, on a new
simulated GPU (``gpu.Gpu``) whose ``live``, ``leaked`` and ``problems`` tell what was left behind.

Nothing here is importable as ``tensorrt``/``pycuda`` outside a test that installs it."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stand_ins.gpu import DeviceInfo, Gpu

HERE = Path(__file__).parent
VERSIONS = {"jetpack5": "8.5.2.2", "jetpack6.0": "8.6.2.3", "jetpack6.1": "10.3.0.30", "pypi": "11.0.0.1"}


@dataclass
class StandIns:
    trt: types.ModuleType
    cuda: types.ModuleType
    gpu: Gpu


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install(monkeypatch: Any, tensorrt_version: str = VERSIONS["jetpack6.0"],
            devices: tuple[DeviceInfo, ...] = (DeviceInfo(),)) -> StandIns:
    gpu = Gpu(devices)
    cuda = _load("pycuda.driver", HERE / "pycuda" / "driver.py")
    cuda._attach(gpu)
    package = _load("pycuda", HERE / "pycuda" / "__init__.py")
    package.__path__ = [str(HERE / "pycuda")]  # so `import pycuda.autoinit` runs autoinit.py afresh
    package.driver = cuda
    trt = _load("tensorrt", HERE / "tensorrt.py")
    trt._configure(tensorrt_version, gpu)
    for name, module in (("tensorrt", trt), ("pycuda", package), ("pycuda.driver", cuda)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "pycuda.autoinit", None)  # undone by deleting whatever is there then
    del sys.modules["pycuda.autoinit"]
    return StandIns(trt, cuda, gpu)


def write_export(folder: Path, batch: int | str = 1) -> Any:
    """fake_export's folder (same shapes and classes) with graph files the stand-in parser reads."""
    from fake_export import CLASSES, FEATURES, INPUT_SIZE, graph_shapes

    from ssp_ros.backends.export_info import load_export_info, sha256_file, write_export_info

    folder.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for name, shapes in graph_shapes(batch).items():
        path = folder / f"{name}.onnx"
        path.write_text(json.dumps({"format": "stand-in graph", **shapes}))
        graphs[name] = {"file": path.name, "sha256": sha256_file(path), **shapes}
    write_export_info(folder, {"input_size": list(INPUT_SIZE), "num_classes": len(CLASSES), "classes": list(CLASSES),
                               "feature_channels": FEATURES, "opset": 17, "graphs": graphs})
    return load_export_info(folder)

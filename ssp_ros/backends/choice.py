"""``runtime.backend: auto``: torch where it is installed, else ONNX Runtime on the export of the same weights.

The newcomer's machine and the drone need not carry torch (a 5.8 GB venv with CUDA wheels on PyPI): the shipped
model comes with its ONNX export (``models/ssp_default``), which runs on ONNX Runtime. ``auto`` prefers torch where
it is installed, so a machine with torch gets the same numbers as before bit for bit; without it, the export in
``runtime.export_dir`` is used, and only if ``export.json`` records the SHA-256 of ``model.weights`` and its input
size: an export of other weights never stands in silently.
"""

from __future__ import annotations

import dataclasses
import logging

from ssp_ros.backends.export_info import load_export_info, sha256_file
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError, package_installed
from ssp_ros.resources import resolve_data_path

LOG = logging.getLogger(__name__)
TORCH_STACK = ("torch", "torchvision", "timm", "safetensors")  # what the torch backend imports (timm needs torchvision)


def torch_installed() -> bool:
    """Whether the torch backend's packages can be imported here."""
    return all(package_installed(name) for name in TORCH_STACK)


def choose_backend(cfg: SspConfig) -> SspConfig:
    """``cfg`` with ``runtime.backend: auto`` made concrete (any other backend is returned as it is): torch where
    ``torch_installed()``, else onnxruntime on ``runtime.export_dir``, checked to be an export of ``model.weights``
    at ``model.input_size``."""
    runtime = cfg.runtime
    if runtime.backend != "auto":
        return cfg
    if torch_installed():
        return dataclasses.replace(cfg, runtime=dataclasses.replace(runtime, backend="torch"))
    missing = ", ".join(name for name in TORCH_STACK if not package_installed(name))
    if not package_installed("onnxruntime"):
        raise SspError(f"runtime.backend 'auto': neither torch ({missing} missing) nor onnxruntime is installed: "
                       "pip install 'ssp_ros[onnx]' to run the exported model, or 'ssp_ros[torch]'")
    if not runtime.export_dir:
        raise SspError(f"runtime.backend 'auto': torch is not installed ({missing} missing) and runtime.export_dir "
                       "is not set: set it to an `ssp export` folder of model.weights to run on ONNX Runtime, or "
                       "pip install 'ssp_ros[torch]'")
    folder = resolve_data_path(runtime.export_dir, "runtime.export_dir", "exported model folder")
    info = load_export_info(folder)
    remedy = ("torch is not installed, so the configured model cannot run as it is: export it on a machine with "
              "torch (`ssp export --compact --out DIR`) and set runtime.export_dir to DIR, or pip install "
              "'ssp_ros[torch]'")
    recorded = info.raw.get("weights") or {}
    exported = recorded.get("file") or "an untrained model"
    if cfg.model.weights is None:
        if recorded:
            raise SspError(f"runtime.export_dir {folder}: an export of {exported}, and model.weights is not set (an "
                           f"untrained model); {remedy}")
    else:
        weights = resolve_data_path(cfg.model.weights, "model.weights", "model weights file")
        if recorded.get("sha256") != sha256_file(weights):
            raise SspError(f"runtime.export_dir {folder}: an export of {exported}, not of model.weights {weights} "
                           f"(their SHA-256 differ); {remedy}")
    architecture = info.raw.get("model", {})
    for key in ("backbone", "decoder_channels"):
        if architecture.get(key) != getattr(cfg.model, key):
            raise SspError(f"runtime.export_dir {folder}: exported with {key} {architecture.get(key)!r}, "
                           f"model.{key} is {getattr(cfg.model, key)!r}; {remedy}")
    if info.input_size != cfg.model.input_size:
        raise SspError(f"runtime.export_dir {folder}: exported at input {info.input_size[0]}x{info.input_size[1]}, "
                       f"model.input_size is {cfg.model.input_size[0]}x{cfg.model.input_size[1]}: re-export with "
                       "--size, or set model.input_size to the export's")
    LOG.info("runtime.backend auto: torch is not installed (%s missing); running %s on ONNX Runtime", missing, folder)
    return dataclasses.replace(cfg, runtime=dataclasses.replace(runtime, backend="onnxruntime",
                                                                 export_dir=str(folder)))

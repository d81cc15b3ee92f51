"""Inference runtimes behind one interface (``Backend``); each is imported only when chosen, so the
drone's TensorRT path and the ONNX Runtime path never import torch."""

from __future__ import annotations

from ssp_ros.backends.base import Backend
from ssp_ros.backends.choice import choose_backend
from ssp_ros.config import BACKENDS, SspConfig
from ssp_ros.errors import SspError


def make_backend(cfg: SspConfig, num_classes: int) -> Backend:
    """The backend named by ``cfg.runtime.backend`` (``auto``: see ``choice.py``): torch builds ``cfg.model``; the
    others run the graphs or engines of ``cfg.runtime.export_dir``, which must have been exported for
    ``num_classes`` classes."""
    cfg = choose_backend(cfg)
    name = cfg.runtime.backend
    if name == "torch":
        from ssp_ros.backends.torch_backend import TorchBackend

        return TorchBackend.from_config(cfg.model, num_classes, cfg.runtime.device)
    if name == "onnxruntime":
        from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend

        backend = OnnxRuntimeBackend.from_config(cfg.runtime)
    elif name == "tensorrt":
        from ssp_ros.backends.tensorrt_backend import TensorRTBackend

        backend = TensorRTBackend.from_config(cfg.runtime)
    else:
        raise SspError(f"runtime.backend: unknown backend '{name}' ({', '.join(BACKENDS)})")
    if backend.num_classes != num_classes:
        raise SspError(f"runtime.export_dir {cfg.runtime.export_dir}: exported for {backend.num_classes} classes, "
                       f"model.dataset '{cfg.model.dataset}' has {num_classes}")
    return backend


__all__ = ["Backend", "make_backend"]

"""Inference runtimes behind one interface (``Backend``); each is imported only when chosen, so the
drone's TensorRT path never imports torch."""

from __future__ import annotations

from ssp_ros.backends.base import Backend
from ssp_ros.config import SspConfig
from ssp_ros.errors import SspError


def make_backend(cfg: SspConfig, num_classes: int) -> Backend:
    """The backend named by ``cfg.runtime.backend``, with the model of ``cfg.model``."""
    name = cfg.runtime.backend
    if name == "torch":
        from ssp_ros.backends.torch_backend import TorchBackend

        return TorchBackend.from_config(cfg.model, num_classes, cfg.runtime.device)
    raise SspError(f"runtime.backend: '{name}' is not available in this version yet (use 'torch')")


__all__ = ["Backend", "make_backend"]

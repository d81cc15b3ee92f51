"""What the TensorRT runtime and the engine builder share: importing TensorRT and pycuda with a clear error,
the version floor, the process's one logger, the GPU and its platform key, an explicit CUDA context, and
fixing a dynamic batch to one.

``tensorrt`` and ``pycuda`` are passed in as modules (imported by ``require_tensorrt``), so this module
imports without them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ssp_ros.backends.engine_cache import Platform
from ssp_ros.errors import SspError

MIN_TENSORRT = (8, 5)  # named-tensor API (set_tensor_address, execute_async_v3, num_io_tensors)
INSTALL_HINT = ("on a Jetson, TensorRT comes with JetPack (python3-libnvinfer; give the venv "
                "--system-site-packages); on x86, `pip install tensorrt`; and in both cases `pip install pycuda`")


def tensorrt_version(trt: ModuleType) -> tuple[int, int]:
    """(major, minor) of an imported tensorrt module."""
    major, minor = trt.__version__.split(".")[:2]
    return int(major), int(minor)


def require_tensorrt() -> tuple[ModuleType, ModuleType]:
    """Import and return (tensorrt, pycuda.driver), or an SspError saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise SspError(f"TensorRT is not installed ({err}): {INSTALL_HINT}") from None
    try:
        import pycuda.driver as cuda
    except ImportError as err:
        raise SspError(f"pycuda is not installed ({err}): {INSTALL_HINT}") from None
    if tensorrt_version(trt) < MIN_TENSORRT:
        raise SspError(f"TensorRT {trt.__version__} is too old: ssp_ros needs TensorRT >= "
                       f"{'.'.join(map(str, MIN_TENSORRT))} (JetPack 5.1 or newer)")
    return trt, cuda


@functools.cache
def trt_logger(trt: ModuleType) -> Any:
    """The process's one TensorRT logger (warnings and errors to stderr): TensorRT wants a single logger
    shared by every builder and runtime."""
    return trt.Logger(trt.Logger.WARNING)


def open_device(cuda: ModuleType, device_index: int) -> Any:
    """The pycuda Device ``device_index``, after checking that it exists."""
    cuda.init()
    count = cuda.Device.count()
    if not 0 <= device_index < count:
        raise SspError(f"GPU {device_index} not found: this machine has {count} CUDA device(s)")
    return cuda.Device(device_index)


def detect_platform(trt: ModuleType, device: Any) -> Platform:
    """The TensorRT version and GPU (name, compute capability, SM count) that engines are keyed by."""
    major, minor = device.compute_capability()
    return Platform(tensorrt_version=trt.__version__, gpu_name=device.name(), compute_capability=f"{major}.{minor}",
                    multiprocessors=int(device.multiprocessor_count))


@contextlib.contextmanager
def cuda_context(cuda: ModuleType, device_index: int) -> Iterator[Any]:
    """A fresh CUDA context on ``device_index``, current inside the block, destroyed after it (an explicit
    context rather than ``pycuda.autoinit``, so the device is chosen and released by us)."""
    device = open_device(cuda, device_index)
    context = device.make_context()
    try:
        yield device
    finally:
        context.pop()
        context.detach()


def concrete_shape(shape: list[int | str], where: str) -> tuple[int, ...]:
    """An ``export.json`` shape with a symbolic batch dimension (a dynamic-batch export) fixed to 1: the
    drone segments one frame at a time, so engines are built and run for a batch of one."""
    if not shape or any(isinstance(d, str) for d in shape[1:]):
        raise SspError(f"{where}: shape {shape} has symbolic dimensions other than the batch; re-export")
    return tuple(1 if isinstance(d, str) else int(d) for d in shape)

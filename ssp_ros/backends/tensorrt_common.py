"""What the TensorRT runtime and the engine builder share: importing TensorRT and pycuda with a clear error,
the supported version range, the process's one logger, the GPU and its platform key, an explicit CUDA context,
and fixing a dynamic batch to one.

The supported range is stated once, here (``SUPPORTED_TENSORRT``), and used by the runtime, the engine build,
``ssp export --trt-version`` and the error messages: TensorRT 8.6 (JetPack 6.0) through 10.x (JetPack 6.1/6.2
ship 10.3). Below it, TensorRT 8.5 (JetPack 5, Python 3.8, which this package cannot run on anyway) has no
LayerNormalization importer, so it cannot parse Hiera backbones. Above it, TensorRT 11 builds only strongly
typed networks: ``BuilderFlag.FP16``/``INT8`` and the INT8 calibrators are gone, and a network's precision is
the types in its graph. Our graphs are FP32 (precision is chosen at build time), so TensorRT 11 would build
FP32 engines from them, silently ignoring ``--fp16``/``--int8``; it is refused until the export writes typed
(FP16 / Q-DQ) graphs.

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

SUPPORTED_TENSORRT = ((8, 6), (11, 0))  # [oldest, first refused): 8.6 (JetPack 6.0) through 10.x (JetPack 6.1/6.2)
JETPACK_TENSORRT = {"6.0": "8.6", "6.1": "10.3", "6.2": "10.3"}  # the TensorRT each supported JetPack ships
# what the messages, the README and `ssp export --trt-version` say, derived from SUPPORTED_TENSORRT
TENSORRT_PIN = f"tensorrt>={SUPPORTED_TENSORRT[0][0]}.{SUPPORTED_TENSORRT[0][1]},<{SUPPORTED_TENSORRT[1][0]}"
SUPPORTED_TEXT = (f"TensorRT {SUPPORTED_TENSORRT[0][0]}.{SUPPORTED_TENSORRT[0][1]} through "
                  f"{SUPPORTED_TENSORRT[1][0] - 1}.x ("
                  + ", ".join(f"JetPack {jp} ships {trt}" for jp, trt in JETPACK_TENSORRT.items()) + ")")
INSTALL_HINT = ("on a Jetson, TensorRT comes with JetPack 6 (python3-libnvinfer; give the venv "
                f"--system-site-packages); on x86, `pip install '{TENSORRT_PIN}'` (a bare pip install tensorrt "
                "gets TensorRT 11, which is refused); and in both cases `pip install pycuda`")
# why each side of the range is refused: the reason that follows the one-sentence refusal
_TOO_OLD = ("8.5 and older have no ONNX importer for LayerNormalization, which Hiera backbones export "
            "(onnx-tensorrt docs/operators.md, release/8.5-GA); JetPack 5 also has Python 3.8, and ssp_ros needs 3.10")
_TOO_NEW = ("TensorRT 11 builds only strongly typed networks (BuilderFlag.FP16/INT8 and the INT8 calibrators were "
            "removed), so our FP32 graphs would become FP32 engines whatever precision was asked for")


def parse_tensorrt_version(version: str) -> tuple[int, int]:
    """(major, minor) of a TensorRT version string: "8.6.2.3" → (8, 6), "10.3" → (10, 3), "10" → (10, 0)."""
    parts = str(version).strip().split(".")
    try:
        numbers = [int(p) for p in parts[:2]]
    except ValueError:
        raise SspError(f"TensorRT version '{version}': expected MAJOR.MINOR, e.g. 8.6 or 10.3") from None
    return numbers[0], numbers[1] if len(numbers) > 1 else 0


def unsupported_reason(version: str) -> str | None:
    """None for a TensorRT version inside ``SUPPORTED_TENSORRT``; else one sentence naming the version found, the
    supported range and the pip pin, followed by why that side of the range is refused."""
    found = parse_tensorrt_version(version)
    oldest, first_refused = SUPPORTED_TENSORRT
    if oldest <= found < first_refused:
        return None
    why = _TOO_OLD if found < oldest else _TOO_NEW
    return (f"TensorRT {version} is not supported: ssp_ros supports {SUPPORTED_TEXT}; on x86 install one with "
            f"`pip install '{TENSORRT_PIN}'`. ({why}.)")


def check_tensorrt_version(version: str) -> None:
    """Raise an SspError (see ``unsupported_reason``) unless ``version`` is inside ``SUPPORTED_TENSORRT``."""
    reason = unsupported_reason(version)
    if reason is not None:
        raise SspError(reason)


def tensorrt_version(trt: ModuleType) -> tuple[int, int]:
    """(major, minor) of an imported tensorrt module."""
    return parse_tensorrt_version(trt.__version__)


def require_tensorrt() -> tuple[ModuleType, ModuleType]:
    """Import and return (tensorrt, pycuda.driver), or an SspError saying what to install; a TensorRT outside
    ``SUPPORTED_TENSORRT`` is refused here, before any engine is built or loaded."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise SspError(f"TensorRT is not installed ({err}): {INSTALL_HINT}") from None
    check_tensorrt_version(trt.__version__)
    try:
        import pycuda.driver as cuda
    except ImportError as err:
        raise SspError(f"pycuda is not installed ({err}): {INSTALL_HINT}") from None
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

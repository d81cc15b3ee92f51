"""``tensorrt`` stand-in: the Python API ssp_ros uses, gated by version and as strict as the real bindings
(NVIDIA/TensorRT ``python/src/infer/pyCore.cpp``, ``pyInt8.cpp``, ``pyFoundationalTypes.cpp`` at release/8.6,
release/10.x and release/11.0), running on the simulated device of ``stand_ins/gpu.py``.

- Version gates: ``BuilderFlag.FP16``/``INT8``, ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``, the INT8
  calibrator classes, ``int8_calibrator`` and ``set_calibration_profile`` exist up to 10.x and are gone in 11.0
  (deprecated since 10.1/10.12); ``STRONGLY_TYPED`` from 9.x. 8.x parses ONNX only into explicit-batch networks.
- Calibration follows the pybind trampoline: what a calibrator method raises is printed and swallowed; a
  ``get_batch`` answering None or [] (or raising) ends calibration, after which the builder still hands the
  table to ``write_calibration_cache`` (a memoryview) if at least one batch came; a table returned by
  ``read_calibration_cache`` with this version's header replaces calibration.
- ``execute_async_v3(stream_handle)`` only queues the work: outputs are written when the stream is waited for.
- Engines and execution contexts must be made and destroyed with a CUDA context current (``gpu.problems``).

Graphs are not ONNX: the parser reads the JSON ``stand_ins.write_export`` writes (input/output names and shapes).
Each output of an engine is filled with mean(all inputs) + its output index.
"""

from __future__ import annotations

import enum
import hashlib
import json
import operator
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from stand_ins import gpu as _gpu

__version__ = "0.0.0"
_device: _gpu.Gpu | None = None
GRAPH_MAGIC = "stand-in graph"
ENGINE_MAGIC = b"STAND-IN ENGINE\n"


def _version() -> tuple[int, int]:
    major, minor = __version__.split(".")[:2]
    return int(major), int(minor)


def _deprecated(what: str, since: tuple[int, int]) -> None:
    if _version() >= since:
        warnings.warn(f"{what} is deprecated (since TensorRT {since[0]}.{since[1]})", DeprecationWarning, stacklevel=3)


def _log_error(text: str) -> None:
    print(f"[TRT] [E] {text}", file=sys.stderr)


class Logger:
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self, min_severity: int = WARNING) -> None:
        self.min_severity = min_severity


def init_libnvinfer_plugins(logger: Logger, namespace: str) -> bool:
    if not isinstance(logger, Logger) or not isinstance(namespace, str):
        raise TypeError("init_libnvinfer_plugins(logger: ILogger, namespace: str)")
    return True


class DataType(enum.IntEnum):
    FLOAT, HALF, INT8, INT32, BOOL = range(5)


class TensorIOMode(enum.IntEnum):
    NONE, INPUT, OUTPUT = range(3)


class MemoryPoolType(enum.IntEnum):
    WORKSPACE, DLA_MANAGED_SRAM, DLA_LOCAL_DRAM, DLA_GLOBAL_DRAM = range(4)


def nptype(dtype: DataType) -> type:
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
            DataType.INT32: np.int32, DataType.BOOL: np.bool_}[DataType(dtype)]


class Dims(tuple):
    pass


def _configure(version: str, device: _gpu.Gpu) -> None:
    """Set this module's version and the attributes that exist in it (called by ``stand_ins.install``)."""
    global __version__, _device, BuilderFlag, NetworkDefinitionCreationFlag
    __version__, _device = version, device
    major = _version()[0]
    flags = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS"]
    if major < 11:
        flags = ["FP16", "INT8", *flags]
    BuilderFlag = enum.IntEnum("BuilderFlag", [(name, i) for i, name in enumerate(flags)])
    network_flags = (["EXPLICIT_BATCH"] if major < 11 else []) + (["STRONGLY_TYPED"] if major >= 9 else [])
    NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag",
                                                 [(n, i) for i, n in enumerate(network_flags)] or [("NONE", 0)])
    if major >= 11:
        for name in ("IInt8Calibrator", "IInt8EntropyCalibrator2"):
            globals().pop(name, None)


def _state() -> _gpu.Gpu:
    assert _device is not None, "stand_ins.install configures this module"
    return _device


# ---- INT8 calibrators (gone in 11.0) ---------------------------------------------------------------------

class _MustInit(type):
    """pybind11: a Python subclass whose ``__init__`` does not call the bound base ``__init__`` is refused."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        instance = super().__call__(*args, **kwargs)
        if not getattr(instance, "_base_initialised", False):
            raise TypeError(f"{cls.__name__}.__init__() must be called when overriding __init__")
        return instance


class IInt8Calibrator(metaclass=_MustInit):
    def __init__(self) -> None:
        self._base_initialised = True

    def get_batch_size(self) -> int:
        raise RuntimeError("pure virtual get_batch_size called")

    def get_algorithm(self) -> int:
        return 3  # ENTROPY_CALIBRATION_2


class IInt8EntropyCalibrator2(IInt8Calibrator):
    pass


def _trampoline(calibrator: Any, method: str, *args: Any) -> tuple[bool, Any]:
    """Call a calibrator method as the bindings do: an exception is printed and swallowed → (False, None)."""
    try:
        return True, getattr(calibrator, method)(*args)
    except Exception as err:  # noqa: BLE001 - what pyInt8.cpp does
        print(f"[ERROR] Exception caught in {method}(): {err}", file=sys.stderr)
        return False, None


# ---- network, parser, builder ----------------------------------------------------------------------------

class ITensor:
    def __init__(self, name: str, shape: list, dtype: DataType = DataType.FLOAT) -> None:
        self.name = name
        self.shape = Dims(-1 if isinstance(d, str) else int(d) for d in shape)
        self.dtype = dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        explicit = 1 << int(NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if _version()[0] < 10 else 0
        self.explicit_batch = _version()[0] >= 10 or bool(flags & explicit)

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        if not isinstance(network, INetworkDefinition) or not isinstance(logger, Logger):
            raise TypeError("OnnxParser(network: INetworkDefinition, logger: ILogger)")
        self.network, self.errors = network, []

    def parse_from_file(self, model: str) -> bool:
        if not isinstance(model, str):
            raise TypeError("parse_from_file(model: str)")
        if not self.network.explicit_batch:
            self.errors.append("ModelImporter: the network must be created with the EXPLICIT_BATCH flag")
            return False
        try:
            graph = json.loads(Path(model).read_text())
            assert graph["format"] == GRAPH_MAGIC
        except Exception:  # noqa: BLE001 - any unreadable file is a parse failure
            self.errors.append(f"{model}: Failed to parse ONNX model")
            return False
        self.network.inputs = [ITensor(n, s) for n, s in graph["inputs"].items()]
        self.network.outputs = [ITensor(n, s) for n, s in graph["outputs"].items()]
        return True

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, index: int) -> str:
        return self.errors[index]


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - the real names
        self.shapes[input] = tuple(tuple(operator.index(d) for d in s) for s in (min, opt, max))


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def serialize(self) -> memoryview:
        return memoryview(self.data or _platform_tag())


def _platform_tag() -> bytes:
    info = _state().devices[0]
    return f"timing {__version__} {info.name} {info.compute_capability}".encode()


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set = set()
        self.pools: dict = {}
        self.profiles: list[IOptimizationProfile] = []
        self.timing: ITimingCache | None = None
        self._calibrator: Any = None
        self._calibration_profile: Any = None

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[MemoryPoolType(pool)] = operator.index(pool_size)

    def set_flag(self, flag: Any) -> None:
        if not isinstance(flag, BuilderFlag):
            raise TypeError(f"set_flag(): incompatible function arguments: {flag!r} is not a BuilderFlag")
        self.flags.add(flag.name)

    def get_flag(self, flag: Any) -> bool:
        return flag.name in self.flags

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.data and cache.data != _platform_tag() and not ignore_mismatch:
            return False
        self.timing = cache
        return True

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def __getattr__(self, name: str) -> Any:
        if _version()[0] < 11:
            if name == "set_calibration_profile":
                return self._set_calibration_profile
            if name == "int8_calibrator":
                _deprecated("IBuilderConfig.int8_calibrator", (10, 1))
                return self._calibrator
        raise AttributeError(f"'tensorrt.IBuilderConfig' object has no attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "int8_calibrator":
            if _version()[0] >= 11:
                raise AttributeError("'tensorrt.IBuilderConfig' object has no attribute 'int8_calibrator'")
            _deprecated("IBuilderConfig.int8_calibrator", (10, 1))
            if value is not None and not isinstance(value, IInt8Calibrator):
                raise TypeError("int8_calibrator: incompatible value (not an IInt8Calibrator)")
            name = "_calibrator"
        object.__setattr__(self, name, value)

    def _set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        _deprecated("IBuilderConfig.set_calibration_profile", (10, 1))
        self._calibration_profile = profile
        return True


class Builder:
    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise TypeError("Builder(logger: ILogger)")

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(operator.index(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> memoryview | None:
        _state().require_context("IBuilder::buildSerializedNetwork")
        if not isinstance(network, INetworkDefinition) or not isinstance(config, IBuilderConfig):
            raise TypeError("build_serialized_network(network: INetworkDefinition, config: IBuilderConfig)")
        if not network.inputs:
            _log_error("Network must have at least one input")
            return None
        for tensor in network.inputs:
            if -1 in tensor.shape and not any(tensor.name in p.shapes for p in config.profiles):
                _log_error(f"{tensor.name}: dynamic input is missing dimensions in profile 0")
                return None
        calibration = None
        if "INT8" in config.flags:
            calibration = self._calibrate(network, config._calibrator)
            if calibration is None:
                return None
        io = {t.name: {"input": True, "shape": list(t.shape)} for t in network.inputs}
        io.update({t.name: {"input": False, "shape": list(t.shape)} for t in network.outputs})
        plan = {"version": __version__, "platform": _platform_tag().decode(), "io": io, "flags": sorted(config.flags),
                "calibration": calibration}
        return memoryview(ENGINE_MAGIC + json.dumps(plan).encode())

    @staticmethod
    def _calibrate(network: INetworkDefinition, calibrator: Any) -> str | None:
        """The calibration table's hash (read back or measured), or None where the build fails."""
        if calibrator is None:
            _log_error("INT8 is set but there is no calibrator and no dynamic ranges")
            return None
        header = f"TRT-{__version__.replace('.', '')}-EntropyCalibration2\n".encode()
        ok, table = _trampoline(calibrator, "read_calibration_cache")
        if ok and table is not None:
            data = bytes(memoryview(table))
            if data.startswith(header):
                return hashlib.sha256(data).hexdigest()
        _trampoline(calibrator, "get_batch_size")
        names = [t.name for t in network.inputs]
        sizes = [int(np.prod(t.shape)) * 4 for t in network.inputs]
        digest, batches = hashlib.sha256(), 0
        while True:
            ok, pointers = _trampoline(calibrator, "get_batch", names)
            if not ok or pointers is None:
                break
            try:
                pointers = [operator.index(p) for p in pointers]  # pybind: cast to std::vector<size_t>
            except TypeError as err:
                print(f"[ERROR] Exception caught in get_batch(): {err}", file=sys.stderr)
                break
            if not pointers:
                break
            if len(pointers) != len(names):
                raise AssertionError(f"get_batch returned {len(pointers)} pointers for {len(names)} inputs: TensorRT "
                                     "would read past the list")
            for pointer, size, name in zip(pointers, sizes, names):
                digest.update(bytes(_state().view(pointer, size, f"calibration input '{name}'")))
            batches += 1
        if batches == 0:
            _log_error("Calibration failure occurred with no scaling factors detected")
            return None
        table = header + f"batches: {batches}\nstats: {digest.hexdigest()}\n".encode()
        _trampoline(calibrator, "write_calibration_cache", memoryview(table))
        return hashlib.sha256(table).hexdigest()


# ---- runtime ----------------------------------------------------------------------------------------------

class _OnDevice:
    """A TensorRT object holding device memory: made and destroyed with its CUDA context current."""

    def _bind(self, what: str) -> None:
        self._what = what
        self._context = _state().require_context(what)

    def __del__(self) -> None:
        context = getattr(self, "_context", None)
        if context is not None and context.valid and _state().current() is not context:
            _state().problems.append(f"{self._what} destroyed without its CUDA context current")


class Runtime:
    def __init__(self, logger: Logger) -> None:
        if not isinstance(logger, Logger):
            raise TypeError("Runtime(logger: ILogger)")

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        _state().require_context("IRuntime::deserializeCudaEngine")
        data = bytes(memoryview(serialized_engine))
        if not data.startswith(ENGINE_MAGIC):
            _log_error("IRuntime::deserializeCudaEngine: magic tag does not match")
            return None
        plan = json.loads(data[len(ENGINE_MAGIC):])
        if plan["version"] != __version__ or plan["platform"] != _platform_tag().decode():
            _log_error("The engine plan file is not compatible with this version of TensorRT or this GPU")
            return None
        return ICudaEngine(plan)


class ICudaEngine(_OnDevice):
    def __init__(self, plan: dict) -> None:
        self._bind("ICudaEngine")
        self.plan = plan
        self.names = list(plan["io"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        io = self.plan["io"].get(name)
        return TensorIOMode.NONE if io is None else TensorIOMode.INPUT if io["input"] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self.plan["io"][name]["shape"])

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class IExecutionContext(_OnDevice):
    def __init__(self, engine: ICudaEngine) -> None:
        self._bind("IExecutionContext")
        self.engine = engine
        self.shapes = {n: tuple(io["shape"]) for n, io in engine.plan["io"].items()}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        io = self.engine.plan["io"].get(name)
        shape = tuple(operator.index(d) for d in shape)
        if io is None or not io["input"] or len(shape) != len(io["shape"]) or \
                any(e not in (-1, s) for e, s in zip(io["shape"], shape)):
            _log_error(f"setInputShape: invalid shape {shape} for '{name}'")
            return False
        self.shapes[name] = shape
        batch = shape[0]
        for out, out_io in self.engine.plan["io"].items():
            if not out_io["input"]:
                self.shapes[out] = tuple(batch if d == -1 else d for d in out_io["shape"])
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self.shapes[name])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if isinstance(memory, bool) or not isinstance(memory, int):
            raise TypeError(f"set_tensor_address(): incompatible function arguments: memory must be int, got "
                            f"{type(memory).__name__}")
        if name not in self.shapes:
            _log_error(f"setTensorAddress: '{name}' is not an I/O tensor of this engine")
            return False
        self.addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if isinstance(stream_handle, bool) or not isinstance(stream_handle, int):
            raise TypeError(f"execute_async_v3(): incompatible function arguments: stream_handle must be int, got "
                            f"{type(stream_handle).__name__}")
        state = _state()
        if state.current() is not self._context:
            _log_error("enqueueV3: the engine's CUDA context is not current")
            return False
        stream = state.streams.get(stream_handle)
        if stream is None:
            _log_error(f"enqueueV3: {stream_handle:#x} is not a stream")
            return False
        if set(self.addresses) != set(self.shapes) or any(-1 in s for s in self.shapes.values()):
            _log_error("enqueueV3: every I/O tensor needs an address and a concrete shape")
            return False
        io = self.engine.plan["io"]
        nbytes = {n: int(np.prod(s)) * 4 for n, s in self.shapes.items()}
        for name, address in self.addresses.items():
            state.view(address, nbytes[name], f"enqueueV3 tensor '{name}'")
        inputs = [n for n in io if io[n]["input"]]
        outputs = [n for n in io if not io[n]["input"]]
        addresses = dict(self.addresses)

        def run() -> None:  # what the GPU does when the stream gets here
            mean = float(np.mean([np.frombuffer(state.view(addresses[n], nbytes[n], n), np.float32).mean()
                                  for n in inputs]))
            for k, name in enumerate(outputs):
                np.frombuffer(state.view(addresses[name], nbytes[name], name), np.float32)[...] = mean + k

        stream.enqueue(run)
        return True

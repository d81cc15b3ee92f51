"""The TensorRT backend: the two engines of an exported model folder, run with pycuda on one CUDA stream.

The previous frame's logits and features never leave the GPU: ``segment`` and ``fuse`` return
``DeviceTensor`` handles to device buffers, and ``fuse`` binds the handles it is given straight to the
fusion engine's inputs (TensorRT's named-tensor API, in every version of ``SUPPORTED_TENSORRT``), so a frame
costs one upload (the image, the 3×3 homography) and the downloads that ``labels``/``similarity`` ask for,
into page-locked host buffers.

Output buffers come from a ring of two sets per method. **Invariant: a handle stays valid until two more
calls of the method that returned it.** The pipeline keeps only the previous frame's state, so frame k's
outputs are read by frame k+1 while frame k+1 writes into the other set; a handle used after its buffers
were reused is refused (``BufferRing``), never silently read.

Each engine's sidecar is checked against the running TensorRT and GPU before it is deserialised
(``engine_cache.py``), and the engines' tensor names and shapes against ``export.json``. The CUDA context
is explicit (not ``pycuda.autoinit``) and made current around each call, so the backend works from any
one thread at a time (ROS executors may call from another thread than the one that built it).

``segment`` and ``fuse`` return once their work is queued on the stream; ``synchronize()`` waits for it (the
pipeline calls it to time each stage), and downloads wait by themselves.

``close()`` frees the GPU memory and destroys the context with the context pushed, from whichever thread
calls it: pycuda's ``Context.detach`` only calls ``cuCtxDetach`` when the context is current in the calling
thread or that thread made it, and otherwise marks it dead and skips the call (the context leaks). The node
builds the backend in one thread, runs it in its worker and closes it from a third, so detaching while
current is what makes the release happen. Imports: numpy, OpenCV, tensorrt, pycuda, never torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssp_ros.backends import postprocess
from ssp_ros.backends.engine_cache import EngineKey, engine_path, engine_precision, read_checked_engine, rebuild_command
from ssp_ros.backends.export_info import (
    FUSION_INPUTS,
    FUSION_OUTPUTS,
    GRAPHS,
    SEGMENTER_INPUTS,
    SEGMENTER_OUTPUTS,
    ExportInfo,
    GraphInfo,
    load_export_info,
)
from ssp_ros.backends.tensorrt_common import concrete_shape, detect_platform, open_device, require_tensorrt, trt_logger
from ssp_ros.config import RuntimeConfig
from ssp_ros.errors import SspError
from ssp_ros.resources import resolve_data_path

IO_NAMES = {"segmenter": (SEGMENTER_INPUTS, SEGMENTER_OUTPUTS), "fusion": (FUSION_INPUTS, FUSION_OUTPUTS)}


@dataclass(frozen=True, eq=False)
class DeviceTensor:
    """A tensor in the backend's GPU memory, as returned by ``segment``/``fuse`` and taken back by them.

    Valid until two more calls of the method that returned it (see the module docstring)."""

    allocation: Any  # pycuda DeviceAllocation; int() of it is the device pointer
    shape: tuple[int, ...]
    dtype: np.dtype
    owner: BufferRing
    slot: int
    generation: int

    @property
    def pointer(self) -> int:
        return int(self.allocation)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


class BufferRing:
    """``depth`` sets of named device buffers, handed out in turn by ``next()``.

    ``allocate(nbytes)`` returns an object whose ``int()`` is a device pointer and which has ``free()``
    (pycuda's ``mem_alloc``). ``is_current`` tells whether a handle's buffers still hold what the call that
    returned it wrote: true until ``depth`` more calls of ``next()``.
    """

    def __init__(self, specs: dict[str, tuple[tuple[int, ...], np.dtype]], allocate: Callable[[int], Any],
                 depth: int = 2) -> None:
        self.specs = {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in specs.items()}
        self.slots: list[dict[str, Any]] = []
        for _ in range(depth):
            self.slots.append({name: allocate(int(np.prod(shape)) * dtype.itemsize)
                               for name, (shape, dtype) in self.specs.items()})
        self.generations = [0] * depth
        self.calls = 0

    def next(self) -> dict[str, DeviceTensor]:
        """The next set of buffers (the one written longest ago), as handles."""
        slot = self.calls % len(self.slots)
        self.calls += 1
        self.generations[slot] = self.calls
        return {name: DeviceTensor(self.slots[slot][name], shape, dtype, self, slot, self.calls)
                for name, (shape, dtype) in self.specs.items()}

    def is_current(self, tensor: DeviceTensor) -> bool:
        return tensor.owner is self and self.generations[tensor.slot] == tensor.generation

    def free(self) -> None:
        """Free every buffer; the ring hands out nothing afterwards."""
        for slot in self.slots:
            for allocation in slot.values():
                allocation.free()
        self.slots, self.generations = [], []


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an engine, as the engine reports it."""

    is_input: bool
    shape: tuple[int, ...]
    dtype: np.dtype


def _same_shape(engine: tuple[int, ...], recorded: list[int | str]) -> bool:
    """An engine's shape against export.json's: a symbolic (dynamic) dimension is -1 in the engine."""
    return len(engine) == len(recorded) and all(e == r or (isinstance(r, str) and e == -1)
                                                for e, r in zip(engine, recorded))


def check_io(engine_file: Path, graph: str, found: dict[str, TensorSpec], expected: GraphInfo, rebuild: str) -> None:
    """Check an engine's tensors against the names this backend binds (export_info constants) and the
    shapes ``export.json`` records; one error naming the engine and every difference."""
    inputs, outputs = IO_NAMES[graph]
    problems = []
    for names, is_input, shapes in ((inputs, True, expected.inputs), (outputs, False, expected.outputs)):
        for name in names:
            kind = "input" if is_input else "output"
            if name not in shapes:
                problems.append(f"export.json has no {kind} '{name}' for {graph}")
            elif name not in found:
                problems.append(f"no {kind} tensor '{name}'")
            elif found[name].is_input != is_input:
                problems.append(f"'{name}' is an {'output' if is_input else 'input'}, expected an {kind}")
            elif not _same_shape(found[name].shape, shapes[name]) or found[name].dtype != np.float32:
                problems.append(f"'{name}' is {list(found[name].shape)} {found[name].dtype}, export.json says "
                                f"{shapes[name]} float32")
    extra = sorted(set(found) - set(inputs) - set(outputs))
    if extra:
        problems.append(f"unexpected tensors {extra}")
    if problems:
        raise SspError(f"{engine_file}: engine does not match {expected.file.parent / 'export.json'}: "
                       f"{'; '.join(problems)}; rebuild with `{rebuild}`")


class _Engine:
    """A deserialised engine, its execution context and its tensors."""

    def __init__(self, trt: Any, runtime: Any, path: Path, data: bytes, rebuild: str) -> None:
        self.engine = runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise SspError(f"{path}: TensorRT could not deserialise this engine (see its error above); "
                           f"rebuild with `{rebuild}`")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise SspError(f"{path}: TensorRT could not create an execution context (out of GPU memory?)")
        self.path = path
        self.specs = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            self.specs[name] = TensorSpec(is_input=self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                          shape=tuple(self.engine.get_tensor_shape(name)),
                                          dtype=np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))

    def fix_shapes(self, recorded: GraphInfo) -> None:
        """Set every dynamic input to its batch-of-one shape and replace ``specs`` by the concrete shapes
        the execution context then reports (static engines keep theirs)."""
        for name, spec in self.specs.items():
            if spec.is_input and -1 in spec.shape:
                shape = concrete_shape(recorded.inputs[name], f"{self.path} input '{name}'")
                if not self.context.set_input_shape(name, shape):
                    raise SspError(f"{self.path}: the engine does not accept input '{name}' of shape {list(shape)}")
        self.specs = {name: TensorSpec(spec.is_input, tuple(self.context.get_tensor_shape(name)), spec.dtype)
                      for name, spec in self.specs.items()}
        for name, spec in self.specs.items():
            if -1 in spec.shape:
                raise SspError(f"{self.path}: tensor '{name}' has no fixed shape {list(spec.shape)} for a batch of one")

    def run(self, addresses: dict[str, int], stream: Any) -> None:
        """Bind every tensor to a device address and enqueue the engine on ``stream``."""
        for name, pointer in addresses.items():
            self.context.set_tensor_address(name, pointer)
        if not self.context.execute_async_v3(stream.handle):
            raise SspError(f"{self.path}: TensorRT failed to enqueue the engine (see its error above)")


class TensorRTBackend:
    """Runs an exported model's segmenter and fusion engines with TensorRT on one GPU. One pipeline per
    backend: calls must not overlap (any thread, one at a time)."""

    name = "tensorrt"

    def __init__(self, info: ExportInfo, precision: str = "fp16", device_index: int = 0) -> None:
        trt, cuda = require_tensorrt()
        self._cuda = cuda
        self.info = info
        self.input_size = info.input_size
        self.num_classes = info.num_classes
        self.precision = precision
        device = open_device(cuda, device_index)
        platform = detect_platform(trt, device)
        rebuild = rebuild_command(info.folder, precision)
        loaded = {}
        for graph in GRAPHS:
            graph_precision = engine_precision(graph, precision)
            path = engine_path(info.folder, graph, graph_precision)
            key = EngineKey.for_graph(info, graph, graph_precision, platform)
            loaded[graph] = (path, read_checked_engine(path, key, rebuild))
        self._segmenter: _Engine | None = None
        self._fusion: _Engine | None = None
        self._runtime: Any = None
        self._stream: Any = None
        self._device_buffers: list[Any] = []
        self._host_buffers: list[np.ndarray] = []  # pinned inputs (image, homography)
        self._pinned: dict[tuple, np.ndarray] = {}  # pinned download buffers by (shape, dtype)
        self._rings: list[BufferRing] = []
        self._ctx: Any = device.make_context()  # current in this thread until popped
        try:
            self._setup(trt, loaded, rebuild)
        except BaseException:
            self._destroy()
            raise
        cuda.Context.pop()

    @classmethod
    def from_config(cls, runtime: RuntimeConfig) -> TensorRTBackend:
        """The backend for ``runtime``: the engines of ``export_dir`` (relative paths: working folder, then
        the package share) at ``precision`` on GPU ``device_index``."""
        if runtime.export_dir is None or not runtime.device.startswith("cuda"):
            raise SspError("runtime: backend 'tensorrt' needs runtime.export_dir and a 'cuda[:N]' runtime.device")
        folder = resolve_data_path(runtime.export_dir, "runtime.export_dir",
                                   "exported model folder (write one with ssp export)")
        # the runtime reads engines, not the ONNX graphs: export.json's hashes are what sidecars are checked
        # against, so the graphs are not re-hashed at every start
        return cls(load_export_info(folder, check_hash=False), runtime.precision, runtime.device_index)

    def _setup(self, trt: Any, loaded: dict[str, tuple[Path, bytes]], rebuild: str) -> None:
        cuda = self._cuda
        logger = trt_logger(trt)
        trt.init_libnvinfer_plugins(logger, "")
        self._runtime = trt.Runtime(logger)
        self._segmenter = _Engine(trt, self._runtime, *loaded["segmenter"], rebuild)
        self._fusion = _Engine(trt, self._runtime, *loaded["fusion"], rebuild)
        for graph, engine in (("segmenter", self._segmenter), ("fusion", self._fusion)):
            check_io(engine.path, graph, engine.specs, self.info.graph(graph), rebuild)
            engine.fix_shapes(self.info.graph(graph))
        self._stream = cuda.Stream()
        self._uploaded = cuda.Event()  # recorded after each upload: the pinned inputs may be refilled once reached
        seg, fus = self._segmenter.specs, self._fusion.specs
        self._image_host = self._input_buffer(seg[SEGMENTER_INPUTS[0]])
        self._homography_host = self._input_buffer(fus[FUSION_INPUTS[4]])
        self._image_device = self._device_buffer(self._image_host.nbytes)
        self._homography_device = self._device_buffer(self._homography_host.nbytes)
        self._segment_ring = BufferRing({n: (seg[n].shape, seg[n].dtype) for n in SEGMENTER_OUTPUTS}, cuda.mem_alloc)
        self._rings.append(self._segment_ring)
        self._fuse_ring = BufferRing({n: (fus[n].shape, fus[n].dtype) for n in FUSION_OUTPUTS}, cuda.mem_alloc)
        self._rings.append(self._fuse_ring)
        for spec in (seg[SEGMENTER_OUTPUTS[0]], fus[FUSION_OUTPUTS[1]]):
            self._pinned_buffer(spec)  # download buffers for labels() and similarity()

    def _input_buffer(self, spec: TensorSpec) -> np.ndarray:
        array = self._cuda.pagelocked_empty(spec.shape, spec.dtype)
        self._host_buffers.append(array)
        return array

    def _pinned_buffer(self, spec: TensorSpec) -> np.ndarray:
        key = (spec.shape, spec.dtype)
        if key not in self._pinned:
            self._pinned[key] = self._cuda.pagelocked_empty(spec.shape, spec.dtype)
        return self._pinned[key]

    def _device_buffer(self, nbytes: int) -> Any:
        allocation = self._cuda.mem_alloc(nbytes)
        self._device_buffers.append(allocation)
        return allocation

    def _require_open(self) -> None:
        if self._ctx is None:
            raise SspError("the TensorRT backend is closed")

    @contextlib.contextmanager
    def _current(self) -> Iterator[None]:
        """Make the backend's CUDA context current for the block."""
        self._require_open()
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def _check(self, tensor: Any, what: str, spec: TensorSpec | None = None) -> DeviceTensor:
        self._require_open()
        if not isinstance(tensor, DeviceTensor) or not any(tensor.owner is ring for ring in self._rings):
            raise SspError(f"{what}: not a tensor returned by this TensorRT backend's segment() or fuse()")
        if not tensor.owner.is_current(tensor):
            raise SspError(f"{what}: its GPU buffer was reused (a tensor stays valid until two more calls of the "
                           "method that returned it; keep only the previous frame's state)")
        if spec is not None and (tensor.shape != spec.shape or tensor.dtype != spec.dtype):
            raise SspError(f"{what}: shape {list(tensor.shape)} {tensor.dtype}, the fusion engine takes "
                           f"{list(spec.shape)} {spec.dtype}")
        return tensor

    def segment(self, image: np.ndarray) -> tuple[DeviceTensor, DeviceTensor]:
        """Model-input RGB uint8 H×W×3 → (logits, features) handles on the GPU, returned once the work is
        queued (``synchronize()`` waits for it)."""
        if image.shape != (*self.input_size, 3) or image.dtype != np.uint8:
            raise SspError(f"segment: expected a {self.input_size[0]}x{self.input_size[1]}x3 uint8 RGB model input, "
                           f"got {image.shape} {image.dtype}")
        cuda = self._cuda
        with self._current():
            self._uploaded.synchronize()
            np.copyto(self._image_host[0], image.transpose(2, 0, 1))
            cuda.memcpy_htod_async(self._image_device, self._image_host, self._stream)
            self._uploaded.record(self._stream)
            out = self._segment_ring.next()
            self._segmenter.run({SEGMENTER_INPUTS[0]: int(self._image_device),
                                 **{name: t.pointer for name, t in out.items()}}, self._stream)
        return out[SEGMENTER_OUTPUTS[0]], out[SEGMENTER_OUTPUTS[1]]

    def fuse(self, cur_logits: DeviceTensor, cur_feats: DeviceTensor, prev_logits: DeviceTensor,
             prev_feats: DeviceTensor, to_previous: np.ndarray) -> tuple[DeviceTensor, DeviceTensor]:
        """Warp the previous state by ``to_previous`` and blend, on the GPU → (fused logits, similarity)."""
        self._require_open()
        inputs = dict(zip(FUSION_INPUTS[:4], (cur_logits, cur_feats, prev_logits, prev_feats)))
        bound = {name: self._check(t, f"fuse {name}", self._fusion.specs[name]).pointer for name, t in inputs.items()}
        homography = np.asarray(to_previous, dtype=np.float64)
        if homography.shape != (3, 3) or not np.isfinite(homography).all():
            raise SspError(f"fuse: to_previous must be a finite 3x3 matrix, got shape {homography.shape}")
        cuda = self._cuda
        with self._current():
            self._uploaded.synchronize()
            self._homography_host[...] = homography.reshape(self._homography_host.shape)
            cuda.memcpy_htod_async(self._homography_device, self._homography_host, self._stream)
            self._uploaded.record(self._stream)
            out = self._fuse_ring.next()
            bound[FUSION_INPUTS[4]] = int(self._homography_device)
            self._fusion.run({**bound, **{name: t.pointer for name, t in out.items()}}, self._stream)
        return out[FUSION_OUTPUTS[0]], out[FUSION_OUTPUTS[1]]

    def _fetch(self, tensor: DeviceTensor, what: str) -> np.ndarray:
        """Copy a tensor into its pinned host buffer and wait; the buffer is reused by the next fetch."""
        self._check(tensor, what)
        with self._current():
            host = self._pinned_buffer(TensorSpec(False, tensor.shape, tensor.dtype))
            self._cuda.memcpy_dtoh_async(host, tensor.allocation, self._stream)
            self._stream.synchronize()
        return host

    def download(self, tensor: DeviceTensor) -> np.ndarray:
        """A host copy of a tensor (for tests and debugging)."""
        return self._fetch(tensor, "download").copy()

    def labels(self, logits: DeviceTensor) -> tuple[np.ndarray, np.ndarray]:
        return postprocess.labels_from_logits(self._fetch(logits, "labels"), self.input_size)

    def similarity(self, s: DeviceTensor) -> np.ndarray:
        return postprocess.similarity_image(self._fetch(s, "similarity"), self.input_size)

    def _teardown(self) -> None:
        """Release every GPU object; called with the context current. Execution contexts go before their
        engines, engines before the runtime."""
        if self._stream is not None:
            self._stream.synchronize()
        for ring in self._rings:
            ring.free()
        for allocation in self._device_buffers:
            allocation.free()
        for array in [*self._host_buffers, *self._pinned.values()]:
            array.base.free()
        self._rings, self._device_buffers, self._host_buffers, self._pinned = [], [], [], {}
        for engine in (self._segmenter, self._fusion):
            if engine is not None:
                engine.context = None
                engine.engine = None
        self._segmenter = self._fusion = None
        self._runtime = self._stream = None

    def synchronize(self) -> None:
        """Wait until the work queued by ``segment``/``fuse`` is done on the GPU."""
        with self._current():
            self._stream.synchronize()

    def _destroy(self) -> None:
        """Release every GPU object and destroy the context; called with the context current (pushed) in this
        thread, which makes pycuda's ``detach`` call ``cuCtxDetach`` whichever thread made the context (the
        detach also pops it)."""
        try:
            self._teardown()
        finally:
            context, self._ctx = self._ctx, None
            context.detach()

    def close(self) -> None:
        """Free the GPU memory and the CUDA context, from any thread (calls must not overlap); the backend is
        unusable afterwards. Idempotent."""
        if self._ctx is None:
            return
        self._ctx.push()
        self._destroy()

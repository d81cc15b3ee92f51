"""``pycuda.driver`` stand-in: the calls ssp_ros makes, with pycuda's signatures and rules (``src/cpp/cuda.hpp``,
``src/wrapper/wrap_cudadrv.cpp``) on the simulated device of ``stand_ins/gpu.py``. ``install`` attaches the
device (``_attach``); every install loads a fresh copy of this module."""

from __future__ import annotations

import operator
import threading
from typing import Any

import numpy as np

from stand_ins import gpu as _gpu

Error, LogicError = _gpu.Error, _gpu.LogicError
_device: _gpu.Gpu | None = None


def _attach(device: _gpu.Gpu) -> None:
    global _device
    _device = device


def _gpu_state() -> _gpu.Gpu:
    assert _device is not None, "stand_ins.install attaches the simulated device"
    return _device


def init(flags: int = 0) -> None:
    _gpu_state().initialised = True


def _pointer(dest: Any) -> int:
    """A CUdeviceptr argument: a DeviceAllocation or an int (boost.python's conversions)."""
    if isinstance(dest, DeviceAllocation):
        dest._check_valid("device pointer")
        return dest.address
    return operator.index(dest)


class Device:
    def __init__(self, number: int) -> None:
        state = _gpu_state()
        if not state.initialised:
            raise LogicError("cuDeviceGet failed: initialization error (call pycuda.driver.init() first)")
        if not 0 <= number < len(state.devices):
            raise LogicError("cuDeviceGet failed: invalid device ordinal")
        self.number, self.info = number, state.devices[number]

    @staticmethod
    def count() -> int:
        state = _gpu_state()
        if not state.initialised:
            raise LogicError("cuDeviceGetCount failed: initialization error")
        return len(state.devices)

    def name(self) -> str:
        return self.info.name

    def compute_capability(self) -> tuple[int, int]:
        return self.info.compute_capability

    def total_memory(self) -> int:
        return self.info.total_memory

    @property
    def multiprocessor_count(self) -> int:  # pycuda's Device.__getattr__ → get_attribute(MULTIPROCESSOR_COUNT)
        return self.info.multiprocessors

    def make_context(self, flags: int = 0) -> Context:
        state = _gpu_state()
        context = Context(_gpu.Context(state, self.number))
        state.stack().append(context._ctx)  # made current in this thread, above whatever was current
        return context


class Context:
    """pycuda's Context: a handle on a driver context (``_ctx``)."""

    def __init__(self, ctx: _gpu.Context) -> None:
        self._ctx = ctx
        ctx.wrapper = self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Context) and other._ctx is self._ctx

    def __hash__(self) -> int:
        return id(self._ctx)

    @property
    def handle(self) -> int:
        return id(self._ctx)

    def push(self) -> None:
        if not self._ctx.alive:
            raise LogicError("cuCtxPushCurrent failed: invalid device context")
        self._ctx.gpu.stack().append(self._ctx)

    @staticmethod
    def pop() -> None:
        state = _gpu_state()
        stack = state.stack()
        if not stack:
            raise LogicError("context::pop failed: invalid device context - cannot pop non-current context")
        stack.pop()

    def detach(self) -> None:
        """cuda.hpp ``context::detach``: cuCtxDetach if current here or made here, else skipped (leaked)."""
        ctx, state = self._ctx, self._ctx.gpu
        if not ctx.valid:
            raise LogicError("context::detach failed: invalid device context - cannot detach from invalid context")
        current = state.current() is ctx
        if current or ctx.thread == threading.get_ident():
            ctx.destroy()
        else:
            state.leaked.append(ctx)  # "leaked out-of-thread context": cuCtxDetach is never called
        ctx.valid = False
        if current:
            state.current(skip=ctx)  # the detach popped it; what was below is current again

    @staticmethod
    def get_current() -> Context | None:
        ctx = _gpu_state().current()
        return None if ctx is None else ctx.wrapper

    @staticmethod
    def get_device() -> Device:
        return Device(_gpu_state().require_context("cuCtxGetDevice").device)

    @staticmethod
    def synchronize() -> None:
        state = _gpu_state()
        state.require_context("cuCtxSynchronize")
        state.run_everything()


class DeviceAllocation:
    """What ``mem_alloc`` returns: ``int()`` is the device address; ``free()`` once (twice is an error)."""

    def __init__(self, nbytes: int) -> None:
        state = _gpu_state()
        self._context = state.require_context("mem_alloc")
        self.address = state.allocate(int(nbytes), self._context)
        self.nbytes = int(nbytes)
        self._valid = True

    def __int__(self) -> int:
        return self.address

    __index__ = __int__

    def _check_valid(self, what: str) -> None:
        if not self._valid:
            raise LogicError(f"{what}: the allocation was freed")

    def free(self) -> None:
        if not self._valid:
            raise LogicError("device_allocation::free failed: invalid resource handle")
        state = self._context.gpu
        state.release(self._context, "device_allocation", lambda: state.memory.pop(self.address, None))
        self._valid = False

    def __del__(self) -> None:
        if getattr(self, "_valid", False):
            self.free()


def mem_alloc(nbytes: int) -> DeviceAllocation:
    return DeviceAllocation(nbytes)


class _HostAllocation(bytearray):
    """Page-locked host memory: the ``base`` of what ``pagelocked_empty`` returns, with ``free()``."""

    def setup(self, context: _gpu.Context) -> _HostAllocation:
        self.context, self.valid = context, True
        return self

    def free(self) -> None:
        if not self.valid:
            raise LogicError("pagelocked_host_allocation::free failed: invalid resource handle")
        self.context.gpu.release(self.context, "pagelocked_host_allocation", lambda: None)
        self.valid = False


def pagelocked_empty(shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0) -> np.ndarray:
    state = _gpu_state()
    context = state.require_context("pagelocked_empty")
    dtype = np.dtype(dtype)
    nbytes = int(np.prod(shape)) * dtype.itemsize
    return np.ndarray(shape, dtype, buffer=_HostAllocation(max(nbytes, 1)).setup(context), order=order)


def _pinned(array: Any) -> _HostAllocation | None:
    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return base if isinstance(base, _HostAllocation) else None


def _host_bytes(src: Any) -> memoryview:
    view = memoryview(src)
    if not (view.c_contiguous or view.f_contiguous):
        raise TypeError("memcpy: the host buffer must be contiguous (PyBUF_ANY_CONTIGUOUS)")
    return view.cast("B")


def _stream(stream: Any) -> _gpu.Stream | None:
    """The queue of a pycuda Stream argument (None: the legacy default stream)."""
    if stream is not None and not isinstance(stream, Stream):
        raise TypeError(f"stream must be a pycuda Stream or None, got {type(stream).__name__}")
    return None if stream is None else stream._queue


def _copy_in(dest: int, src: memoryview, pinned: _HostAllocation | None, what: str) -> None:
    if pinned is not None and not pinned.valid:
        raise LogicError(f"{what}: the page-locked host buffer was freed")
    _gpu_state().view(dest, len(src), what)[:] = src


def memcpy_htod(dest: Any, src: Any) -> None:
    state = _gpu_state()
    state.require_context("cuMemcpyHtoD")
    address, data = _pointer(dest), _host_bytes(src)
    state.view(address, len(data), "cuMemcpyHtoD")
    state.run_everything()  # synchronous on the legacy default stream
    _copy_in(address, data, None, "cuMemcpyHtoD")


def memcpy_htod_async(dest: Any, src: Any, stream: Stream | None = None) -> None:
    """From page-locked memory the copy reads the host buffer when the stream gets to it; from pageable
    memory (or with no stream) it is staged now."""
    state = _gpu_state()
    state.require_context("cuMemcpyHtoDAsync")
    address, data, stream, pinned = _pointer(dest), _host_bytes(src), _stream(stream), _pinned(src)
    state.view(address, len(data), "cuMemcpyHtoDAsync")
    if stream is None or pinned is None:
        (state.run_everything() if stream is None else stream.run_all())
        _copy_in(address, bytes(data), None, "cuMemcpyHtoDAsync")
    else:
        stream.enqueue(lambda: _copy_in(address, data, pinned, "cuMemcpyHtoDAsync"))


def _copy_out(dest: memoryview, src: int, pinned: _HostAllocation | None, what: str) -> None:
    if pinned is not None and not pinned.valid:
        raise LogicError(f"{what}: the page-locked host buffer was freed")
    dest[:] = _gpu_state().view(src, len(dest), what)


def memcpy_dtoh(dest: Any, src: Any) -> None:
    state = _gpu_state()
    state.require_context("cuMemcpyDtoH")
    data, address = _host_bytes(dest), _pointer(src)
    state.run_everything()
    _copy_out(data, address, None, "cuMemcpyDtoH")


def memcpy_dtoh_async(dest: Any, src: Any, stream: Stream | None = None) -> None:
    state = _gpu_state()
    state.require_context("cuMemcpyDtoHAsync")
    data, address, stream, pinned = _host_bytes(dest), _pointer(src), _stream(stream), _pinned(dest)
    state.view(address, len(data), "cuMemcpyDtoHAsync")
    if stream is None or pinned is None:
        (state.run_everything() if stream is None else stream.run_all())
        _copy_out(data, address, None, "cuMemcpyDtoHAsync")
    else:
        stream.enqueue(lambda: _copy_out(data, address, pinned, "cuMemcpyDtoHAsync"))


class Stream:
    """A blocking stream (flags 0): ``handle`` is what TensorRT's ``execute_async_v3`` takes."""

    def __init__(self, flags: int = 0) -> None:
        state = _gpu_state()
        self._context = state.require_context("Stream")
        self._queue = _gpu.Stream(state)

    @property
    def handle(self) -> int:
        return self._queue.handle

    def synchronize(self) -> None:
        self._queue.run_all()

    def is_done(self) -> bool:
        return not self._queue.queue

    def __del__(self) -> None:
        queue = getattr(self, "_queue", None)
        if queue is not None:
            queue.gpu.release(self._context, "stream", lambda: queue.gpu.streams.pop(queue.handle, None))


class Event:
    def __init__(self, flags: int = 0) -> None:
        self._context = _gpu_state().require_context("Event")
        self._mark: tuple[_gpu.Stream, int] | None = None

    def record(self, stream: Stream | None = None) -> Event:
        if stream is None:
            raise NotImplementedError("stand-in: record on the default stream is not simulated")
        queue = _stream(stream)
        self._mark = (queue, queue.queued)
        return self

    def synchronize(self) -> Event:
        if self._mark is not None:
            queue, position = self._mark
            queue.run_until(position)
        return self

    def query(self) -> bool:
        return self._mark is None or self._mark[0].done >= self._mark[1]

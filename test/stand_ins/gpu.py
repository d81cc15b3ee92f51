"""The simulated CUDA device behind the tensorrt and pycuda stand-ins: memory, contexts, streams, events.

Rules kept from the real stack (pycuda ``src/cpp/cuda.hpp``, CUDA driver API):
- pycuda keeps one context stack per thread; ``current()`` is the top of the calling thread's stack.
- ``Context.detach`` calls ``cuCtxDetach`` only when the context is current in the calling thread or the
  calling thread made it; otherwise it marks the context dead and skips the call: the context leaks
  (``leaked``), and stays in ``live``.
- Objects made by pycuda (allocations, pinned memory, streams, events) take the current context when made
  (none current: an error); freeing one in another thread than its context's, while that context is not
  current, warns and leaks it.
- Work queued on a stream runs only when something waits for it (``Stream.synchronize``, an event's
  ``synchronize``, a synchronous copy): what a kernel writes is not there before.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass


class Error(Exception):
    """pycuda.driver.Error."""


class LogicError(Error):
    """pycuda.driver.LogicError."""


@dataclass(frozen=True)
class DeviceInfo:
    name: str = "Orin"
    compute_capability: tuple[int, int] = (8, 7)
    multiprocessors: int = 16
    total_memory: int = 32 << 30


class Context:
    """A CUDA context as pycuda wraps it (``context`` in cuda.hpp)."""

    def __init__(self, gpu: Gpu, device: int) -> None:
        self.gpu, self.device = gpu, device
        self.thread = threading.get_ident()
        self.valid = True  # pycuda's m_valid: false once detach was called
        self.alive = True  # the driver's view: false once cuCtxDetach destroyed it
        gpu.live.append(self)

    def destroy(self) -> None:
        self.alive = False
        self.gpu.live.remove(self)
        for allocation in [a for a in self.gpu.memory.values() if a.context is self]:
            del self.gpu.memory[allocation.address]  # the driver frees what the context owned


@dataclass
class Block:
    address: int
    data: bytearray
    context: Context


class Stream:
    """Queued work, run in order when waited for."""

    def __init__(self, gpu: Gpu) -> None:
        self.gpu = gpu
        self.handle = next(gpu._handles)
        self.queue: list[Callable[[], None]] = []
        self.done = 0  # operations run so far
        gpu.streams[self.handle] = self

    @property
    def queued(self) -> int:
        return self.done + len(self.queue)

    def enqueue(self, op: Callable[[], None]) -> None:
        self.queue.append(op)

    def run_until(self, position: int) -> None:
        while self.done < position and self.queue:
            op = self.queue.pop(0)
            self.done += 1
            op()

    def run_all(self) -> None:
        self.run_until(self.queued)


class Gpu:
    """One simulated machine: devices, the driver's contexts and memory, pycuda's per-thread stacks."""

    def __init__(self, devices: tuple[DeviceInfo, ...] = (DeviceInfo(),)) -> None:
        self.devices = devices
        self.initialised = False
        self.live: list[Context] = []  # contexts the driver still holds
        self.leaked: list[Context] = []  # contexts whose detach pycuda skipped
        self.stacks: dict[int, list[Context]] = {}  # pycuda's context stack, per thread id
        self.memory: dict[int, Block] = {}
        self.streams: dict[int, Stream] = {}
        self.problems: list[str] = []  # rules broken in ways the real stack does not report at once
        self._handles = itertools.count(0x7A000)
        self._addresses = itertools.count(0x7F0000000000, 1 << 20)

    # pycuda's context stack ------------------------------------------------------------------------------
    def stack(self) -> list[Context]:
        return self.stacks.setdefault(threading.get_ident(), [])

    def current(self, skip: Context | None = None) -> Context | None:
        """pycuda's ``current_context``: the top valid context of this thread's stack (dead ones are popped)."""
        stack = self.stack()
        while stack:
            if stack[-1] is not skip and stack[-1].valid:
                return stack[-1]
            stack.pop()
        return None

    def require_context(self, what: str) -> Context:
        context = self.current()
        if context is None:
            raise LogicError(f"{what} failed: invalid device context - no currently active context?")
        if not context.alive:
            raise LogicError(f"{what} failed: context is destroyed")
        return context

    def release(self, context: Context, kind: str, free: Callable[[], None]) -> bool:
        """pycuda's ``scoped_context_activation`` around a cleanup: True if ``free`` ran."""
        if not context.valid:
            return True  # dead context: the driver already took everything with it
        if self.current() is not context and threading.get_ident() != context.thread:
            warnings.warn(f"{kind} in out-of-thread context could not be cleaned up", UserWarning, stacklevel=3)
            self.problems.append(f"{kind} leaked: freed from another thread with its context not current")
            return False
        free()
        return True

    # memory ----------------------------------------------------------------------------------------------
    def allocate(self, nbytes: int, context: Context) -> int:
        if nbytes <= 0:
            raise LogicError("cuMemAlloc failed: invalid argument")
        address = next(self._addresses)
        self.memory[address] = Block(address, bytearray(nbytes), context)
        return address

    def view(self, address: int, nbytes: int, what: str) -> memoryview:
        """``nbytes`` of device memory at ``address``: an error unless a live allocation holds all of them."""
        for block in self.memory.values():
            if block.address <= address < block.address + len(block.data):
                offset = address - block.address
                if offset + nbytes > len(block.data):
                    raise LogicError(f"{what} failed: {nbytes} bytes at {address:#x} overrun an allocation of "
                                     f"{len(block.data)} bytes")
                return memoryview(block.data)[offset:offset + nbytes]
        raise LogicError(f"{what} failed: {address:#x} is not device memory of a live allocation")

    def run_everything(self) -> None:
        """What a synchronous call on the legacy default stream waits for: all blocking streams' work."""
        for stream in list(self.streams.values()):
            stream.run_all()

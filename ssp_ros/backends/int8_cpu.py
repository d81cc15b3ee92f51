"""Which INT8 kernel ONNX Runtime runs on this CPU, and whether a u8s8 graph with full 8-bit weights is exact there.

ONNX Runtime's x86 u8×s8 matrix kernels differ by CPU (MLAS, ``onnxruntime/core/mlas/lib/platform.cpp``: the
dispatch picks AVX2, then AVX-VNNI, then AVX-512 core, then AVX-512 VNNI, then AMX, each overriding the last):

- AVX-512 VNNI, AVX-VNNI and AMX-INT8 multiply-accumulate u8×s8 products straight into 32-bit sums: exact.
- AVX2 and AVX-512 without VNNI use ``vpmaddubsw``, which adds pairs of u8×s8 products into a *saturating* 16-bit
  sum. 255·127·2 = 64770 does not fit; a model whose activations and weights are both large (non-ReLU networks such
  as our hard-swish backbone) loses accuracy silently. Measured on an AMD EPYC without VNNI: 94.0 % argmax agreement
  with FP32 in our 64×96 test, against 97.5 % on AVX-512 VNNI. With 7-bit weights (ONNX Runtime's
  ``reduce_range``: [-64, 64]) a pair is at most 255·64·2 = 32640, which fits, so the sum is exact on every kernel.
- Older x86 kernels (SSE4.1 on Windows builds) saturate as well; ARM's NEON kernels widen to 32 bits: exact.

So a graph with full 8-bit weights is only for a VNNI/AMX CPU, and one with 7-bit weights runs right everywhere.
Note the MLAS order: an AVX-512 CPU with AVX-VNNI but without AVX-512 VNNI runs the saturating AVX-512 kernel.

The CPU's features come from Linux's ``/proc/cpuinfo`` flags (what the kernel enabled, AMX included). Elsewhere
numpy's own runtime dispatch table is read (it knows AVX-512 VNNI, not AVX-VNNI or AMX); an x86 CPU whose VNNI
cannot be seen is treated as one without it, which only costs the 7-bit weights.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from pathlib import Path
from typing import Any

VNNI = "x86-vnni"  # u8s8 with 8-bit weights is exact and fast (AVX-512 VNNI, AVX-VNNI, AMX)
NO_VNNI = "x86-no-vnni"  # u8s8 pair sums saturate at 16 bits (AVX2, AVX-512 without VNNI): 7-bit weights needed
OTHER = "other"  # not x86 (ARM NEON): 32-bit sums, exact
ANY_CPU = "any"  # the target of a u8s8 graph with 7-bit weights: exact on every kernel
CPU_TARGETS = ("auto", VNNI, ANY_CPU)  # what `ssp export --int8-cpu` takes; auto: this CPU's family
AVX512_CORE = frozenset({"avx512f", "avx512bw", "avx512dq", "avx512vl"})
X86_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})


@dataclasses.dataclass(frozen=True)
class Int8Cpu:
    """The INT8 kernel family of a CPU: ``family`` is VNNI, NO_VNNI or OTHER; ``kernel`` names the kernel."""

    family: str
    kernel: str

    @property
    def saturates(self) -> bool:
        """True where ONNX Runtime's u8s8 kernel adds pairs of products into 16 bits (8-bit weights lose accuracy)."""
        return self.family == NO_VNNI

    def describe(self) -> str:
        return f"{self.family} ({self.kernel})"


def classify(flags: set[str], machine: str) -> Int8Cpu:
    """The kernel MLAS picks for u8×s8 on a CPU with these ``/proc/cpuinfo`` flags (lower case) and machine name."""
    if machine.lower() not in X86_MACHINES:
        return Int8Cpu(OTHER, f"{machine}: 32-bit integer sums")
    if "avx2" not in flags:
        return Int8Cpu(NO_VNNI, "x86 without AVX2: SSE kernels, saturating on some builds")
    if {"amx_int8", "amx_tile"} <= flags:
        return Int8Cpu(VNNI, "AMX-INT8")
    if AVX512_CORE <= flags:
        if "avx512_vnni" in flags:
            return Int8Cpu(VNNI, "AVX-512 VNNI")
        return Int8Cpu(NO_VNNI, "AVX-512 without VNNI: 16-bit saturating pair sums")
    if "avx_vnni" in flags:
        return Int8Cpu(VNNI, "AVX-VNNI")
    return Int8Cpu(NO_VNNI, "AVX2 without VNNI: 16-bit saturating pair sums")


def cpuinfo_flags(text: str) -> set[str]:
    """The feature flags of the first processor in a ``/proc/cpuinfo`` text."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def _numpy_flags() -> set[str]:
    """The flags numpy's runtime dispatch saw, in /proc/cpuinfo's names (AVX2, AVX-512 core and AVX-512 VNNI)."""
    try:  # numpy's cpuid + OS-support probe (numpy 2 moved it from numpy.core)
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        from numpy.core._multiarray_umath import __cpu_features__

    names = {"AVX2": "avx2", "AVX512F": "avx512f", "AVX512BW": "avx512bw", "AVX512DQ": "avx512dq",
             "AVX512VL": "avx512vl", "AVX512VNNI": "avx512_vnni"}
    return {flag for key, flag in names.items() if __cpu_features__.get(key)}


@functools.cache
def this_cpu() -> Int8Cpu:
    """This machine's INT8 kernel family (probed once per process)."""
    cpuinfo = Path("/proc/cpuinfo")
    try:
        flags = cpuinfo_flags(cpuinfo.read_text())
    except OSError:
        flags = set()
    if not flags:
        try:
            flags = _numpy_flags()
        except ImportError:  # numpy moved its private table: treat the CPU as one without VNNI
            flags = set()
    return classify(flags, platform.machine())


def mismatch(calibration: dict[str, Any], cpu: Int8Cpu) -> str | None:
    """Why a quantized segmenter (its ``export.json`` ``calibration`` record) computes wrong sums on ``cpu``, or
    None. Graphs quantized before the record had a CPU target were u8s8 with 8-bit weights: made for VNNI."""
    if calibration.get("scheme") != "u8s8" or calibration.get("cpu_target", VNNI) != VNNI or not cpu.saturates:
        return None
    made_on = calibration.get("made_on", "an unrecorded CPU")
    return (f"this INT8 segmenter has 8-bit u8s8 weights for x86 CPUs with VNNI or AMX (made on {made_on}), but this "
            f"CPU is {cpu.describe()}: ONNX Runtime's kernels saturate here and lose accuracy silently; re-export "
            "with `ssp export --int8 --int8-cpu any` (7-bit weights, right on every CPU), or use the FP32 export")

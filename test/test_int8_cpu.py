"""Which INT8 kernel ONNX Runtime runs on a CPU (ssp_ros/backends/int8_cpu.py), from /proc/cpuinfo flags.

The cases follow MLAS's dispatch order (onnxruntime/core/mlas/lib/platform.cpp): AVX2, AVX-VNNI, AVX-512 core,
AVX-512 VNNI, AMX, each overriding the one before.
"""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from ssp_ros.backends import int8_cpu
from ssp_ros.backends.int8_cpu import NO_VNNI, OTHER, VNNI, classify, cpuinfo_flags, mismatch

AVX512_CORE = {"avx2", "avx512f", "avx512bw", "avx512dq", "avx512vl"}


@pytest.mark.parametrize(("flags", "machine", "family", "kernel"), [
    ({"avx2"}, "x86_64", NO_VNNI, "AVX2 without VNNI"),  # the AMD EPYC (Zen 2/3) that failed CI
    ({"avx2", "avx_vnni"}, "x86_64", VNNI, "AVX-VNNI"),  # Alder Lake and later client CPUs
    (AVX512_CORE, "x86_64", NO_VNNI, "AVX-512 without VNNI"),  # Skylake-SP
    (AVX512_CORE | {"avx_vnni"}, "x86_64", NO_VNNI, "AVX-512 without VNNI"),  # AVX-512 core overrides AVX-VNNI
    (AVX512_CORE | {"avx512_vnni"}, "x86_64", VNNI, "AVX-512 VNNI"),  # Cascade Lake, Zen 4
    (AVX512_CORE | {"avx512_vnni", "amx_tile", "amx_int8"}, "x86_64", VNNI, "AMX-INT8"),  # Sapphire Rapids
    ({"sse4_1"}, "x86_64", NO_VNNI, "x86 without AVX2"),
    ({"asimd", "asimddp"}, "aarch64", OTHER, "aarch64"),  # Jetson Orin's CPU
])
def test_kernel_family_follows_mlas_dispatch(flags: set[str], machine: str, family: str, kernel: str) -> None:
    cpu = classify(flags, machine)
    assert cpu.family == family and kernel in cpu.kernel
    assert cpu.saturates == (family == NO_VNNI)


def test_cpuinfo_flags() -> None:
    text = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse avx2 avx512_vnni\n\nprocessor\t: 1\n"
    assert cpuinfo_flags(text) == {"fpu", "sse", "avx2", "avx512_vnni"}
    assert cpuinfo_flags("processor\t: 0\n") == set()


def test_this_cpu_agrees_with_numpys_probe_and_falls_back_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/cpuinfo and numpy's own cpuid probe must tell the same family, except where only /proc can see the
    feature (AVX-VNNI, AMX); without /proc/cpuinfo the numpy probe is used."""
    numpy_cpu = classify(int8_cpu._numpy_flags(), platform.machine())
    try:
        flags = cpuinfo_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = set()
    if flags and not flags & {"avx_vnni", "amx_int8"}:
        assert int8_cpu.this_cpu().family == numpy_cpu.family
    monkeypatch.setattr(Path, "read_text", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("no /proc")))
    assert int8_cpu.this_cpu.__wrapped__() == numpy_cpu


def test_mismatch_only_for_8_bit_u8s8_weights_on_a_saturating_cpu() -> None:
    saturating, exact = classify({"avx2"}, "x86_64"), classify(AVX512_CORE | {"avx512_vnni"}, "x86_64")
    vnni_graph = {"scheme": "u8s8", "cpu_target": VNNI, "made_on": "x86-vnni (AVX-512 VNNI)"}
    problem = mismatch(vnni_graph, saturating)
    assert problem and "made on x86-vnni (AVX-512 VNNI)" in problem and "--int8-cpu any" in problem
    assert mismatch({"scheme": "u8s8"}, saturating)  # quantized before the record had a target: 8-bit weights
    assert mismatch(vnni_graph, exact) is None
    assert mismatch({"scheme": "u8s8", "cpu_target": "any"}, saturating) is None
    assert mismatch({"scheme": "s8s8", "cpu_target": "tensorrt"}, saturating) is None

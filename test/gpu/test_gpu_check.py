"""``test/gpu/check.sh``'s helper run on the CPU with small sizes: every section runs and reports, a failure
gives a non-zero exit, and a missing TensorRT is said rather than faked."""

from __future__ import annotations

import importlib.util

import gpu_check
import pytest


@pytest.mark.slow
def test_every_section_runs_on_the_cpu(tmp_path, capsys) -> None:
    code = gpu_check.main(["--device", "cpu", "--size", "96x160", "--paper-size", "64x96", "--frames", "4",
                           "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    for title in ("== 1. torch on cpu vs CPU", "== 2. AMP training step", "== 3. ssp bench on cpu",
                  "== 4. paper model, image vs SSP", "== 5. TensorRT"):
        assert title in out
    assert "max |dlogit| 0.00e+00" in out and "mask agreement min 100.000 %" in out
    assert "bf16 autocast on cpu" in out and "paper, A100: 104 → 95 FPS" in out
    assert (tmp_path / "shipped" / "bench.json").is_file() and (tmp_path / "paper" / "bench.json").is_file()
    if importlib.util.find_spec("tensorrt") is None:
        assert "TensorRT is not importable here" in out and "all checks passed" in out


def test_a_failing_section_fails_the_run(monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_check, "parity", lambda *args: ["max |dlogit| 3 > 0.1"])
    for name in ("amp_step", "bench", "paper_fps"):
        monkeypatch.setattr(gpu_check, name, lambda *args: [])
    assert gpu_check.main(["--device", "cpu"]) == 1
    out = capsys.readouterr().out
    assert "FAIL: max |dlogit| 3 > 0.1" in out and "FAILED:" in out
    monkeypatch.setattr(gpu_check, "bench", lambda *args: 1 / 0)
    monkeypatch.setattr(gpu_check, "parity", lambda *args: [])
    assert gpu_check.main(["--device", "cpu"]) == 1
    assert "ZeroDivisionError" in capsys.readouterr().out


def test_cuda_asked_without_a_gpu_fails(monkeypatch, capsys) -> None:
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 1
    assert "torch sees no CUDA device" in capsys.readouterr().out

"""Where a user's ONNX segmenter runs (``backends/external.py``): the CPU, or on a GPU ONNX Runtime's TensorRT
provider (engines cached per model file and version) before its CUDA provider. This machine's ONNX Runtime has the
CPU provider only, so the GPU lists are checked as data and a GPU request is refused with the fix named."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed")
pytest.importorskip("onnx", reason="onnx is not installed (it writes the test's segmenter)")

from onnx_segmenters import conv_segmenter, segmenter_yaml  # noqa: E402 - after the skips

from ssp_ros.backends.external import TENSORRT, OnnxSegmenter, engine_cache_dir, segmenter_providers  # noqa: E402
from ssp_ros.errors import SspError  # noqa: E402

CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


def no_cache() -> Path:
    raise AssertionError("the engine cache is made only for TensorRT")


def test_the_cpu_gets_the_cpu_provider_whatever_else_is_installed() -> None:
    assert segmenter_providers("cpu", [TENSORRT, CUDA, CPU], True, no_cache) == [CPU]


def test_a_gpu_gets_tensorrt_then_cuda_then_the_cpu(tmp_path) -> None:
    providers = segmenter_providers("cuda:1", [TENSORRT, CUDA, CPU], False, lambda: tmp_path)
    assert providers == [(TENSORRT, {"device_id": 1, "trt_fp16_enable": False, "trt_engine_cache_enable": True,
                                     "trt_engine_cache_path": str(tmp_path)}),
                         (CUDA, {"device_id": 1}), CPU]


def test_a_gpu_without_tensorrt_gets_cuda_and_one_without_cuda_is_refused() -> None:
    assert segmenter_providers("cuda", [CUDA, CPU], True, no_cache) == [(CUDA, {"device_id": 0}), CPU]
    with pytest.raises(SspError, match="no CUDAExecutionProvider .* install onnxruntime-gpu"):
        segmenter_providers("cuda", [TENSORRT, CPU], True, no_cache)


def test_the_engine_cache_is_a_folder_per_model_file_and_runtime_version(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    model = tmp_path / "road.onnx"
    model.write_bytes(b"graph one")
    first = engine_cache_dir(model, "1.20.1")
    assert first.is_dir() and first.parent == tmp_path / "cache" / "ssp_ros" / "segmenter_engines"
    assert first.name.startswith("road-") and "-ort1.20.1-trt" in first.name
    assert engine_cache_dir(model, "1.20.1") == first
    assert engine_cache_dir(model, "1.22.0") != first, "another ONNX Runtime: another folder"
    model.write_bytes(b"graph two")
    assert engine_cache_dir(model, "1.20.1") != first, "a retrained model: another folder"


def test_the_segmenter_runs_where_the_runtime_device_says(tmp_path) -> None:
    conv_segmenter(tmp_path / "seg.onnx", (32, 48), 3)
    spec = segmenter_yaml(tmp_path, model="seg.onnx", input_size=[32, 48], output="logits")
    assert OnnxSegmenter(spec).providers == [CPU]
    with pytest.raises(SspError, match="segmenter.yaml: runtime.device 'cuda': this onnxruntime has no CUDA"):
        OnnxSegmenter(spec, "cuda")

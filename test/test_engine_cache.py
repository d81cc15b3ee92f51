"""Engine file naming and the sidecar key that refuses stale TensorRT engines (no TensorRT needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_export import write_fake_export

from ssp_ros.backends.engine_cache import (
    EngineKey,
    Platform,
    calibration_cache_path,
    engine_path,
    engine_precision,
    read_checked_engine,
    rebuild_command,
    sidecar_path,
    timing_cache_path,
    write_engine,
)
from ssp_ros.errors import SspError

ORIN_JP5 = Platform("8.5.2.2", "Orin", "8.7", 16)
ORIN_JP6 = Platform("10.3.0.30", "Orin", "8.7", 16)
ORIN_32GB = Platform("8.5.2.2", "Orin", "8.7", 14)
DESKTOP = Platform("8.5.2.2", "NVIDIA GeForce RTX 3080", "8.6", 68)


@pytest.fixture
def export(tmp_path: Path):
    return write_fake_export(tmp_path / "ssp_export")


def built(export, graph: str = "segmenter", precision: str = "fp16", platform: Platform = ORIN_JP5,
          calibration: str | None = None, engine: bytes = b"serialized plan") -> tuple[Path, EngineKey]:
    key = EngineKey.for_graph(export, graph, precision, platform, calibration)
    path = write_engine(engine_path(export.folder, graph, precision), engine, key, {"workspace_mb": 1024})
    return path, key


def test_engine_files_are_named_by_graph_and_precision(export) -> None:
    path = engine_path(export.folder, "segmenter", "fp16")
    assert path == export.folder / "segmenter.fp16.engine"
    assert sidecar_path(path) == export.folder / "segmenter.fp16.engine.json"
    assert [engine_precision(g, "int8") for g in ("segmenter", "fusion")] == ["int8", "fp16"]
    assert [engine_precision(g, "fp32") for g in ("segmenter", "fusion")] == ["fp32", "fp32"]
    with pytest.raises(SspError, match="precision 'bf16'"):
        engine_precision("segmenter", "bf16")


def test_key_takes_the_graph_hash_from_export_json(export) -> None:
    key = EngineKey.for_graph(export, "fusion", "fp16", ORIN_JP6)
    assert key.onnx_sha256 == export.graph("fusion").sha256 != export.graph("segmenter").sha256
    assert (key.tensorrt_version, key.gpu_name, key.compute_capability, key.multiprocessors) == \
        ("10.3.0.30", "Orin", "8.7", 16)


def test_written_engine_loads_back_with_the_same_key(export) -> None:
    path, key = built(export)
    assert read_checked_engine(path, key, "rebuild") == b"serialized plan"
    sidecar = json.loads(sidecar_path(path).read_text())
    assert sidecar["key"] == key.to_dict() and sidecar["build"] == {"workspace_mb": 1024}
    assert sidecar["engine_bytes"] == len(b"serialized plan")
    assert not [p for p in export.folder.iterdir() if ".partial" in p.name]


def test_tensorrt_upgrade_is_refused_with_field_values_and_rebuild_command(export) -> None:
    path, _ = built(export, platform=ORIN_JP5)
    rebuild = rebuild_command(export.folder, "fp16")
    with pytest.raises(SspError) as err:
        read_checked_engine(path, EngineKey.for_graph(export, "segmenter", "fp16", ORIN_JP6), rebuild)
    message = str(err.value)
    assert str(path) in message and "segmenter.fp16.engine.json" in message
    assert "tensorrt_version: expected '10.3.0.30', found '8.5.2.2'" in message
    assert f"`ssp build-engine --onnx {export.folder} --fp16`" in message
    assert "gpu_name" not in message  # only the fields that differ


def test_other_gpu_names_every_differing_field(export) -> None:
    path, _ = built(export, platform=DESKTOP)
    with pytest.raises(SspError) as err:
        read_checked_engine(path, EngineKey.for_graph(export, "segmenter", "fp16", ORIN_JP5), "rebuild")
    assert "gpu_name: expected 'Orin', found 'NVIDIA GeForce RTX 3080'" in str(err.value)
    assert "compute_capability: expected '8.7', found '8.6'" in str(err.value)
    assert "multiprocessors: expected 16, found 68" in str(err.value)


def test_another_orin_module_is_refused(export) -> None:
    path, _ = built(export, platform=ORIN_32GB)
    with pytest.raises(SspError, match="multiprocessors: expected 16, found 14"):
        read_checked_engine(path, EngineKey.for_graph(export, "segmenter", "fp16", ORIN_JP5), "rebuild")


def test_re_export_makes_the_old_engine_stale(export) -> None:
    path, _ = built(export)
    fresh = write_fake_export(export.folder, content=b"retrained weights")
    with pytest.raises(SspError, match="onnx_sha256: expected"):
        read_checked_engine(path, EngineKey.for_graph(fresh, "segmenter", "fp16", ORIN_JP5), "rebuild")


def test_precision_is_part_of_the_key(export) -> None:
    path, _ = built(export, precision="fp16")
    int8_key = EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP5)
    with pytest.raises(SspError, match="precision: expected 'int8', found 'fp16'"):
        read_checked_engine(path, int8_key, "rebuild")


def test_runtime_accepts_any_calibration_but_a_builder_key_compares_it(export) -> None:
    path, _ = built(export, precision="int8", calibration="a" * 64)
    runtime_key = EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP5)
    assert read_checked_engine(path, runtime_key, "rebuild") == b"serialized plan"
    other_frames = EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP5, "b" * 64)
    with pytest.raises(SspError, match="calibration_sha256: expected 'bbbb"):
        read_checked_engine(path, other_frames, "rebuild")
    assert json.loads(sidecar_path(path).read_text())["key"]["calibration_sha256"] == "a" * 64


def test_missing_engine_or_sidecar_says_how_to_build(export) -> None:
    rebuild = rebuild_command(export.folder, "int8")
    assert rebuild == f"ssp build-engine --onnx {export.folder} --int8 --calib FRAMES_DIR"
    missing = engine_path(export.folder, "segmenter", "int8")
    with pytest.raises(SspError, match=r"segmenter\.int8\.engine: TensorRT engine not found; build it with `ssp"):
        read_checked_engine(missing, EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP5), rebuild)
    path, key = built(export)
    sidecar_path(path).unlink()
    with pytest.raises(SspError, match=r"segmenter\.fp16\.engine\.json: missing, so segmenter\.fp16\.engine cannot"):
        read_checked_engine(path, key, rebuild)


@pytest.mark.parametrize("text, problem", [("{not json", "not valid JSON"),
                                           ('["key"]', "expected an object with a 'key' object"),
                                           ('{"format": 99, "key": {}}', "sidecar format 99")])
def test_corrupt_sidecar_is_named(export, text: str, problem: str) -> None:
    path, key = built(export)
    sidecar_path(path).write_text(text)
    with pytest.raises(SspError, match=problem) as err:
        read_checked_engine(path, key, "ssp build-engine")
    assert str(sidecar_path(path)) in str(err.value) and "ssp build-engine" in str(err.value)


def test_a_format_1_sidecar_is_refused_because_its_fusion_engine_may_be_fp16(export) -> None:
    path, key = built(export)
    sidecar = json.loads(sidecar_path(path).read_text())
    sidecar_path(path).write_text(json.dumps({**sidecar, "format": 1}))
    with pytest.raises(SspError, match="sidecar format 1, this ssp_ros reads 2; rebuild with `ssp build-engine"):
        read_checked_engine(path, key, "ssp build-engine --onnx x --fp16")


def test_engine_replaced_after_build_is_refused(export) -> None:
    path, key = built(export)
    path.write_bytes(b"another plan copied over it")
    with pytest.raises(SspError, match="do not match engine_sha256 in segmenter.fp16.engine.json"):
        read_checked_engine(path, key, "rebuild")


def test_timing_cache_is_per_tensorrt_version_and_gpu(export) -> None:
    names = {timing_cache_path(export.folder, p).name for p in (ORIN_JP5, ORIN_JP6, ORIN_32GB, DESKTOP)}
    assert len(names) == 4
    assert timing_cache_path(export.folder, DESKTOP).name == \
        "timing.trt8.5.2.2-nvidia-geforce-rtx-3080-sm86-68mp.cache"


def test_calibration_table_name_changes_with_frames_graph_and_tensorrt(export) -> None:
    base = EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP5, "a" * 64)
    variants = [base,
                EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP5, "b" * 64),
                EngineKey.for_graph(export, "segmenter", "int8", ORIN_JP6, "a" * 64),
                EngineKey.for_graph(write_fake_export(export.folder, b"v2"), "segmenter", "int8", ORIN_JP5, "a" * 64)]
    paths = [calibration_cache_path(export.folder, key) for key in variants]
    assert len(set(paths)) == 4 and all(p.parent == export.folder and p.name.startswith("segmenter.int8-")
                                        for p in paths)
    assert calibration_cache_path(export.folder, base) == paths[0]  # stable for the same inputs

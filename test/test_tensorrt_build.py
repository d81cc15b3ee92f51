"""``ssp build-engine``: options, the INT8 calibrator's batching and the timing cache, checked without
TensorRT through stand-ins for the few tensorrt/pycuda calls they make. Real builds: test_tensorrt_backend."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from fake_export import INPUT_SIZE, write_fake_export

from ssp_ros.cli.deploy import cmd_build_engine
from ssp_ros.cli.main import build_parser
from ssp_ros.deploy.calibration import CalibrationSet, model_input
from ssp_ros.deploy.tensorrt_build import (
    BuildOptions,
    TimingCache,
    build_engines,
    builder_config,
    concrete_shape,
    fix_dynamic_batch,
    make_calibrator,
)
from ssp_ros.errors import SspError

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def parser() -> argparse.ArgumentParser:
    return build_parser()


def write_frames(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = np.random.default_rng(i).integers(0, 255, (48, 72, 3), dtype=np.uint8)
        assert cv2.imwrite(str(folder / f"{i:03d}.png"), image)
    return folder


def test_parser_defaults_to_fp16_and_takes_one_precision() -> None:
    args = parser().parse_args(["build-engine", "--onnx", "models/ssp_export"])
    assert (args.precision, args.workspace_mb, args.device, args.calib, args.calib_frames) == \
        ("fp16", 1024, 0, None, 500)
    assert args.func is cmd_build_engine and args.onnx == Path("models/ssp_export")
    args = parser().parse_args(["build-engine", "--onnx", "d", "--int8", "--calib", "frames", "--workspace-mb", "512",
                                "--device", "1", "--calib-frames", "64"])
    assert (args.precision, args.calib, args.workspace_mb, args.device, args.calib_frames) == \
        ("int8", Path("frames"), 512, 1, 64)
    with pytest.raises(SystemExit):
        parser().parse_args(["build-engine", "--onnx", "d", "--fp16", "--int8"])


@pytest.mark.parametrize("options, problem", [
    (BuildOptions(precision="int8"), "--int8 needs --calib DIR"),
    (BuildOptions(precision="fp16", calib_dir=Path("frames")), "--calib is only used with --int8"),
    (BuildOptions(workspace_mb=0), "--workspace-mb must be >= 1"),
    (BuildOptions(precision="tf32"), "precision 'tf32'"),
])
def test_bad_options_fail_before_tensorrt_is_needed(tmp_path: Path, options: BuildOptions, problem: str) -> None:
    export = write_fake_export(tmp_path / "export")
    with pytest.raises(SspError, match=problem):
        build_engines(export.folder, options)


@pytest.mark.parametrize("scheme", ["u8s8", "s8s8"])
def test_an_export_quantized_by_ssp_export_is_refused_before_tensorrt(tmp_path: Path, scheme: str) -> None:
    export = write_fake_export(tmp_path / "export")
    raw = json.loads((export.folder / "export.json").read_text())
    raw.update(precision={"segmenter": "int8", "fusion": "fp32", "blend": "fp32"}, calibration={"scheme": scheme})
    (export.folder / "export.json").write_text(json.dumps(raw))
    with pytest.raises(SspError, match=rf"quantized to int8 by `ssp export --int8` \(scheme {scheme}\).*re-export "
                                       "without --int8"):
        build_engines(export.folder, BuildOptions(precision="fp16"))


def test_missing_export_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(SspError, match="exported model folder not found"):
        build_engines(tmp_path / "nowhere", BuildOptions())


def test_calibration_frames_are_checked_before_the_build(tmp_path: Path) -> None:
    export = write_fake_export(tmp_path / "export")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SspError, match="no calibration frames"):
        build_engines(export.folder, BuildOptions(precision="int8", calib_dir=tmp_path / "empty"))


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is not installed")
def test_command_without_tensorrt_says_what_to_install(tmp_path: Path) -> None:
    export = write_fake_export(tmp_path / "export")
    args = parser().parse_args(["build-engine", "--onnx", str(export.folder)])
    with pytest.raises(SspError) as err:
        args.func(args)
    assert "TensorRT is not installed" in str(err.value)
    assert "JetPack" in str(err.value) and "pip install tensorrt" in str(err.value) and "pycuda" in str(err.value)
    frames = write_frames(tmp_path / "frames", 2)
    args = parser().parse_args(["build-engine", "--onnx", str(export.folder), "--int8", "--calib", str(frames)])
    with pytest.raises(SspError, match="TensorRT is not installed"):
        args.func(args)
    args = parser().parse_args(["build-engine", "--onnx", str(export.folder), "--calib-frames", "0"])
    with pytest.raises(SspError, match="--calib-frames must be >= 1"):
        args.func(args)


def test_dynamic_batch_is_fixed_to_one_frame() -> None:
    assert concrete_shape(["batch", 3, 64, 96], "image") == (1, 3, 64, 96)
    assert concrete_shape([1, 8, 16, 24], "logits") == (1, 8, 16, 24)
    with pytest.raises(SspError, match="image: shape \\[1, 3, 'h', 96\\] has symbolic dimensions"):
        concrete_shape([1, 3, "h", 96], "image")


class FakeAllocation:
    """Device memory stand-in: int() is its address, ``data`` what was copied in."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes, self.data = nbytes, None

    def __int__(self) -> int:
        return id(self)


def fake_cuda() -> SimpleNamespace:
    def memcpy_htod(dest: FakeAllocation, src: np.ndarray) -> None:
        assert src.nbytes == dest.nbytes and src.flags.c_contiguous
        dest.data = src.copy()

    return SimpleNamespace(mem_alloc=FakeAllocation, memcpy_htod=memcpy_htod)


class FakeCalibratorBase:
    def __init__(self) -> None:
        self.base_initialised = True


FAKE_TRT = SimpleNamespace(IInt8EntropyCalibrator2=FakeCalibratorBase)


def test_calibrator_feeds_every_full_batch_then_stops(tmp_path: Path) -> None:
    frames = CalibrationSet(write_frames(tmp_path / "frames", 5), INPUT_SIZE, batch_size=2)
    messages: list[str] = []
    calibrator = make_calibrator(FAKE_TRT, fake_cuda(), frames, tmp_path / "table.calib", messages.append)
    assert isinstance(calibrator, FakeCalibratorBase) and calibrator.base_initialised
    assert calibrator.get_batch_size() == 2 and calibrator.device.nbytes == frames.batch_nbytes
    fed = []
    while (pointers := calibrator.get_batch(["image"])) is not None:
        assert pointers == [int(calibrator.device)]
        fed.append(calibrator.device.data)
    assert len(fed) == 2 and all(b.shape == (2, 3, *INPUT_SIZE) for b in fed)
    first = cv2.cvtColor(cv2.imread(str(frames.files[2])), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(fed[1][0], model_input(first, INPUT_SIZE))
    assert calibrator.error is None and messages == ["  calibration batch 2/2"]


def test_calibrator_keeps_a_frame_error_for_the_builder(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "frames", 2)
    (folder / "001.png").write_bytes(b"broken")
    calibrator = make_calibrator(FAKE_TRT, fake_cuda(), CalibrationSet(folder, INPUT_SIZE), tmp_path / "t", print)
    assert calibrator.get_batch(["image"]) is not None
    assert calibrator.get_batch(["image"]) is None  # TensorRT would swallow an exception here
    assert isinstance(calibrator.error, SspError) and "001.png: not a readable image" in str(calibrator.error)


def test_calibration_table_is_written_and_read_back(tmp_path: Path) -> None:
    frames = CalibrationSet(write_frames(tmp_path / "frames", 1), INPUT_SIZE)
    messages: list[str] = []
    calibrator = make_calibrator(FAKE_TRT, fake_cuda(), frames, tmp_path / "seg.calib", messages.append)
    assert calibrator.read_calibration_cache() is None
    assert calibrator.get_batch(["image"]) is not None and calibrator.get_batch(["image"]) is None
    calibrator.write_calibration_cache(memoryview(b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n"))
    assert calibrator.failure() is None
    again = make_calibrator(FAKE_TRT, fake_cuda(), frames, tmp_path / "seg.calib", messages.append)
    assert again.read_calibration_cache() == b"TRT-8502-EntropyCalibration2\nimage: 3c010a14\n"
    assert messages[-1] == f"  using calibration table {tmp_path / 'seg.calib'} (from all 1 batches)"


def test_a_calibration_that_failed_keeps_no_table(tmp_path: Path) -> None:
    folder = write_frames(tmp_path / "frames", 2)
    (folder / "001.png").write_bytes(b"broken")
    calibrator = make_calibrator(FAKE_TRT, fake_cuda(), CalibrationSet(folder, INPUT_SIZE), tmp_path / "t.calib",
                                 print)
    while calibrator.get_batch(["image"]) is not None:
        pass
    calibrator.write_calibration_cache(memoryview(b"TRT-8502-EntropyCalibration2\n"))  # as TensorRT still does
    assert not (tmp_path / "t.calib").exists() and "001.png" in str(calibrator.failure())


class FakeConfig:
    """The builder-config calls ``TimingCache`` and ``builder_config`` make, recorded."""

    def __init__(self, accept: bool = True) -> None:
        self.accept, self.attached, self.flags, self.limits = accept, [], [], {}
        self.profiles, self.calibration_profile = [], None

    def create_timing_cache(self, data: bytes) -> SimpleNamespace:
        return SimpleNamespace(data=data, serialize=lambda: memoryview(data + b"+timings"))

    def set_timing_cache(self, cache: SimpleNamespace, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        self.attached.append(cache)
        return self.accept or cache.data == b""

    def set_memory_pool_limit(self, pool: str, nbytes: int) -> None:
        self.limits[pool] = nbytes

    def set_flag(self, flag: str) -> None:
        self.flags.append(flag)

    def add_optimization_profile(self, profile: object) -> None:
        self.profiles.append(profile)

    def set_calibration_profile(self, profile: object) -> None:
        self.calibration_profile = profile


def test_timing_cache_is_reused_and_saved(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(b"old")
    first, second = FakeConfig(), FakeConfig()
    cache = TimingCache(path, first, print)
    cache.attach(first)
    cache.attach(second)
    assert cache.cache.data == b"old" and second.attached == [cache.cache]
    cache.save()
    assert path.read_bytes() == b"old+timings"


def test_rejected_timing_cache_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "timing.cache"
    path.write_bytes(b"from another gpu")
    messages: list[str] = []
    config = FakeConfig(accept=False)
    cache = TimingCache(path, config, messages.append)
    cache.attach(config)
    assert cache.cache.data == b"" and messages == [f"{path}: timing cache rejected by this TensorRT/GPU; "
                                                     "starting a new one"]


def test_builder_config_sets_workspace_and_precision_flags() -> None:
    trt = SimpleNamespace(MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"),
                          BuilderFlag=SimpleNamespace(FP16="fp16", INT8="int8"))
    builder = SimpleNamespace(create_builder_config=FakeConfig)
    fp32, fp16, int8 = (builder_config(trt, builder, p, 256) for p in ("fp32", "fp16", "int8"))
    assert fp32.limits == {"workspace": 256 << 20} and fp32.flags == []
    assert fp16.flags == ["fp16"] and int8.flags == ["fp16", "int8"]


def test_dynamic_batch_graph_gets_a_batch_of_one_profile(tmp_path: Path) -> None:
    export = write_fake_export(tmp_path / "export", batch="batch")

    class Profile:
        def __init__(self) -> None:
            self.shapes = {}

        def set_shape(self, name: str, low: tuple, opt: tuple, high: tuple) -> None:
            self.shapes[name] = (low, opt, high)

    image = SimpleNamespace(name="image", shape=(-1, 3, *INPUT_SIZE))
    network = SimpleNamespace(num_inputs=1, get_input=lambda i: image)
    builder = SimpleNamespace(create_optimization_profile=Profile)
    config = FakeConfig()
    fix_dynamic_batch(builder, network, config, export, "segmenter", int8=True)
    (profile,) = config.profiles
    assert profile.shapes == {"image": ((1, 3, *INPUT_SIZE),) * 3} and config.calibration_profile is profile
    static = FakeConfig()
    fixed = SimpleNamespace(num_inputs=1, get_input=lambda i: SimpleNamespace(name="image", shape=(1, 3, *INPUT_SIZE)))
    fix_dynamic_batch(builder, fixed, static, write_fake_export(tmp_path / "static"), "segmenter", int8=True)
    assert static.profiles == [] and static.calibration_profile is None


# ---- end to end through the tensorrt/pycuda stand-ins (test/stand_ins) ------------------------------------


@pytest.fixture
def stand_ins_8_6(monkeypatch, tmp_path: Path):
    import stand_ins

    installed = stand_ins.install(monkeypatch)
    return installed, stand_ins.write_export(tmp_path / "export")


def int8(frames: Path) -> BuildOptions:
    return BuildOptions(precision="int8", calib_dir=frames)


def test_int8_build_calibrates_then_reuses_only_a_complete_table(stand_ins_8_6, tmp_path: Path) -> None:
    import json

    gpu, export = stand_ins_8_6[0].gpu, stand_ins_8_6[1]
    frames = write_frames(tmp_path / "frames", 3)
    messages: list[str] = []
    written = build_engines(export.folder, int8(frames), messages.append)
    assert [p.name for p in written] == ["segmenter.int8.engine", "fusion.fp16.engine"]
    assert "  calibration batch 3/3" in messages
    (table,) = export.folder.glob("segmenter.int8-*.calib")
    assert json.loads(table.with_name(table.name + ".json").read_text())["batches"] == 3
    sidecar = json.loads((export.folder / "segmenter.int8.engine.json").read_text())
    assert sidecar["build"]["calibration"] == {"folder": str(frames), "frames": 3, "table": "calibrated"}
    messages.clear()
    build_engines(export.folder, int8(frames), messages.append)
    assert any(m.startswith("  using calibration table") for m in messages)
    assert not any("calibration batch" in m for m in messages)
    assert gpu.live == [] and gpu.memory == {} and gpu.problems == []


def test_unreadable_frame_fails_the_build_and_leaves_no_table(stand_ins_8_6, tmp_path: Path) -> None:
    """TensorRT takes get_batch's None as the end of the data and still writes the table: the build must fail,
    naming the frame, with no engine and no table (so the next build cannot reuse it)."""
    export = stand_ins_8_6[1]
    frames = write_frames(tmp_path / "frames", 3)
    (frames / "001.png").write_bytes(b"broken")
    with pytest.raises(SspError) as err:
        build_engines(export.folder, int8(frames), progress=lambda message: None)
    message = str(err.value)
    assert "INT8 calibration of segmenter failed" in message and "001.png: not a readable image" in message
    assert list(export.folder.glob("*.calib*")) == [] and list(export.folder.glob("*.engine")) == []


@pytest.mark.parametrize("failing", ["progress", "memcpy"])
def test_errors_around_the_copy_fail_the_build_naming_the_batch(stand_ins_8_6, tmp_path: Path, monkeypatch,
                                                                 failing: str) -> None:
    installed, export = stand_ins_8_6
    frames = write_frames(tmp_path / "frames", 2)

    def progress(message: str) -> None:
        if failing == "progress" and "calibration batch" in message:
            raise OSError("the terminal went away")

    if failing == "memcpy":
        def memcpy_htod(dest, src) -> None:
            raise installed.cuda.LogicError("cuMemcpyHtoD failed: an illegal memory access was encountered")

        monkeypatch.setattr(installed.cuda, "memcpy_htod", memcpy_htod)
    with pytest.raises(SspError, match=r"batch \d/2 \(.*00\d\.png\)") as err:
        build_engines(export.folder, int8(frames), progress)
    assert ("terminal went away" if failing == "progress" else "illegal memory access") in str(err.value)
    assert list(export.folder.glob("*.calib*")) == [] and list(export.folder.glob("*.engine")) == []


def test_a_table_without_its_completion_record_is_recalibrated(stand_ins_8_6, tmp_path: Path) -> None:
    """A table left by a calibration that stopped early (an older build kept those) is not trusted."""
    export = stand_ins_8_6[1]
    frames = write_frames(tmp_path / "frames", 2)
    build_engines(export.folder, int8(frames), progress=lambda message: None)
    (table,) = export.folder.glob("segmenter.int8-*.calib")
    table.with_name(table.name + ".json").unlink()
    messages: list[str] = []
    build_engines(export.folder, int8(frames), messages.append)
    assert "  calibration batch 2/2" in messages and not any("using calibration table" in m for m in messages)


def test_the_fusion_graph_gets_no_reduced_precision_flag() -> None:
    """The warp's sampling grid and the recursive state stay FP32 (models/README.md, "TensorRT FP16 and the
    warp"): at fp16 and int8 the fusion graph's config has neither flag, the segmenter's has them."""
    from ssp_ros.deploy.tensorrt_build import FP32_GRAPHS

    trt = SimpleNamespace(MemoryPoolType=SimpleNamespace(WORKSPACE="workspace"),
                          BuilderFlag=SimpleNamespace(FP16="fp16", INT8="int8"))
    builder = SimpleNamespace(create_builder_config=FakeConfig)
    assert FP32_GRAPHS == {"fusion"}
    for precision, segmenter_flags in (("fp32", []), ("fp16", ["fp16"]), ("int8", ["fp16", "int8"])):
        assert builder_config(trt, builder, precision, 64, "segmenter").flags == segmenter_flags
        fusion = builder_config(trt, builder, precision, 64, "fusion")
        assert fusion.flags == [] and fusion.limits == {"workspace": 64 << 20}

"""The TensorRT backend. Buffer rotation, engine I/O checks and configuration errors run everywhere; engine
builds and parity with ONNX Runtime need tensorrt, pycuda and a GPU, and skip with the reason otherwise."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_export import graph_shapes, write_fake_export

from ssp_ros.backends.tensorrt_backend import BufferRing, DeviceTensor, TensorRTBackend, TensorSpec, check_io
from ssp_ros.config import RuntimeConfig
from ssp_ros.errors import SspError


def missing_gpu_stack() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt not installed (Jetson: JetPack; x86: pip install tensorrt)"
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda not installed (pip install pycuda)"
    return None


class FakeAllocation:
    def __init__(self, nbytes: int, log: list) -> None:
        self.nbytes, self.log = nbytes, log

    def __int__(self) -> int:
        return id(self)

    def free(self) -> None:
        self.log.append(self)


def ring(log: list) -> BufferRing:
    specs = {"logits": ((1, 3, 16, 24), np.float32), "feats": ((1, 4, 16, 24), np.float32)}
    return BufferRing(specs, lambda nbytes: FakeAllocation(nbytes, log))


def test_ring_alternates_two_buffer_sets_and_reports_stale_handles() -> None:
    buffers = ring([])
    first, second, third = buffers.next(), buffers.next(), buffers.next()
    assert first["logits"].pointer != second["logits"].pointer
    assert third["logits"].allocation is first["logits"].allocation  # set 0 again
    assert first["logits"].nbytes == 3 * 16 * 24 * 4 == first["logits"].allocation.nbytes
    assert first["feats"].shape == (1, 4, 16, 24) and first["feats"].dtype == np.float32
    assert not buffers.is_current(first["logits"])  # overwritten by the third call
    assert buffers.is_current(second["feats"]) and buffers.is_current(third["logits"])
    assert not ring([]).is_current(third["logits"])  # another ring's handle


def test_pipeline_state_is_never_overwritten_while_it_is_read() -> None:
    """Replays Pipeline's calls (segment, then fuse with the previous state, or a reset) and checks that
    every handle handed back to fuse is still current: the invariant the two-set rings guarantee."""
    segment, fuse = ring([]), ring([])
    state = None
    for fused_this_frame in (False, True, True, False, False, True, True, True, False, True):
        cur = segment.next()
        if fused_this_frame and state is not None:
            prev_logits, prev_feats = state
            assert all(t.owner.is_current(t) for t in (cur["logits"], cur["feats"], prev_logits, prev_feats))
            out = fuse.next()
            state = (out["logits"], cur["feats"])
        else:
            state = (cur["logits"], cur["feats"])
        assert all(t.owner.is_current(t) for t in state)  # labels() reads the state of this frame


def test_ring_free_releases_every_buffer_once() -> None:
    log: list = []
    buffers = ring(log)
    buffers.next()
    buffers.free()
    assert len(log) == 4 and len({id(a) for a in log}) == 4
    assert buffers.slots == []


def engine_specs(graph: str, batch: int | str = 1) -> dict[str, TensorSpec]:
    shapes = graph_shapes(batch)[graph]
    engine_dims = {n: tuple(-1 if isinstance(d, str) else d for d in s) for n, s in {**shapes["inputs"],
                                                                                   **shapes["outputs"]}.items()}
    return {n: TensorSpec(n in shapes["inputs"], engine_dims[n], np.dtype(np.float32)) for n in engine_dims}


def test_engine_io_matching_export_json_passes(tmp_path: Path) -> None:
    export = write_fake_export(tmp_path / "static")
    for graph in ("segmenter", "fusion"):
        check_io(tmp_path / f"{graph}.fp16.engine", graph, engine_specs(graph), export.graph(graph), "rebuild")
    dynamic = write_fake_export(tmp_path / "dynamic", batch="batch")
    check_io(tmp_path / "fusion.fp16.engine", "fusion", engine_specs("fusion", "batch"), dynamic.graph("fusion"), "r")


def test_engine_io_differences_are_all_named(tmp_path: Path) -> None:
    export = write_fake_export(tmp_path / "export")
    specs = engine_specs("fusion")
    specs["fused"] = TensorSpec(False, (1, 5, 16, 24), np.dtype(np.float32))
    specs["similarity"] = TensorSpec(False, (1, 1, 16, 24), np.dtype(np.float16))
    specs["to_previous"] = TensorSpec(False, (1, 3, 3), np.dtype(np.float32))
    del specs["prev_feats"]
    specs["valid"] = TensorSpec(False, (1, 1, 16, 24), np.dtype(np.float32))
    engine = tmp_path / "fusion.fp16.engine"
    with pytest.raises(SspError) as err:
        check_io(engine, "fusion", specs, export.graph("fusion"), "ssp build-engine --onnx x --fp16")
    message = str(err.value)
    assert message.startswith(f"{engine}: engine does not match {export.folder / 'export.json'}")
    for problem in ("no input tensor 'prev_feats'", "'to_previous' is an output, expected an input",
                    "'fused' is [1, 5, 16, 24] float32, export.json says [1, 3, 16, 24] float32",
                    "'similarity' is [1, 1, 16, 24] float16", "unexpected tensors ['valid']",
                    "rebuild with `ssp build-engine --onnx x --fp16`"):
        assert problem in message


def test_drone_modules_do_not_import_torch() -> None:
    code = ("import sys, ssp_ros.backends.tensorrt_backend, ssp_ros.deploy.tensorrt_build, "
            "ssp_ros.backends.engine_cache, ssp_ros.deploy.calibration; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_missing_export_dir_is_named(tmp_path: Path) -> None:
    runtime = RuntimeConfig(backend="tensorrt", device="cuda", export_dir=str(tmp_path / "none"))
    with pytest.raises(SspError, match="exported model folder .* not found .*runtime.export_dir"):
        TensorRTBackend.from_config(runtime)


@pytest.mark.skipif(missing_gpu_stack() is None, reason="checks the message shown where TensorRT is not installed")
def test_without_tensorrt_the_backend_says_what_to_install(tmp_path: Path) -> None:
    export = write_fake_export(tmp_path / "export")
    runtime = RuntimeConfig(backend="tensorrt", device="cuda:0", export_dir=str(export.folder))
    with pytest.raises(SspError, match="TensorRT is not installed.*JetPack.*pip install tensorrt.*pycuda"):
        TensorRTBackend.from_config(runtime)


# ---- on a GPU with TensorRT and pycuda ------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu() -> None:
    reason = missing_gpu_stack()
    if reason:
        pytest.skip(reason)
    import pycuda.driver as cuda

    try:
        cuda.init()
        count = cuda.Device.count()
    except cuda.Error as err:
        pytest.skip(f"no usable CUDA device ({err})")
    if count == 0:
        pytest.skip("no CUDA device")


def trt_runtime(folder: Path, precision: str) -> RuntimeConfig:
    return RuntimeConfig(backend="tensorrt", device="cuda:0", export_dir=str(folder), precision=precision)


@pytest.fixture(scope="module")
def fp32_export(gpu, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped model's export with FP32 engines built (TF32 allowed, as TensorRT does by default).
    The export is requested only once the GPU check passed, so machines without one skip quickly."""
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    folder = tmp_path_factory.mktemp("trt") / "export"
    shutil.copytree(request.getfixturevalue("shipped_export"), folder)
    written = build_engines(folder, BuildOptions(precision="fp32"))
    assert [p.name for p in written] == ["segmenter.fp32.engine", "fusion.fp32.engine"]
    return folder


@pytest.fixture(scope="module")
def flight():
    from ssp_ros.synthetic import SyntheticVideo
    from ssp_ros.synthetic.config import load_sim_config

    return list(SyntheticVideo(load_sim_config().synthetic, frames=10, seed=2001))


def reference(folder: Path):
    from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend.from_config(RuntimeConfig(backend="onnxruntime", export_dir=str(folder)))


def model_image(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from ssp_ros.letterbox import Letterbox

    return Letterbox(frame.shape[:2], size).apply(frame)


def close_to(a: np.ndarray, b: np.ndarray, rel: float = 2e-2) -> bool:
    return a.shape == b.shape and float(np.abs(a - b).max()) <= rel * max(1.0, float(np.abs(b).max()))


def test_engines_match_onnxruntime(fp32_export: Path, flight) -> None:
    ort = reference(fp32_export)
    backend = TensorRTBackend.from_config(trt_runtime(fp32_export, "fp32"))
    try:
        assert (backend.input_size, backend.num_classes) == (ort.input_size, ort.num_classes)
        image = model_image(flight[0].image, backend.input_size)
        logits, feats = backend.segment(image)
        assert isinstance(logits, DeviceTensor) and logits.shape[1] == backend.num_classes
        o_logits, o_feats = ort.segment(image)
        assert close_to(backend.download(logits), o_logits) and close_to(backend.download(feats), o_feats)
        shift = np.array([[0.98, 0.02, 3.5], [-0.02, 0.98, -2.25], [1e-5, 0, 1.0]])
        prev_logits, prev_feats = backend.segment(model_image(flight[1].image, backend.input_size))
        o_prev = ort.segment(model_image(flight[1].image, backend.input_size))
        fused, s = backend.fuse(logits, feats, prev_logits, prev_feats, shift)
        o_fused, o_s = ort.fuse(o_logits, o_feats, *o_prev, shift)
        assert close_to(backend.download(fused), o_fused) and close_to(backend.download(s), o_s)
        ids, confidence = backend.labels(fused)
        o_ids, o_confidence = ort.labels(o_fused)
        assert ids.shape == backend.input_size and ids.dtype == np.uint8
        assert (ids == o_ids).mean() >= 0.99 and np.abs(confidence.astype(int) - o_confidence).max() <= 3
        assert np.abs(backend.similarity(s).astype(int) - ort.similarity(o_s)).max() <= 3
    finally:
        backend.close()


def test_streaming_pipeline_matches_onnxruntime(fp32_export: Path, flight) -> None:
    from ssp_ros.config import load_config
    from ssp_ros.pipeline import Pipeline

    cfg = load_config()
    backend = TensorRTBackend.from_config(trt_runtime(fp32_export, "fp32"))
    try:
        trt_pipe = Pipeline(cfg, backend)
        ort_pipe = Pipeline(cfg, reference(fp32_export))
        fused = 0
        for frame in flight:
            t, o = trt_pipe.process(frame.image, frame.stamp), ort_pipe.process(frame.image, frame.stamp)
            assert t.fused == o.fused and (t.mask == o.mask).mean() >= 0.99, frame.index
            fused += t.fused
        assert fused >= 3  # the recursion (state kept on the GPU across frames) was exercised
    finally:
        backend.close()


def test_reused_buffers_and_closed_backend_are_refused(fp32_export: Path, flight) -> None:
    backend = TensorRTBackend.from_config(trt_runtime(fp32_export, "fp32"))
    image = model_image(flight[0].image, backend.input_size)
    old_logits, old_feats = backend.segment(image)
    backend.segment(image)
    logits, feats = backend.segment(image)
    with pytest.raises(SspError, match="GPU buffer was reused"):
        backend.fuse(logits, feats, old_logits, old_feats, np.eye(3))
    with pytest.raises(SspError, match="expected a .*x3 uint8 RGB model input"):
        backend.segment(image[:-8])
    backend.close()
    backend.close()
    with pytest.raises(SspError, match="closed"):
        backend.segment(image)


def test_engine_from_another_tensorrt_is_refused(fp32_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "export"
    shutil.copytree(fp32_export, folder)
    sidecar = folder / "fusion.fp32.engine.json"
    data = json.loads(sidecar.read_text())
    data["key"]["tensorrt_version"] = "8.5.0.0-other"
    sidecar.write_text(json.dumps(data))
    with pytest.raises(SspError) as err:
        TensorRTBackend.from_config(trt_runtime(folder, "fp32"))
    assert "fusion.fp32.engine" in str(err.value) and "found '8.5.0.0-other'" in str(err.value)
    assert f"ssp build-engine --onnx {folder} --fp32" in str(err.value)


@pytest.mark.slow
def test_int8_build_calibrates_the_segmenter_and_reuses_its_table(fp32_export: Path, flight, tmp_path: Path) -> None:
    from ssp_ros.backends.export_info import load_export_info
    from ssp_ros.deploy.calibration import CalibrationSet
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    frames = tmp_path / "frames"
    frames.mkdir()
    for frame in flight[:6]:
        cv2.imwrite(str(frames / f"{frame.index:04d}.png"), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR))
    messages: list[str] = []
    options = BuildOptions(precision="int8", calib_dir=frames)
    written = build_engines(fp32_export, options, messages.append)
    assert [p.name for p in written] == ["segmenter.int8.engine", "fusion.fp16.engine"]
    info = load_export_info(fp32_export)
    sidecar = json.loads((fp32_export / "segmenter.int8.engine.json").read_text())
    assert sidecar["key"]["calibration_sha256"] == CalibrationSet(frames, info.input_size).sha256()
    assert sidecar["build"]["calibration"]["frames"] == 6
    assert json.loads((fp32_export / "fusion.fp16.engine.json").read_text())["key"]["calibration_sha256"] is None
    assert len(list(fp32_export.glob("segmenter.int8-*.calib"))) == 1 and "  calibration batch 6/6" in messages
    messages.clear()
    build_engines(fp32_export, options, messages.append)
    assert any(m.startswith("  using calibration table") for m in messages)
    backend = TensorRTBackend.from_config(trt_runtime(fp32_export, "int8"))
    try:
        image = model_image(flight[7].image, backend.input_size)
        ids, _ = backend.labels(backend.segment(image)[0])
        ort = reference(fp32_export)
        o_ids, _ = ort.labels(ort.segment(image)[0])
        assert (ids == o_ids).mean() >= 0.8
    finally:
        backend.close()


# ---- through the tensorrt/pycuda stand-ins (test/stand_ins): the real APIs' rules, on the CPU -------------


@pytest.fixture
def stand_in_export(monkeypatch, tmp_path: Path):
    """The stand-ins installed (TensorRT 8.6, JetPack 6.0) and FP16 engines built for a small export."""
    import stand_ins

    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    installed = stand_ins.install(monkeypatch)
    info = stand_ins.write_export(tmp_path / "export")
    build_engines(info.folder, BuildOptions(precision="fp16"), progress=lambda message: None)
    return installed, info.folder


def test_backend_closed_from_another_thread_releases_its_context(stand_in_export) -> None:
    """Made in one thread, run in a worker, closed from a third (as the node does): nothing is left on the
    device. pycuda skips cuCtxDetach for a context detached outside its thread unless it is current."""
    import threading

    gpu, folder = stand_in_export[0].gpu, stand_in_export[1]
    backend = TensorRTBackend.from_config(trt_runtime(folder, "fp16"))
    image = np.full((*backend.input_size, 3), 51, np.uint8)
    results = []
    worker = threading.Thread(target=lambda: results.append(backend.labels(backend.segment(image)[0])))
    worker.start()
    worker.join()
    assert results and results[0][0].shape == backend.input_size
    closer = threading.Thread(target=backend.close)
    closer.start()
    closer.join()
    assert gpu.leaked == [] and gpu.live == [], "the CUDA context was destroyed, not leaked"
    assert gpu.memory == {} and gpu.problems == [] and all(stack == [] for stack in gpu.stacks.values())
    backend.close()  # twice: harmless
    with pytest.raises(SspError, match="closed"):
        backend.segment(image)


def test_segment_returns_before_the_gpu_is_done_and_synchronize_waits(stand_in_export) -> None:
    gpu, folder = stand_in_export[0].gpu, stand_in_export[1]
    backend = TensorRTBackend.from_config(trt_runtime(folder, "fp16"))
    try:
        logits, _ = backend.segment(np.full((*backend.input_size, 3), 51, np.uint8))
        written = np.frombuffer(gpu.view(logits.pointer, logits.nbytes, "test"), np.float32)
        assert not written.any(), "execute_async_v3 only queued the work"
        backend.synchronize()
        assert np.all(written == 51.0)
    finally:
        backend.close()


def test_pipeline_runs_the_stand_in_engines_frame_after_frame(stand_in_export, small_video) -> None:
    from ssp_ros.config import SspConfig
    from ssp_ros.pipeline import Pipeline

    gpu, folder = stand_in_export[0].gpu, stand_in_export[1]
    backend = TensorRTBackend.from_config(trt_runtime(folder, "fp16"))
    try:
        pipe = Pipeline(SspConfig(), backend)
        results = [pipe.process(frame.image, frame.stamp) for frame in small_video[:4]]
        assert sum(r.fused for r in results) >= 2 and results[-1].mask.shape == small_video[0].image.shape[:2]
    finally:
        backend.close()
    assert gpu.live == [] and gpu.problems == []


@pytest.mark.parametrize("version, has_fp16_int8", [("8.6.2.3", True), ("10.3.0.30", True), ("11.0.0.1", False)])
def test_stand_in_tensorrt_keeps_the_version_history(monkeypatch, version: str, has_fp16_int8: bool) -> None:
    import stand_ins

    trt = stand_ins.install(monkeypatch, version).trt
    assert trt.__version__ == version
    assert hasattr(trt.BuilderFlag, "FP16") == hasattr(trt.BuilderFlag, "INT8") == has_fp16_int8
    assert hasattr(trt, "IInt8EntropyCalibrator2") == has_fp16_int8
    assert hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") == has_fp16_int8
    assert hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED") == (not version.startswith("8."))


def test_stand_in_pycuda_leaks_a_context_detached_from_another_thread(monkeypatch) -> None:
    import threading

    import stand_ins

    installed = stand_ins.install(monkeypatch)
    cuda = installed.cuda
    cuda.init()
    context = cuda.Device(0).make_context()
    cuda.Context.pop()
    thread = threading.Thread(target=context.detach)
    thread.start()
    thread.join()
    assert installed.gpu.leaked == installed.gpu.live == [context._ctx]
    with pytest.raises(cuda.LogicError, match="no currently active context"):
        cuda.mem_alloc(16)
    with pytest.raises(cuda.LogicError, match="cannot pop non-current context"):
        cuda.Context.pop()

import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ssp_ros.backends import make_backend
from ssp_ros.backends.export_info import load_export_info
from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend, providers_for
from ssp_ros.config import RuntimeConfig
from ssp_ros.errors import SspError
from ssp_ros.pipeline import Pipeline
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import load_sim_config


@pytest.fixture(scope="module")
def configs(shipped_export):
    cfg = load_sim_config()
    return cfg, dataclasses.replace(cfg, runtime=RuntimeConfig(backend="onnxruntime", export_dir=str(shipped_export)))


@pytest.fixture(scope="module")
def backends(configs):
    torch_cfg, onnx_cfg = configs
    return make_backend(torch_cfg, 8), make_backend(onnx_cfg, 8)


@pytest.fixture(scope="module")
def flight(configs):
    return list(SyntheticVideo(configs[0].synthetic, frames=12, seed=2001))


@pytest.mark.slow
def test_segmenter_and_fusion_match_torch(backends, flight) -> None:
    reference, runtime = backends
    image = np.zeros((*runtime.input_size, 3), np.uint8)
    image[8:376] = flight[0].image
    t_logits, t_feats = reference.segment(image)
    o_logits, o_feats = runtime.segment(image)
    assert np.abs(o_logits - t_logits.numpy()).max() <= 1e-3 and np.abs(o_feats - t_feats.numpy()).max() <= 1e-3
    shift = np.array([[0.98, 0.02, 3.5], [-0.02, 0.98, -2.25], [1e-5, 0, 1.0]])  # a rotating, zooming drift
    t_fused, t_s = reference.fuse(t_logits, t_feats, t_logits.flip(-1), t_feats.flip(-1), shift)
    o_fused, o_s = runtime.fuse(o_logits, o_feats, o_logits[..., ::-1].copy(), o_feats[..., ::-1].copy(), shift)
    assert np.abs(o_fused - t_fused.numpy()).max() <= 1e-3 and np.abs(o_s - t_s.numpy()).max() <= 1e-3
    t_ids, t_conf = reference.labels(t_fused)
    o_ids, o_conf = runtime.labels(o_fused)
    assert (t_ids == o_ids).mean() >= 0.999 and np.abs(t_conf.astype(int) - o_conf).max() <= 1
    assert np.abs(reference.similarity(t_s).astype(int) - runtime.similarity(o_s)).max() <= 1


def test_streaming_pipelines_agree_frame_after_frame(configs, backends, flight) -> None:
    pipes = [Pipeline(cfg, backend) for cfg, backend in zip(configs, backends)]
    for frame in flight:
        t, o = (p.process(frame.image, frame.stamp) for p in pipes)
        assert t.fused == o.fused and t.reset_reason == o.reset_reason
        assert (t.mask == o.mask).mean() >= 0.999, frame.index
        drift = np.abs(pipes[1].propagator.state.logits - pipes[0].propagator.state.logits.numpy()).max()
        assert drift <= 1e-3, (frame.index, drift)
    assert o.fused  # the comparison covered recursive fusion, not only first frames


def test_backend_errors_name_the_setting(configs, shipped_export, tmp_path) -> None:
    torch_cfg, onnx_cfg = configs
    with pytest.raises(SspError, match="exported for 8 classes, model.dataset 'uavid' has 12"):
        make_backend(onnx_cfg, 12)
    missing = dataclasses.replace(onnx_cfg, runtime=RuntimeConfig(backend="onnxruntime", export_dir="nowhere"))
    with pytest.raises(SspError, match=r"nowhere: exported model folder .* not found \(runtime.export_dir"):
        make_backend(missing, 8)
    with pytest.raises(SspError, match="no CUDAExecutionProvider"):
        providers_for("cuda:1", ["CPUExecutionProvider"])
    assert providers_for("cuda:1", ["CUDAExecutionProvider", "CPUExecutionProvider"])[0] == (
        "CUDAExecutionProvider", {"device_id": 1})
    info = load_export_info(shipped_export)
    (tmp_path / "segmenter.onnx").write_bytes(b"not a model")
    broken = dataclasses.replace(info, graphs={**info.graphs, "segmenter": dataclasses.replace(
        info.graph("segmenter"), file=tmp_path / "segmenter.onnx")})
    with pytest.raises(SspError, match="segmenter.onnx: ONNX Runtime cannot load it"):
        OnnxRuntimeBackend(broken)


def test_onnxruntime_path_imports_no_torch(shipped_export) -> None:
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        from ssp_ros.backends import make_backend
        from ssp_ros.config import RuntimeConfig, load_config
        from ssp_ros.pipeline import Pipeline
        import dataclasses
        cfg = load_config()
        cfg = dataclasses.replace(cfg, runtime=RuntimeConfig(backend="onnxruntime", export_dir={str(shipped_export)!r}))
        pipe = Pipeline(cfg, make_backend(cfg, 8))
        frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        for k in range(2):
            assert pipe.process(frame, 0.04 * k).mask.shape == (240, 320)
        heavy = sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)
        print("heavy:", heavy)
        sys.exit(1 if heavy else 0)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heavy: []" in done.stdout

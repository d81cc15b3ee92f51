"""The CPU fusion (OpenCV warp + blend graph) against the graph's warp (GridSample), which stays for TensorRT/CUDA."""

import cv2
import numpy as np
import pytest
import torch

from ssp_ros.backends import cpu_warp
from ssp_ros.backends.cpu_warp import StateWarper, precise_warp, use_cpu_warp, validity, warp_planes
from ssp_ros.backends.export_info import load_export_info
from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend
from ssp_ros.backends.torch_backend import TorchBackend
from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.models import build_ssp
from ssp_ros.models.warp import warp
from ssp_ros.pipeline import Pipeline
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import load_sim_config
from ssp_ros.synthetic.video import snug_world

HOMOGRAPHIES = {  # current → previous stride-4 cells
    "identity": np.eye(3),
    "subpixel shift": np.array([[1, 0, 2.37], [0, 1, -1.61], [0, 0, 1]]),
    "rotate, zoom, tilt": np.array([[0.99, -0.05, 3.3], [0.05, 1.01, -2.1], [2e-4, -1e-4, 1]]),
    "a third out of view": np.array([[1.3, 0.2, -20], [-0.1, 0.9, 15], [1e-3, 5e-4, 1]]),
}


def smooth_state(channels: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Logit-like maps: random at 1/8 resolution, upsampled (a stride-4 state varies over a few cells)."""
    coarse = torch.randn(1, channels, h // 8 + 1, w // 8 + 1, generator=torch.Generator().manual_seed(seed)) * 6.0
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bicubic").numpy()


@pytest.mark.parametrize("name", HOMOGRAPHIES)
def test_opencv_warp_matches_grid_sample(name: str) -> None:
    h, w = 48, 80
    state = smooth_state(12, h, w)
    to_previous = HOMOGRAPHIES[name].astype(np.float32)
    expected, expected_valid = warp(torch.from_numpy(state), torch.from_numpy(to_previous)[None])
    warped = warp_planes(state, to_previous)
    assert warped.shape == state.shape and warped.dtype == np.float32
    assert np.abs(warped - expected.numpy()).max() <= 1e-3  # also where invalid: the similarity head reads it
    np.testing.assert_array_equal(validity(to_previous, h, w), expected_valid.numpy())
    if name == "a third out of view":
        assert 0.5 < validity(to_previous, h, w).mean() < 0.9


def test_warper_reuses_its_buffers_and_follows_a_new_shape() -> None:
    warper = StateWarper()
    logits, feats = smooth_state(3, 16, 24), smooth_state(5, 16, 24, seed=1)
    first = warper(logits, feats, HOMOGRAPHIES["subpixel shift"])
    second = warper(logits, feats, HOMOGRAPHIES["identity"])
    assert first[0] is second[0] and first[1] is second[1]
    np.testing.assert_allclose(second[1], feats, atol=1e-6)  # the identity gives the state back
    bigger = warper(smooth_state(3, 32, 48), smooth_state(5, 32, 48), HOMOGRAPHIES["identity"])
    assert bigger[0].shape == (1, 3, 32, 48) and bigger[2].shape == (1, 1, 32, 48)


def test_an_opencv_that_rounds_its_weights_falls_back_to_the_graph_warp(monkeypatch) -> None:
    assert precise_warp(), "this OpenCV warps 1-channel float images at float precision"
    assert use_cpu_warp(None, on_cpu=True) and not use_cpu_warp(None, on_cpu=False)
    with pytest.raises(SspError, match="needs the state on the CPU"):
        use_cpu_warp(True, on_cpu=False)
    monkeypatch.setattr(cpu_warp, "precise_warp", lambda: False)  # e.g. OpenCV 4.5 (1/32-px weights everywhere)
    assert not use_cpu_warp(None, on_cpu=True)
    with pytest.raises(SspError, match="1/32-px weights, not at float precision"):
        use_cpu_warp(True, on_cpu=True)


def test_the_probe_tells_the_rounded_path_from_the_precise_one(monkeypatch) -> None:
    """More than 4 channels take OpenCV's 1/32-px path: the probe's bound must reject what that path gives."""
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32) ** 2, (8, 1))
    stack = np.repeat(ramp[..., None], 8, axis=-1)  # 8 channels: the rounded path
    shift = np.array([[1.0, 0.0, 0.37], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    rounded = cv2.warpPerspective(stack, shift, (64, 8), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)[..., 0]
    exact = 0.63 * ramp[:, :-1] + 0.37 * ramp[:, 1:]
    assert np.abs(rounded[:, :-1] - exact).max() > cpu_warp.PRECISE_ERROR


def test_warp_planes_refuses_an_output_it_could_not_fill() -> None:
    state = smooth_state(3, 16, 24)
    for out in (np.empty((1, 3, 16, 24), np.float64), np.empty((1, 4, 16, 24), np.float32),
                np.empty((1, 3, 24, 16), np.float32).transpose(0, 1, 3, 2)):
        with pytest.raises(ValueError, match="out must be float32, C-contiguous"):
            warp_planes(state, np.eye(3), out)
    with pytest.raises(ValueError, match="one 1×C×h×w map"):
        warp_planes(np.concatenate([state, state]), np.eye(3))


def test_a_source_at_infinity_is_invalid_as_in_the_graph() -> None:
    horizon = np.array([[1, 0, 0], [0, 1, 0], [0, -0.1, 1.0]], np.float32)  # the row y = 10 maps to infinity
    valid = validity(horizon, 16, 12)
    assert valid[0, 0, 10].sum() == 0 and valid[0, 0, 0].all()
    _, expected = warp(torch.zeros(1, 1, 16, 12), torch.from_numpy(horizon)[None])
    np.testing.assert_array_equal(valid, expected.numpy())


def test_torch_backend_fuses_alike_with_either_warp() -> None:
    torch.manual_seed(0)
    model = build_ssp(ModelConfig(input_size=(96, 160)), 8)
    graph, cpu = TorchBackend(model, (96, 160), cpu_warp=False), TorchBackend(model, (96, 160))
    image = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    logits, feats = graph.segment(image)
    shift = HOMOGRAPHIES["rotate, zoom, tilt"]
    expected = graph.fuse(logits, feats, logits.flip(-1), feats.flip(-1), shift)
    fused = cpu.fuse(logits, feats, logits.flip(-1), feats.flip(-1), shift)
    for a, b in zip(fused, expected):
        assert torch.abs(a - b).max() <= 1e-3


@pytest.mark.slow
def test_onnxruntime_cpu_fusion_matches_the_graph_over_100_recursive_frames(shipped_export) -> None:
    """The issue's parity bar: ≤ 1e-3 per logit of the fused state and ≥ 99.9 % mask agreement, frame after
    frame for 100 fused frames, with registration on (the shipped model, a held-aside flight)."""
    cfg = load_sim_config()
    info = load_export_info(shipped_export)
    pipes = [Pipeline(cfg, OnnxRuntimeBackend(info, cpu_warp=flag)) for flag in (False, True)]
    video = SyntheticVideo(snug_world(cfg.synthetic, margin_m=60.0), frames=101, seed=2003)
    fused, agreement, drift = 0, [], []
    for frame in video:
        graph, cpu = (p.process(frame.image, frame.stamp) for p in pipes)
        assert graph.fused == cpu.fused and graph.reset_reason == cpu.reset_reason
        fused += cpu.fused
        agreement.append((graph.mask == cpu.mask).mean())
        drift.append(np.abs(pipes[0].propagator.state.logits - pipes[1].propagator.state.logits).max())
    assert fused == 100
    assert max(drift) <= 1e-3, (int(np.argmax(drift)), max(drift))
    assert min(agreement) >= 0.999, (int(np.argmin(agreement)), min(agreement))

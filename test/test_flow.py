from pathlib import Path

import numpy as np
import pytest

from ssp_ros.errors import SspError
from ssp_ros.eval.flow import DISFlow, forward_backward_valid, make_flow_estimator, warp_nearest


def test_warp_nearest_pulls_next_values_back() -> None:
    nxt = np.arange(12).reshape(3, 4)
    flow = np.zeros((3, 4, 2), np.float32)
    flow[..., 0] = 1.4  # rounds to one pixel right
    warped, ok = warp_nearest(nxt, flow)
    assert np.array_equal(warped[:, :3], nxt[:, 1:])
    assert ok[:, :3].all() and not ok[:, 3].any()
    with pytest.raises(ValueError, match="differ in size"):
        warp_nearest(nxt[:2], flow)


def test_forward_backward_check_flags_inconsistent_pixels() -> None:
    forward = np.zeros((8, 8, 2), np.float32)
    forward[..., 0] = 2.0
    backward = -forward.copy()
    assert forward_backward_valid(forward, backward)[:, :6].all()
    backward[:, 4:] = 0.0  # pixels landing on columns 4+ are not sent back: occluded
    valid = forward_backward_valid(forward, backward)
    assert valid[:, :2].all() and not valid[:, 2:].any()


def test_dis_flow_tracks_the_synthetic_camera(small_video) -> None:
    a, b = small_video[20], small_video[21]
    flow, valid = DISFlow()(a.image, b.image)
    both = valid & a.valid
    assert both.mean() > 0.5
    error = np.linalg.norm(flow[both] - a.flow[both], axis=1)
    assert np.median(error) < 0.5, f"median end-point error {np.median(error):.2f} px"


def test_raft_loads_local_weights_and_runs(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torchvision.models.optical_flow import raft_small

    weights = tmp_path / "raft_small.pt"
    torch.manual_seed(0)
    torch.save(raft_small(weights=None).state_dict(), weights)
    estimator = make_flow_estimator("raft_small", weights)
    estimator.iterations = 2
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 130, 134, 3), dtype=np.uint8)  # not a multiple of 8: padding path
    flow, valid = estimator(a, b)
    assert flow.shape == (130, 134, 2) and valid.shape == (130, 134) and np.isfinite(flow).all()
    with pytest.raises(SspError, match="at least 128"):
        estimator(a[:100], b[:100])


def test_flow_estimator_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SspError, match="needs a local weights file"):
        make_flow_estimator("raft")
    with pytest.raises(SspError, match="unknown flow estimator 'farneback'"):
        make_flow_estimator("farneback")
    pytest.importorskip("torchvision")
    with pytest.raises(SspError, match=r"missing\.pt: RAFT weights file not found"):
        make_flow_estimator("raft", tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(SspError, match=r"bad\.pt: cannot read RAFT weights"):
        make_flow_estimator("raft", bad)

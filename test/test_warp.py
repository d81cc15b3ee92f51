import numpy as np
import pytest
import torch

from ssp_ros.geometry import scale_homography
from ssp_ros.models import SimilarityHead, WarpFusionStep, warp
from ssp_ros.synthetic import relative_homography


def batch(h: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(h).float()[None]


def test_identity_and_translation() -> None:
    prev = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    same, valid = warp(prev, batch(np.eye(3)))
    torch.testing.assert_close(same, prev)
    assert valid.all()
    shift = np.array([[1.0, 0, -1.0], [0, 1.0, 0], [0, 0, 1.0]])  # current cell x came from previous x − 1
    moved, valid = warp(prev, batch(shift))
    torch.testing.assert_close(moved[..., 1:], prev[..., :-1])
    assert not valid[..., 0].any() and valid[..., 1:].all()


def test_warp_follows_the_registration_convention_at_stride_4(small_video) -> None:
    """Stride-4 label scores of frame k, warped with the scaled true homography, match frame k+1."""
    a, b = small_video[10], small_video[11]
    h4 = scale_homography(relative_homography(a, b), 4)

    def cells(labels: np.ndarray) -> torch.Tensor:
        onehot = torch.nn.functional.one_hot(torch.from_numpy(labels).long(), 8).permute(2, 0, 1)[None].float()
        return torch.nn.functional.avg_pool2d(onehot, 4)  # class shares per stride-4 cell

    warped, valid = warp(cells(a.labels), batch(np.linalg.inv(h4)))
    target = cells(b.labels)
    inside = valid[0, 0].bool()
    agree = (warped[0].argmax(0) == target[0].argmax(0))[inside].float().mean()
    assert inside.float().mean() > 0.85 and agree > 0.95, f"agreement {agree:.3f}"


@pytest.fixture
def step() -> WarpFusionStep:
    return WarpFusionStep(SimilarityHead(8)).eval()


def force_similarity(step: WarpFusionStep, value: float) -> None:
    last = step.similarity_head.layers[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.constant_(last.bias, value)


def test_fusion_with_s_one_and_zero(step: WarpFusionStep) -> None:
    torch.manual_seed(0)
    cur_logits, prev_logits = torch.randn(2, 1, 4, 6, 9)
    cur_feats, prev_feats = torch.randn(2, 1, 8, 6, 9)
    shift = batch(np.array([[1.0, 0, -2.0], [0, 1.0, 0], [0, 0, 1.0]]))
    warped, _ = warp(prev_logits, shift)
    with torch.no_grad():
        force_similarity(step, 50.0)  # sigmoid(50) == 1 in float32
        fused, s, valid = step(cur_logits, cur_feats, prev_logits, prev_feats, shift)
        assert torch.all(s == 1.0)
        inside = valid.bool().expand_as(fused)
        torch.testing.assert_close(fused[inside], warped[inside])
        assert torch.equal(fused[~inside], cur_logits[~inside]), "invalid pixels take the current prediction"
        force_similarity(step, -50.0)
        fused, s, _ = step(cur_logits, cur_feats, prev_logits, prev_feats, shift)
        torch.testing.assert_close(fused, cur_logits)

"""Tests of ssp_train.losses (its flow warping too): every formula against a small case computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from ssp_train.losses import (
    distillation_loss,
    flow_warp,
    fused_teacher_targets,
    motion_unexplained,
    occlusion_mask,
    occlusion_weight,
    segmentation_loss,
    teacher_probabilities,
    temporal_consistency_loss,
    weighted_segmentation_loss,
)


def _row(*values: float) -> torch.Tensor:
    """A 1×1×1×W map."""
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def _flow_x(*dx: float) -> torch.Tensor:
    """A 1×2×1×W flow moving along x only."""
    return torch.cat([_row(*dx), torch.zeros(1, 1, 1, len(dx))], dim=1)


def test_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 5.0]]]])  # 2 classes, 2 pixels
    labels = torch.tensor([[[0, 255]]])  # the second pixel is unlabelled
    assert segmentation_loss(logits, labels).item() == pytest.approx(math.log(1.0 + math.exp(-2.0)))
    labels = torch.tensor([[[0, 0]]])
    expected = (math.log(1.0 + math.exp(-2.0)) + math.log(1.0 + math.exp(5.0))) / 2
    assert segmentation_loss(logits, labels).item() == pytest.approx(expected)


def test_cross_entropy_upsamples_and_ignores():
    logits = torch.zeros(1, 3, 2, 2)
    logits[:, 1] = 5.0  # class 1 everywhere
    labels = torch.ones(1, 8, 8, dtype=torch.long)
    good = segmentation_loss(logits, labels)
    labels[0, :4] = 255
    assert segmentation_loss(logits, labels) == pytest.approx(float(good))
    labels[0, 4:] = 0
    assert segmentation_loss(logits, labels) > good
    empty = segmentation_loss(logits.requires_grad_(), torch.full((1, 8, 8), 255))
    assert empty.item() == 0.0 and empty.requires_grad


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 5.0, 1.0]]]])
    labels = torch.tensor([[[0, 0, 255]]])
    ce = [math.log(1.0 + math.exp(-2.0)), math.log(1.0 + math.exp(5.0))]
    weight = torch.tensor([[[1.0, 3.0, 7.0]]])  # the unlabelled pixel's weight must not count
    expected = (ce[0] + 3.0 * ce[1]) / 4.0
    assert weighted_segmentation_loss(logits, labels, weight).item() == pytest.approx(expected)
    equal = torch.full_like(weight, 2.0)
    assert weighted_segmentation_loss(logits, labels, equal).item() == pytest.approx(
        segmentation_loss(logits, labels).item())


@pytest.mark.parametrize("stride", [1, 4])
def test_motion_unexplained_marks_a_mover_and_its_trail_not_the_ground(stride):
    h, w = 16, 48
    prev = torch.zeros(1, h, w + stride, dtype=torch.long)
    prev[0, 4:12, 30:34] = 1  # a building: moves only with the camera
    prev[0, 6:10, 8:12] = 2  # a car
    # the camera pans one cell to the right: current pixel x shows previous pixel x + stride
    cur = prev[:, :, stride:].clone()
    cur[cur == 2] = 0
    cur[0, 6:10, 14:18] = 2  # meanwhile the car drove 10 px to the right (in the current frame's pixels)
    cur[0, 0, 0] = 255  # an unlabelled pixel is never marked
    cur[0, 4:12, 30 - stride - 1] = 1  # the building one pixel wider: an edge shifted by sampling, not a mover
    to_previous = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # cells of the stride map
    marked = motion_unexplained(cur, prev[:, :, :w], to_previous, stride)
    expected = torch.zeros(1, h, w, dtype=torch.bool)
    expected[0, 6:10, 8 - stride:12 - stride] = True  # where the car was (its trail)
    expected[0, 6:10, 14:18] = True  # where it is
    expected[0, :, w - stride:] = False  # these come from outside the previous map
    assert torch.equal(marked, expected)


def test_occlusion_weight_and_tc_loss_by_hand():
    image = torch.zeros(1, 3, 1, 2)
    warped = torch.tensor([[[[0.0, 0.5]], [[0.0, 0.25]], [[0.0, 0.25]]]])  # pixel 1 differs by 1.0 in L1
    weight = occlusion_weight(image, warped)
    torch.testing.assert_close(weight, torch.tensor([[[[1.0, math.exp(-1.0)]]]]))
    probs = torch.tensor([[[[1.0, 1.0]], [[0.0, 0.0]]]])  # two classes, two pixels
    prev = torch.tensor([[[[0.5, 0.0]], [[0.5, 1.0]]]])
    # squared distances: pixel 0: 0.25 + 0.25 = 0.5; pixel 1: 1 + 1 = 2; 1/HW with HW = 2
    valid = torch.ones(1, 1, 1, 2)
    expected = (1.0 * 0.5 + math.exp(-1.0) * 2.0) / 2
    assert temporal_consistency_loss(probs, prev, weight, valid).item() == pytest.approx(expected)
    valid[..., 1] = 0  # a cell from outside the previous frame adds nothing; the sum is still over HW
    assert temporal_consistency_loss(probs, prev, weight, valid).item() == pytest.approx(0.5 / 2)


def test_flow_warp_by_hand():
    values = _row(10.0, 20.0, 30.0)
    warped, valid = flow_warp(values, _flow_x(1.0, 0.5, 1.0))
    # pixel 0 reads pixel 1; pixel 1 reads halfway between 1 and 2; pixel 2 reads x = 3, outside
    torch.testing.assert_close(warped[..., :2], _row(20.0, 25.0))
    torch.testing.assert_close(valid, _row(1.0, 1.0, 0.0))
    flow = torch.zeros(1, 2, 3, 1)
    flow[0, 1] = torch.tensor([[-1.0], [-1.0], [-1.0]])  # along y: each row reads the row above
    warped, valid = flow_warp(torch.tensor([1.0, 2.0, 3.0]).view(1, 1, 3, 1), flow)
    torch.testing.assert_close(warped[0, 0, 1:, 0], torch.tensor([1.0, 2.0]))
    assert valid[0, 0, :, 0].tolist() == [0.0, 1.0, 1.0]


def test_tc_loss_is_zero_for_a_prediction_that_moves_with_the_flow():
    torch.manual_seed(0)
    prev = torch.rand(1, 4, 6, 8).softmax(dim=1)
    cur = torch.roll(prev, shifts=2, dims=-1)  # the scene moved 2 px to the right
    backward = torch.zeros(1, 2, 6, 8)
    backward[:, 0] = -2.0  # flow k → k−1
    warped, valid = flow_warp(prev, backward)
    weight = torch.ones(1, 1, 6, 8)
    assert temporal_consistency_loss(cur, warped, weight, valid).item() == pytest.approx(0.0, abs=1e-12)
    assert temporal_consistency_loss(prev, warped, weight, valid).item() > 1e-3  # a prediction that stayed put


def test_occlusion_mask_by_hand():
    # pixel 0 → 1, undone exactly; pixel 1 → 2 where the backward flow says +2 (|1 + 2|² = 9 > 0.55);
    # pixel 2 → 3 leaves the frame
    forward = _flow_x(1.0, 1.0, 1.0)
    backward = _flow_x(0.0, -1.0, 2.0)
    assert occlusion_mask(forward, backward).flatten().tolist() == [0.0, 1.0, 1.0]
    # the tolerance at pixel 0: |1 − 1.5|² = 0.25 < 0.01·(1 + 2.25) + 0.5 = 0.5325 is consistent,
    # |1 − 1.8|² = 0.64 > 0.01·(1 + 3.24) + 0.5 = 0.5424 is not
    assert occlusion_mask(_flow_x(1.0, 0.0), _flow_x(0.0, -1.5))[..., 0].item() == 0.0
    assert occlusion_mask(_flow_x(1.0, 0.0), _flow_x(0.0, -1.8))[..., 0].item() == 1.0


def test_fused_teacher_targets_by_hand():
    # two pixels; frame k−1's pixel 0 is frame k's pixel 1 (the camera moved 1 px); the other pixels leave
    forward, backward = _flow_x(1.0, 1.0), _flow_x(-1.0, -1.0)
    t_prev = torch.tensor([[[[0.8, 0.6]], [[0.2, 0.4]]]])  # classes × pixels
    t_cur = torch.tensor([[[[0.4, 0.1]], [[0.6, 0.9]]]])
    fused_prev, fused_cur = fused_teacher_targets(t_prev, t_cur, forward, backward)
    # k−1: pixel 0 is seen in both frames: (T_{k−1}(0) + T_k(1)) / 2; pixel 1 keeps its own target
    torch.testing.assert_close(fused_prev, torch.tensor([[[[0.45, 0.6]], [[0.55, 0.4]]]]))
    # k: pixel 1 is (T_k(1) + T_{k−1}(0)) / 2; pixel 0 came from outside frame k−1
    torch.testing.assert_close(fused_cur, torch.tensor([[[[0.4, 0.45]], [[0.6, 0.55]]]]))
    torch.testing.assert_close(fused_prev.sum(dim=1), torch.ones(1, 1, 2))  # still distributions


def test_teacher_probabilities_and_distillation_by_hand():
    logits = torch.tensor([0.0, 2.0 * math.log(3.0)]).view(1, 2, 1, 1)
    probs = teacher_probabilities(logits)  # softmax(logits / 2) = softmax(0, ln 3) = (1/4, 3/4)
    torch.testing.assert_close(probs.flatten(), torch.tensor([0.25, 0.75]))
    targets = torch.tensor([0.5, 0.5]).view(1, 2, 1, 1)
    # T² · Σ t·log(t/p) = 4 · (0.5·ln(0.5/0.25) + 0.5·ln(0.5/0.75)) = 2·ln(4/3)
    assert distillation_loss(logits, targets).item() == pytest.approx(2.0 * math.log(4.0 / 3.0))
    assert distillation_loss(logits, probs).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_upsamples_the_student_and_pulls_it_to_the_target():
    torch.manual_seed(0)
    teacher = 3.0 * torch.randn(2, 3, 2, 2)  # a teacher the stride-4 student can match exactly after upsampling
    targets = teacher_probabilities(torch.nn.functional.interpolate(teacher, size=(8, 8), mode="bilinear"))
    student = torch.zeros(2, 3, 2, 2, requires_grad=True)
    optimizer = torch.optim.Adam([student], lr=0.3)
    losses = []
    for _ in range(60):
        loss = distillation_loss(student, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.05 * losses[0]

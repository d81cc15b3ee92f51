"""Simulated input segmenters for training the stabiliser: what another team's segmenter might give for a pair
of frames, made from the true labels so that the training needs no segmenter at all.

``simulate(prev_labels, labels, num_classes)`` draws one segmenter for the batch and returns its class
probabilities on the stride-4 cells of both frames, with the true labels in its own class set. A segmenter is:

- a class set: the true classes, or a random merge of them into 2..5 groups (a coarser segmenter);
- per-frame errors that come and go: blobs of a random class and whole-class confusions (one class read as
  another over part of the frame), drawn afresh for each frame, or none (a clean segmenter);
- an output: hard labels spread with a random confidence (0.6..0.95, as ``ssp_ros.stabiliser`` does with the
  ``confidence`` a user gives) or, for half the batches, soft probabilities (the same, then blurred over a few
  pixels, as a soft segmenter is unsure at boundaries).

The held-aside segmenters the stabiliser is measured on (our image model, the evaluation's noisy and merged
segmenters, ``ssp_ros.eval.stabiliser_check``) are deliberately not among these.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

STRIDE = 4
IGNORE = 255


@dataclass
class SimulatedOutput:
    """One batch of a simulated segmenter: cell probabilities of both frames and the truth in its classes."""

    prev: torch.Tensor  # N×M×h×w probabilities on the stride-4 cells of frame k − gap
    cur: torch.Tensor  # N×M×h×w, frame k
    truth: torch.Tensor  # N×M×h×w: each cell's share of true pixels per class (all zero where unlabelled)
    num_classes: int  # M, the segmenter's classes


def _uniform(n: int = 1, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(n)


def _randint(low: int, high: int) -> int:
    """An integer in [low, high] from torch's global generator (so a resumed run draws the same)."""
    return int(torch.randint(low, high + 1, ()).item())


def random_merge(num_classes: int) -> torch.Tensor:
    """A map class → group of a random partition of the classes into 2..min(5, K − 1) non-empty groups."""
    groups = _randint(2, max(2, min(5, num_classes - 1)))
    order = torch.randperm(num_classes)
    mapping = torch.empty(num_classes, dtype=torch.long)
    mapping[order[:groups]] = torch.arange(groups)  # every group gets a class
    mapping[order[groups:]] = torch.randint(0, groups, (num_classes - groups,))
    return mapping


def _ellipses(shape: tuple[int, int, int], count: int) -> torch.Tensor:
    """N×H×W bool: ``count`` random ellipses per image (radii 4..25 % of the side)."""
    n, h, w = shape
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    out = torch.zeros(shape, dtype=torch.bool)
    for _ in range(count):
        cy, cx = (_uniform(n, 0, h).view(n, 1, 1), _uniform(n, 0, w).view(n, 1, 1))
        ry, rx = (_uniform(n, 0.04, 0.25).view(n, 1, 1) * h, _uniform(n, 0.04, 0.25).view(n, 1, 1) * w)
        out |= ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 < 1.0
    return out


def corrupt(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N×H×W class ids with this frame's errors: blobs of a random class, and one class read as another over a
    random half-plane, each in some of the images."""
    out = labels.clone()
    n, h, w = labels.shape
    blobs = _ellipses(labels.shape, _randint(0, 6))
    out = torch.where(blobs, torch.randint(0, num_classes, (n, 1, 1)).expand_as(out), out)
    confused = torch.rand(n) < 0.4
    if confused.any():
        source, target = torch.randint(0, num_classes, (2, n, 1, 1))
        ys = torch.arange(h, dtype=torch.float32).view(1, h, 1) / h
        xs = torch.arange(w, dtype=torch.float32).view(1, 1, w) / w
        angle = _uniform(n, 0, 6.2832).view(n, 1, 1)
        side = torch.cos(angle) * (xs - 0.5) + torch.sin(angle) * (ys - 0.5) > _uniform(n, -0.3, 0.3).view(n, 1, 1)
        swap = confused.view(n, 1, 1) & side & (labels == source)
        out = torch.where(swap, target.expand_as(out), out)
    return torch.where(labels == IGNORE, labels, out)


def probabilities(labels: torch.Tensor, num_classes: int, confidence: torch.Tensor, soft: bool) -> torch.Tensor:
    """N×M×h×w cell probabilities of N×H×W labels: ``confidence`` (N) for the pixel's class, the rest shared
    evenly, uniform where unknown; ``soft`` blurs the pixel distributions over 5×5 first."""
    n = labels.shape[0]
    known = labels != IGNORE
    onehot = F.one_hot(torch.where(known, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    c = confidence.view(n, 1, 1, 1)
    pixel = onehot * c + (1 - onehot) * (1 - c) / (num_classes - 1)
    pixel = torch.where(known[:, None], pixel, torch.full_like(pixel, 1.0 / num_classes))
    if soft:
        pixel = F.avg_pool2d(pixel, 5, stride=1, padding=2, count_include_pad=False)
    return F.avg_pool2d(pixel, STRIDE)


def cell_truth(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """N×M×h×w: the share of each cell's pixels that truly are each class (unlabelled pixels count for none)."""
    known = labels != IGNORE
    onehot = F.one_hot(torch.where(known, labels, 0), num_classes).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(onehot * known[:, None], STRIDE)


def simulate(prev_labels: torch.Tensor, labels: torch.Tensor, num_classes: int) -> SimulatedOutput:
    """One simulated segmenter's output for a batch of pairs of true labels (N×H×W each, ``IGNORE`` unlabelled)."""
    if torch.rand(()) < 0.4:
        mapping = torch.cat([random_merge(num_classes), torch.full((IGNORE + 1 - num_classes,), IGNORE)])
        prev_labels, labels = mapping[prev_labels], mapping[labels]
        num_classes = int(mapping[mapping != IGNORE].max()) + 1
    clean = torch.rand(()) < 0.15
    seen = [x if clean else corrupt(x, num_classes) for x in (prev_labels, labels)]
    confidence, soft = _uniform(labels.shape[0], 0.6, 0.95), bool(torch.rand(()) < 0.5)
    prev_p, cur_p = (probabilities(x, num_classes, confidence, soft) for x in seen)
    return SimulatedOutput(prev_p, cur_p, cell_truth(labels, num_classes), num_classes)

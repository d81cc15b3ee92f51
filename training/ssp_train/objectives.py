"""What each stage optimises, as modules whose ``forward(batch)`` returns the loss (and values to log).

Keeping the whole training graph of a stage inside one module's ``forward`` is what DistributedDataParallel
needs to average the gradients over processes; the same modules run unwrapped in a single process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.models import SSP, Segmenter, warp
from ssp_ros.models.appearance import AppearanceSimilarity
from ssp_train.input_segmenters import IGNORE, cell_truth, simulate
from ssp_train.input_segmenters import STRIDE as CELL_STRIDE
from ssp_train.losses import (
    distillation_loss,
    flow_warp,
    fused_teacher_targets,
    motion_unexplained,
    occlusion_weight,
    segmentation_loss,
    teacher_probabilities,
    temporal_consistency_loss,
    weighted_segmentation_loss,
)


def _small_frames(images: torch.Tensor, stride: int) -> torch.Tensor:
    """N×L×3×c×c frames (0..255) → N×L×3×c/stride×c/stride in 0..1: the occlusion weight's images."""
    n, length = images.shape[:2]
    return F.avg_pool2d(images.flatten(0, 1) / 255.0, stride).unflatten(0, (n, length))


def _tc_term(state: torch.Tensor, prev_state: torch.Tensor, small_cur: torch.Tensor, small_prev: torch.Tensor,
             to_previous: torch.Tensor) -> torch.Tensor:
    """The TC loss between the fused output ``state`` and the previous state warped by the true homography
    (on pixels that come from inside the previous frame)."""
    warped_prev, valid = warp(prev_state.softmax(dim=1), to_previous)
    warped_image, _ = warp(small_prev, to_previous)
    return temporal_consistency_loss(state.softmax(dim=1), warped_prev, occlusion_weight(small_cur, warped_image),
                                     valid)


def _identity_like(homographies: torch.Tensor) -> torch.Tensor:
    """N×3×3 identity matrices shaped like ``homographies``."""
    return torch.eye(3, dtype=homographies.dtype, device=homographies.device).expand_as(homographies)


class ImageObjective(nn.Module):
    """Stage 1: cross-entropy of the image model on labelled crops; ``forward((images, labels))``."""

    def __init__(self, segmenter: Segmenter, ignore_index: int = 255) -> None:
        super().__init__()
        self.segmenter, self.ignore_index = segmenter, ignore_index

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits, _ = self.segmenter(images)
        return {"loss": segmentation_loss(logits, labels, self.ignore_index)}


class ImagePairObjective(nn.Module):
    """Stage 1 with the paper's base loss on frame pairs (``PairDataset`` batches with flow):
    ``L = CE(P_k, A_k) + tc_weight·L_tc(P_k, P_{k−gap})``, the TC term at crop resolution with the previous
    prediction and image warped into frame k by the flow k → k − gap (``flow_backward``), on pixels whose flow
    stays inside the previous frame. ``forward`` also returns the two terms."""

    def __init__(self, segmenter: Segmenter, tc_weight: float, ignore_index: int = 255) -> None:
        super().__init__()
        self.segmenter, self.tc_weight, self.ignore_index = segmenter, tc_weight, ignore_index

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        prev, cur, flow = batch["prev"], batch["cur"], batch["flow_backward"].float()
        n, size = cur.shape[0], cur.shape[-2:]
        logits, _ = self.segmenter(torch.cat([prev, cur]))  # one pass over both frames
        ce = segmentation_loss(logits[n:], batch["labels"], self.ignore_index)
        probs = F.interpolate(logits, size=size, mode="bilinear", align_corners=False).softmax(dim=1)
        warped_prev, inside = flow_warp(probs[:n], flow)
        warped_image, _ = flow_warp(prev / 255.0, flow)
        valid = inside * batch["valid_backward"].to(inside.dtype)
        tc = temporal_consistency_loss(probs[n:], warped_prev, occlusion_weight(cur / 255.0, warped_image), valid)
        return {"loss": ce + self.tc_weight * tc, "ce": ce.detach(), "tc": tc.detach()}


class _FusionObjective(nn.Module):
    """What the SSP and KD stages share: the model, its fusion step, and an image model that, when ``frozen``,
    runs without gradients and stays in eval mode (BatchNorm statistics kept) whatever ``train()`` says."""

    def __init__(self, model: SSP, frozen: bool) -> None:
        super().__init__()
        self.model, self.fusion, self.frozen = model, model.warp_fusion_step(), frozen
        model.segmenter.requires_grad_(not frozen)

    def train(self, mode: bool = True) -> _FusionObjective:
        super().train(mode)
        if self.frozen:
            self.model.segmenter.eval()
        return self


class SspObjective(_FusionObjective):
    """Stage 2: the fused output of SSP on clips (``ssp_train.data.ClipDataset`` batches), non-recursive over
    the image model as in the paper: cross-entropy against each later frame's labels, plus ``tc_weight`` × the
    TC loss between the fused output and the warped previous state. The previous state of step t is the fused
    output of step t − 1 (for pairs: the image model's logits on frame k − gap). Without ``registration`` the
    fusion warps with the identity (the ablation); the TC loss still compares through the true motion. With
    ``movers_weight`` w > 0 the cross-entropy is a weighted mean in which pixels whose class the true camera
    motion does not explain (``motion_unexplained``: a moving car now and its trail) count 1 + w times: they are
    a tiny share of the pixels, yet the ones where trusting the warped state is wrong.

    With ``frozen`` the image model runs without gradients and stays in eval mode (BatchNorm statistics kept),
    whatever ``train()`` is called with. ``forward`` also returns ``image_loss``: the image model's own
    cross-entropy on the same frames, what the fusion has to beat.
    """

    def __init__(self, model: SSP, frozen: bool, tc_weight: float, ignore_index: int = 255,
                 registration: bool = True, movers_weight: float = 0.0) -> None:
        super().__init__(model, frozen)
        self.tc_weight, self.ignore_index, self.registration = tc_weight, ignore_index, registration
        self.movers_weight = movers_weight

    def _ce(self, state: torch.Tensor, labels: torch.Tensor, prev_labels: torch.Tensor,
            to_previous: torch.Tensor) -> torch.Tensor:
        if self.movers_weight == 0:
            return segmentation_loss(state, labels, self.ignore_index)
        movers = motion_unexplained(labels, prev_labels, to_previous, self.model.segmenter.output_stride,
                                    self.ignore_index)
        return weighted_segmentation_loss(state, labels, 1.0 + self.movers_weight * movers.to(state.dtype),
                                          self.ignore_index)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        segmenter = self.model.segmenter
        images, labels = batch["images"], batch["labels"]  # N×L×3×c×c, N×L×c×c
        n, length = images.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            logits, feats = segmenter(images.flatten(0, 1))  # one pass over all frames of all clips
        logits, feats = logits.unflatten(0, (n, length)), feats.unflatten(0, (n, length))
        state = logits[:, 0]
        small = _small_frames(images, segmenter.output_stride)
        loss = image_loss = 0.0
        for t in range(1, length):  # the fused output becomes the next step's previous state, as at run time
            to_previous = batch["to_previous"][:, t - 1]
            prev_state = state
            fusion_h = to_previous if self.registration else _identity_like(to_previous)
            state, _, _ = self.fusion(logits[:, t], feats[:, t], prev_state, feats[:, t - 1], fusion_h)
            step_loss = self._ce(state, labels[:, t], labels[:, t - 1], to_previous)
            if self.tc_weight > 0:
                step_loss = step_loss + self.tc_weight * _tc_term(state, prev_state, small[:, t], small[:, t - 1],
                                                                  to_previous)
            loss = loss + step_loss / (length - 1)
            with torch.no_grad():
                image_loss = image_loss + segmentation_loss(logits[:, t].detach(), labels[:, t], self.ignore_index)
        return {"loss": loss, "image_loss": image_loss / (length - 1)}


class KdObjective(_FusionObjective):
    """Stage 3, KD-SSP: the student SSP model on pairs (``PairDataset`` batches with flow and teacher logits).

    ``L = KL(P_k, T^c_k) + prev_weight·KL(P_{k−1}, T^c_{k−1}) + tc_weight·L_tc`` at ``temperature``: P_k is the
    fused output on frame k (the previous state: the student image model's logits on frame k − gap, as in the
    SSP stage), P_{k−1} the student image model's logits on frame k − gap, T^c the teacher's softened targets
    fused across the pair with the bidirectional flow and the occlusion mask (``fused_teacher_targets``).
    With ``frozen`` the image model runs without gradients in eval mode. ``forward`` also returns the KL terms.
    """

    def __init__(self, model: SSP, frozen: bool, temperature: float, prev_weight: float, tc_weight: float) -> None:
        super().__init__(model, frozen)
        self.temperature, self.prev_weight, self.tc_weight = temperature, prev_weight, tc_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        segmenter = self.model.segmenter
        images = torch.stack([batch["prev"], batch["cur"]], dim=1)  # N×2×3×c×c
        n = images.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            logits, feats = segmenter(images.flatten(0, 1))
        logits, feats = logits.unflatten(0, (n, 2)), feats.unflatten(0, (n, 2))
        prev_logits, to_previous = logits[:, 0], batch["to_previous"]
        fused, _, _ = self.fusion(logits[:, 1], feats[:, 1], prev_logits, feats[:, 0], to_previous)
        with torch.no_grad():
            targets_prev, targets_cur = fused_teacher_targets(
                teacher_probabilities(batch["prev_teacher"].float(), self.temperature),
                teacher_probabilities(batch["teacher"].float(), self.temperature),
                batch["flow_forward"].float(), batch["flow_backward"].float(),
                batch["valid_forward"], batch["valid_backward"])
        kl_cur = distillation_loss(fused, targets_cur, self.temperature)
        kl_prev = distillation_loss(prev_logits, targets_prev, self.temperature)
        loss = kl_cur + self.prev_weight * kl_prev
        if self.tc_weight > 0:
            small = _small_frames(images, segmenter.output_stride)
            loss = loss + self.tc_weight * _tc_term(fused, prev_logits, small[:, 1], small[:, 0], to_previous)
        return {"loss": loss, "kl_cur": kl_cur.detach(), "kl_prev": kl_prev.detach()}


class StabiliserObjective(nn.Module):
    """The stabiliser's similarity model on pairs (``PairDataset`` batches): the binary cross-entropy of ``s``
    against the SSP target (the chance that the warped previous cell and the current cell hold the same true
    class), plus ``fusion_weight`` × the cross-entropy of fusing a simulated segmenter's outputs with ``s``
    (``ssp_train.input_segmenters``) against the current truth. Both count only cells that come from inside the
    previous frame. With ``movers_weight`` w > 0 a cell counts 1 + w × the share of its pixels whose class the
    true camera motion does not explain (``motion_unexplained``: a moving object, the ground it uncovers): a tiny
    share of the cells, and the ones where keeping the past is wrong. ``forward`` also returns the two terms and
    the simulated segmenter's own loss."""

    def __init__(self, model: AppearanceSimilarity, num_classes: int, fusion_weight: float,
                 movers_weight: float = 0.0) -> None:
        super().__init__()
        self.model, self.num_classes, self.fusion_weight = model, num_classes, fusion_weight
        self.movers_weight = movers_weight

    def _cell_weight(self, batch: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """N×1×h×w: 1 + ``movers_weight`` × each cell's share of pixels the camera motion does not explain."""
        if self.movers_weight == 0:
            return 1.0
        movers = motion_unexplained(batch["labels"], batch["prev_labels"], batch["to_previous"], CELL_STRIDE, IGNORE)
        return 1.0 + self.movers_weight * F.avg_pool2d(movers[:, None].float(), CELL_STRIDE)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        n, to_previous = batch["cur"].shape[0], batch["to_previous"]
        feats = self.model.encoder(torch.cat([batch["prev"], batch["cur"]]))
        warped_feats, valid = warp(feats[:n], to_previous)
        s = self.model(warped_feats, feats[n:]).clamp(1e-6, 1 - 1e-6)
        truth_prev, truth = (cell_truth(batch[key], self.num_classes) for key in ("prev_labels", "labels"))
        warped_truth, _ = warp(truth_prev, to_previous)
        labelled = valid * warped_truth.sum(1, keepdim=True) * truth.sum(1, keepdim=True)  # labelled, in view
        same = (warped_truth * truth).sum(1, keepdim=True) / labelled.clamp_min(1e-6) * valid
        cell_weight = self._cell_weight(batch)
        weight = labelled * cell_weight
        total = weight.sum().clamp_min(1.0)
        with torch.autocast(s.device.type, enabled=False):  # autocast refuses binary_cross_entropy on CUDA
            bce = (F.binary_cross_entropy(s.float(), same.float().clamp(0, 1), reduction="none") * weight).sum() / total
        with torch.no_grad():
            seg = simulate(batch["prev_labels"], batch["labels"], self.num_classes)
            warped_prev, _ = warp(seg.prev, to_previous)
        blend = s * valid
        fused = blend * warped_prev + (1 - blend) * seg.cur
        in_view = valid * seg.truth.sum(1, keepdim=True)
        count = in_view.sum().clamp_min(1.0)
        fused_ce = (-(seg.truth * torch.log(fused.clamp_min(1e-6)) * valid).sum(1, keepdim=True) * cell_weight).sum()
        fused_ce = fused_ce / (in_view * cell_weight).sum().clamp_min(1.0)
        with torch.no_grad():
            own_ce = -(seg.truth * torch.log(seg.cur.clamp_min(1e-6)) * valid).sum() / count
        return {"loss": bce + self.fusion_weight * fused_ce, "bce": bce.detach(), "fused_ce": fused_ce.detach(),
                "input_ce": own_ce}

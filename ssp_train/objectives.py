"""What each stage optimises, as modules whose ``forward(batch)`` returns the loss (and values to log).

Keeping the whole training graph of a stage inside one module's ``forward`` is what DistributedDataParallel
needs to average the gradients over processes; the same modules run unwrapped in a single process.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.models import SSP, Segmenter, warp
from ssp_train.losses import occlusion_weight, segmentation_loss, temporal_consistency_loss


class ImageObjective(nn.Module):
    """Stage 1: cross-entropy of the image model on labelled crops; ``forward((images, labels))``."""

    def __init__(self, segmenter: Segmenter, ignore_index: int = 255) -> None:
        super().__init__()
        self.segmenter, self.ignore_index = segmenter, ignore_index

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch
        logits, _ = self.segmenter(images)
        return {"loss": segmentation_loss(logits, labels, self.ignore_index)}


class SspObjective(nn.Module):
    """Stage 2: the fused output of SSP on clips (``ssp_train.data.ClipDataset`` batches), non-recursive over
    the image model as in the paper: cross-entropy against each later frame's labels, plus ``tc_weight`` × the
    TC loss between the fused output and the warped previous state. The previous state of step t is the fused
    output of step t − 1 (for pairs: the image model's logits on frame k − gap).

    With ``frozen`` the image model runs without gradients and stays in eval mode (BatchNorm statistics kept),
    whatever ``train()`` is called with. ``forward`` also returns ``image_loss``: the image model's own
    cross-entropy on the same frames, what the fusion has to beat.
    """

    def __init__(self, model: SSP, frozen: bool, tc_weight: float, ignore_index: int = 255) -> None:
        super().__init__()
        self.model, self.fusion = model, model.warp_fusion_step()
        self.frozen, self.tc_weight, self.ignore_index = frozen, tc_weight, ignore_index
        model.segmenter.requires_grad_(not frozen)

    def train(self, mode: bool = True) -> SspObjective:
        super().train(mode)
        if self.frozen:
            self.model.segmenter.eval()
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        segmenter = self.model.segmenter
        images, labels = batch["images"], batch["labels"]  # N×L×3×c×c, N×L×c×c
        n, length = images.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            logits, feats = segmenter(images.flatten(0, 1))  # one pass over all frames of all clips
        logits, feats = logits.unflatten(0, (n, length)), feats.unflatten(0, (n, length))
        state = logits[:, 0]
        # frames at the logits' stride in 0..1, for the occlusion weight of the temporal-consistency loss
        small = F.avg_pool2d(images.flatten(0, 1) / 255.0, segmenter.output_stride).unflatten(0, (n, length))
        loss = image_loss = 0.0
        for t in range(1, length):  # the fused output becomes the next step's previous state, as at run time
            to_previous = batch["to_previous"][:, t - 1]
            prev_state = state
            state, _, valid = self.fusion(logits[:, t], feats[:, t], prev_state, feats[:, t - 1], to_previous)
            step_loss = segmentation_loss(state, labels[:, t], self.ignore_index)
            if self.tc_weight > 0:
                warped_prev, _ = warp(prev_state.softmax(dim=1), to_previous)
                warped_image, _ = warp(small[:, t - 1], to_previous)
                weight = occlusion_weight(small[:, t], warped_image)
                step_loss = step_loss + self.tc_weight * temporal_consistency_loss(
                    state.softmax(dim=1), warped_prev, weight, valid)
            loss = loss + step_loss / (length - 1)
            with torch.no_grad():
                image_loss = image_loss + segmentation_loss(logits[:, t].detach(), labels[:, t], self.ignore_index)
        return {"loss": loss, "image_loss": image_loss / (length - 1)}

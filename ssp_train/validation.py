"""Validation during training: the image model and SSP (run recursively, as on the drone) over a held-out
synthetic sequence with its exact homography and flow, scored with ``ssp_ros.eval.metrics.SequenceMetrics``."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.eval.metrics import SequenceMetrics
from ssp_ros.geometry import cells_to_previous
from ssp_ros.models import Segmenter
from ssp_ros.synthetic import relative_homography
from ssp_train.synthetic_data import Sequence


def _pad_to(x: torch.Tensor, multiple: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    return F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple))


@torch.no_grad()
def evaluate(segmenter: Segmenter, frames: Sequence, num_classes: int, ignore_index: int = 255,
             fusion: nn.Module | None = None, registration: bool = True) -> dict:
    """Image model (and, with ``fusion``, SSP run recursively) over whole frames, in order, on the model's device.

    Uses the generator's exact homography (the identity without ``registration``: the ablation) and flow.
    Returns ``{"image": report, "ssp": report}`` with ``SequenceMetrics`` reports (mIoU, TC, flicker in percent).
    """
    was_training = segmenter.training
    segmenter.eval()
    device = next(segmenter.parameters()).device
    reports = {"image": SequenceMetrics(num_classes, ignore_index)}
    if fusion is not None:
        fusion_was_training = fusion.training
        fusion.eval()
        reports["ssp"] = SequenceMetrics(num_classes, ignore_index)
    stride, state = segmenter.output_stride, None
    for i, frame in enumerate(frames):
        h, w = frame.labels.shape
        x = torch.from_numpy(frame.image).permute(2, 0, 1).float()[None].to(device)
        x = _pad_to(x, segmenter.input_multiple)
        logits, feats = segmenter(x)
        outputs = {"image": logits}
        if fusion is not None:
            fused = logits
            if state is not None:
                homography = relative_homography(frames[i - 1], frame) if registration else np.eye(3)
                to_previous = torch.from_numpy(cells_to_previous(homography, stride)).float()[None].to(device)
                fused, _, _ = fusion(logits, feats, state[0], state[1], to_previous)
            outputs["ssp"] = fused
            state = (fused, feats)  # the fused logits are the next frame's "previous" state, as at run time
        for name, out in outputs.items():
            up = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
            pred = up.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)
            reports[name].add(pred, frame.labels, frame.flow, frame.valid)
    segmenter.train(was_training)
    if fusion is not None:
        fusion.train(fusion_was_training)
    return {name: metrics.report() for name, metrics in reports.items()}

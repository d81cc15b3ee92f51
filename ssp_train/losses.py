"""Training losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of N×K×h×w logits (any stride) against N×H×W class ids, ignoring ``ignore_index``.

    The logits are upsampled bilinearly (``align_corners=False``) to the label size first, as at inference.
    A batch with no labelled pixel gives a zero loss (still connected to the graph) instead of NaN.
    """
    if labels.shape[-2:] != logits.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    labels = labels.long()
    if not (labels != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def occlusion_weight(image: torch.Tensor, warped_prev_image: torch.Tensor) -> torch.Tensor:
    """The paper's soft occlusion weight ``O = exp(−‖I_k − Î_{k−1}‖₁)`` per pixel.

    N×3×h×w images in 0..1 (the previous one warped into frame k) → N×1×h×w in (0, 1]: close to 1 where the
    warp explains the pixel, small where something moved or appeared.
    """
    return torch.exp(-(image - warped_prev_image).abs().sum(dim=1, keepdim=True))


def temporal_consistency_loss(probs: torch.Tensor, warped_prev_probs: torch.Tensor, weight: torch.Tensor,
                              valid: torch.Tensor) -> torch.Tensor:
    """``L_tc = 1/HW Σ O·‖P_k − P̂_{k−1}‖²`` over cells that came from inside the previous frame.

    probs, warped_prev_probs: N×K×h×w softmax maps; weight: N×1×h×w occlusion weight O; valid: N×1×h×w {0, 1}.
    """
    squared = ((probs - warped_prev_probs) ** 2).sum(dim=1, keepdim=True)
    return (weight * valid * squared).sum() / valid.sum().clamp(min=1.0)

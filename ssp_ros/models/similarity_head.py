"""The similarity head of SSP: how much of the warped previous prediction to trust, per pixel.

From the backbone's stride-4 features of the previous frame (warped into the current one) and of the current
frame, it predicts ``s ∈ [0, 1]``: 1 = same content, keep the previous fused logits; 0 = changed, take the
current logits.

Every similarity module here has the same call, ``forward(warped_prev_feats, cur_feats, warped_prev_logits,
cur_logits, valid) → s``, so the fusion step, its exported graph and every runtime serve them all. Besides the
paper's learned head (``SimilarityHead``), two ablation baselines live here (``FixedBlend``, ``CosineBlend``),
and the learned head can take extra per-pixel inputs (``SIMILARITY_INPUTS``) computed from what the fusion
step already has, so none of them changes the runtime's interface. ``PooledSimilarityHead`` is the same head at
stride 8: a quarter of the pixels, hence about a quarter of the fusion's convolution work (the cost of SSP over the
image model; issue #25's goal is ≤ 5 %), with ``s`` brought back to stride 4 bilinearly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.errors import SspError
from ssp_ros.models.layers import ConvBNReLU

SIMILARITY_KINDS = ("learned", "pooled", "fixed", "cosine")
SIMILARITY_INPUTS = ("entropy", "validity")  # extra inputs of the learned head, in this channel order


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    """N×K×h×w logits → N×1×h×w softmax entropy divided by log K (0 = certain, 1 = uniform)."""
    log_p = F.log_softmax(logits, dim=1)
    return -(log_p.exp() * log_p).sum(dim=1, keepdim=True) / math.log(max(int(logits.shape[1]), 2))


class SimilarityHead(nn.Module):
    """concat(prev, cur[, extras]) → 3×3 conv-BN-ReLU (C) → 3×3 conv-BN-ReLU (C/2) → 1×1 conv (1) → sigmoid.

    ``inputs`` adds per-pixel channels after the 2C features: ``entropy`` (the normalised softmax entropy of
    the warped previous and of the current logits: 2 channels), ``validity`` (1 where the warped pixel came
    from inside the previous frame: 1 channel). With no extras it is the paper's head.
    """

    def __init__(self, channels: int, inputs: tuple[str, ...] = ()) -> None:
        super().__init__()
        unknown = [name for name in inputs if name not in SIMILARITY_INPUTS]
        if unknown:
            raise SspError(f"similarity inputs {unknown} unknown; choose from {list(SIMILARITY_INPUTS)}")
        self.inputs = tuple(name for name in SIMILARITY_INPUTS if name in inputs)  # canonical order
        extra = 2 * ("entropy" in self.inputs) + ("validity" in self.inputs)
        hidden = max(channels // 2, 1)
        self.channels = channels
        self.layers = nn.Sequential(
            ConvBNReLU(2 * channels + extra, channels, 3),
            ConvBNReLU(channels, hidden, 3),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, warped_prev_feats: torch.Tensor, cur_feats: torch.Tensor, warped_prev_logits: torch.Tensor,
                cur_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        parts = [warped_prev_feats, cur_feats]
        if "entropy" in self.inputs:
            parts += [_entropy(warped_prev_logits), _entropy(cur_logits)]
        if "validity" in self.inputs:
            parts.append(valid.to(cur_feats.dtype))
        return torch.sigmoid(self.layers(torch.cat(parts, dim=1)))


class PooledSimilarityHead(SimilarityHead):
    """``SimilarityHead`` on its inputs average-pooled 2×2 (stride 8), ``s`` upsampled bilinearly to stride 4.

    The blend itself stays at stride 4, so boundaries in the logits keep their resolution; only the weight ``s`` is
    coarser. An odd height or width is padded by replication before pooling and cropped after."""

    def forward(self, warped_prev_feats: torch.Tensor, cur_feats: torch.Tensor, warped_prev_logits: torch.Tensor,
                cur_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        h, w = cur_feats.shape[-2:]
        pad = (0, w % 2, 0, h % 2)

        def pool(x: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(F.pad(x, pad, mode="replicate") if any(pad) else x, 2)

        s = super().forward(pool(warped_prev_feats), pool(cur_feats), pool(warped_prev_logits), pool(cur_logits),
                            pool(valid.to(cur_feats.dtype)))
        return F.interpolate(s, scale_factor=2.0, mode="bilinear", align_corners=False)[..., :h, :w]


class FixedBlend(nn.Module):
    """Ablation: one weight for every pixel and frame, ``s = sigmoid(w)`` with ``w`` learned by the same loss
    as the head it replaces (so it is the best fixed blend under that loss, not an arbitrary constant)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, warped_prev_feats: torch.Tensor, cur_feats: torch.Tensor, warped_prev_logits: torch.Tensor,
                cur_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.weight).view(1, 1, 1, 1).expand_as(valid).to(cur_feats.dtype)


class CosineBlend(nn.Module):
    """Ablation: a hand-made similarity, ``s = sigmoid(a·cos(prev, cur) + b)`` per pixel over the C feature
    channels, with only the scale ``a`` and offset ``b`` learned (initialised so that cos 1 → s ≈ 0.9 and
    cos 0 → s ≈ 0.1)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.scale = nn.Parameter(torch.tensor([4.4]))
        self.offset = nn.Parameter(torch.tensor([-2.2]))

    def forward(self, warped_prev_feats: torch.Tensor, cur_feats: torch.Tensor, warped_prev_logits: torch.Tensor,
                cur_logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(warped_prev_feats, cur_feats, dim=1, eps=1e-6).unsqueeze(1)
        return torch.sigmoid(self.scale * cos + self.offset)


def build_similarity(kind: str, channels: int, inputs: tuple[str, ...] = ()) -> nn.Module:
    """The similarity module of ``kind`` (``SIMILARITY_KINDS``) for C = ``channels`` stride-4 features."""
    if kind == "learned":
        return SimilarityHead(channels, inputs)
    if kind == "pooled":
        return PooledSimilarityHead(channels, inputs)
    if inputs:
        raise SspError(f"similarity inputs {list(inputs)} need a learned head (learned, pooled), not '{kind}'")
    if kind == "fixed":
        return FixedBlend(channels)
    if kind == "cosine":
        return CosineBlend(channels)
    raise SspError(f"similarity '{kind}' unknown; choose from {list(SIMILARITY_KINDS)}")


def similarity_description(module: nn.Module) -> dict:
    """What a weights file records of its similarity module (``kind``, ``inputs``), to rebuild it on load."""
    kinds = {SimilarityHead: "learned", PooledSimilarityHead: "pooled", FixedBlend: "fixed", CosineBlend: "cosine"}
    return {"similarity": kinds[type(module)], "similarity_inputs": list(getattr(module, "inputs", ()))}

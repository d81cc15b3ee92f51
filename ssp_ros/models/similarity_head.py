"""The similarity head of SSP: how much of the warped previous prediction to trust, per pixel.

From the backbone's stride-4 features of the previous frame (warped into the current one) and of the current
frame, it predicts ``s ∈ [0, 1]``: 1 = same content, keep the previous fused logits; 0 = changed, take the
current logits.
"""

from __future__ import annotations

import torch
from torch import nn

from ssp_ros.models.layers import ConvBNReLU


class SimilarityHead(nn.Module):
    """concat(prev, cur) (2C) → 3×3 conv-BN-ReLU (C) → 3×3 conv-BN-ReLU (C/2) → 1×1 conv (1) → sigmoid.

    ``forward(warped_prev_feats, cur_feats)``: two N×C×h×w maps → N×1×h×w similarity in [0, 1].
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = max(channels // 2, 1)
        self.channels = channels
        self.layers = nn.Sequential(
            ConvBNReLU(2 * channels, channels, 3),
            ConvBNReLU(channels, hidden, 3),
            nn.Conv2d(hidden, 1, 1),
        )

    def forward(self, warped_prev_feats: torch.Tensor, cur_feats: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.layers(torch.cat([warped_prev_feats, cur_feats], dim=1)))

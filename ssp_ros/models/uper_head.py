"""The UPerNet decoder (Xiao et al. 2018): a pyramid pooling module on the coarsest level, an FPN over the
others, and a fusion of all levels at the finest stride.

Built from the backbone's reported ``in_channels`` (finest first) and the decoder width ``channels``; it
returns class logits at the stride of the first level (4 for every backbone we use).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.models.layers import ConvBNReLU, adaptive_avg_pool2d


def _resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PPM(nn.Module):
    """Pyramid pooling: pool ``x`` to each scale, project, upsample back, concat with ``x``, fuse with a 3×3 conv.

    N×in_channels×h×w → N×channels×h×w.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        # no BatchNorm on the 1×1 global-pool branch: it would fail in training with a batch of one
        self.projections = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1, norm=scale > 1) for scale in self.pool_scales)
        self.bottleneck = ConvBNReLU(in_channels + len(self.pool_scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [_resize(project(adaptive_avg_pool2d(x, scale)), size)
                  for scale, project in zip(self.pool_scales, self.projections)]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class UPerHead(nn.Module):
    """UPerNet: PPM on the last level, FPN laterals + top-down path, 3×3 FPN convs, concat at the finest
    level, a 3×3 fuse conv and a 1×1 classifier.

    ``forward(features)``: list of N×in_channels[i]×h_i×w_i, finest first → N×num_classes×h_0×w_0 logits.
    """

    def __init__(self, in_channels: list[int], channels: int, num_classes: int,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6), dropout: float = 0.1) -> None:
        super().__init__()
        self.ppm = PPM(in_channels[-1], channels, pool_scales)
        self.laterals = nn.ModuleList(ConvBNReLU(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = ConvBNReLU(len(in_channels) * channels, channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # lateral maps, coarsest = the PPM output
        maps = [lateral(f) for lateral, f in zip(self.laterals, features[:-1])] + [self.ppm(features[-1])]
        # top-down: each level adds the upsampled coarser one
        for i in range(len(maps) - 1, 0, -1):
            maps[i - 1] = maps[i - 1] + _resize(maps[i], maps[i - 1].shape[-2:])
        outs = [conv(m) for conv, m in zip(self.fpn_convs, maps[:-1])] + [maps[-1]]
        size = outs[0].shape[-2:]
        fused = self.fuse(torch.cat([outs[0], *(_resize(o, size) for o in outs[1:])], dim=1))
        return self.classifier(self.dropout(fused))

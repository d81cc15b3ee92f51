"""Small building blocks shared by the heads: a conv-BN-ReLU unit and an export-friendly adaptive pooling.

``adaptive_avg_pool2d`` computes exactly what ``torch.nn.functional.adaptive_avg_pool2d`` computes, but as two
matrix products. The legacy ONNX exporter rejects adaptive pooling whenever the output size does not divide the
input size (a 12×20 stride-32 map pooled to 6×6, i.e. our default 384×640 input), and TensorRT has no adaptive
pooling layer; MatMul with a constant matrix exports everywhere.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """``kernel_size``×``kernel_size`` convolution ('same' padding) → BatchNorm → ReLU.

    ``norm=False`` drops the BatchNorm (the convolution then has a bias): for 1×1 maps, where training-mode
    BatchNorm fails on a batch of one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, norm: bool = True) -> None:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=not norm)
        layers = [conv, nn.BatchNorm2d(out_channels)] if norm else [conv]
        super().__init__(*layers, nn.ReLU(inplace=True))


def adaptive_pool_matrix(length: int, bins: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The ``bins``×``length`` averaging matrix of 1-D adaptive average pooling.

    Bin ``i`` averages positions ``[floor(i·L/bins), ceil((i+1)·L/bins))``, PyTorch's definition. Built from
    Python integers, so an exported graph holds it as a constant: spatial sizes are static in our graphs, and
    computing it in-graph would need Mod, which TensorRT's ONNX parser does not take everywhere.
    """
    rows = []
    for i in range(bins):
        start, end = (i * length) // bins, -(-(i + 1) * length // bins)
        rows.append([1.0 / (end - start) if start <= j < end else 0.0 for j in range(length)])
    return torch.tensor(rows, dtype=dtype, device=device)


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """Adaptive average pooling of N×C×H×W ``x`` to N×C×bins×bins, as ``P_h · x · P_wᵀ``."""
    height, width = (int(v) for v in x.shape[-2:])
    p_h = adaptive_pool_matrix(height, bins, x.dtype, x.device)  # bins×H
    p_w = adaptive_pool_matrix(width, bins, x.dtype, x.device)  # bins×W
    return torch.matmul(torch.matmul(p_h, x), p_w.transpose(0, 1))

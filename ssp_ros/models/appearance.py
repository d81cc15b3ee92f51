"""The stabiliser's own similarity model: a small appearance encoder and SSP's similarity head over it.

SSP over another segmenter (``ssp_ros.stabiliser``) cannot read that segmenter's features, so it reads the frame
itself: ``AppearanceEncoder`` turns an RGB frame into C stride-4 feature channels (three 3×3 conv-BN-ReLU
layers, the first two with stride 2), and the paper's ``SimilarityHead`` compares the previous frame's features,
warped into the current frame, with the current ones: ``s`` = how likely the warped previous cell still shows the
same class. Nothing in it depends on any segmenter's classes or outputs, which is what lets it serve any of them.

It is trained on synthetic flights with the SSP target (``ssp_train``, ``config/train/stabiliser.yaml``) and
shipped as two ONNX graphs (``deploy/stabiliser_export.py``), run by OpenCV's DNN module at run time
(``ssp_ros/backends/appearance.py``), so the stabiliser needs neither torch nor ONNX Runtime.
"""

from __future__ import annotations

import torch
from torch import nn

from ssp_ros.models.layers import ConvBNReLU
from ssp_ros.models.similarity_head import SimilarityHead

STRIDE = 4
# ImageNet statistics in 0..255: the encoder takes raw RGB and normalises inside, so the graph folds it in
MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def _conv(in_channels: int, out_channels: int, stride: int) -> ConvBNReLU:
    """A 3×3 conv-BN-ReLU unit with ``stride``."""
    block = ConvBNReLU(in_channels, out_channels, 3)
    block[0].stride = (stride, stride)
    return block


class AppearanceEncoder(nn.Module):
    """N×3×H×W RGB (0..255, H and W multiples of 4) → N×C×H/4×W/4 appearance features."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.channels = channels
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.layers = nn.Sequential(_conv(3, channels, 2), _conv(channels, channels, 2), _conv(channels, channels, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers((images - self.mean) / self.std)


class AppearanceSimilarity(nn.Module):
    """The encoder and the similarity head; ``forward(warped_prev_feats, cur_feats) → s`` (N×1×h×w, 0..1)."""

    def __init__(self, channels: int = 16) -> None:
        super().__init__()
        self.channels = channels
        self.encoder = AppearanceEncoder(channels)
        self.head = SimilarityHead(channels)

    def describe(self) -> dict:
        """What a weights file records to rebuild it (``ssp_ros.models.weights``)."""
        return {"kind": "stabiliser", "channels": self.channels}

    def forward(self, warped_prev_feats: torch.Tensor, cur_feats: torch.Tensor) -> torch.Tensor:
        return self.head(warped_prev_feats, cur_feats, None, None, None)

"""The image model: timm backbone + UPerNet head, taking raw RGB pixels.

Input normalisation lives inside the model (two buffers), so the exported ONNX/TensorRT graph takes the
camera's 0..255 RGB values directly and no runtime has to repeat timm's mean/std.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ssp_ros.errors import SspError
from ssp_ros.models.backbone import Backbone
from ssp_ros.models.uper_head import UPerHead


def _is_tracing() -> bool:
    """True while torch.jit / torch.export / torch.compile trace the model (shape checks are eager-only)."""
    return torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()


class Segmenter(nn.Module):
    """Backbone + UPerNet.

    ``forward(x)``: N×3×H×W float RGB in 0..255, H and W multiples of ``input_multiple`` (32) →
    ``(logits, feats)``: N×num_classes×H/4×W/4 logits and the backbone's stride-4 features
    N×``feature_channels``×H/4×W/4 (what the similarity head compares between frames).
    """

    kind = "segmenter"

    def __init__(self, backbone_name: str, num_classes: int, decoder_channels: int,
                 mean: tuple[float, float, float], std: tuple[float, float, float],
                 backbone_checkpoint: str | Path | None = None, backbone_pretrained: bool = False) -> None:
        super().__init__()
        if num_classes < 1:
            raise SspError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone_name = backbone_name
        self.num_classes = num_classes
        self.decoder_channels = decoder_channels
        self.backbone = Backbone(backbone_name, backbone_checkpoint, backbone_pretrained)
        self.head = UPerHead(self.backbone.channels, decoder_channels, num_classes)
        # (x/255 − mean)/std folded into one affine map of the raw pixels; saved with the weights
        self.register_buffer("pixel_mean", 255.0 * torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", 255.0 * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    @property
    def input_multiple(self) -> int:
        """H and W must be multiples of this (the coarsest backbone stride)."""
        return self.backbone.reductions[-1]

    @property
    def output_stride(self) -> int:
        """Logits and features come out at 1/output_stride of the input size."""
        return self.backbone.reductions[0]

    @property
    def feature_channels(self) -> int:
        """C of the stride-4 features returned next to the logits (96 for sam2_hiera_small)."""
        return self.backbone.channels[0]

    def describe(self) -> dict:
        """What a weights file must match to load into this model (see ``weights.py``)."""
        return {"kind": self.kind, "backbone": self.backbone_name, "num_classes": self.num_classes,
                "decoder_channels": self.decoder_channels}

    def check_input_shape(self, x: torch.Tensor) -> None:
        """Raise ``SspError`` unless ``x`` is N×3×H×W with H, W multiples of 32; the message suggests a size."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise SspError(f"expected an N×3×H×W RGB batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.input_multiple
        if h % m or w % m:
            new_h, new_w = (h // m + 1) * m if h % m else h, (w // m + 1) * m if w % m else w
            raise SspError(f"wrong input shape height={h}, width={w}: height and width must be divisible by {m}; "
                           f"pad (or letterbox) the image to height={new_h}, width={new_w}")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not _is_tracing():
            self.check_input_shape(x)
        features = self.backbone((x - self.pixel_mean) / self.pixel_std)
        return self.head(features), features[0]

    @torch.inference_mode()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class ids N×H×W (int64) at input resolution: eval mode, logits upsampled bilinearly, argmax."""
        if self.training:
            self.eval()
        logits, _ = self(x)
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False).argmax(dim=1)

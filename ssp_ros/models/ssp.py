"""SSP: the image model plus the similarity head, and the per-frame fusion step.

Everything here runs at stride 4. The caller (``propagation.py``, training) warps the previous fused logits
and features with the frame-to-frame homography and supplies the validity mask; this module holds no state
between frames.
"""

from __future__ import annotations

import torch
from torch import nn

from ssp_ros.errors import SspError
from ssp_ros.models.fusion import fuse
from ssp_ros.models.segmenter import Segmenter
from ssp_ros.models.similarity_head import similarity_description
from ssp_ros.models.warp import warp


class FusionStep(nn.Module):
    """The fusion graph alone (exported next to the segmenter graph): similarity, then the blend.

    ``forward(cur_logits, cur_feats, warped_prev_logits, warped_prev_feats, valid)`` with N×K×h×w logits,
    N×C×h×w features and an N×1×h×w validity mask → ``(fused_logits N×K×h×w, s N×1×h×w)``.
    """

    def __init__(self, similarity_head: nn.Module) -> None:
        super().__init__()
        self.similarity_head = similarity_head

    def forward(self, cur_logits: torch.Tensor, cur_feats: torch.Tensor, warped_prev_logits: torch.Tensor,
                warped_prev_feats: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.similarity_head(warped_prev_feats, cur_feats, warped_prev_logits, cur_logits, valid)
        return fuse(warped_prev_logits, cur_logits, s, valid), s


class WarpFusionStep(FusionStep):
    """The fusion step with the warp inside, so previous-frame state never leaves the device.

    ``forward(cur_logits, cur_feats, prev_logits, prev_feats, to_previous)``: the previous *fused* logits
    N×K×h×w and stride-4 features N×C×h×w as they were in the previous frame, and the N×3×3 homography
    from current stride-4 cells to previous cells → ``(fused_logits, s, valid)``.
    """

    def forward(self, cur_logits: torch.Tensor, cur_feats: torch.Tensor, prev_logits: torch.Tensor,
                prev_feats: torch.Tensor, to_previous: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        warped_logits, valid = warp(prev_logits, to_previous)
        warped_feats, _ = warp(prev_feats, to_previous)
        fused, s = super().forward(cur_logits, cur_feats, warped_logits, warped_feats, valid)
        return fused, s, valid


class SSP(nn.Module):
    """Semantic Similarity Propagation for one frame.

    ``forward(cur_frame, warped_prev_logits, warped_prev_feats, valid)``: N×3×H×W raw RGB (0..255); the
    previous fused logits N×K×H/4×W/4 and stride-4 features N×C×H/4×W/4 warped into the current frame; the
    N×1×H/4×W/4 validity mask (1 = came from inside the previous frame) →
    ``(fused_logits, s, cur_logits, cur_feats)``, all at stride 4. ``fused_logits`` and ``cur_feats`` become
    the next frame's "previous" state.
    """

    kind = "ssp"

    def __init__(self, segmenter: Segmenter, similarity_head: nn.Module) -> None:
        super().__init__()
        if similarity_head.channels != segmenter.feature_channels:
            raise SspError(f"similarity head built for {similarity_head.channels} channels, the backbone's "
                             f"stride-4 features have {segmenter.feature_channels}")
        self.segmenter = segmenter
        self.similarity_head = similarity_head

    def describe(self) -> dict:
        """What a weights file must match to load into this model (see ``weights.py``)."""
        return {**self.segmenter.describe(), "kind": self.kind, **similarity_description(self.similarity_head)}

    def fusion_step(self) -> FusionStep:
        """The fusion graph sharing this model's similarity head (for export and split runtimes)."""
        return FusionStep(self.similarity_head)

    def warp_fusion_step(self) -> WarpFusionStep:
        """The fusion step that also warps the previous state (what the streaming runtime runs)."""
        return WarpFusionStep(self.similarity_head)

    def forward(self, cur_frame: torch.Tensor, warped_prev_logits: torch.Tensor, warped_prev_feats: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        cur_logits, cur_feats = self.segmenter(cur_frame)
        fused, s = self.fusion_step()(cur_logits, cur_feats, warped_prev_logits, warped_prev_feats, valid)
        return fused, s, cur_logits, cur_feats

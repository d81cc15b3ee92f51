"""Dense optical flow in torch for the training losses: backward warping and the forward-backward occlusion mask.

Pure tensor functions, as RAFT's ``bilinear_sampler``. Convention (the same as ``ssp_ros.eval.flow``): a flow map
N×2×H×W holds (dx, dy) in pixels taking each pixel p of its own frame to ``p + flow[p]`` in the other frame;
pixel centres sit at integer coordinates. ``flow_warp(values_other, flow)`` pulls the other frame's values
back to this frame: ``out[p] = values_other[p + flow[p]]`` (bilinear).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

OCCLUSION_ALPHA = 0.01  # the KD-SSP occlusion test: |f + b|² > α (|f|² + |b|²) + β (docs/design.md §1)
OCCLUSION_BETA = 0.5


def flow_warp(values: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``values`` (N×C×H×W, the other frame) at ``p + flow[p]`` for every pixel p of this frame.

    flow: N×2×H×W (dx, dy) in pixels. Returns the warped N×C×H×W map and an N×1×H×W float mask, 1 where the
    sample position lies inside the other frame (between its outer pixel centres, so bilinear sampling never
    reads padding), 0 elsewhere; warped values there are partial or zero and must be masked.
    """
    n, _, h, w = flow.shape
    if values.shape[0] != n or values.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"values {tuple(values.shape)} and flow {tuple(flow.shape)} differ in batch or size")
    ys = torch.arange(h, dtype=flow.dtype, device=flow.device).view(1, h, 1)
    xs = torch.arange(w, dtype=flow.dtype, device=flow.device).view(1, 1, w)
    x = xs + flow[:, 0]
    y = ys + flow[:, 1]
    # align_corners=True: −1 and 1 are the centres of the first and last pixels
    grid = torch.stack([2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0], dim=-1)
    warped = F.grid_sample(values, grid.to(values.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
    return warped, inside.unsqueeze(1).to(values.dtype)


def occlusion_mask(flow: torch.Tensor, other_flow: torch.Tensor) -> torch.Tensor:
    """The KD-SSP occlusion mask M of this frame: 1 where ``flow`` is not undone by ``other_flow``, else 0.

    ``M = |f + b̂|² > 0.01 (|f|² + |b̂|²) + 0.5`` with ``f = flow`` (this frame → the other, N×2×H×W) and
    ``b̂ = other_flow`` (the other frame → this one) sampled at ``p + f(p)``. Pixels whose flow leaves the
    frame are occluded too (M = 1). Returns N×1×H×W float in {0, 1}.
    """
    back, inside = flow_warp(other_flow, flow)
    error = ((flow + back) ** 2).sum(dim=1, keepdim=True)
    bound = OCCLUSION_ALPHA * ((flow**2).sum(dim=1, keepdim=True) + (back**2).sum(dim=1, keepdim=True)) + OCCLUSION_BETA
    return ((error > bound) | (inside == 0)).to(flow.dtype)

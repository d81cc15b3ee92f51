"""Warping feature maps by a homography in torch (GridSample), as pure functions.

Coordinates are cell coordinates of the map being warped, cell centres at integers, and the sampling
uses ``align_corners=False`` (cell i spans [i − 0.5, i + 0.5)), matching
``ssp_ros.geometry.scale_homography``. GridSample is in ONNX opset 16 and TensorRT, so the same
functions serve the exported fusion graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def homography_grid(to_previous: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sampling grid for ``F.grid_sample``: where each output cell of the current frame comes from.

    to_previous: N×3×3 homography from current cells to previous cells (the inverse of the registration's
    previous → current map; passing the inverse keeps matrix inversion, which ONNX lacks, out of the graph).
    Returns N×height×width×2 normalised (x, y) source positions (−1 and 1 are the map's outer cell edges).
    """
    dtype, device = to_previous.dtype, to_previous.device
    ys = torch.arange(height, dtype=dtype, device=device).view(height, 1).expand(height, width)
    xs = torch.arange(width, dtype=dtype, device=device).view(1, width).expand(height, width)
    points = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).reshape(1, -1, 3)  # 1×HW×3
    source = points @ to_previous.transpose(1, 2)  # N×HW×3
    xy = source[..., :2] / source[..., 2:3]
    scale = torch.tensor([2.0 / width, 2.0 / height], dtype=dtype, device=device)
    return ((xy + 0.5) * scale - 1.0).reshape(-1, height, width, 2)


def warp(prev: torch.Tensor, to_previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp the previous frame's N×C×h×w map into the current frame (``to_previous``: N×3×3, see above).

    Returns the bilinearly warped map and an N×1×h×w float validity mask: 1 where the source position lies
    between the previous map's outer cell centres (so bilinear sampling never reads the zero padding),
    0 where it came from outside the previous frame. Invalid cells hold zeros or partial values.
    """
    h, w = (int(v) for v in prev.shape[-2:])  # static in exported graphs: the cell grid becomes a constant
    grid = homography_grid(to_previous.to(prev.dtype), h, w)
    warped = F.grid_sample(prev, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    # outer cell centres, plus 1/1000 of a cell so that float rounding keeps the border cells of an identity
    limit = torch.tensor([1.0 - 0.999 / w, 1.0 - 0.999 / h], dtype=prev.dtype, device=prev.device)
    inside = (grid.abs() <= limit).all(dim=-1, keepdim=True).permute(0, 3, 1, 2)
    return warped, inside.to(prev.dtype)

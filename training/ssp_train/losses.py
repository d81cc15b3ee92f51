"""Training losses of the paper (docs/design.md §1): cross-entropy, the temporal-consistency loss, and KD-SSP's
distillation from a teacher with occlusion-aware fused targets; and the dense optical flow in torch they warp with.

Flow: pure tensor functions, as RAFT's ``bilinear_sampler``. Convention (the same as ``ssp_ros.eval.flow``): a flow
map N×2×H×W holds (dx, dy) in pixels taking each pixel p of its own frame to ``p + flow[p]`` in the other frame;
pixel centres sit at integer coordinates. ``flow_warp(values_other, flow)`` pulls the other frame's values back to
this frame: ``out[p] = values_other[p + flow[p]]`` (bilinear); ``occlusion_mask`` is the forward-backward test.

Losses:

- ``segmentation_loss``: cross-entropy with ignore label 255; ``weighted_segmentation_loss`` the same with a weight
  per pixel, e.g. more on ``motion_unexplained`` pixels (what the camera's motion does not explain: moving cars).
- ``temporal_consistency_loss``: ``L_tc = 1/HW Σ O·‖P_k − warp(P_{k−1})‖²`` with the soft occlusion weight
  ``O = exp(−‖I_k − warp(I_{k−1})‖₁)`` (``occlusion_weight``).
- ``fused_teacher_targets``: ``T^c_{k−1} = (T_{k−1} + (1−M_{k−1})·warp(T_k)) / (2 − M_{k−1})`` and the symmetric
  ``T^c_k``, with M the forward-backward occlusion mask (``occlusion_mask``).
- ``distillation_loss``: KL divergence to softened targets at temperature T (paper: 2), scaled by T².
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ssp_ros.geometry import resize_homography
from ssp_ros.models.warp import homography_grid

OCCLUSION_ALPHA = 0.01  # the KD-SSP occlusion test: |f + b|² > α (|f|² + |b|²) + β (docs/design.md §1)
OCCLUSION_BETA = 0.5
KD_TEMPERATURE = 2.0  # the reference's softmax temperature for teacher targets


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


def _to_size(logits: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling (``align_corners=False``, as at inference) of N×K×h×w logits to ``size``."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = 255) -> torch.Tensor:
    """Cross-entropy of N×K×h×w logits (any stride) against N×H×W class ids, ignoring ``ignore_index``.

    The logits are upsampled bilinearly (``align_corners=False``) to the label size first, as at inference.
    A batch with no labelled pixel gives a zero loss (still connected to the graph) instead of NaN.
    """
    logits = _to_size(logits, labels.shape[-2:])
    labels = labels.long()
    if not (labels != ignore_index).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=ignore_index)


def weighted_segmentation_loss(logits: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor,
                               ignore_index: int = 255) -> torch.Tensor:
    """``segmentation_loss`` as a weighted mean: each labelled pixel's cross-entropy counts ``weight`` (N×H×W,
    > 0) times. With equal weights it is ``segmentation_loss``."""
    logits = _to_size(logits, labels.shape[-2:])
    labels = labels.long()
    labelled = labels != ignore_index
    if not labelled.any():
        return logits.sum() * 0.0
    per_pixel = F.cross_entropy(logits, labels.masked_fill(~labelled, 0), reduction="none")
    weight = weight * labelled
    return (per_pixel * weight).sum() / weight.sum()


def motion_unexplained(labels: torch.Tensor, prev_labels: torch.Tensor, to_previous: torch.Tensor, stride: int,
                       ignore_index: int = 255) -> torch.Tensor:
    """N×H×W bool: pixels whose class the camera's motion does not explain.

    The previous frame's labels (N×H×W) are pulled into this frame through ``to_previous`` (N×3×3, between the
    cells of a stride-``stride`` map, as ``ssp_ros.models.warp``; scaled here to pixels) by nearest sampling; a
    pixel is marked where they differ from this frame's, both are labelled and the source lies inside the
    previous frame. That is where a moving car is now and where it was (the trail a ground-plane warp of the
    previous state leaves), plus walls seen with parallax: the pixels where fusion has to take the current frame.
    The marks are then opened with a 3×3 square (eroded, then dilated): class edges that nearest sampling shifts
    by a pixel would otherwise mark every boundary (on the default scenario about 0.5 % of all pixels, ten times
    the moving cars' share), so only marks at least 3 px across remain (people, 1 to 3 px, drop out too).
    """
    height, width = labels.shape[-2:]
    to_cells = torch.as_tensor(resize_homography(1.0 / stride, 1.0 / stride), device=to_previous.device)
    pixel_h = torch.linalg.inv(to_cells) @ to_previous.double() @ to_cells  # geometry.scale_homography, undone
    grid = homography_grid(pixel_h.float(), height, width)
    warped = F.grid_sample(prev_labels[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                           align_corners=False)[:, 0]
    inside = (grid.abs() <= 1.0).all(dim=-1)
    labelled = (labels != ignore_index) & (warped != ignore_index)
    marked = (inside & labelled & (warped != labels.float()))[:, None].float()
    eroded = -F.max_pool2d(-marked, 3, stride=1, padding=1)
    return F.max_pool2d(eroded, 3, stride=1, padding=1)[:, 0] > 0.5


def occlusion_weight(image: torch.Tensor, warped_prev_image: torch.Tensor) -> torch.Tensor:
    """The paper's soft occlusion weight ``O = exp(−‖I_k − Î_{k−1}‖₁)`` per pixel.

    N×3×h×w images in 0..1 (the previous one warped into frame k) → N×1×h×w in (0, 1]: close to 1 where the
    warp explains the pixel, small where something moved or appeared.
    """
    return torch.exp(-(image - warped_prev_image).abs().sum(dim=1, keepdim=True))


def temporal_consistency_loss(probs: torch.Tensor, warped_prev_probs: torch.Tensor, weight: torch.Tensor,
                              valid: torch.Tensor) -> torch.Tensor:
    """``L_tc = 1/HW Σ O·‖P_k − P̂_{k−1}‖²``, averaged over the batch; cells warped from outside the previous
    frame (``valid`` 0) contribute nothing.

    probs, warped_prev_probs: N×K×h×w softmax maps; weight: N×1×h×w occlusion weight O; valid: N×1×h×w {0, 1}.
    """
    squared = ((probs - warped_prev_probs) ** 2).sum(dim=1, keepdim=True)
    return (weight * valid * squared).mean()


def teacher_probabilities(logits: torch.Tensor, temperature: float = KD_TEMPERATURE) -> torch.Tensor:
    """Softened teacher targets ``softmax(logits / T)`` over the class dimension (N×K×H×W)."""
    return (logits / temperature).softmax(dim=1)


def fused_teacher_targets(prev_targets: torch.Tensor, cur_targets: torch.Tensor, flow_forward: torch.Tensor,
                          flow_backward: torch.Tensor, valid_forward: torch.Tensor | None = None,
                          valid_backward: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """KD-SSP's occlusion-aware targets ``(T^c_{k−1}, T^c_k)`` from the teacher's targets on both frames.

    prev_targets / cur_targets: N×K×H×W teacher probabilities of frames k−1 and k; flow_forward: N×2×H×W flow
    k−1 → k; flow_backward: N×2×H×W flow k → k−1. Where a pixel is visible in both frames (M = 0) its target
    is the mean of its own and the other frame's warped target; where it is occluded or leaves the frame
    (M = 1) it keeps its own: ``T^c_{k−1} = (T_{k−1} + (1 − M_{k−1})·warp(T_k)) / (2 − M_{k−1})``, and the
    same with k and k−1 swapped. ``valid_forward`` / ``valid_backward`` (N×1×H×W, optional): where a flow is
    known to be invalid (a synthetic mover's backward flow, a failed estimate) its pixels count as occluded.
    """
    mask_prev = occlusion_mask(flow_forward, flow_backward)
    mask_cur = occlusion_mask(flow_backward, flow_forward)
    if valid_forward is not None:
        mask_prev = torch.maximum(mask_prev, 1.0 - valid_forward.to(mask_prev.dtype))
    if valid_backward is not None:
        mask_cur = torch.maximum(mask_cur, 1.0 - valid_backward.to(mask_cur.dtype))
    cur_in_prev, _ = flow_warp(cur_targets, flow_forward)
    prev_in_cur, _ = flow_warp(prev_targets, flow_backward)
    fused_prev = (prev_targets + (1.0 - mask_prev) * cur_in_prev) / (2.0 - mask_prev)
    fused_cur = (cur_targets + (1.0 - mask_cur) * prev_in_cur) / (2.0 - mask_cur)
    return fused_prev, fused_cur


def distillation_loss(student_logits: torch.Tensor, targets: torch.Tensor,
                      temperature: float = KD_TEMPERATURE) -> torch.Tensor:
    """``T² · KL(targets ‖ softmax(student / T))`` per pixel (summed over classes), averaged over pixels.

    student_logits: N×K×h×w (any stride; upsampled bilinearly to the targets' size); targets: N×K×H×W
    probabilities (e.g. ``fused_teacher_targets``). The T² factor keeps gradient sizes independent of T
    (Hinton et al., 2015). Zero where the student's softened distribution equals the target.
    """
    log_student = F.log_softmax(_to_size(student_logits, targets.shape[-2:]) / temperature, dim=1)
    kl = F.kl_div(log_student, targets, reduction="none").sum(dim=1)
    return kl.mean() * temperature**2

"""The SSP blend, backend-neutral: the same function serves torch (model, training) and numpy (runtime).

Written only with ``*``, ``+`` and ``-`` so it needs no library and exports as plain Mul/Add/Sub.
"""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T")  # numpy.ndarray or torch.Tensor


def fuse(prev: T, cur: T, s: T, valid: T) -> T:
    """``out = s·prev + (1 − s)·cur`` where ``valid``, ``out = cur`` elsewhere.

    Shapes (broadcast): ``prev``, ``cur`` N×K×h×w logits (the previous fused logits warped into the current
    frame, and the current image model's logits); ``s`` N×1×h×w similarity in [0, 1]; ``valid`` N×1×h×w, 1
    where the warped pixel came from inside the previous frame, 0 elsewhere (bool or float). ``prev`` must be
    finite on invalid pixels too (the warp fills them with zeros): ``0·nan`` is ``nan``.
    """
    w = valid * s  # the weight of the previous prediction; exactly 0 on invalid pixels
    return w * prev + (1 - w) * cur  # this form (not cur + w·(prev − cur)) is exact at w = 0 and w = 1

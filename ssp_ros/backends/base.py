"""The small interface every inference runtime implements (torch, ONNX Runtime, TensorRT).

Arrays that stay between frames (logits, features) are the backend's own type (a torch tensor, a device
buffer) and are only handed back to it; what leaves a backend for the host is numpy. ``segment`` and ``fuse``
may return before a GPU has done their work (TensorRT, torch on CUDA queue it); ``synchronize`` waits for it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    """Runs the segmenter and the warp + similarity fusion step at stride 4."""

    name: str
    input_size: tuple[int, int]  # (H, W) the model takes
    num_classes: int

    def segment(self, image: np.ndarray) -> tuple[Any, Any]:
        """Model-input RGB uint8 h×w×3 → (logits 1×K×h/4×w/4, features 1×C×h/4×w/4), kept on the device."""

    def fuse(self, cur_logits: Any, cur_feats: Any, prev_logits: Any, prev_feats: Any,
             to_previous: np.ndarray) -> tuple[Any, Any]:
        """Warp the previous state by ``to_previous`` (3×3, current → previous stride-4 cells) and blend:
        → (fused logits, similarity 1×1×h/4×w/4)."""

    def labels(self, logits: Any) -> tuple[np.ndarray, np.ndarray]:
        """Stride-4 logits → (class ids h×w uint8, confidence = max softmax × 255, h×w uint8) at input size."""

    def similarity(self, s: Any) -> np.ndarray:
        """Stride-4 similarity → h×w uint8 (s × 255) at input size."""

    def synchronize(self) -> None:
        """Wait until the work queued by ``segment``/``fuse`` is done (a no-op where they return when done)."""

    def close(self) -> None:
        """Free what the backend holds (GPU memory, a CUDA context); idempotent; unusable afterwards."""

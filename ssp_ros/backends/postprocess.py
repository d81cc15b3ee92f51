"""Stride-4 model outputs → input-size images on the host, with numpy and OpenCV (no torch).

The exported runtimes (ONNX Runtime, TensorRT) hand their logits and similarity to these functions;
``cv2.resize`` with ``INTER_LINEAR`` samples at half-pixel centres like torch's
``interpolate(mode="bilinear", align_corners=False)``, so masks match the torch backend.
"""

from __future__ import annotations

import cv2
import numpy as np


def upsample_planes(maps: np.ndarray, size: tuple[int, int]) -> list[np.ndarray]:
    """1×K×h×w (or K×h×w) float maps → K float32 planes of H×W, bilinear (half-pixel centres).

    One plane at a time: resizing contiguous planes and reducing over them is about 3× faster than
    resizing an interleaved H×W×K image and reducing over its last axis.
    """
    planes = np.asarray(maps, dtype=np.float32).reshape(-1, *maps.shape[-2:])
    return [cv2.resize(p, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for p in planes]


def labels_from_logits(logits: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """1×K×h×w logits → (class ids H×W uint8, confidence H×W uint8 = max softmax probability × 255).

    Ties go to the lower class id, as with ``argmax``.
    """
    planes = upsample_planes(logits, size)
    best = planes[0].copy()
    ids = np.zeros(size, dtype=np.uint8)
    for k, plane in enumerate(planes[1:], start=1):
        ids[plane > best] = k
        np.maximum(best, plane, out=best)
    # max softmax = 1 / Σ exp(l − l_max)
    total = np.zeros(size, dtype=np.float32)
    for plane in planes:
        total += np.exp(plane - best)
    return ids, (255.0 / total + 0.5).astype(np.uint8)


def similarity_image(s: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """1×1×h×w similarity in [0, 1] → H×W uint8 (s × 255)."""
    up = upsample_planes(s, size)[0]
    return (np.clip(up, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

"""Another segmenter's mask messages → numpy, without ROS: class ids (mono8/mono16) or soft scores (32FC<K>).

Read by duck typing like ``images`` (the same field checks); every problem raises ``MessageError`` with a short
``reason`` for the node's counters and a message naming the encoding.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ssp_ros.ros.images import UNSUPPORTED_ENCODING, Encoding, MessageError, image_pixels

LABEL_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1")  # one channel of class ids, 8 or 16 bits
SCORES = re.compile(r"32FC(\d+)")  # one float32 channel per class
WRONG_CLASS_COUNT = "wrong number of classes"
LABELS, PROBABILITIES, LOGITS = "labels", "probabilities", "logits"  # node.mask_input


def mask_labels(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """A label image (mono8/8UC1 → uint8, mono16/16UC1 → uint16) as H×W class ids."""
    encoding = str(msg.encoding)
    if encoding not in LABEL_ENCODINGS:
        raise MessageError(UNSUPPORTED_ENCODING, f"mask encoding '{encoding}': class ids come as "
                                                 f"{' or '.join(LABEL_ENCODINGS)} (node.mask_input: labels)")
    return image_pixels(msg, max_pixels)


def mask_scores(msg: Any, num_classes: int, max_pixels: int | None = None) -> np.ndarray:
    """A 32FC<K> image of per-class scores (probabilities or logits) as a K×h×w float32 array."""
    encoding = str(msg.encoding)
    match = SCORES.fullmatch(encoding)
    if match is None:
        raise MessageError(UNSUPPORTED_ENCODING, f"mask encoding '{encoding}': scores come as 32FC<K>, one float "
                                                 f"channel per class (node.mask_input: probabilities or logits)")
    channels = int(match.group(1))
    if channels != num_classes:
        raise MessageError(WRONG_CLASS_COUNT, f"mask encoding '{encoding}': {channels} channels for "
                                              f"{num_classes} classes")
    pixels = image_pixels(msg, max_pixels, Encoding(channels, 4, None))
    return np.ascontiguousarray(pixels.reshape(*pixels.shape[:2], channels).transpose(2, 0, 1))

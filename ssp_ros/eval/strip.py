"""``strip.png``: a look at a clip without a video player. A few frames, each as a row of frame | ground truth
(when the clip has labels) | one overlay per model, under a colour key naming each class's colour.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ssp_ros.classes import ClassSet, overlay
from ssp_ros.io import write_png

ROWS = 4  # frames shown, evenly spaced over the clip
PANEL_WIDTH = 480  # px per panel
FONT, FONT_SCALE, TITLE_SCALE = cv2.FONT_HERSHEY_SIMPLEX, 0.6, 0.7  # the key's text; panel titles
KEY_LINE = 32  # px per line of the key
KEY_SWATCH = 20  # px, side of a class's colour square
KEY_BACKGROUND = (64, 64, 64)  # grey, so that black and white class colours both show
WHITE = (255, 255, 255)


def titled(frame: np.ndarray, titles: tuple[str, ...]) -> np.ndarray:
    """Write ``titles`` (white on a black outline) at the top left of equal-width panels of ``frame``, in place."""
    w = frame.shape[1] // len(titles)
    for k, title in enumerate(titles):
        for colour, thickness in (((0, 0, 0), 4), (WHITE, 1)):
            cv2.putText(frame, title, (k * w + 10, 24), FONT, TITLE_SCALE, colour, thickness, cv2.LINE_AA)
    return frame


def colour_key(classes: ClassSet, width: int) -> np.ndarray:
    """A (lines·KEY_LINE, width, 3) RGB band: each class's overlay colour as a square, followed by its name,
    left to right, wrapping onto another line where the next entry would not fit."""
    entries = ["classes (tinted 50 % over the frame):", *classes.names]
    places, x, line = [], 10, 0
    for k, text in enumerate(entries):
        swatch = KEY_SWATCH + 6 if k > 0 else 0
        size = swatch + cv2.getTextSize(text, FONT, FONT_SCALE, 1)[0][0] + 24
        if x > 10 and x + size > width:
            x, line = 10, line + 1
        places.append((x, line))
        x += size
    band = np.full(((line + 1) * KEY_LINE, width, 3), KEY_BACKGROUND, np.uint8)
    for k, (text, (x, line)) in enumerate(zip(entries, places)):
        top = line * KEY_LINE + (KEY_LINE - KEY_SWATCH) // 2
        if k > 0:
            cv2.rectangle(band, (x - 1, top - 1), (x + KEY_SWATCH, top + KEY_SWATCH), WHITE, 1)
            band[top:top + KEY_SWATCH, x:x + KEY_SWATCH] = classes.colors[k - 1]
            x += KEY_SWATCH + 6
        cv2.putText(band, text, (x, top + KEY_SWATCH - 4), FONT, FONT_SCALE, WHITE, 1, cv2.LINE_AA)
    return band


def write_strip(path: Path, images: list[np.ndarray], labels: list[np.ndarray] | None,
                masks: dict[str, list[np.ndarray]], classes: ClassSet) -> None:
    """Write ``ROWS`` rows (evenly spaced over the clip) of frame | ground truth (when ``labels`` is given; its
    ignored pixels untinted) | one overlay per entry of ``masks`` (title → a mask per frame), under the key."""
    picks = np.linspace(0, len(images) - 1, min(ROWS, len(images))).round().astype(int)
    rows = []
    for i in picks:
        image = images[i]
        shown = {**({"ground truth": labels[i]} if labels is not None else {}),
                 **{title: per_frame[i] for title, per_frame in masks.items()}}
        panels = [image, *(overlay(image, mask, classes) for mask in shown.values())]
        h, w = image.shape[:2]
        size = (PANEL_WIDTH, max(1, round(h * PANEL_WIDTH / w)))
        row = np.concatenate([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in panels], axis=1)
        rows.append(titled(row, (f"frame {i}", *shown)))
    strip = np.concatenate(rows, axis=0)
    write_png(path, np.concatenate([colour_key(classes, strip.shape[1]), strip], axis=0))

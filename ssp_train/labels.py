"""Label files of the real data sets → H×W uint8 class ids, strictly: an unknown colour or id is an error naming
the file and the value, never a silent ignore.

Encodings:

- ``color``: RGB label PNGs coloured with the class list's colours (official UAVid, RuralScapes).
- ``ids``: single-channel PNGs holding class ids 0..N−1 directly, ``ignore_index`` for unlabelled pixels.
- ``ids_from_1``: single-channel PNGs with 0 = unlabelled (→ ``ignore_index``) and k = class k − 1: the SSP
  paper's UAVid relabelled with VDD-style classes (config/datasets/uavid_vdd.yaml; clutter is 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from ssp_ros.classes import ClassSet
from ssp_ros.errors import SspError

LabelEncoding = Literal["color", "ids", "ids_from_1"]


def read_image(path: Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB; an unreadable file is an error naming it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SspError(f"{path}: cannot read image (missing, unreadable or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_raw(path: Path) -> np.ndarray:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise SspError(f"{path}: cannot read label image (missing, unreadable or not an image)")
    if raw.dtype != np.uint8:
        raise SspError(f"{path}: expected an 8-bit label image, got {raw.dtype}")
    return raw


class LabelDecoder:
    """Decodes label files of one encoding for one class list (``decoder(path)`` → H×W uint8 ids)."""

    def __init__(self, classes: ClassSet, encoding: LabelEncoding) -> None:
        self.classes, self.encoding = classes, encoding
        ignore, n = classes.ignore_index, classes.num_classes
        if encoding == "color":
            keys = [(r << 16) | (g << 8) | b for r, g, b in classes.colors]
            self._colour_keys = np.array(keys, np.uint32)
            self._colour_ids = np.arange(n, dtype=np.uint8)
            order = np.argsort(self._colour_keys)
            self._colour_keys, self._colour_ids = self._colour_keys[order], self._colour_ids[order]
        else:
            lut = np.full(256, -1, np.int16)  # -1: not a valid value of this encoding
            if encoding == "ids":
                lut[:n] = np.arange(n)
                lut[ignore] = ignore
            else:
                lut[0] = ignore
                lut[1 : n + 1] = np.arange(n)
            self._id_lut = lut

    def __call__(self, path: Path) -> np.ndarray:
        raw = _read_raw(path)
        if self.encoding == "color":
            return self._decode_colours(raw, path)
        if raw.ndim == 3:
            if not (np.array_equal(raw[..., 0], raw[..., 1]) and np.array_equal(raw[..., 0], raw[..., 2])):
                raise SspError(f"{path}: expected a single-channel class-id image ({self.encoding}) for "
                               f"'{self.classes.name}', got a colour image")
            raw = raw[..., 0]
        ids = self._id_lut[raw]
        bad = ids < 0
        if bad.any():
            values = sorted(int(v) for v in np.unique(raw[bad]))
            raise SspError(f"{path}: label value(s) {values[:10]} are not ids of '{self.classes.name}' "
                           f"({self._valid_values()}): wrong class list or encoding?")
        return ids.astype(np.uint8)

    def _valid_values(self) -> str:
        n, ignore = self.classes.num_classes, self.classes.ignore_index
        if self.encoding == "ids":
            return f"0..{n - 1} and {ignore} for unlabelled"
        return f"0 for unlabelled and 1..{n}"

    def _decode_colours(self, raw: np.ndarray, path: Path) -> np.ndarray:
        if raw.ndim != 3 or raw.shape[2] not in (3, 4):
            raise SspError(f"{path}: expected an RGB colour label image for '{self.classes.name}', got shape "
                           f"{raw.shape}")
        rgb = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB if raw.shape[2] == 4 else cv2.COLOR_BGR2RGB).astype(np.uint32)
        keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        where = np.clip(np.searchsorted(self._colour_keys, keys), 0, len(self._colour_keys) - 1)
        known = self._colour_keys[where] == keys
        if not known.all():
            rows, cols = np.nonzero(~known)
            colour = tuple(int(c) for c in rgb[rows[0], cols[0]])
            raise SspError(f"{path}: colour {list(colour)} at pixel (x={cols[0]}, y={rows[0]}) "
                           f"({len(rows)} pixels of unknown colours) is not a class colour of "
                           f"'{self.classes.name}': wrong class list?")
        return self._colour_ids[where]

"""Fit camera frames of any size into the model's fixed input, and map results back.

The frame is scaled by one factor to fit inside the model input, placed at the top-left corner and
padded with grey. Masks come back by cropping the valid region and resizing to the camera size, so the
output always has the input frame's size. Pixel coordinates follow ``cv2.resize``'s pixel-centre
convention, which ``geometry.resize_homography`` also uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ssp_ros.geometry import resize_homography

PAD_VALUE = 114  # mid grey, as far from every class colour as a constant can be


@dataclass(frozen=True)
class Letterbox:
    """The fit of a (height, width) camera frame into a (height, width) model input."""

    frame_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def scale(self) -> float:
        return min(self.input_size[0] / self.frame_size[0], self.input_size[1] / self.frame_size[1])

    @property
    def content_size(self) -> tuple[int, int]:
        """(height, width) of the scaled frame inside the model input."""
        h, w = self.frame_size
        return (min(max(int(round(h * self.scale)), 1), self.input_size[0]),
                min(max(int(round(w * self.scale)), 1), self.input_size[1]))

    def frame_to_input(self) -> np.ndarray:
        """3×3 map from camera pixel coordinates to model-input pixel coordinates."""
        ch, cw = self.content_size
        return resize_homography(cw / self.frame_size[1], ch / self.frame_size[0])

    def homography_to_input(self, homography: np.ndarray) -> np.ndarray:
        """A camera-pixel homography (previous → current frame) in model-input pixels."""
        to_input = self.frame_to_input()
        out = to_input @ homography @ np.linalg.inv(to_input)
        return out / out[2, 2]

    def apply(self, frame: np.ndarray, nearest: bool = False, pad: int = PAD_VALUE) -> np.ndarray:
        """Camera frame (H×W×3 uint8) → model input (h×w×3 uint8); with ``nearest``, a camera-sized map of class
        ids (H×W) → model-input size, the padding filled with ``pad``."""
        ch, cw = self.content_size
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        resized = frame if (ch, cw) == frame.shape[:2] else cv2.resize(frame, (cw, ch), interpolation=interpolation)
        if (ch, cw) == self.input_size:
            return resized
        out = np.full((*self.input_size, *frame.shape[2:]), pad, frame.dtype)
        out[:ch, :cw] = resized
        return out

    def restore(self, image: np.ndarray, nearest: bool) -> np.ndarray:
        """A model-input-sized map (h×w or h×w×C) → camera size; ``nearest`` for class ids."""
        ch, cw = self.content_size
        crop = image[:ch, :cw]
        if (ch, cw) == self.frame_size:
            return np.ascontiguousarray(crop)
        interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        return cv2.resize(crop, (self.frame_size[1], self.frame_size[0]), interpolation=interpolation)

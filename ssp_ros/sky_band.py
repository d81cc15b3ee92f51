"""The sky band of an oblique frame, found from its colours, so that registration keeps its keypoints on the ground.

Registration fits one homography to the ground. The sky is at infinity: it moves with the camera's rotation
alone, and so do far skyline objects, so their keypoints (cloud edges, the skyline, the sun's glare) are
outliers of the ground homography at best, and where the ground is bare they can outvote it. A segmenter
cannot say where the sky is here (UAVid labels it clutter, as it does bare soil), so the band is found
from the image:

* the frame is cut into SKY_STRIPS vertical strips, and each strip's rows averaged (one ``cv2.resize`` with
  area averaging); in each strip the sky is the run of rows from the top edge that are brighter than the
  strip's lower half, the ground (SKY_MIN_CONTRAST), and bluer (blue − red above SKY_MIN_BLUE): daylight
  sky and haze are both, grass, soil, roofs and asphalt are not. Texture is no criterion: clouds have it;
* a horizon crosses the frame, so a band counts only if most strips have one (SKY_MIN_STRIPS); a bright
  roof at the top of a nadir frame does not. The band's lower edge is the straight line (the horizon,
  tilted by roll) fitted to those strips;
* the band never reaches below SKY_MAX_DEPTH of the frame (the optical axis sees the ground), and it is
  widened by SKY_MARGIN of the frame. Far ground deep in haze counts as sky too: it carries little detail
  and, seen from a moving drone, the most parallax against the flat-ground homography.

A sky that is neither brighter nor bluer than the ground (dusk, a dark storm) is not found, and then every
keypoint is used, as without this step. OpenCV has no sky or horizon detector; this costs one area resize.
"""

from __future__ import annotations

import cv2
import numpy as np

SKY_STRIPS = 8
SKY_MIN_STRIPS = 6  # strips with a sky run, of SKY_STRIPS, for the band to count
SKY_MIN_CONTRAST = 15.0  # a sky row is this much brighter than the ground below (grey levels)
SKY_MIN_BLUE = 6.0  # and this much bluer (blue − red, grey levels): daylight sky and haze are, ground rarely is
SKY_MIN_DEPTH = 0.03  # share of the frame height: thinner runs are not a sky band
SKY_MAX_DEPTH = 0.5
SKY_MARGIN = 0.04


def sky_rows(frame_rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """For the (H, W, 3) uint8 RGB frame scaled to ``shape`` (h, w): how many rows from the top are sky in each
    of the w columns, widened by the margin; None if the frame shows no sky."""
    rows, columns = shape
    limit = int(SKY_MAX_DEPTH * rows)
    if limit < 1:  # a frame of extreme aspect scaled to a row or two: no room for a band above the ground
        return None
    # per strip and row: the mean colour (one area resize of the whole frame)
    means = cv2.resize(frame_rgb, (SKY_STRIPS, rows), interpolation=cv2.INTER_AREA).astype(np.float32)
    grey = means @ np.array([0.299, 0.587, 0.114], np.float32)
    blue = means[..., 2] - means[..., 0]
    ground = grey[rows // 2 :].mean(axis=0)
    sky = (grey[:limit] > ground + SKY_MIN_CONTRAST) & (blue[:limit] > SKY_MIN_BLUE)
    depths = np.where(sky.all(axis=0), limit, np.argmin(sky, axis=0)).astype(float)  # first row that is not sky
    found = depths >= SKY_MIN_DEPTH * rows
    if np.count_nonzero(found) < SKY_MIN_STRIPS:
        return None
    centres = (np.arange(SKY_STRIPS) + 0.5) * columns / SKY_STRIPS - 0.5
    slope, offset = np.polyfit(centres[found], depths[found], 1)  # the horizon is a straight line (tilted by roll)
    band = slope * np.arange(columns) + offset + SKY_MARGIN * rows
    return np.clip(np.ceil(band), 0, limit).astype(int)


def ground_mask(frame_rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray | None:
    """A ``shape`` (h, w) uint8 detection mask for an OpenCV detector run on the frame scaled to ``shape``: 0 over
    the sky band, 255 elsewhere; None if there is no sky."""
    band = sky_rows(frame_rgb, shape)
    if band is None:
        return None
    mask = np.full(shape, 255, np.uint8)
    mask[np.arange(shape[0])[:, None] < band[None, :]] = 0
    return mask

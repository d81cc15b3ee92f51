"""A segmenter that is not ours, for measuring ``ssp stabilise`` on real footage: vegetation by the excess-green
index with a threshold chosen per frame by Otsu's method.

ExG = 2g − r − b on chromatic coordinates (r = R / (R + G + B), ...), Woebbecke et al. 1995; a pixel is vegetation
where ExG exceeds the frame's Otsu threshold (Meyer and Neto 2008 review the family). It is a classic of
agricultural drone imaging and needs no training. Its errors come and go, because each frame picks its own threshold
from its own histogram, which is the kind of error the stabiliser is for. Nothing in ssp_ros uses it.

Writes one label PNG per frame (0 = other, 1 = vegetation), named as the frame, to the output folder:

    python test/tools/exg_segmenter.py FRAMES MASKS
    ssp stabilise --input FRAMES --masks MASKS --num-classes 2 --out OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ssp_ros.errors import SspError
from ssp_ros.io import image_files, read_png, write_png


def excess_green(frame_rgb: np.ndarray) -> np.ndarray:
    """H×W float32 ExG in [−1, 2] of an 8-bit RGB frame; black pixels (no chromaticity) get 0."""
    rgb = frame_rgb.astype(np.float32)
    total = rgb.sum(axis=2)
    total[total == 0] = 1.0
    r, g, b = (rgb[..., i] / total for i in range(3))
    return 2.0 * g - r - b


def vegetation_labels(frame_rgb: np.ndarray) -> np.ndarray:
    """H×W uint8: 1 where ExG is above this frame's Otsu threshold, else 0."""
    exg = excess_green(frame_rgb)
    scaled = np.clip((exg + 1.0) * (255.0 / 3.0), 0, 255).astype(np.uint8)  # [−1, 2] → [0, 255]
    _, mask = cv2.threshold(scaled, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return mask


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("frames", type=Path, help="folder of frame images, taken in the order ssp stabilise takes them")
    parser.add_argument("out", type=Path, help="folder for the label PNGs")
    args = parser.parse_args(argv)
    try:
        paths = image_files(args.frames)  # the frames ssp stabilise pairs the masks with, by sorted order
        args.out.mkdir(parents=True, exist_ok=True)
        for path in paths:
            write_png(args.out / f"{path.stem}.png", vegetation_labels(read_png(path, color=True)))
    except SspError as err:
        print(f"exg_segmenter: {err}", file=sys.stderr)
        return 2
    print(f"exg_segmenter: {len(paths)} label images in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

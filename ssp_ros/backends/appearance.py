"""The stabiliser's similarity model at run time: its two ONNX graphs on OpenCV's DNN module.

``AppearanceModel(folder)`` loads what ``ssp export-stabiliser`` wrote (``models/ssp_stabiliser/`` ships one):
``features(image)`` gives the stride-4 appearance features of a frame, ``similarity(warped_prev, cur)`` the
weight ``s`` of the warped previous state. The graphs are a few small convolutions (~11 k parameters), so the
CPU runs them in a few milliseconds; OpenCV's DNN module is used because OpenCV is already a dependency of the
bare install, so SSP over another segmenter needs neither torch nor ONNX Runtime. One instance serves one
thread (an OpenCV ``Net`` keeps its buffers between calls).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ssp_ros.errors import SspError

FORMAT = 1
FILES = ("encoder.onnx", "similarity.onnx", "stabiliser.json")


def _read_net(path: Path) -> cv2.dnn.Net:
    try:
        return cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as err:
        raise SspError(f"{path}: OpenCV cannot read this ONNX graph ({str(err).strip().splitlines()[-1]}); "
                       "export it again with ssp export-stabiliser") from None


class AppearanceModel:
    """The appearance encoder and similarity head of one exported folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        missing = [name for name in FILES if not (self.folder / name).is_file()]
        if missing:
            raise SspError(f"{self.folder}: not a stabiliser model folder (missing {', '.join(missing)}); make one "
                           "with ssp export-stabiliser")
        try:
            info = json.loads((self.folder / "stabiliser.json").read_text())
            self.channels, self.stride = int(info["channels"]), int(info["stride"])
            version = int(info["format"])
        except (ValueError, KeyError, TypeError) as err:
            raise SspError(f"{self.folder / 'stabiliser.json'}: unreadable ({err})") from None
        if version != FORMAT:
            raise SspError(f"{self.folder / 'stabiliser.json'}: format {version}, this runtime reads {FORMAT}")
        self.info = info
        self._encoder = _read_net(self.folder / "encoder.onnx")
        self._similarity = _read_net(self.folder / "similarity.onnx")

    def features(self, image: np.ndarray) -> np.ndarray:
        """H×W×3 uint8 RGB (H, W multiples of the stride) → 1×C×H/stride×W/stride float32 features."""
        h, w = image.shape[:2]
        if h % self.stride or w % self.stride:
            raise SspError(f"the stabiliser's input must be a multiple of {self.stride} in both sides, got {w}x{h}")
        self._encoder.setInput(cv2.dnn.blobFromImage(image), "image")
        feats = self._encoder.forward("feats")
        if feats.shape != (1, self.channels, h // self.stride, w // self.stride):
            raise SspError(f"{self.folder / 'encoder.onnx'}: gives features of shape {feats.shape}, expected "
                           f"(1, {self.channels}, {h // self.stride}, {w // self.stride}) (stabiliser.json)")
        return np.array(feats, np.float32)  # the Net reuses its output buffer on the next call

    def similarity(self, warped_prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """``s`` (1×1×h×w float32, 0..1) of two 1×C×h×w feature maps: the previous frame's, warped into this one,
        and this frame's."""
        self._similarity.setInput(np.ascontiguousarray(warped_prev, np.float32), "warped_prev_feats")
        self._similarity.setInput(np.ascontiguousarray(cur, np.float32), "cur_feats")
        return np.array(self._similarity.forward("s"), np.float32)

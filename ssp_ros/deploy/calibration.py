"""INT8 calibration frames for the TensorRT segmenter engine: a folder of images → model-input batches.

Frames are letterboxed to the export's input size exactly as ``Pipeline`` does (``letterbox.Letterbox``),
so the activation ranges TensorRT measures are those the drone will see, and become the segmenter's input:
float32 B×3×H×W, RGB in 0..255 (normalisation is inside the graph). Nothing here imports TensorRT; the
calibrator in ``tensorrt_build.py`` copies these batches to the GPU.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ssp_ros.errors import SspError
from ssp_ros.letterbox import Letterbox

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def read_frame(path: Path) -> np.ndarray:
    """An image file as H×W×3 uint8 RGB; an error naming the file if OpenCV cannot decode it."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise SspError(f"{path}: not a readable image (calibration frame); remove it from the folder")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def model_input(frame: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """An RGB uint8 frame of any size → float32 3×H×W model input, letterboxed like the pipeline."""
    image = Letterbox(frame.shape[:2], input_size).apply(frame)
    return image.transpose(2, 0, 1).astype(np.float32)


def select_frames(files: list[Path], limit: int) -> list[Path]:
    """At most ``limit`` of the sorted ``files``, evenly spaced: consecutive video frames are near
    duplicates, so spreading the picks over the whole folder covers more scenes for the same cost."""
    if len(files) <= limit:
        return files
    picks = np.linspace(0, len(files) - 1, limit).round().astype(int)
    return [files[i] for i in picks]


class CalibrationSet:
    """The calibration frames of one folder, read lazily as batches of ``batch_size`` model inputs.

    Batches are full: TensorRT's static input takes exactly ``batch_size`` frames, so a last partial
    batch is dropped (``frames_used`` says how many frames calibrate). Fewer frames than one batch is an
    error.
    """

    def __init__(self, folder: str | Path, input_size: tuple[int, int], batch_size: int = 1,
                 limit: int = 500) -> None:
        self.folder = Path(folder)
        self.input_size = input_size
        if batch_size < 1 or limit < 1:
            raise SspError(f"calibration batch size and frame limit must be >= 1, got {batch_size} and {limit}")
        self.batch_size = batch_size
        if not self.folder.is_dir():
            raise SspError(f"{self.folder}: calibration frame folder not found")
        found = sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
        if not found:
            raise SspError(f"{self.folder}: no calibration frames ({', '.join(FRAME_SUFFIXES)}) in this folder")
        chosen = select_frames(found, limit)
        if len(chosen) < batch_size:
            raise SspError(f"{self.folder}: {len(chosen)} calibration frame(s), fewer than one batch of {batch_size}")
        self.files = chosen[:len(chosen) // batch_size * batch_size]

    @property
    def frames_used(self) -> int:
        return len(self.files)

    def __len__(self) -> int:
        """The number of batches."""
        return len(self.files) // self.batch_size

    @property
    def batch_shape(self) -> tuple[int, int, int, int]:
        return (self.batch_size, 3, *self.input_size)

    @property
    def batch_nbytes(self) -> int:
        return int(np.prod(self.batch_shape)) * np.dtype(np.float32).itemsize

    def batches(self) -> Iterator[np.ndarray]:
        """C-contiguous float32 ``batch_shape`` arrays, in file order; a new array per batch."""
        for start in range(0, len(self.files), self.batch_size):
            batch = np.empty(self.batch_shape, np.float32)
            for i, path in enumerate(self.files[start:start + self.batch_size]):
                batch[i] = model_input(read_frame(path), self.input_size)
            yield batch

    def sha256(self) -> str:
        """A hash of the frames that calibrate (names and bytes, in order) and the batch size, for the
        engine sidecar: the same frames give the same hash; another frame, order or batch size another."""
        digest = hashlib.sha256(f"batch={self.batch_size}\n".encode())
        for path in self.files:
            digest.update(f"{path.name}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
        return digest.hexdigest()

"""INT8 calibration frames for the TensorRT segmenter engine: a folder of images → model-input batches.

Frames are letterboxed to the export's input size exactly as ``Pipeline`` does (``letterbox.Letterbox``),
so the activation ranges TensorRT measures are those the drone will see, and become the segmenter's input:
float32 B×3×H×W, RGB in 0..255 (normalisation is inside the graph). ``CalibrationTable`` keeps the table
TensorRT measures, trusted only when a calibration over every batch finished without an error. Nothing here
imports TensorRT; the calibrator in ``tensorrt_build.py`` copies these batches to the GPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ssp_ros.backends.engine_cache import partial_path, write_atomic
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

    def batch_files(self, index: int) -> list[Path]:
        """The frames of batch ``index`` (0-based), to name them when that batch fails."""
        return self.files[index * self.batch_size:(index + 1) * self.batch_size]

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


TABLE_RECORD_FORMAT = 1


class CalibrationTable:
    """The INT8 calibration table of one graph and calibration set (``engine_cache.calibration_cache_path``),
    reused by later builds only when it is known to be complete.

    TensorRT has one way to stop calibration, ``get_batch`` returning None, for the end of the data and for a
    failure alike, and it then hands its table to ``write_calibration_cache`` all the same. A table file alone
    therefore proves nothing, so ``write`` (called only once every batch was fed without an error) writes the
    table under a temporary name, renames it, and then writes its record ``<table>.json``: the table's SHA-256
    and how many batches made it. ``read`` trusts a table only with a record that matches it and covers every
    batch: a table from an aborted run, one from a build that wrote no record, a truncated or edited file are
    deleted and the frames are calibrated again. A rename alone would not do: a table left by an older build
    that kept the tables of failed calibrations has the right name too.
    """

    def __init__(self, path: Path, batches: int) -> None:
        self.path = Path(path)
        self.record = self.path.with_name(self.path.name + ".json")
        self.batches = batches  # batches in the calibration set: a trusted table was made from all of them

    def read(self) -> bytes | None:
        """The table if a complete calibration wrote it; else None (and whatever was there is deleted)."""
        try:
            record = json.loads(self.record.read_text())
            table = self.path.read_bytes()
        except (OSError, ValueError):
            self.discard()
            return None
        if (not isinstance(record, dict) or record.get("format") != TABLE_RECORD_FORMAT
                or record.get("batches") != self.batches
                or record.get("table_sha256") != hashlib.sha256(table).hexdigest()):
            self.discard()
            return None
        return table

    def write(self, table: bytes, batches: int) -> None:
        """Keep ``table``, measured over ``batches`` batches (must be all of them); an SspError if not."""
        if batches != self.batches:
            raise SspError(f"{self.path}: a table from {batches} of {self.batches} calibration batches is not kept")
        self.discard()  # no record may ever point at a table it was not written for
        record = {"format": TABLE_RECORD_FORMAT, "batches": batches, "table_sha256": hashlib.sha256(table).hexdigest()}
        write_atomic(self.path, table)
        write_atomic(self.record, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())

    def discard(self) -> None:
        """Delete the table, its record and any partial write of either."""
        for path in (self.record, self.path, partial_path(self.record), partial_path(self.path)):
            path.unlink(missing_ok=True)

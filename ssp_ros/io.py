"""Readers and writers of frame sequences on disk.

A labelled sequence folder (written by ``ssp synth``)::

    sequence.yaml          format, frame count, size, fps, seed, class list, scenario, summary
    camera.npz             stamps (N,), steps (N,), world_to_image (N, 3, 3)
    images/000000.png      RGB frames
    labels/000000.png      class ids (mono8)
    flow/000000.npz        flow (H, W, 2) float16 k→k+1, valid (H, W) bool; for k < N−1

Flow is stored as float16: below 256 px of motion that is exact to 1/16 px, which nearest warping and
bilinear losses do not notice, and it halves the folder. A folder is written under a temporary name
and renamed when complete, so a half-written sequence never looks like a finished one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import yaml

from ssp_ros.errors import SspError
from ssp_ros.synthetic.video import SyntheticFrame

FORMAT = "ssp-labelled-sequence/1"


def write_png(path: Path, array: np.ndarray) -> None:
    data = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    if not cv2.imwrite(str(path), data):
        raise SspError(f"{path}: could not write PNG")


def read_png(path: Path, color: bool) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR if color else cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SspError(f"{path}: missing or not a readable PNG")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if color else image


def _prepare_output(out_dir: Path, overwrite: bool) -> Path:
    """Check that ``out_dir`` may be written and return a fresh temporary folder beside it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SspError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SspError(f"{out_dir}: folder exists and is not empty (pass --overwrite to replace it)")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=parent))
    except OSError as err:
        raise SspError(f"{parent}: cannot create the output folder here ({err.strerror})") from None


def _commit_output(tmp: Path, out_dir: Path) -> None:
    """Replace ``out_dir`` by the finished temporary folder."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def write_sequence(frames: Iterable[SyntheticFrame], out_dir: str | Path, metadata: Callable[[], dict],
                   overwrite: bool = False) -> Path:
    """Write frames (with labels and flow) as a labelled sequence folder; returns its path.

    ``metadata()`` is called after the last frame (so it can report what was measured while streaming)
    and goes into sequence.yaml. Nothing is left at ``out_dir`` if writing fails part-way.
    """
    out_dir = Path(out_dir)
    tmp = _prepare_output(out_dir, overwrite)
    try:
        for sub in ("images", "labels", "flow"):
            (tmp / sub).mkdir()
        stamps, steps, homographies = [], [], []
        size = None
        for frame in frames:
            name = f"{frame.index:06d}"
            write_png(tmp / "images" / f"{name}.png", frame.image)
            write_png(tmp / "labels" / f"{name}.png", frame.labels)
            if frame.flow is not None:
                np.savez(tmp / "flow" / f"{name}.npz", flow=frame.flow.astype(np.float16), valid=frame.valid)
            stamps.append(frame.stamp)
            steps.append(frame.step)
            homographies.append(frame.world_to_image)
            size = list(frame.labels.shape)
        if size is None:
            raise SspError("no frames to write")
        np.savez(tmp / "camera.npz", stamps=np.array(stamps), steps=np.array(steps),
                 world_to_image=np.array(homographies))
        header = {"format": FORMAT, "frames": len(stamps), "size": size, **metadata()}
        (tmp / "sequence.yaml").write_text(yaml.safe_dump(header, sort_keys=False))
        _commit_output(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


class LabelledSequence:
    """A labelled sequence folder, read lazily frame by frame (``len``, indexing, iteration)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        header_path = self.folder / "sequence.yaml"
        try:
            self.header = yaml.safe_load(header_path.read_text())
        except OSError as err:
            raise SspError(f"{header_path}: cannot read ({err.strerror}); "
                           f"is {self.folder} a sequence folder?") from None
        except yaml.YAMLError as err:
            raise SspError(f"{header_path}: invalid YAML: {err}") from None
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT:
            raise SspError(f"{header_path}: not a '{FORMAT}' header")
        camera_path = self.folder / "camera.npz"
        try:
            with np.load(camera_path) as camera:
                self.stamps, self.steps = camera["stamps"], camera["steps"]
                self.world_to_image = camera["world_to_image"]
        except (OSError, KeyError, ValueError) as err:
            raise SspError(f"{camera_path}: missing or corrupt ({err})") from None
        self.frames = int(self.header["frames"])
        if len(self.stamps) != self.frames:
            raise SspError(f"{camera_path}: {len(self.stamps)} stamps for {self.frames} frames")

    def __len__(self) -> int:
        return self.frames

    def flow(self, index: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Forward flow (float32) and validity of frame ``index`` to the next; None for the last frame."""
        if index == self.frames - 1:
            return None
        path = self.folder / "flow" / f"{index:06d}.npz"
        try:
            with np.load(path) as data:
                return data["flow"].astype(np.float32), data["valid"]
        except (OSError, KeyError, ValueError) as err:
            raise SspError(f"{path}: missing or corrupt flow file ({err})") from None

    def __getitem__(self, index: int) -> SyntheticFrame:
        if not 0 <= index < self.frames:
            raise IndexError(f"frame {index} out of range 0..{self.frames - 1}")
        name = f"{index:06d}.png"
        image = read_png(self.folder / "images" / name, color=True)
        labels = read_png(self.folder / "labels" / name, color=False)
        if image.shape[:2] != labels.shape or list(labels.shape) != list(self.header["size"]):
            raise SspError(f"{self.folder / 'labels' / name}: size {labels.shape} does not match image "
                           f"{image.shape[:2]} / header {self.header['size']}")
        flow = self.flow(index)
        return SyntheticFrame(index=index, step=int(self.steps[index]), stamp=float(self.stamps[index]), image=image,
                              labels=labels, world_to_image=self.world_to_image[index],
                              flow=None if flow is None else flow[0], valid=None if flow is None else flow[1])

    def __iter__(self) -> Iterator[SyntheticFrame]:
        return (self[i] for i in range(self.frames))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def iter_video(path: str | Path, fps: float = 30.0) -> Iterator[tuple[np.ndarray, float]]:
    """RGB frames and stamps (seconds) from a video file or a folder of images (sorted by name).

    A folder's frames are stamped ``index / fps``; a video's stamps come from the container when it has
    them. An unreadable image in a folder is an error naming the file.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SspError(f"{path}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        for index, file in enumerate(files):
            yield read_png(file, color=True), index / fps
        return
    if not path.is_file():
        raise SspError(f"{path}: no such video file or image folder")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SspError(f"{path}: OpenCV cannot open this video (codec or container not supported)")
    try:
        video_fps = capture.get(cv2.CAP_PROP_FPS) or fps
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), index / video_fps
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise SspError(f"{path}: the video holds no readable frame")


class VideoWriter:
    """Writes RGB frames to an MP4 file, or to numbered PNGs in a folder when no MP4 codec is available."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        self.path = Path(path)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
        self.folder: Path | None = None
        if not self.writer.isOpened():
            self.folder = self.path.with_suffix("")
            self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    @property
    def output(self) -> Path:
        """The MP4 file, or the PNG folder used instead."""
        return self.folder or self.path

    def write(self, frame: np.ndarray) -> None:
        if self.folder is None:
            self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        else:
            write_png(self.folder / f"{self.count:06d}.png", frame)
        self.count += 1

    def close(self) -> None:
        self.writer.release()

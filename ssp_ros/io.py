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
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import yaml

from ssp_ros.errors import SspError
from ssp_ros.frames import SyntheticFrame

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


def prepare_output(out_dir: Path, overwrite: bool) -> Path:
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


def commit_output(tmp: Path, out_dir: Path) -> None:
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
    tmp = prepare_output(out_dir, overwrite)
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
        commit_output(tmp, out_dir)
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


def image_files(folder: Path) -> list[Path]:
    """The images of a frame folder, in the order they are frames (sorted by name); none is an SspError."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SspError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
    return files


def iter_video(path: str | Path, fps: float = 30.0) -> Iterator[tuple[np.ndarray, float]]:
    """RGB frames and stamps (seconds) from a video file or a folder of images (sorted by name).

    A folder's frames are stamped ``index / fps``; a video's stamps come from the container when it has
    them. An unreadable image in a folder is an error naming the file.
    """
    path = Path(path)
    if path.is_dir():
        for index, file in enumerate(image_files(path)):
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


H264_ENCODER = "libx264"  # FFmpeg's H.264 encoder, bundled in PyAV's wheels


class _NoH264(Exception):
    """PyAV is missing, or its FFmpeg has no libx264 encoder: the reason, for the one line the fallback prints."""


class _H264:
    """H.264 (libx264, yuv420p) in MP4 through PyAV, index at the front: what browsers and QuickTime play."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        try:
            import av  # optional (the `video` extra): the core imports without it
        except ImportError:
            raise _NoH264("PyAV is not installed") from None

        self.container = av.open(str(path), "w", container_options={"movflags": "+faststart"})
        try:
            self.stream = self.container.add_stream(H264_ENCODER, rate=Fraction(fps).limit_denominator(1001))
        except Exception as err:  # noqa: BLE001 - PyAV's UnknownCodecError and FFmpeg errors
            self.container.close()
            raise _NoH264(f"PyAV {av.__version__} cannot encode H.264 ({err})") from None
        self.stream.height, self.stream.width = size
        self.stream.pix_fmt = "yuv420p"
        self.av = av
        self.pts = 0

    def write(self, frame: np.ndarray) -> None:
        picture = self.av.VideoFrame.from_ndarray(frame, format="rgb24")
        picture.pts, self.pts = self.pts, self.pts + 1
        self.container.mux(self.stream.encode(picture))

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode())  # flush the frames the encoder still holds
        finally:
            self.container.close()


class _Mpeg4:
    """OpenCV's MPEG-4 Part 2 ('mp4v') in MP4: desktop players read it, browsers do not."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
        self.opened = self.writer.isOpened()

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        self.writer.release()


class _PngFolder:
    """Numbered PNGs in a folder: the last resort when OpenCV has no MP4 encoder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def write(self, frame: np.ndarray) -> None:
        write_png(self.folder / f"{self.count:06d}.png", frame)
        self.count += 1

    def close(self) -> None:
        pass


class VideoWriter:
    """Writes RGB frames of one size (H, W) to an MP4 file: H.264 through PyAV when it is installed, else
    OpenCV's MPEG-4 Part 2 (one line on stderr says so), else numbered PNGs in a folder.

    H.264 in yuv420p needs an even width and height, so an odd frame gets its last row / column repeated.
    """

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        if not fps > 0:
            raise SspError(f"{path}: frame rate must be positive, got {fps}")
        self.path = Path(path)
        self.size = (int(size[0]), int(size[1]))
        self.folder: Path | None = None  # set when PNGs are written instead
        self.count = 0
        self.pad = (self.size[0] % 2, self.size[1] % 2)
        self.encoder: _H264 | _Mpeg4 | _PngFolder
        try:
            self.encoder, self.codec = _H264(self.path, fps, (self.size[0] + self.pad[0],
                                                              self.size[1] + self.pad[1])), "h264"
        except _NoH264 as why:
            print(f"{self.path}: {why}, so this video is MPEG-4 Part 2, which browsers do not play "
                  "(`pip install av` writes H.264)", file=sys.stderr)
            self.pad = (0, 0)
            self.encoder, self.codec = _Mpeg4(self.path, fps, self.size), "mpeg4"
            if not self.encoder.opened:
                self.folder = self.path.with_suffix("")
                self.encoder, self.codec = _PngFolder(self.folder), "png"

    @property
    def output(self) -> Path:
        """The MP4 file, or the PNG folder used instead."""
        return self.folder or self.path

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame of the writer's size."""
        if frame.shape != (*self.size, 3) or frame.dtype != np.uint8:
            raise ValueError(f"{self.path}: frame must be {self.size[0]}x{self.size[1]}x3 uint8 RGB, "
                             f"got shape {frame.shape} dtype {frame.dtype}")
        if any(self.pad):
            frame = np.pad(frame, ((0, self.pad[0]), (0, self.pad[1]), (0, 0)), mode="edge")
        self.encoder.write(np.ascontiguousarray(frame))
        self.count += 1

    def close(self) -> None:
        """Finish the file (flushes the encoder): the video is complete only after this."""
        self.encoder.close()

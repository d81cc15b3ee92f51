"""The real data sets on disk: their layouts, indexed and checked before training starts, and their label files.

UAVid (Lyu et al., 2020), the official release plus the video frames of each sequence::

    <root>/uavid_<split>/seq<N>/Images/000000.png   labelled frames (every 100th video frame; split: train, val)
    <root>/uavid_<split>/seq<N>/Labels/000000.png   their labels (colour PNGs; id PNGs for uavid_vdd)
    <root>/uavid_<split>/seq<N>/Frames/000098.png   video frames, named by frame number like Images/ (.png or
                                                    .jpg); only frame pairs need them (not part of the release:
                                                    extract them from the sequence's video)

The split folder may also carry the name the official UAVid toolkit (github.com/YeLyuUT/UAVidToolKit) asks for
after renaming: ``<root>/train`` and ``<root>/valid``. Only ``seq*`` folders are sequences, as in the toolkit
(its own ``UAVidToolKit/`` folder may sit next to them). Label colours are the toolkit's; our class ids are not
its train ids (``config/datasets/uavid.yaml``), so evaluate with it on colour PNGs.

RuralScapes (Marcu et al., 2020), as the release unpacks (frames extracted from the 50 fps videos, manual labels
every 50th frame)::

    <root>/frames/DJI_0043_000150.jpg                           video frames, <video>_<frame number>
    <root>/labels/manual_labels/DJI_0043/segfull_DJI_0043_150.png  colour labels of frame 150 of DJI_0043

The RuralScapes split is the authors' original one (13 training videos, 7 test videos).

Every labelled frame must have its image, and every image its label, at the same size (checked from the file
headers, without decoding); a missing folder, an empty split or a mismatch is an ``SspError`` naming the path.

Label files → H×W uint8 class ids, strictly (``LabelDecoder``): an unknown colour or id is an error naming the
file and the value, never a silent ignore. Encodings:

- ``color``: RGB label PNGs coloured with the class list's colours (official UAVid, RuralScapes).
- ``ids``: single-channel PNGs holding class ids 0..N−1 directly, ``ignore_index`` for unlabelled pixels.
- ``ids_from_1``: single-channel PNGs with 0 = unlabelled (→ ``ignore_index``) and k = class k − 1: the SSP
  paper's UAVid relabelled with VDD-style classes (config/datasets/uavid_vdd.yaml; clutter is 0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from PIL import Image

from ssp_ros.classes import ClassSet
from ssp_ros.errors import SspError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
UAVID_SPLITS = ("train", "val")
UAVID_TOOLKIT_SPLITS = {"train": "train", "val": "valid"}  # the split folders as the UAVid toolkit names them
RURALSCAPES_SPLITS = {  # the authors' original split of the 20 videos
    "train": ("0043", "0044", "0045", "0046", "0047", "0050", "0053", "0085", "0093", "0097", "0101", "0114", "0118"),
    "test": ("0051", "0056", "0061", "0086", "0088", "0089", "0116"),
}
LabelEncoding = Literal["color", "ids", "ids_from_1"]
# (data set, class list) → how its label files encode classes
LABEL_ENCODINGS: dict[tuple[str, str], LabelEncoding] = {
    ("uavid", "uavid"): "color",
    ("uavid", "uavid_vdd"): "ids_from_1",
    ("ruralscapes", "ruralscapes"): "color",
}


@dataclass(frozen=True)
class LabelledFrame:
    """One labelled frame: its frame number in the video, image and label files, and size (H, W)."""

    frame: int
    image: Path
    labels: Path
    size: tuple[int, int]


@dataclass(frozen=True)
class VideoSequence:
    """One video: its labelled frames and the files of its video frames by frame number."""

    name: str  # e.g. "uavid_train/seq1" or "DJI_0043"
    labelled: tuple[LabelledFrame, ...]
    frames: dict[int, Path] = field(default_factory=dict)

    def image_path(self, frame: int) -> Path:
        """The image of video frame ``frame`` (a labelled frame's own image first)."""
        for item in self.labelled:
            if item.frame == frame:
                return item.image
        try:
            return self.frames[frame]
        except KeyError:
            raise SspError(f"{self.name}: no image of video frame {frame}") from None

    def has_frame(self, frame: int) -> bool:
        return frame in self.frames or any(item.frame == frame for item in self.labelled)


def label_encoding(dataset: str, classes: str) -> LabelEncoding:
    """How ``dataset``'s label files encode the classes of the class list ``classes``."""
    try:
        return LABEL_ENCODINGS[(dataset, classes)]
    except KeyError:
        known = ", ".join(c for d, c in LABEL_ENCODINGS if d == dataset)
        raise SspError(f"data set '{dataset}' has labels for the class lists {known}, not '{classes}': "
                       f"set model.dataset accordingly") from None


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file from its header; an unreadable file is an error naming it."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, ValueError) as err:
        raise SspError(f"{path}: cannot read image header ({err})") from None
    return height, width


def _labelled_frame(frame: int, image: Path, labels: Path) -> LabelledFrame:
    size = image_size(image)
    label_size = image_size(labels)
    if label_size != size:
        raise SspError(f"{labels}: label size {label_size[1]}x{label_size[0]} does not match its image {image} "
                       f"({size[1]}x{size[0]})")
    return LabelledFrame(frame, image, labels, size)


def _require_dir(path: Path, what: str) -> None:
    if not path.is_dir():
        raise SspError(f"{path}: {what} not found")


def _numbered_images(folder: Path) -> dict[int, Path]:
    """Files named ``<number>.<image suffix>`` in ``folder`` by number."""
    out = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if path.suffix.lower() in IMAGE_SUFFIXES and path.stem.isdigit():
                out[int(path.stem)] = path
    return out


def uavid_sequences(root: Path, split: str) -> list[VideoSequence]:
    """The sequences of UAVid's ``split`` (train or val) under ``root`` (see the module docstring)."""
    if split not in UAVID_SPLITS:
        raise SspError(f"UAVid split '{split}' unknown (choose {', '.join(UAVID_SPLITS)}; the test split has no "
                       "labels)")
    _require_dir(root, "UAVid root folder")
    split_dir = root / f"uavid_{split}"
    if not split_dir.is_dir() and (root / UAVID_TOOLKIT_SPLITS[split]).is_dir():
        split_dir = root / UAVID_TOOLKIT_SPLITS[split]
    _require_dir(split_dir, f"UAVid {split} split (expected {root}/uavid_{split}/seq*/Images, Labels, or "
                 f"{root}/{UAVID_TOOLKIT_SPLITS[split]}/seq*/ as the UAVid toolkit names it)")
    sequences = []
    for seq_dir in sorted((p for p in split_dir.iterdir() if p.is_dir() and p.name.startswith("seq")), key=_natural):
        images_dir, labels_dir = seq_dir / "Images", seq_dir / "Labels"
        _require_dir(images_dir, "Images folder of a UAVid sequence")
        _require_dir(labels_dir, "Labels folder of a UAVid sequence")
        images, labels = _numbered_images(images_dir), _numbered_images(labels_dir)
        for frame in sorted(set(images) ^ set(labels)):
            missing = labels_dir / images[frame].name if frame in images else images_dir / labels[frame].name
            raise SspError(f"{missing}: not found (every image needs its label and every label its image)")
        labelled = tuple(_labelled_frame(f, images[f], labels[f]) for f in sorted(images))
        if labelled:
            name = f"{split_dir.name}/{seq_dir.name}"
            sequences.append(VideoSequence(name, labelled, _numbered_images(seq_dir / "Frames")))
    if not sequences:
        raise SspError(f"{split_dir}: no labelled sequences (expected seq*/Images/000000.png with Labels/)")
    return sequences


_RURAL_FRAME = re.compile(r"^(?P<video>.+)_(?P<frame>\d+)$")
_RURAL_LABEL = re.compile(r"^segfull_(?P<video>.+)_(?P<frame>\d+)$")


def ruralscapes_sequences(root: Path, split: str) -> list[VideoSequence]:
    """The videos of RuralScapes' ``split`` (train or test) under ``root`` (see the module docstring)."""
    if split not in RURALSCAPES_SPLITS:
        raise SspError(f"RuralScapes split '{split}' unknown (choose {', '.join(RURALSCAPES_SPLITS)})")
    _require_dir(root, "RuralScapes root folder")
    frames_dir, labels_root = root / "frames", root / "labels" / "manual_labels"
    _require_dir(frames_dir, "RuralScapes frames folder (expected frames/DJI_0043_000150.jpg)")
    _require_dir(labels_root, "RuralScapes labels folder (expected labels/manual_labels/DJI_0043/)")
    frames: dict[str, dict[int, Path]] = {}
    for path in frames_dir.iterdir():
        match = _RURAL_FRAME.match(path.stem)
        if match and path.suffix.lower() in IMAGE_SUFFIXES:
            frames.setdefault(match["video"], {})[int(match["frame"])] = path
    sequences = []
    for video_id in RURALSCAPES_SPLITS[split]:
        video = f"DJI_{video_id}"
        label_dir = labels_root / video
        if not label_dir.is_dir():
            continue
        video_frames = frames.get(video, {})
        labelled = []
        for path in sorted(label_dir.glob("segfull_*.png"), key=_natural):
            match = _RURAL_LABEL.match(path.stem)
            if not match or match["video"] != video:
                raise SspError(f"{path}: expected a label named segfull_{video}_<frame>.png")
            frame = int(match["frame"])
            if frame not in video_frames:
                raise SspError(f"{path}: its frame {frames_dir / f'{video}_{frame:06d}.jpg'} not found")
            labelled.append(_labelled_frame(frame, video_frames[frame], path))
        if labelled:
            sequences.append(VideoSequence(video, tuple(labelled), video_frames))
    if not sequences:
        videos = ", ".join(f"DJI_{v}" for v in RURALSCAPES_SPLITS[split])
        raise SspError(f"{labels_root}: no labelled video of the {split} split ({videos})")
    return sequences


def _natural(path: Path) -> list:
    """Sort key: seq2 before seq10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


LAYOUTS = {"uavid": uavid_sequences, "ruralscapes": ruralscapes_sequences}


def index_dataset(name: str, root: str | Path, split: str) -> list[VideoSequence]:
    """The checked index of data set ``name`` (uavid, ruralscapes) at ``root``, ``split``."""
    try:
        layout = LAYOUTS[name]
    except KeyError:
        raise SspError(f"unknown data set '{name}' (choose {', '.join(LAYOUTS)})") from None
    return layout(Path(root), split)


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

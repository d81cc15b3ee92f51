"""Class lists (config/datasets/*.yaml), colour palettes and overlays.

Images are RGB inside ssp_ros; conversion to BGR happens only where OpenCV or ROS ask for it.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ssp_ros.errors import ConfigError
from ssp_ros.resources import resolve_resource
from ssp_ros.schema import read_yaml

IGNORE_COLOR = (255, 255, 255)  # how ignore-label pixels are drawn


@dataclass(frozen=True)
class ClassSet:
    """A dataset's classes: ids are 0..N-1 in list order; ``ignore_index`` marks unlabelled pixels."""

    name: str
    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]  # RGB per class
    ignore_index: int = 255

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Class id of ``name``; a clear error lists the known names."""
        try:
            return self.names.index(name)
        except ValueError:
            known = ", ".join(self.names)
            raise ConfigError(f"class set '{self.name}' has no class '{name}' (classes: {known})") from None

    def palette(self) -> np.ndarray:
        """A 256×3 uint8 RGB lookup table: class colours, the ignore colour, black elsewhere."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, np.uint8)
        lut[self.ignore_index] = IGNORE_COLOR
        return lut


def load_class_set(name_or_path: str | Path) -> ClassSet:
    """Load a class list by dataset name (``uavid``) or path; ids must be 0..N-1, colours RGB bytes."""
    path = resolve_resource(name_or_path, "config/datasets")
    data = read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'classes' list")
    names, colors = [], []
    for i, entry in enumerate(data["classes"]):
        where = f"{path}: classes[{i}]"
        if not isinstance(entry, dict) or set(entry) != {"id", "name", "color"}:
            raise ConfigError(f"{where}: expected keys id, name, color, got {entry!r}")
        if entry["id"] != i:
            raise ConfigError(f"{where}: id must be {i} (ids are 0..N-1 in order), got {entry['id']!r}")
        color = entry["color"]
        is_rgb = isinstance(color, list) and len(color) == 3
        if not (is_rgb and all(isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise ConfigError(f"{where}: color must be [R, G, B] with 0..255 ints, got {color!r}")
        if entry["name"] in names:
            raise ConfigError(f"{where}: duplicate class name {entry['name']!r}")
        names.append(str(entry["name"]))
        colors.append(tuple(color))
    ignore = data.get("ignore_index", 255)
    if not isinstance(ignore, int) or not len(names) <= ignore <= 255:
        raise ConfigError(f"{path}: ignore_index must be an int in [{len(names)}, 255], got {ignore!r}")
    name = str(data.get("name", path.stem))
    return ClassSet(name=name, names=tuple(names), colors=tuple(colors), ignore_index=ignore)


def numbered_class_set(num_classes: int) -> ClassSet:
    """Classes ``class_0`` … of a segmenter that came without a class list, in well-spread colours (golden-angle
    hues at three brightnesses); ignore index 255 (for 256 classes, class 255 is then drawn as ignored)."""
    if not 1 <= num_classes <= 256:
        raise ConfigError(f"number of classes {num_classes}: must be 1..256")
    hsv = [((i * 0.381966) % 1.0, 0.75, (1.0, 0.75, 0.5)[i % 3]) for i in range(num_classes)]
    colors = [tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(*value)) for value in hsv]
    return ClassSet(name=f"{num_classes} classes", names=tuple(f"class_{i}" for i in range(num_classes)),
                    colors=tuple(colors), ignore_index=255)


def colorize(mask: np.ndarray, class_set: ClassSet) -> np.ndarray:
    """H×W class ids → H×W×3 RGB colours."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be a 2-D uint8 array of class ids, got shape {mask.shape} dtype {mask.dtype}")
    return class_set.palette()[mask]


def overlay(image: np.ndarray, mask: np.ndarray, class_set: ClassSet, alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over an RGB image: ``(1 - alpha) * image + alpha * colour``; ignore pixels unchanged."""
    if image.shape[:2] != mask.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image {image.shape} and mask {mask.shape} must be H×W×3 and H×W of the same size")
    colors = colorize(mask, class_set).astype(np.float32)
    blend = (1.0 - alpha) * image.astype(np.float32) + alpha * colors
    out = np.where((mask == class_set.ignore_index)[..., None], image.astype(np.float32), blend)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)

from pathlib import Path

import numpy as np
import pytest

from ssp_ros.classes import IGNORE_COLOR, colorize, load_class_set, overlay
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.synthetic import labels as synthetic_labels


@pytest.mark.parametrize("name, count, first", [("uavid", 8, "clutter"), ("uavid_vdd", 8, "road"),
                                                ("ruralscapes", 12, "residential")])
def test_shipped_class_lists(name: str, count: int, first: str) -> None:
    classes = load_class_set(name)
    assert classes.num_classes == count and classes.names[0] == first and classes.ignore_index == 255
    assert len(set(classes.colors)) == count, "each class needs its own colour"


def test_synthetic_world_uses_the_uavid_ids() -> None:
    uavid = load_class_set(synthetic_labels.DATASET)
    assert uavid.names == synthetic_labels.NAMES
    assert uavid.index("human") == synthetic_labels.HUMAN and uavid.index("static_car") == synthetic_labels.STATIC_CAR


def test_unknown_names_give_clear_errors() -> None:
    with pytest.raises(SspError, match="known: ruralscapes, uavid, uavid_vdd"):
        load_class_set("cityscapes")
    with pytest.raises(ConfigError, match="has no class 'boat'"):
        load_class_set("uavid").index("boat")


@pytest.mark.parametrize("body, pattern", [
    ("classes:\n  - {id: 1, name: a, color: [0, 0, 0]}\n", r"classes\[0\]: id must be 0"),
    ("classes:\n  - {id: 0, name: a, color: [0, 0, 300]}\n", r"classes\[0\]: color must be \[R, G, B\]"),
    ("classes:\n  - {id: 0, name: a, color: [0, 0, 0]}\n  - {id: 1, name: a, color: [1, 1, 1]}\n", "duplicate"),
    ("classes: []\n", "non-empty 'classes' list"),
    ("ignore_index: 0\nclasses:\n  - {id: 0, name: a, color: [0, 0, 0]}\n", r"ignore_index must be an int in \[1"),
])
def test_bad_class_files_name_the_file_and_entry(tmp_path: Path, body: str, pattern: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=r"mine\.yaml: .*" + pattern):
        load_class_set(path)


def test_colorize_and_overlay() -> None:
    classes = load_class_set("uavid")
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    colours = colorize(mask, classes)
    assert colours[0, 1].tolist() == [128, 0, 0] and colours[1, 0].tolist() == [128, 64, 128]
    assert colours[1, 1].tolist() == list(IGNORE_COLOR)
    image = np.full((2, 2, 3), 100, np.uint8)
    blended = overlay(image, mask, classes, alpha=0.5)
    assert blended[0, 1].tolist() == [114, 50, 50]  # (100 + 128) / 2, (100 + 0) / 2
    assert blended[1, 1].tolist() == [100, 100, 100], "ignore pixels keep the image"
    with pytest.raises(ValueError, match="same size"):
        overlay(image[:1], mask, classes)

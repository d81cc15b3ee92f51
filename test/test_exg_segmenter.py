"""test/tools/exg_segmenter.py: the excess-green segmenter used to measure the stabiliser on real footage."""

from __future__ import annotations

import cv2
import numpy as np
from tools.exg_segmenter import main, vegetation_labels


def field_and_road(rng: np.random.Generator) -> np.ndarray:
    """An RGB frame: grass on the left third, grey road and brown soil on the rest, with sensor noise."""
    frame = np.empty((60, 90, 3), np.float32)
    frame[:, :30] = (60, 140, 50)
    frame[:, 30:60] = (120, 120, 120)
    frame[:, 60:] = (140, 100, 60)
    frame += rng.normal(0, 6, frame.shape)
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_grass_is_vegetation_and_road_and_soil_are_not() -> None:
    labels = vegetation_labels(field_and_road(np.random.default_rng(0)))
    assert labels.dtype == np.uint8 and labels.shape == (60, 90)
    assert labels[:, :30].mean() > 0.99
    assert labels[:, 30:].mean() < 0.01


def test_writes_one_label_png_per_frame_named_as_the_frame(tmp_path) -> None:
    frames, out = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir()
    rng = np.random.default_rng(1)
    for name in ("000002.png", "000001.png"):
        cv2.imwrite(str(frames / name), cv2.cvtColor(field_and_road(rng), cv2.COLOR_RGB2BGR))
    assert main([str(frames), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["000001.png", "000002.png"]
    written = cv2.imread(str(out / "000001.png"), cv2.IMREAD_UNCHANGED)
    assert written.dtype == np.uint8 and written.shape == (60, 90) and set(np.unique(written)) == {0, 1}


def test_a_folder_without_frames_is_refused(tmp_path, capsys) -> None:
    assert main([str(tmp_path), str(tmp_path / "masks")]) == 2
    assert str(tmp_path) in capsys.readouterr().err

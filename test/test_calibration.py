"""INT8 calibration frames: folder reading, letterboxing like the pipeline, batching, hashing, errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ssp_ros.deploy.calibration import CalibrationSet, CalibrationTable, model_input, read_frame, select_frames
from ssp_ros.errors import SspError
from ssp_ros.letterbox import PAD_VALUE, Letterbox

INPUT = (64, 96)


def frame(seed: int, size: tuple[int, int] = (45, 80)) -> np.ndarray:
    """A random RGB frame whose channels differ (so a BGR/RGB swap shows)."""
    image = np.random.default_rng(seed).integers(0, 200, (*size, 3), dtype=np.uint8)
    image[..., 0] += 50
    return image


def write_frames(folder: Path, count: int, suffix: str = ".png", size: tuple[int, int] = (45, 80)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}{suffix}"
        assert cv2.imwrite(str(path), cv2.cvtColor(frame(i, size), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def test_frames_are_letterboxed_exactly_like_the_pipeline(tmp_path: Path) -> None:
    write_frames(tmp_path, 3, size=(45, 80))
    batch = next(CalibrationSet(tmp_path, INPUT).batches())
    expected = Letterbox((45, 80), INPUT).apply(frame(0, (45, 80)))  # PNG is lossless: the frame as written
    assert batch.shape == (1, 3, *INPUT) and batch.dtype == np.float32 and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch[0], expected.transpose(2, 0, 1).astype(np.float32))
    assert batch[0, :, -1, -1].tolist() == [PAD_VALUE] * 3  # 45x80 → 54x96: grey pad below, RGB 0..255 kept
    assert batch.max() > 200


def test_model_input_resizes_large_frames_into_the_input(tmp_path: Path) -> None:
    big = frame(5, (300, 400))
    out = model_input(big, INPUT)
    assert out.shape == (3, *INPUT)
    np.testing.assert_array_equal(out, Letterbox((300, 400), INPUT).apply(big).transpose(2, 0, 1))


def test_batches_are_full_and_a_last_partial_batch_is_dropped(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, 5)
    frames = CalibrationSet(tmp_path, INPUT, batch_size=2)
    batches = list(frames.batches())
    assert len(frames) == len(batches) == 2 and frames.frames_used == 4 and frames.files == paths[:4]
    assert all(b.shape == (2, 3, *INPUT) for b in batches)
    assert frames.batch_shape == (2, 3, *INPUT) and frames.batch_nbytes == batches[0].nbytes
    np.testing.assert_array_equal(batches[1][1], model_input(frame(3), INPUT))  # file order kept


def test_only_png_and_jpg_files_are_read_sorted_by_name(tmp_path: Path) -> None:
    write_frames(tmp_path, 2, ".png")
    (tmp_path / "b.JPEG").write_bytes((tmp_path / "0000.png").read_bytes())  # any decodable bytes
    assert cv2.imwrite(str(tmp_path / "a.jpg"), frame(9))
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "sub.png").mkdir()
    frames = CalibrationSet(tmp_path, INPUT)
    assert [p.name for p in frames.files] == ["0000.png", "0001.png", "a.jpg", "b.JPEG"]
    assert read_frame(tmp_path / "a.jpg").shape == (45, 80, 3)


def test_limit_spreads_frames_over_the_folder(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, 10)
    frames = CalibrationSet(tmp_path, INPUT, limit=4)
    assert [p.name for p in frames.files] == ["0000.png", "0003.png", "0006.png", "0009.png"]
    assert select_frames(paths, 20) == paths


def test_hash_follows_the_frames_and_batch_size(tmp_path: Path) -> None:
    paths = write_frames(tmp_path, 4)
    digest = CalibrationSet(tmp_path, INPUT).sha256()
    assert digest == CalibrationSet(tmp_path, INPUT).sha256() and len(digest) == 64
    assert CalibrationSet(tmp_path, INPUT, batch_size=2).sha256() != digest
    assert CalibrationSet(tmp_path, INPUT, limit=3).sha256() != digest
    data = bytearray(paths[2].read_bytes())
    data[-20] ^= 0xFF
    paths[2].write_bytes(bytes(data))
    assert CalibrationSet(tmp_path, INPUT).sha256() != digest


def test_missing_or_empty_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SspError, match=f"{tmp_path / 'nope'}: calibration frame folder not found"):
        CalibrationSet(tmp_path / "nope", INPUT)
    (tmp_path / "readme.txt").write_text("no frames here")
    with pytest.raises(SspError, match=r"no calibration frames \(\.png, \.jpg, \.jpeg\)"):
        CalibrationSet(tmp_path, INPUT)


def test_fewer_frames_than_a_batch_or_bad_sizes_are_errors(tmp_path: Path) -> None:
    write_frames(tmp_path, 3)
    with pytest.raises(SspError, match="3 calibration frame\\(s\\), fewer than one batch of 4"):
        CalibrationSet(tmp_path, INPUT, batch_size=4)
    with pytest.raises(SspError, match="must be >= 1"):
        CalibrationSet(tmp_path, INPUT, limit=0)


def test_unreadable_frame_is_named_when_its_batch_is_read(tmp_path: Path) -> None:
    write_frames(tmp_path, 2)
    (tmp_path / "0001.png").write_bytes(b"\x89PNG truncated")
    batches = CalibrationSet(tmp_path, INPUT).batches()
    assert next(batches).shape == (1, 3, *INPUT)
    with pytest.raises(SspError, match=f"{tmp_path / '0001.png'}: not a readable image"):
        next(batches)


def test_a_table_is_trusted_only_with_a_record_of_every_batch(tmp_path: Path) -> None:
    path = tmp_path / "segmenter.int8-abc.calib"
    table = CalibrationTable(path, batches=4)
    assert table.read() is None
    with pytest.raises(SspError, match="a table from 3 of 4 calibration batches is not kept"):
        table.write(b"TRT-table", 3)
    assert not path.exists()
    table.write(b"TRT-table", 4)
    assert table.read() == b"TRT-table" and CalibrationTable(path, batches=5).read() is None
    assert not path.exists(), "a table that does not cover every batch is deleted"
    table.write(b"TRT-table", 4)
    path.write_bytes(b"TRT-table, edited")
    assert table.read() is None and list(tmp_path.iterdir()) == []
    path.write_bytes(b"TRT-table")  # no record: e.g. from a calibration that stopped early
    assert table.read() is None and list(tmp_path.iterdir()) == []

from pathlib import Path

import numpy as np
import pytest

from ssp_ros.errors import SspError
from ssp_ros.io import LabelledSequence, write_sequence


def test_sequence_round_trip(small_video, tmp_path: Path) -> None:
    frames = small_video[:4]
    out = write_sequence(frames, tmp_path / "seq", lambda: {"seed": 7})
    seq = LabelledSequence(out)
    assert len(seq) == 4 and seq.header["seed"] == 7 and seq.header["size"] == [120, 200]
    for original, loaded in zip(frames, seq):
        assert np.array_equal(original.image, loaded.image)
        assert np.array_equal(original.labels, loaded.labels)
        assert loaded.stamp == original.stamp and loaded.step == original.step
        np.testing.assert_allclose(loaded.world_to_image, original.world_to_image)
        if loaded.index == len(seq) - 1:
            assert loaded.flow is None, "the last frame of a sequence has no next frame"
        else:
            assert np.abs(loaded.flow - original.flow).max() <= 1 / 16  # float16 storage
            assert np.array_equal(loaded.valid, original.valid)
    assert not list(tmp_path.glob(".seq.partial-*")), "temporary folder left behind"


def test_refuses_a_non_empty_folder_unless_overwrite(small_video, tmp_path: Path) -> None:
    target = tmp_path / "seq"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(SspError, match="exists and is not empty"):
        write_sequence(small_video[:2], target, dict)
    assert (target / "keep.txt").exists()
    write_sequence(small_video[:2], target, dict, overwrite=True)
    assert len(LabelledSequence(target)) == 2 and not (target / "keep.txt").exists()


def test_failure_midway_leaves_nothing(small_video, tmp_path: Path) -> None:
    def broken():
        yield small_video[0]
        raise RuntimeError("camera unplugged")

    with pytest.raises(RuntimeError, match="camera unplugged"):
        write_sequence(broken(), tmp_path / "seq", dict)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_parent_is_named(small_video, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SspError, match="file: cannot create the output folder here"):
        write_sequence(small_video[:1], blocker / "seq", dict)


def test_corrupt_or_missing_files_are_named(small_video, tmp_path: Path) -> None:
    out = write_sequence(small_video[:3], tmp_path / "seq", dict)
    (out / "labels" / "000001.png").write_bytes(b"garbage")
    seq = LabelledSequence(out)
    seq[0]
    with pytest.raises(SspError, match=r"labels/000001\.png: missing or not a readable PNG"):
        seq[1]
    (out / "flow" / "000000.npz").unlink()
    with pytest.raises(SspError, match=r"flow/000000\.npz: missing or corrupt flow file"):
        seq.flow(0)
    with pytest.raises(SspError, match=r"sequence\.yaml: cannot read .* is .* a sequence folder"):
        LabelledSequence(tmp_path)

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssp_ros import io
from ssp_ros.errors import SspError
from ssp_ros.io import LabelledSequence, VideoWriter, write_sequence


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


def distinct_frames(small_video, size: tuple[int, int]) -> list[np.ndarray]:
    """Eight frames of the flight, far enough apart to tell apart, cropped to ``size``."""
    return [f.image[: size[0], : size[1]].copy() for f in small_video[::5]]


def assert_round_trip(written: list[np.ndarray], decoded: list[np.ndarray]) -> None:
    """Lossy, so approximately: each decoded frame is close to its own frame and closer to it than to any other."""
    assert len(decoded) == len(written)
    for k, frame in enumerate(decoded):
        errors = [np.abs(frame.astype(np.int16) - other).mean() for other in written]
        assert errors[k] < 8.0 and int(np.argmin(errors)) == k, errors


@pytest.mark.parametrize("size", [(120, 200), (119, 199)])
def test_video_is_h264_that_browsers_play(small_video, tmp_path: Path, size: tuple[int, int]) -> None:
    """H.264 in yuv420p (even sides: an odd frame gets its last row / column repeated), index at the front."""
    av = pytest.importorskip("av", reason="PyAV is not installed: pip install av")
    frames = distinct_frames(small_video, size)
    writer = VideoWriter(tmp_path / "clip.mp4", 30.0, size)
    for frame in frames:
        writer.write(frame)
    writer.close()
    assert writer.codec == "h264" and writer.output == tmp_path / "clip.mp4"
    data = writer.output.read_bytes()
    assert 0 <= data.find(b"moov") < data.find(b"mdat"), "moov atom after the media data: no +faststart"
    with av.open(str(writer.output)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.height, stream.width) == (size[0] + size[0] % 2, size[1] + size[1] % 2)
        assert stream.frames == len(frames) and float(stream.average_rate) == pytest.approx(30.0)
        decoded = [f.to_ndarray(format="rgb24")[: size[0], : size[1]] for f in container.decode(stream)]
    assert_round_trip(frames, decoded)


@pytest.mark.parametrize("missing", ["pyav", "encoder"])
def test_video_without_h264_is_mpeg4_and_says_so(small_video, tmp_path: Path, monkeypatch, capsys,
                                                 missing: str) -> None:
    if missing == "pyav":
        monkeypatch.setitem(sys.modules, "av", None)  # `import av` raises ImportError
    else:
        pytest.importorskip("av", reason="PyAV is not installed: pip install av")
        monkeypatch.setattr(io, "H264_ENCODER", "libx264_not_in_this_ffmpeg")  # as a PyAV built without libx264
    frames = distinct_frames(small_video, (120, 200))
    writer = VideoWriter(tmp_path / "clip.mp4", 30.0, (120, 200))
    for frame in frames:
        writer.write(frame)
    writer.close()
    message = capsys.readouterr().err
    assert "MPEG-4 Part 2" in message and "pip install av" in message and len(message.splitlines()) == 1
    assert ("PyAV is not installed" if missing == "pyav" else "cannot encode H.264") in message
    assert writer.codec == "mpeg4"
    capture = cv2.VideoCapture(str(writer.output))
    assert capture.isOpened()
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    decoded = []
    while (read := capture.read())[0]:
        decoded.append(cv2.cvtColor(read[1], cv2.COLOR_BGR2RGB))
    capture.release()
    assert fourcc in ("mp4v", "FMP4") and decoded[0].shape == (120, 200, 3)  # MPEG-4 Part 2 (FFmpeg's tag: FMP4)
    assert_round_trip(frames, decoded)


def test_video_frame_of_another_size_is_refused(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "clip.mp4", 30.0, (120, 200))
    with pytest.raises(ValueError, match=r"frame must be 120x200x3 uint8 RGB, got shape \(100, 200, 3\)"):
        writer.write(np.zeros((100, 200, 3), np.uint8))
    writer.close()

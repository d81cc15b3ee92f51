"""Tests of the real data-set layouts and strict label decoding (ssp_train.datasets), and the
datasets over them (ssp_train.sources.VideoSource), on tiny fake trees with the real folder and file naming,
built from synthetic frames so that registration between video frames works as on real video.

UAVid was checked against the official toolkit, github.com/YeLyuUT/UAVidToolKit at commit
500a014d0745c2eb8273ddb9b0d3d3487ef7d2b9 (github.com/UAVid/UAVidToolKit is not in the index we could read):
``colorTransformer.py`` (class names, colours, train ids), ``prepareTrainIdFiles.py`` and
``writeImageLabelPathPairsToTxtFile.py`` (``<split>/seq*/Images`` and ``Labels`` with the same file names), and
``README.md`` (the release's split folders renamed to ``train``, ``valid``, ``test``, the toolkit beside them).
RuralScapes: the authors' github.com/alinamarcu/ruralscapes-nn (commit c29408daaaf23491da4fd3fbeabea8845e290967,
``test_qualitative_evaluation.py``: ``CLASSES_BGR``) gives colours only; its folder layout is not in that repository.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ssp_ros.classes import load_class_set
from ssp_ros.errors import ConfigError, SspError
from ssp_train.config import DataConfig, TrainConfig
from ssp_train.data import ClipDataset, FrameDataset, PairDataset, video_source
from ssp_train.datasets import RURALSCAPES_SPLITS, LabelDecoder, index_dataset, label_encoding

UAVID = load_class_set("uavid")
# The UAVid toolkit's colour table (colorTransformer.py at the commit above), in its train-id order, RGB, with
# our name of each class.
UAVID_TOOLKIT_COLOURS = (
    ("clutter", (0, 0, 0)), ("building", (128, 0, 0)), ("road", (128, 64, 128)), ("static_car", (192, 0, 192)),
    ("tree", (0, 128, 0)), ("low_vegetation", (128, 128, 0)), ("human", (64, 64, 0)), ("moving_car", (64, 0, 128)),
)
# RuralScapes' colours as the authors' ruralscapes-nn writes predictions (CLASSES_BGR, converted to RGB), by name.
RURALSCAPES_AUTHOR_COLOURS = {
    "land": (0, 255, 0), "forest": (0, 127, 0), "residential": (255, 255, 0), "haystack": (255, 127, 0),
    "road": (255, 255, 255), "church": (255, 0, 255), "car": (127, 127, 127), "water": (0, 0, 255),
    "sky": (0, 255, 255), "hill": (127, 127, 63), "person": (255, 0, 0), "fence": (127, 127, 0),
}
LABELLED = (10, 20, 30)  # labelled frame numbers in the fake sequences (UAVid labels every 100th frame)


def _write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def _write_grey(path: Path, grey: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), grey)


def make_uavid(root: Path, frames, split: str = "train", sequences: int = 1, video_frames: bool = True,
               vdd: bool = False, split_folder: str | None = None) -> Path:
    """``root/uavid_<split>/seqN/{Images,Labels,Frames}`` from synthetic frames (labels in colour, or 1-based
    ids for the VDD relabelling), as the UAVid release unpacks; ``split_folder`` names the split's folder
    otherwise (the toolkit's ``train``, ``valid``). Images and labels share file names, as the toolkit's
    ``writeImageLabelPathPairsToTxtFile.py`` pairs them (``Images`` → ``Labels`` in the path)."""
    for n in range(1, sequences + 1):
        seq = root / (split_folder or f"uavid_{split}") / f"seq{n}"
        for k in LABELLED:
            _write_rgb(seq / "Images" / f"{k:06d}.png", frames[k].image)
            if vdd:
                _write_grey(seq / "Labels" / f"{k:06d}.png", frames[k].labels + 1)
            else:
                _write_rgb(seq / "Labels" / f"{k:06d}.png", UAVID.palette()[frames[k].labels])
        if video_frames:
            for k in range(len(frames)):
                _write_rgb(seq / "Frames" / f"{k:06d}.png", frames[k].image)
    return root


def make_ruralscapes(root: Path, frames, video: str = "DJI_0043") -> Path:
    """``root/frames/<video>_<frame>.jpg`` and ``root/labels/manual_labels/<video>/segfull_<video>_<frame>.png``."""
    palette = load_class_set("ruralscapes").palette()
    for k in range(len(frames)):
        _write_rgb(root / "frames" / f"{video}_{k:06d}.jpg", frames[k].image)
    for k in LABELLED:
        labels = frames[k].labels % 12  # any of the 12 RuralScapes classes
        _write_rgb(root / "labels" / "manual_labels" / video / f"segfull_{video}_{k}.png", palette[labels])
    return root


def _cfg(root: Path, source: str = "uavid", dataset: str = "uavid", **data) -> TrainConfig:
    cfg = TrainConfig()
    cfg.model.dataset = dataset
    cfg.data = DataConfig(source=source, root=str(root), frame_size=None, val_frames=0, **data)
    return cfg


# ---------------------------------------------------------------------------------------------------------
# layouts


def test_uavid_layout_frames_labels_and_pairs(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video, sequences=2)
    source = video_source(_cfg(root))
    assert [s.name for s in source.sequences] == ["uavid_train/seq1", "uavid_train/seq2"]
    assert source.labelled() == [(s, k) for s in (0, 1) for k in LABELLED]
    # colour labels decode to exactly the ids they were drawn from; images are the files
    np.testing.assert_array_equal(source.labels(0, 20), small_video[20].labels)
    np.testing.assert_array_equal(source.image(1, 30), small_video[30].image)
    assert source.labels(0, 19) is None  # a video frame without labels
    frames = FrameDataset(source, crop_size=0, flip_prob=0.0, multiple=8)
    image, labels = frames[(1, 0)]
    assert torch.equal(labels, torch.from_numpy(small_video[20].labels).long())
    # a pair takes its previous frame from Frames/ at the gap, and registration recovers the motion
    pairs = PairDataset(source, crop_size=0, frame_gap=(2, 2), flip_prob=0.0, multiple=8)
    pair = pairs[(4, 1)]  # sequence 2, frame 20
    assert torch.equal(pair["prev"], torch.from_numpy(small_video[18].image).permute(2, 0, 1).float())
    assert (pair["prev_labels"] == 255).all()  # frame 18 has no labels
    hits = total = 0
    for key in range(len(pairs)):
        _, k = pairs.items[key]
        homography = pairs[(key, 0)]["homography"].numpy()  # whole frames, no flip: the registration's estimate
        warped = cv2.warpPerspective(small_video[k - 2].labels, homography, (200, 120), flags=cv2.INTER_NEAREST,
                                     borderValue=255)
        valid = warped != 255
        hits, total = hits + int((warped[valid] == small_video[k].labels[valid]).sum()), total + int(valid.sum())
    assert hits / total > 0.95


def test_uavid_colours_are_the_toolkits(tmp_path):
    """Every UAVid class has the toolkit's colour (colorTransformer.py); our ids are our own order, so a label
    PNG the toolkit would encode as train id t decodes to the class the toolkit names t."""
    assert {name: UAVID.colors[UAVID.index(name)] for name, _ in UAVID_TOOLKIT_COLOURS} == dict(UAVID_TOOLKIT_COLOURS)
    assert UAVID.num_classes == len(UAVID_TOOLKIT_COLOURS)
    train_ids = np.arange(64, dtype=np.uint8).reshape(8, 8) % 8  # every toolkit train id
    colours = np.array([c for _, c in UAVID_TOOLKIT_COLOURS], np.uint8)
    path = tmp_path / "000000.png"
    _write_rgb(path, colours[train_ids])
    ours = LabelDecoder(UAVID, "color")(path)
    expected = np.array([UAVID.index(name) for name, _ in UAVID_TOOLKIT_COLOURS], np.uint8)[train_ids]
    np.testing.assert_array_equal(ours, expected)


def test_uavid_toolkit_layout(tmp_path, small_video):
    """The toolkit's README renames the release's split folders to train / valid / test and clones the toolkit
    beside them; its scripts take only ``seq*`` folders as sequences."""
    root = make_uavid(tmp_path / "uavid", small_video, split="val", split_folder="valid", video_frames=False)
    (root / "UAVidToolKit").mkdir()
    (root / "valid" / "tooltest").mkdir()  # not a sequence: the toolkit ignores it, so do we
    sequences = index_dataset("uavid", root, "val")
    assert [s.name for s in sequences] == ["valid/seq1"] and [i.frame for i in sequences[0].labelled] == [10, 20, 30]
    source = video_source(_cfg(root, split="val"))
    np.testing.assert_array_equal(source.labels(0, 20), small_video[20].labels)
    make_uavid(root, small_video, split="val", video_frames=False)  # both: the release's name wins
    assert [s.name for s in index_dataset("uavid", root, "val")] == ["uavid_val/seq1"]
    with pytest.raises(SspError, match=r"UAVid train split \(expected .*uavid_train/seq\*/Images, Labels, or "
                                       r".*/train/seq\*/ as the UAVid toolkit names it\)"):
        index_dataset("uavid", root, "train")


def test_ruralscapes_colours_are_the_authors():
    classes = load_class_set("ruralscapes")
    assert {name: classes.colors[classes.index(name)] for name in classes.names} == RURALSCAPES_AUTHOR_COLOURS


def test_uavid_vdd_relabelling_reads_1_based_ids(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video, vdd=True)
    source = video_source(_cfg(root, dataset="uavid_vdd"))
    assert label_encoding("uavid", "uavid_vdd") == "ids_from_1"
    labels = source.labels(0, 10)
    np.testing.assert_array_equal(labels, small_video[10].labels)  # written as id + 1, read back as id
    _write_grey(root / "uavid_train/seq1/Labels/000010.png", np.zeros((120, 200), np.uint8))
    assert (source.labels(0, 10) == 255).all()  # 0 = clutter = unlabelled in the paper's relabelling


def test_ruralscapes_layout_and_split(tmp_path, small_video):
    root = make_ruralscapes(tmp_path / "rural", small_video[:31])
    make_ruralscapes(root, small_video[:31], video="DJI_0051")  # a test-split video
    assert "0043" in RURALSCAPES_SPLITS["train"] and "0051" in RURALSCAPES_SPLITS["test"]
    train = video_source(_cfg(root, source="ruralscapes", dataset="ruralscapes"))
    test = video_source(_cfg(root, source="ruralscapes", dataset="ruralscapes", split="test"))
    assert [s.name for s in train.sequences] == ["DJI_0043"] and [s.name for s in test.sequences] == ["DJI_0051"]
    np.testing.assert_array_equal(train.labels(0, 20), small_video[20].labels % 12)
    assert np.abs(train.image(0, 20).astype(int) - small_video[20].image).mean() < 4  # JPEG
    clips = ClipDataset(train, crop_size=64, frame_gap=(1, 2), length=3)
    clip = clips[(0, 3)]
    assert clip["images"].shape == (3, 3, 64, 64) and clip["to_previous"].shape == (2, 3, 3)
    assert (clip["labels"][:2] == 255).all() and (clip["labels"][2] != 255).any()


def test_frame_size_resizes_images_and_labels(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video)
    cfg = _cfg(root)
    cfg.data.frame_size = (60, 100)
    source = video_source(cfg)
    assert source.image(0, 10).shape == (60, 100, 3) and source.labels(0, 10).shape == (60, 100)
    expected = cv2.resize(small_video[10].labels, (100, 60), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(source.labels(0, 10), expected)


# ---------------------------------------------------------------------------------------------------------
# bad input: every error names the file (or key) at fault


def test_missing_folders_are_named(tmp_path, small_video):
    with pytest.raises(SspError, match=f"{tmp_path / 'nope'}: UAVid root folder not found"):
        index_dataset("uavid", tmp_path / "nope", "train")
    (tmp_path / "uavid").mkdir()
    with pytest.raises(SspError, match=r"uavid_val: UAVid val split"):
        index_dataset("uavid", tmp_path / "uavid", "val")
    (tmp_path / "uavid/uavid_train/seq1/Images").mkdir(parents=True)
    with pytest.raises(SspError, match=r"seq1/Labels: Labels folder of a UAVid sequence not found"):
        index_dataset("uavid", tmp_path / "uavid", "train")
    with pytest.raises(SspError, match=r"RuralScapes frames folder"):
        index_dataset("ruralscapes", tmp_path / "uavid", "train")
    with pytest.raises(SspError, match=r"UAVid split 'test' unknown"):
        index_dataset("uavid", tmp_path / "uavid", "test")


def test_an_empty_split_is_an_error_not_an_empty_dataset(tmp_path, small_video):
    (tmp_path / "uavid/uavid_train/seq1/Images").mkdir(parents=True)
    (tmp_path / "uavid/uavid_train/seq1/Labels").mkdir(parents=True)
    with pytest.raises(SspError, match=r"uavid_train: no labelled sequences"):
        index_dataset("uavid", tmp_path / "uavid", "train")
    root = make_ruralscapes(tmp_path / "rural", small_video[:31], video="DJI_0051")  # test split only
    with pytest.raises(SspError, match=r"manual_labels: no labelled video of the train split"):
        index_dataset("ruralscapes", root, "train")


def test_unknown_colour_is_an_error_naming_file_and_colour(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video)
    bad = root / "uavid_train/seq1/Labels/000020.png"
    rgb = UAVID.palette()[small_video[20].labels]
    rgb[5, 7] = (1, 2, 3)
    _write_rgb(bad, rgb)
    source = video_source(_cfg(root))
    with pytest.raises(SspError) as err:
        source.labels(0, 20)
    assert str(bad) in str(err.value) and "[1, 2, 3]" in str(err.value) and "(x=7, y=5)" in str(err.value)
    with pytest.raises(SspError, match="000020.png: colour"):  # and through the dataset, as training would see it
        FrameDataset(source, crop_size=64)[(1, 0)]


def test_unknown_id_and_wrong_encoding_are_errors_naming_the_file(tmp_path, small_video):
    classes = load_class_set("uavid_vdd")
    decoder = LabelDecoder(classes, "ids_from_1")
    path = tmp_path / "ids.png"
    _write_grey(path, np.full((4, 4), 9, np.uint8))  # 8 classes: 1..8 valid, 9 is not
    with pytest.raises(SspError, match=rf"{path}: label value\(s\) \[9\] are not ids of 'uavid_vdd'"):
        decoder(path)
    _write_rgb(path, np.dstack([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]))
    with pytest.raises(SspError, match=rf"{path}: expected a single-channel class-id image"):
        decoder(path)
    _write_grey(path, np.zeros((4, 4), np.uint8))
    with pytest.raises(SspError, match=rf"{path}: expected an RGB colour label image"):
        LabelDecoder(UAVID, "color")(path)
    ids = LabelDecoder(UAVID, "ids")
    _write_grey(path, np.array([[0, 7, 255, 8]], np.uint8))
    with pytest.raises(SspError, match=r"label value\(s\) \[8\]"):
        ids(path)
    with pytest.raises(SspError, match=r"has labels for the class lists uavid, uavid_vdd, not 'ruralscapes'"):
        label_encoding("uavid", "ruralscapes")


def test_size_mismatch_and_missing_partner_files_are_named(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video, video_frames=False)
    label = root / "uavid_train/seq1/Labels/000020.png"
    _write_rgb(label, UAVID.palette()[small_video[20].labels[:100]])
    with pytest.raises(SspError, match=rf"{label}: label size 200x100 does not match its image .*000020.png"):
        index_dataset("uavid", root, "train")
    label.unlink()
    with pytest.raises(SspError, match=rf"{label}: not found \(every image needs its label"):
        index_dataset("uavid", root, "train")
    rural = make_ruralscapes(tmp_path / "rural", small_video[:31])
    frame = rural / "frames" / "DJI_0043_000020.jpg"
    frame.unlink()
    with pytest.raises(SspError, match=rf"segfull_DJI_0043_20.png: its frame {frame} not found"):
        index_dataset("ruralscapes", rural, "train")


def test_pairs_need_video_frames(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video, video_frames=False)
    source = video_source(_cfg(root))
    assert len(FrameDataset(source, crop_size=64)) == 3  # single frames need no video
    with pytest.raises(ConfigError, match=r"data.frame_gap: no clips of 2 frames with gap 2"):
        PairDataset(source, crop_size=64, frame_gap=(2, 3))


def test_failed_registration_redraws_then_gives_up(tmp_path, small_video):
    root = make_uavid(tmp_path / "uavid", small_video)
    rng = np.random.default_rng(0)
    for k in range(len(small_video)):  # video frames that are not the video: nothing registers
        if k not in LABELLED:
            _write_rgb(root / f"uavid_train/seq1/Frames/{k:06d}.png", rng.integers(0, 255, (120, 200, 3), np.uint8))
    pairs = PairDataset(video_source(_cfg(root)), crop_size=64, frame_gap=(1, 1))
    with pytest.raises(SspError, match=r"registration failed on 20 clips in a row .*seq1 frame"):
        pairs[(0, 0)]
    # gap 10: frames 20 and 30 pair with labelled frames (real images); frame 10 with noise, so it is redrawn
    pairs = PairDataset(video_source(_cfg(root)), crop_size=64, frame_gap=(10, 10))
    assert all(pairs[(0, seed)]["homography"].shape == (3, 3) for seed in range(3))


def test_real_source_config_is_checked():
    with pytest.raises(ConfigError, match=r"root: set it to the data set's folder"):
        DataConfig(source="uavid")
    with pytest.raises(ConfigError, match=r"root: only real data sets"):
        DataConfig(root="/data/uavid")
    with pytest.raises(ConfigError, match=r"val_frames: validation during training runs on synthetic video only"):
        DataConfig(source="uavid", root="/data/uavid")
    with pytest.raises(ConfigError, match=r"jitter: strengths must be in \[0, 1\)"):
        DataConfig(jitter=(0.2, 1.5, 0.0))
    with pytest.raises(ConfigError, match=r"data.source: 'synthetic' has no files"):
        video_source(TrainConfig())

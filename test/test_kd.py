"""Tests of KD-SSP: the teacher-logits cache (keys, staleness), the KD objective, and teacher → KD recipes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from ssp_ros.backends.export_info import sha256_file
from ssp_ros.config import ModelConfig
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.models import build_segmenter, build_ssp, read_weights_metadata, save_weights
from ssp_ros.resources import share_dir
from ssp_train.config import TrainConfig, load_train_config
from ssp_train.data import PairDataset
from ssp_train.losses import fused_teacher_targets
from ssp_train.objectives import KdObjective
from ssp_train.sources import SyntheticSource
from ssp_train.teacher import TeacherCache, load_teacher
from ssp_train.train import check_weights_size, main

TRAIN_CONFIGS = share_dir() / "config" / "train"
K = 8
TINY = ModelConfig(decoder_channels=16, input_size=(64, 96))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture
def teacher_file(tmp_path):
    teacher = build_segmenter(TINY, K)
    return save_weights(teacher, tmp_path / "teacher.safetensors", {"dataset": "uavid"})


def test_shipped_teacher_is_larger_than_the_student():
    teacher, kd = (load_train_config(TRAIN_CONFIGS / f"{n}.yaml") for n in ("teacher", "kd"))
    assert teacher.output.model == "image" and teacher.image.steps > 0 and teacher.ssp.steps == 0
    assert kd.kd.steps > 0 and kd.kd.temperature == 2.0 and kd.kd.teacher == teacher.output.weights
    assert kd.model == ModelConfig(weights="models/ssp_default.safetensors")  # the shipped student
    assert check_weights_size(teacher, K) > 2 * check_weights_size(kd, K)
    paper = load_train_config(TRAIN_CONFIGS / "uavid_paper.yaml")
    assert paper.kd.lr == 5e-5 and paper.kd.lr_image == 2.5e-5 and paper.kd.batch_size == 4


@pytest.mark.parametrize("section, key", [({"kd": {"steps": 5}}, "kd.teacher"),
                                          ({"output": {"model": "image"}}, "output.model")])
def test_kd_config_errors(tmp_path, section, key):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(section))
    with pytest.raises(ConfigError, match=key):
        load_train_config(path)


def test_teacher_cache_round_trip_and_staleness(small_video, teacher_file, tmp_path):
    source = SyntheticSource([small_video[:3]], keys=["scene/seed7"])
    teacher = load_teacher(teacher_file, K, "uavid")
    with pytest.raises(SspError, match="classes"):
        load_teacher(teacher_file, 6, "ruralscapes")
    cache = TeacherCache(tmp_path / "cache", sha256_file(teacher_file), source)
    assert cache.missing([(0, 0), (0, 2)]) == [(0, 0), (0, 2)]
    cache.fill(teacher, [(0, 0), (0, 2)], torch.device("cpu"), batch_size=2)
    assert cache.missing([(0, 0), (0, 1), (0, 2)]) == [(0, 1)]
    assert cache.path(0, 2).parent.name == "seed7"
    image = small_video[2].image
    logits = cache.logits(0, 2, image)
    x = F.pad(torch.from_numpy(image).permute(2, 0, 1).float()[None], (0, 24, 0, 8))  # 120x200 -> 128x224
    with torch.no_grad():
        direct = F.interpolate(teacher(x)[0], size=(128, 224), mode="bilinear")[0, :, :120, :200]
    torch.testing.assert_close(logits, direct, atol=0.02, rtol=0.01)  # stored in float16
    with pytest.raises(SspError, match="stale.*digest"):  # other pixels under the same frame key
        cache.logits(0, 2, small_video[1].image)
    other = TeacherCache(tmp_path / "cache", "f" * 64, source)  # a file copied into another teacher's folder
    other.path(0, 2).parent.mkdir(parents=True)
    shutil.copy(cache.path(0, 2), other.path(0, 2))
    with pytest.raises(SspError, match="stale.*teacher"):
        other.logits(0, 2, image)
    cache.path(0, 0).write_bytes(b"junk")
    with pytest.raises(SspError, match="unreadable"):
        cache.logits(0, 0, small_video[0].image)


def test_invalid_flow_keeps_own_teacher_target():
    prev, cur = torch.rand(1, K, 8, 8).softmax(1), torch.rand(1, K, 8, 8).softmax(1)
    zero = torch.zeros(1, 2, 8, 8)
    fused_prev, fused_cur = fused_teacher_targets(prev, cur, zero, zero)
    torch.testing.assert_close(fused_prev, (prev + cur) / 2)  # static pair: the mean of both
    invalid = torch.zeros(1, 1, 8, 8)
    fused_prev, fused_cur = fused_teacher_targets(prev, cur, zero, zero, invalid, invalid)
    torch.testing.assert_close(fused_prev, prev)
    torch.testing.assert_close(fused_cur, cur)


def test_kd_objective_pulls_the_student_to_the_teacher(small_video, teacher_file, tmp_path):
    source = SyntheticSource([small_video[:6]])
    dataset = PairDataset(source, crop_size=64, frame_gap=(1, 2), with_flow=True)
    cache = TeacherCache(tmp_path / "cache", sha256_file(teacher_file), source)
    cache.fill(load_teacher(teacher_file, K, "uavid"), dataset.frames_used(), torch.device("cpu"))
    dataset.teacher = cache
    batch = torch.utils.data.default_collate([dataset[(i, i)] for i in (0, 3)])
    assert batch["teacher"].shape == (2, K, 64, 64) and batch["prev_teacher"].shape == (2, K, 64, 64)
    objective = KdObjective(build_ssp(TINY, K), frozen=False, temperature=2.0, prev_weight=1.0, tc_weight=0.5).train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        values = objective(batch)
        optimizer.zero_grad()
        values["loss"].backward()
        optimizer.step()
        losses.append(values["loss"].item())
    assert values["kl_prev"] > 0 and values["kl_cur"] > 0
    assert np.mean(losses[-2:]) < 0.7 * np.mean(losses[:2])


def _recipe(tmp_path, name: str, **sections) -> str:
    data = yaml.safe_load((TRAIN_CONFIGS / "smoke.yaml").read_text())
    data["model"]["input_size"] = [64, 96]
    data["data"].update(frames_per_sequence=5, sequences=1, val_frames=2)
    data["output"].update(dir=str(tmp_path / name), weights=str(tmp_path / f"{name}.safetensors"))
    for key, values in sections.items():
        data.setdefault(key, {}).update(values)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_teacher_then_kd_recipes_end_to_end(tmp_path, capsys):
    teacher = _recipe(tmp_path, "teacher", model={"decoder_channels": 24}, image={"steps": 2}, ssp={"steps": 0},
                      output={"model": "image"})
    assert main(teacher) == 0
    meta = read_weights_metadata(tmp_path / "teacher.safetensors")
    assert meta["kind"] == "segmenter" and meta["decoder_channels"] == 24
    kd = {"steps": 2, "batch_size": 2, "crop_size": 64, "warmup_steps": 1,
          "teacher": str(tmp_path / "teacher.safetensors"), "cache": str(tmp_path / "cache")}
    student = _recipe(tmp_path, "kd", image={"steps": 1}, ssp={"steps": 1, "unroll": 1}, kd=kd)
    assert main(student) == 0
    out = capsys.readouterr().out
    assert "kd stage: 2 steps" in out and "KD-SSP:" in out and "frames to compute" in out
    assert (tmp_path / "kd" / "kd_last.pt").is_file()
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 5  # every frame of the one 5-frame sequence
    assert read_weights_metadata(tmp_path / "kd.safetensors")["kind"] == "ssp"
    cfg = load_train_config(student)
    assert isinstance(cfg, TrainConfig) and cfg.kd.steps == 2
    data = yaml.safe_load(student.read_text())  # resumed: nothing to train, the cache is reused
    data["output"]["resume"] = True
    student.write_text(yaml.safe_dump(data))
    assert main(student) == 0
    out = capsys.readouterr().out
    assert "0 of 5 frames to compute" in out and "kd: resumed from" in out

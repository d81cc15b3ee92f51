"""The training recipe on a real data-set layout (a tiny fake UAVid tree) end to end, and the shipped recipes."""

from __future__ import annotations

import pytest
import torch
import yaml
from test_data_real import make_uavid
from test_distributed import tiny_recipe

from ssp_ros.models import read_weights_metadata
from ssp_ros.resources import share_dir
from ssp_train.config import load_train_config
from ssp_train.train import main

TRAIN_CONFIGS = share_dir() / "config" / "train"


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread per process (the machines are shared), restored afterwards for the other test files."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_recipe_trains_on_a_uavid_layout(tmp_path, small_video, capsys):
    root = make_uavid(tmp_path / "uavid", small_video)
    recipe = tiny_recipe(tmp_path / "run", image={"steps": 2, "crop_size": 64},
                         ssp={"steps": 2, "crop_size": 64}, model={"dataset": "uavid"})
    recipe["data"] = {"source": "uavid", "root": str(root), "frame_size": None, "frame_gap": [1, 2],
                      "jitter": [0.2, 0.2, 0.2], "val_frames": 0}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(path) == 0
    out = capsys.readouterr().out
    assert "data: 3 labelled frames in 1 sequences of uavid train" in out
    assert "ssp stage: 2 steps" in out and "train: wrote" in out
    meta = read_weights_metadata(tmp_path / "run" / "ssp.safetensors")
    assert meta["trained_on"] == f"uavid train ({root})" and meta["train_config"]["data"]["source"] == "uavid"


def test_paper_recipe_reads_uavid_with_the_papers_settings():
    cfg = load_train_config(TRAIN_CONFIGS / "uavid_paper.yaml")
    assert (cfg.data.source, cfg.model.dataset, cfg.data.frame_gap) == ("uavid", "uavid_vdd", (2, 2))
    assert (cfg.image.batch_size, cfg.ssp.crop_size, cfg.ssp.tc_weight, cfg.ssp.lr, cfg.ssp.lr_image) == (
        4, 736, 0.5, 5e-5, 2.5e-5)
    assert cfg.image.tc_weight == 0.5  # the paper's base training: CE + 0.5·TC on pairs
    assert cfg.compute.precision == "bf16" and cfg.data.val_frames == 0

"""Tests of ``ssp eval``: image-model, SSP and KD-SSP weights scored on labelled synthetic video."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import small_scenario

from ssp_ros.cli.main import build_parser
from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.evaluate import HELD_ASIDE_SEEDS, Candidate, pooled_iou, run_eval
from ssp_ros.eval.metrics import ConfusionMatrix
from ssp_ros.models import build_segmenter, build_ssp, save_weights
from ssp_ros.synthetic.config import SimConfig

K = 8
TINY = ModelConfig(decoder_channels=16, input_size=(64, 96))


@pytest.fixture
def weights(tmp_path):
    torch.manual_seed(0)
    ssp = save_weights(build_ssp(TINY, K), tmp_path / "ssp.safetensors", {"dataset": "uavid"})
    image = save_weights(build_segmenter(replace(TINY, decoder_channels=24), K), tmp_path / "teacher.safetensors",
                         {"dataset": "uavid"})
    return ssp, image


def test_eval_scores_every_weights_file(tmp_path, weights):
    ssp, image = weights
    cfg = SimConfig(model=TINY)
    out = tmp_path / "eval"
    report = run_eval(cfg, [Candidate("ssp", ssp), Candidate("teacher", image)], out, seeds=[5, 6], frames=4,
                      scenarios={"small": small_scenario()})
    assert [(r["name"], r["model"]) for r in report["rows"]] == [("ssp", "image"), ("ssp", "ssp"),
                                                                ("teacher", "image")]
    assert report["sources"] == ["synthetic seed 5", "synthetic seed 6"]
    for row in report["rows"]:
        assert len(row["per_sequence"]) == 2
        assert 0 <= row["miou"] <= 100 and 0 <= row["tc"] <= 100
        assert row["miou"] == pytest.approx(sum(s["miou"] for s in row["per_sequence"]) / 2, abs=1e-3)
        assert 0 <= row["miou_all"] <= 100 and len(row["iou_all_per_class"]) == K
        # resets after the stream's start: SSP counts them, the image model never fuses so has none to count
        assert all(len(s["iou_per_class"]) == K and (s["resets"] is None) == (row["model"] == "image")
                   for s in row["per_sequence"])
    assert json.loads((out / "eval.json").read_text())["rows"][2]["label"] == "teacher: image model"
    assert "| ssp: SSP |" in (out / "eval.md").read_text()
    assert "mIoU, all pixels |" in (out / "eval.md").read_text()


def test_pooled_iou_weighs_a_stray_class_by_its_pixels():
    # the first sequence lacks class 2 and paints it on 1 of its 100 pixels; the second has 20 pixels of it, right
    first, second = ConfusionMatrix(3), ConfusionMatrix(3)
    truth_a = np.array([0] * 50 + [1] * 50)
    pred_a = truth_a.copy()
    pred_a[0] = 2
    truth_b = np.array([0] * 40 + [1] * 40 + [2] * 20)
    first.update(pred_a, truth_a)
    second.update(truth_b, truth_b)
    assert first.miou() == pytest.approx((49 / 50 + 1 + 0) / 3)  # the stray class costs a whole class
    first.merge(second)
    pooled = pooled_iou(first)
    assert pooled["iou_all_per_class"] == [pytest.approx(100 * 89 / 90, abs=1e-3), 100.0,
                                           pytest.approx(100 * 20 / 21, abs=1e-3)]
    assert pooled["miou_all"] == pytest.approx(100 * (89 / 90 + 1 + 20 / 21) / 3, abs=1e-3)


def test_eval_gives_rows_per_scenario(tmp_path, weights):
    from test_oblique import oblique_scenario

    report = run_eval(SimConfig(model=TINY), [Candidate("ssp", weights[0])], tmp_path / "eval", seeds=[5], frames=3,
                      scenarios={"small": small_scenario(), "oblique": oblique_scenario(pitch=70.0)})
    assert [(r["scenario"], r["model"]) for r in report["rows"]] == [("small", "image"), ("small", "ssp"),
                                                                    ("oblique", "image"), ("oblique", "ssp")]
    assert report["scenarios"] == ["small", "oblique"]
    assert report["rows"][3]["label"] == "ssp: SSP (oblique)"
    assert "| ssp: image model (small) |" in (tmp_path / "eval" / "eval.md").read_text()


def test_eval_errors_name_the_weights(tmp_path, weights):
    cfg = SimConfig(model=TINY)
    with pytest.raises(SspError, match="missing.safetensors: weights file not found"):
        run_eval(cfg, [Candidate("x", tmp_path / "missing.safetensors")], tmp_path, [5], 2,
                 scenarios={"small": small_scenario()})
    with pytest.raises(SspError, match="must differ"):
        run_eval(cfg, [Candidate("a", weights[0]), Candidate("a", weights[1])], tmp_path, [5], 2)
    with pytest.raises(SspError, match="'ruralscapes'"):
        run_eval(replace(cfg, model=replace(TINY, dataset="ruralscapes")), [Candidate("a", weights[0])], tmp_path,
                 [5], 2)


def test_eval_parser_defaults_to_held_aside_seeds():
    parser = build_parser()
    args = parser.parse_args(["eval", "--weights", "kd=a/kd.safetensors", "--weights", "b/ssp.safetensors"])
    assert [(c.name, str(c.path)) for c in args.weights] == [("kd", "a/kd.safetensors"), ("ssp", "b/ssp.safetensors")]
    assert args.seeds == list(HELD_ASIDE_SEEDS)
    assert args.func.__name__ == "cmd_eval" and args.frames == 100
    with pytest.raises(SystemExit):
        parser.parse_args(["eval"])  # --weights is required

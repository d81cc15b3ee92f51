"""Tests of ``ssp ablate``: the shipped plan, plan errors that name the file, variant and key, and a tiny plan end
to end (rows, the table, the registration switch reaching the pipeline, reuse of finished variants)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import ssp_ros.eval.clips
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.resources import share_dir
from ssp_train.ablation import load_plan, markdown, run_ablation
from ssp_train.cli import cmd_ablate

TRAIN_CONFIGS = share_dir() / "config" / "train"


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_shipped_plan_covers_the_issue_ablations():
    plan = load_plan(TRAIN_CONFIGS / "ablation.yaml")
    variants = {v.name: v.recipe.ssp for v in plan.variants}
    base = plan.base.ssp
    assert variants["ssp"] == base  # the reference row is the base recipe's SSP stage
    assert variants["fixed_blend"].similarity == "fixed" and variants["cosine"].similarity == "cosine"
    assert variants["no_registration"].registration is False
    assert sorted(v.tc_weight for n, v in variants.items() if n.startswith("lambda_")) == [0.2, 0.35, 0.5, 0.65]
    assert variants["untrained_head"].steps == 0 and variants["image_finetuned"].lr_image > 0
    assert variants["entropy_validity"].similarity_inputs == ("entropy", "validity")
    assert variants["unroll_3"].unroll == 3
    own = [v for v in plan.variants if v.own_image_model]
    assert [v.name for v in own] == ["image_tc"] and own[0].recipe.image.tc_weight == 0.5
    assert own[0].recipe.image.steps == plan.base.image.steps  # the shipped image stage, plus the paper's TC loss
    for name, ssp in variants.items():  # each changes only what its name says: the rest is the base recipe
        assert ssp.lr == base.lr and ssp.batch_size == base.batch_size, name
    assert plan.image_weights == Path("models/ssp_default.safetensors") and plan.seeds == (2000, 2001, 2002, 2003, 2004)
    assert {v.group for v in plan.variants} == {"paper", "beyond"}


def _plan(tmp_path: Path, **changes) -> dict:
    data = {"base": str(TRAIN_CONFIGS / "smoke.yaml"), "image_weights": None, "out": str(tmp_path / "out"),
            "seeds": [2000], "frames": 4,
            "variants": [{"name": "ssp"}, {"name": "no_registration", "ssp": {"registration": False}},
                         {"name": "fixed_blend", "label": "fixed blend", "ssp": {"similarity": "fixed"}},
                         {"name": "entropy", "group": "beyond", "ssp": {"similarity_inputs": ["entropy"]}},
                         {"name": "image_ce", "image": {"tc_weight": 0.0}}]}
    data.update(changes)
    return data


@pytest.mark.parametrize(("change", "words"), [
    ({"seed": [1]}, "unknown key(s) ['seed']"),
    ({"base": None}, "base: the training recipe"),
    ({"seeds": [1]}, "seeds [1] overlap the base recipe's training or validation seeds"),
    ({"frames": 1}, "frames: expected an integer >= 2"),
    ({"variants": []}, "variants: expected a non-empty list"),
    ({"variants": [{"name": "a"}, {"name": "a"}]}, "variants[1]: name 'a' is used twice"),
    ({"variants": [{"name": "a", "sp": {}}]}, "variants[0]: unknown key(s) ['sp']"),
    ({"variants": [{"name": "a", "group": "other"}]}, "variants[0] (a): group: expected one of"),
    ({"variants": [{"name": "a", "ssp": {"simlarity": "fixed"}}]}, "variants[0] (a): ssp.simlarity: unknown key "
                                                                   "(did you mean 'similarity'?)"),
    ({"variants": [{"name": "a", "ssp": {"tc_weight": -1}}]}, "variants[0] (a): ssp.tc_weight"),
    ({"variants": [{"name": "a", "image": {"steps": 0}}]}, "changes the image stage but trains it for 0 steps"),
])
def test_plan_errors_name_the_file_variant_and_key(tmp_path, change, words):
    path = _write(tmp_path / "plan.yaml", _plan(tmp_path, **change))
    with pytest.raises(ConfigError) as err:
        load_plan(path)
    assert str(path) in str(err.value) and words in str(err.value)


def test_missing_image_weights_and_unknown_variant_are_named(tmp_path):
    plan = load_plan(_write(tmp_path / "plan.yaml", _plan(tmp_path, image_weights=str(tmp_path / "none.safetensors"))))
    with pytest.raises(SspError, match=r"image_weights: .*none\.safetensors: weights file not found"):
        run_ablation(plan)
    with pytest.raises(SspError, match=r"--only \['nope'\]: no such variant"):
        run_ablation(plan, ["nope"])


@pytest.mark.slow
def test_tiny_plan_end_to_end(tmp_path, monkeypatch):
    seen = []
    real_run_clip = ssp_ros.eval.clips.run_clip

    def spy(cfg, backend, clip, enabled, num_classes, desc):
        seen.append((desc, enabled, cfg.registration.enabled))
        return real_run_clip(cfg, backend, clip, enabled, num_classes, desc)

    monkeypatch.setattr(ssp_ros.eval.clips, "run_clip", spy)
    plan = load_plan(_write(tmp_path / "plan.yaml", _plan(tmp_path)))
    report = run_ablation(plan)
    out = tmp_path / "out"
    assert [r["name"] for r in report["rows"]] == ["ssp", "no_registration", "fixed_blend", "entropy", "image_ce"]
    assert ("image model", False, True) in seen and ("ssp", True, True) in seen
    assert ("no_registration", True, False) in seen  # the variant without registration is scored without it
    for row in report["rows"]:
        assert (out / row["name"] / "ssp.safetensors").is_file() and (out / row["name"] / "row.json").is_file()
        assert 0.0 <= row["miou"] <= 100.0 and len(row["per_sequence"]) == 1
    assert [r["name"] for r in report["rows"] if "image" in r] == ["image_ce"]  # only it has its own image model
    assert (out / "image_ce" / "segmenter.safetensors").is_file()
    assert not (out / "ssp" / "segmenter.safetensors").exists()
    saved = json.loads((out / "ablation.json").read_text())
    assert saved["rows"][2]["ssp"]["similarity"] == "fixed"
    table = (out / "ablation.md").read_text()
    assert table == markdown(saved)
    assert "| fixed blend |" in table and "*beyond the paper*" in table and "image model (no propagation)" in table
    assert saved["classes"][5] == "moving_car" and len(saved["image"]["iou_per_class"]) == 8
    per_class = table.split("IoU per class")[1]
    assert "| variant | clutter | building |" in per_class and "| fixed blend |" in per_class

    # a second run reuses every finished variant; --only retrains the named one
    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant was trained again")

    monkeypatch.setattr("ssp_train.train.train_ssp", no_training)
    scored = len(seen)
    again = run_ablation(plan)
    assert [r["key"] for r in again["rows"]] == [r["key"] for r in report["rows"]]
    assert len(seen) == scored and again["image"] == report["image"]  # nothing scored again either
    with pytest.raises(AssertionError, match="trained again"):
        run_ablation(plan, ["fixed_blend"])


def test_markdown_puts_deltas_against_plain_ssp():
    row = {"miou": 50.0, "tc": 90.0, "flicker": 2.0, "vc8": 80.0}
    report = {"plan": "p.yaml", "image_model": "m", "evaluation": {"seeds": [1], "frames": 2},
              "image": {"miou": 49.0, "tc": 80.0, "flicker": 4.0, "vc8": 70.0},
              "rows": [{"name": "ssp", "label": "SSP", "group": "paper", "train_s": 10.0, **row},
                       {"name": "x", "label": "X", "group": "paper", "train_s": 10.0,
                        **{**row, "miou": 48.5, "tc": 95.25}}]}
    text = markdown(report)
    assert "| X | 48.50 | 95.25 | 2.00 | 80.00 | -1.50 | +5.25 | +0.00 | 10 |" in text
    assert "| image model (no propagation) | 49.00 | 80.00 | 4.00 | 70.00 | -1.00 | -10.00 | +2.00 | – |" in text


def test_cli_registers_ablate():
    from ssp_ros.cli.main import build_parser

    args = build_parser().parse_args(["ablate", "--only", "ssp", "cosine"])
    assert args.func is cmd_ablate and args.only == ["ssp", "cosine"]
    assert args.config == Path("config/train/ablation.yaml")

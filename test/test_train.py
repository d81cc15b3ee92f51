"""Tests of ssp_train: recipe loading and its errors, exact pair homographies under crop/flip, that a tiny model
learns, weights round-trips, and the smoke recipe end to end (the losses: test_losses.py)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from conftest import small_scenario

import ssp_train.train
from ssp_ros.config import ModelConfig
from ssp_ros.errors import ConfigError
from ssp_ros.models import SSP, SimilarityHead, build_segmenter, build_ssp, read_weights_metadata, save_weights, warp
from ssp_ros.models.appearance import AppearanceSimilarity
from ssp_ros.resources import share_dir
from ssp_ros.synthetic import SyntheticVideo
from ssp_ros.synthetic.config import WorldLayout
from ssp_train.augment import conjugate, flip_matrix
from ssp_train.config import DataConfig, TrainConfig, load_train_config
from ssp_train.data import ClipDataset, FrameDataset, PairDataset
from ssp_train.losses import motion_unexplained, segmentation_loss
from ssp_train.objectives import ImagePairObjective, SspObjective, StabiliserObjective
from ssp_train.sources import SyntheticSource
from ssp_train.train import _cli, _validation_sets, check_weights_size, cosine_schedule, main

TRAIN_CONFIGS = share_dir() / "config" / "train"
K = 8  # UAVid classes
TINY = ModelConfig(decoder_channels=16, input_size=(96, 160))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------------------------
# the recipe


@pytest.mark.parametrize("name", ["default", "v2", "smoke"])
def test_shipped_recipes_load(name):
    cfg = load_train_config(TRAIN_CONFIGS / f"{name}.yaml")
    scenario = cfg.data.resolve_scenario()
    assert scenario.height > 0 and cfg.image.steps > 0 and cfg.ssp.steps > 0
    assert cfg.output.weights.endswith(".safetensors")


def test_default_recipe_is_the_shipped_model():
    cfg = load_train_config(TRAIN_CONFIGS / "default.yaml")
    first = load_train_config(TRAIN_CONFIGS / "v2.yaml")  # run first: the shipped recipe continues from its result
    assert cfg.model == dataclasses.replace(ModelConfig(), weights=first.output.weights)  # config/ssp.yaml's net
    assert first.model == ModelConfig() and cfg.output.weights == "models/ssp_default.safetensors"
    assert (cfg.data.resolve_scenario().height, cfg.data.resolve_scenario().width) == cfg.model.input_size
    assert check_weights_size(cfg, K) <= cfg.output.max_weights_mb


@pytest.mark.parametrize(("data", "key", "words"), [
    ({"image": {"stepz": 3}}, "image.stepz", "did you mean 'steps'"),
    ({"ssp": {"lr": "fast"}}, "ssp.lr", "expected float"),
    ({"image": {"crop_size": 100}}, "image.crop_size", "multiple of 32"),
    ({"data": {"frame_gap": [3, 1]}}, "data.frame_gap", "min <= max"),
    ({"data": {"scenario": "calm", "synthetic": {"height": 96}}}, "data.scenario", "not both"),
    ({"data": {"synthetic": {"heigth": 96}}}, "data.synthetic.heigth", "did you mean 'height'"),
    ({"output": {"weights": "model.pt"}}, "output.weights", ".safetensors"),
    ({"num_threads": 0}, "num_threads", "must be in"),
    ({"image": {"tc_weight": -0.5}}, "image.tc_weight", "must be in"),
    ({"ssp": {"similarity": "dot"}}, "ssp.similarity", "expected one of ['learned', 'pooled', 'fixed', 'cosine']"),
    ({"ssp": {"similarity_inputs": ["entropy", "flow"]}}, "ssp.similarity_inputs[1]", "expected one of"),
    ({"ssp": {"similarity_inputs": "entropy"}}, "ssp.similarity_inputs", "expected a list"),
    ({"ssp": {"similarity": "fixed", "similarity_inputs": ["validity"]}}, "ssp.similarity_inputs",
     "need a learned head"),
])
def test_config_errors_name_the_file_and_key(tmp_path, data, key, words):
    path = _write(tmp_path / "bad.yaml", data)
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    message = str(err.value)
    assert str(path) in message and f"{key}:" in message and words in message


def test_missing_recipe_names_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert _cli(["--config", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


def test_a_recipe_that_continues_a_missing_run_is_refused_before_any_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where config/train/v2.yaml has not run: no out/train/ssp_v2/ssp_v2.safetensors
    monkeypatch.setattr("ssp_train.train.training_source", lambda *a, **k: pytest.fail("data before the check"))
    with pytest.raises(ConfigError, match=r"default.yaml: model.weights: out/train/ssp_v2/ssp_v2.safetensors not "
                                          r"found .* needs that one run first"):
        main(TRAIN_CONFIGS / "default.yaml")


def test_weights_over_the_size_limit_are_refused_before_training():
    cfg = TrainConfig(model=TINY)
    cfg.output.max_weights_mb = 1.0
    with pytest.raises(ConfigError, match=r"output\.max_weights_mb: .* MB in fp16"):
        check_weights_size(cfg, K)


def test_scenario_by_name_and_frame_size():
    scenario = DataConfig(scenario="calm", frame_size=(96, 160)).resolve_scenario()
    assert (scenario.height, scenario.width) == (96, 160)
    assert scenario.nuisances.noise_sigma == 0.0  # from config/scenarios/calm.yaml


def test_a_mix_of_scenarios_deals_the_sequences_in_turn(monkeypatch):
    data = DataConfig(scenarios=("default", "oblique"), sequences=4, first_seed=10, frame_size=(96, 160))
    names = [name for name, _ in data.resolve_scenarios()]
    plan = data.sequence_plan()
    assert names == ["default", "oblique"] and [seed for _, seed in plan] == [10, 11, 12, 13]
    assert [cfg.camera.pitch_deg[1] > 0 for cfg, _ in plan] == [False, True, False, True]
    assert all((cfg.height, cfg.width) == (96, 160) for cfg, _ in plan)
    assert data.resolve_scenario() == plan[0][0]
    heavy = DataConfig(scenarios=("default", "oblique", "default"), sequences=6, val_frames=2, frame_size=(64, 96))
    assert [cfg.camera.pitch_deg[1] > 0 for cfg, _ in heavy.sequence_plan()] == [False, True, False] * 2
    flown = []  # which validation flights are flown, not the flights (a few seconds each at full world size)
    monkeypatch.setattr(ssp_train.train, "generate_sequence", lambda scenario, frames, seed, keep_flow: flown.append(
        (scenario.camera.pitch_deg[1] > 0, frames, seed, keep_flow)) or len(flown))
    assert _validation_sets(TrainConfig(data=heavy)) == [("default", 1), ("oblique", 2)]
    assert flown == [(False, 2, heavy.val_seed, True), (True, 2, heavy.val_seed, True)], "each scenario once"
    with pytest.raises(ConfigError, match="scenarios: a mix of scenario files replaces"):
        DataConfig(scenarios=("default",), scenario="calm")
    with pytest.raises(ConfigError, match="scenarios: 2 scenarios need at least as many sequences"):
        DataConfig(scenarios=("default", "oblique"), sequences=1)


def test_cosine_schedule():
    factor = cosine_schedule(steps=100, warmup=10, final_ratio=0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(99) == pytest.approx(0.1, abs=1e-3)
    values = [factor(s) for s in range(10, 100)]
    assert all(a >= b for a, b in zip(values, values[1:]))


# ---------------------------------------------------------------------------------------------------------
# data


def test_conjugated_homography_matches_flipped_warp(small_video):
    """Warping flipped frames with F·H·F⁻¹ is the flip of warping the frames with H."""
    prev, cur = small_video[10], small_video[13]
    h = cur.world_to_image @ np.linalg.inv(prev.world_to_image)
    height, width = prev.labels.shape
    direct = cv2.flip(cv2.warpPerspective(prev.image, h, (width, height), flags=cv2.INTER_LINEAR), 1)
    flipped = cv2.warpPerspective(cv2.flip(prev.image, 1), conjugate(h, flip_matrix(width)), (width, height),
                                  flags=cv2.INTER_LINEAR)
    inner = (slice(8, -8), slice(8, -8))  # borders see different outside pixels
    assert np.abs(direct[inner].astype(int) - flipped[inner].astype(int)).mean() < 1.0


def _cell_labels(labels: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """N×H×W ids → N×K×H/s×W/s share of each class per stride-s cell."""
    one_hot = F.one_hot(labels, K).permute(0, 3, 1, 2).float()
    return F.avg_pool2d(one_hot, stride)


def _agreement(batch: dict, to_previous: torch.Tensor) -> float:
    """Share of valid stride-4 cells whose warped previous label equals the current one."""
    warped, valid = warp(_cell_labels(batch["prev_labels"]), to_previous)
    same = warped.argmax(1) == _cell_labels(batch["labels"]).argmax(1)
    valid = valid[:, 0] > 0
    return float(same[valid].float().mean())


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_pair_crop_and_flip_keep_the_homography(small_video, flip_prob):
    dataset = PairDataset(SyntheticSource([small_video]), crop_size=96, frame_gap=(3, 6), flip_prob=flip_prob)
    torch.manual_seed(1)
    batch = torch.utils.data.default_collate([dataset[i] for i in range(0, len(dataset), 3)])
    assert batch["cur"].shape[-2:] == (96, 96) and batch["to_previous"].shape[-2:] == (3, 3)
    assert _agreement(batch, batch["to_previous"]) >= 0.95
    # the same labels at full resolution, with the pixel homography and OpenCV
    hits, total = 0, 0
    for prev, cur, h in zip(batch["prev_labels"].numpy(), batch["labels"].numpy(), batch["homography"].numpy()):
        warped = cv2.warpPerspective(prev.astype(np.uint8), h, (96, 96), flags=cv2.INTER_NEAREST, borderValue=255)
        valid = warped != 255
        hits, total = hits + int((warped[valid] == cur[valid]).sum()), total + int(valid.sum())
    assert hits / total >= 0.95
    if flip_prob == 1.0:  # negative control: the same crops without the flip in the homography
        torch.manual_seed(1)
        plain = PairDataset(SyntheticSource([small_video]), crop_size=96, frame_gap=(3, 6), flip_prob=0.0)
        unflipped = torch.stack([plain[i]["to_previous"] for i in range(0, len(plain), 3)])
        assert _agreement(batch, unflipped) < _agreement(batch, batch["to_previous"]) - 0.03


def test_clip_homographies_chain_frame_to_frame(small_video):
    dataset = ClipDataset(SyntheticSource([small_video]), crop_size=96, frame_gap=(1, 3), flip_prob=0.5, length=4)
    torch.manual_seed(2)
    clips = torch.utils.data.default_collate([dataset[i] for i in range(0, len(dataset), 4)])
    assert clips["images"].shape[1:] == (4, 3, 96, 96) and clips["to_previous"].shape[1:] == (3, 3, 3)
    for t in range(1, 4):
        pair = {"prev_labels": clips["labels"][:, t - 1], "labels": clips["labels"][:, t]}
        assert _agreement(pair, clips["to_previous"][:, t - 1]) >= 0.95, f"step {t}"




def test_frame_dataset_crops_and_flips(small_video):
    torch.manual_seed(0)
    flipped = FrameDataset(SyntheticSource([small_video[:1]]), crop_size=0, flip_prob=1.0, multiple=8)
    image, labels = flipped[0]
    assert image.shape == (3, 120, 200) and image.dtype == torch.float32 and labels.dtype == torch.int64
    assert torch.equal(labels, torch.from_numpy(small_video[0].labels[:, ::-1].copy()).long())
    cropped = FrameDataset(SyntheticSource([small_video]), crop_size=64)
    image, labels = cropped[5]
    assert image.shape == (3, 64, 64) and labels.shape == (64, 64)


def test_crop_larger_than_frames_is_a_config_error(small_video):
    with pytest.raises(ConfigError, match=r"ssp\.crop_size: crop 160 does not fit frames of 120x200"):
        PairDataset(SyntheticSource([small_video]), crop_size=160)
    with pytest.raises(ConfigError, match=r"image\.crop_size: 0 \(whole frames\) needs"):
        FrameDataset(SyntheticSource([small_video]), crop_size=0)


# ---------------------------------------------------------------------------------------------------------
# losses and learning




def test_tiny_model_learns(small_video):
    segmenter = build_segmenter(TINY, K).train()
    dataset = FrameDataset(SyntheticSource([small_video]), crop_size=64)
    images, labels = torch.utils.data.default_collate([dataset[i] for i in (0, 20)])
    optimizer = torch.optim.AdamW(segmenter.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):  # overfit one batch
        loss = segmentation_loss(segmenter(images)[0], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_similarity_head_learns_on_pairs(small_video):
    segmenter = build_segmenter(TINY, K).eval().requires_grad_(False)
    model = SSP(segmenter, SimilarityHead(segmenter.feature_channels))
    fusion = model.warp_fusion_step().train()
    dataset = PairDataset(SyntheticSource([small_video]), crop_size=64, frame_gap=(1, 2))
    batch = torch.utils.data.default_collate([dataset[i] for i in (3, 30)])
    with torch.no_grad():
        logits, feats = segmenter(torch.cat([batch["prev"], batch["cur"]]))
    # a fixed "previous" that is right (the labels) makes trusting it (s -> 1) the way down
    prev_logits = 10.0 * F.one_hot(batch["prev_labels"], K).permute(0, 3, 1, 2).float()[..., 2::4, 2::4]
    optimizer = torch.optim.AdamW(model.similarity_head.parameters(), lr=3e-2)
    losses = []
    for _ in range(20):
        fused, s, valid = fusion(logits[2:], feats[2:], prev_logits, feats[:2], batch["to_previous"])
        inside = F.interpolate(valid, scale_factor=4.0)[:, 0] > 0  # out-of-view cells only see the current frame
        loss = segmentation_loss(fused, batch["labels"].masked_fill(~inside, 255))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3])
    assert float(s.detach()[valid > 0].mean()) > 0.7  # it learned to trust the (right) previous prediction


def test_image_pair_objective_adds_the_flow_tc_term(small_video):
    segmenter = build_segmenter(TINY, K).eval()
    dataset = PairDataset(SyntheticSource([small_video]), crop_size=64, frame_gap=(2, 2), key="image.crop_size",
                          with_flow=True)
    batch = torch.utils.data.default_collate([dataset[i] for i in (5, 25)])
    objective = ImagePairObjective(segmenter, tc_weight=0.5)
    with torch.no_grad():
        out = objective(batch)
        logits, _ = segmenter(batch["cur"])
        assert torch.isclose(out["ce"], segmentation_loss(logits, batch["labels"]))  # CE on frame k only
        assert float(out["tc"]) > 0 and torch.isclose(out["loss"], out["ce"] + 0.5 * out["tc"])
        # the same frame twice with zero flow: nothing to be inconsistent about
        still = {**batch, "prev": batch["cur"], "flow_backward": torch.zeros_like(batch["flow_backward"]),
                 "valid_backward": torch.ones_like(batch["valid_backward"])}
        assert float(objective(still)["tc"]) == 0.0
        # no pixel whose flow stays inside the previous frame: the TC term vanishes
        nowhere = {**batch, "valid_backward": torch.zeros_like(batch["valid_backward"])}
        assert float(objective(nowhere)["tc"]) == 0.0


def test_ssp_objective_without_registration_fuses_with_the_identity(small_video):
    segmenter = build_segmenter(TINY, K).eval()
    dataset = ClipDataset(SyntheticSource([small_video]), crop_size=64, frame_gap=(2, 2), length=2)
    batch = torch.utils.data.default_collate([dataset[i] for i in (5, 25)])
    assert not torch.allclose(batch["to_previous"], torch.eye(3).expand_as(batch["to_previous"]))  # it moved
    losses = {}
    for registration in (True, False):
        model = SSP(segmenter, SimilarityHead(segmenter.feature_channels))
        objective = SspObjective(model, frozen=True, tc_weight=0.0, registration=registration).train()
        calls = []
        objective.fusion.register_forward_pre_hook(lambda module, args, calls=calls: calls.append(args[4]))
        with torch.no_grad():
            losses[registration] = objective(batch)["loss"]
        expected = batch["to_previous"][:, 0] if registration else torch.eye(3).expand(2, 3, 3)
        torch.testing.assert_close(calls[0], expected)
    assert not torch.allclose(losses[True], losses[False])


@pytest.fixture(scope="module")
def busy_road_pairs() -> dict[float, dict[str, torch.Tensor]]:
    """Pair batches (gap 2, crops of 96) of a small world with ten times the moving cars, unflipped and flipped."""
    world = WorldLayout(size_m=160.0, gsd_m=0.1, moving_cars_per_km2=4000.0)
    source = SyntheticSource([list(SyntheticVideo(small_scenario(world=world), frames=12, seed=5))])
    batches = {}
    for flip in (0.0, 1.0):
        dataset = ClipDataset(source, crop_size=96, frame_gap=(2, 2), length=2, flip_prob=flip)
        batches[flip] = torch.utils.data.default_collate([dataset[i] for i in range(len(dataset))])
    return batches


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_motion_unexplained_finds_the_moving_cars_of_generated_pairs(busy_road_pairs, flip):
    """With the generator's homographies (flipped ones too), what the camera's motion leaves unexplained is
    concentrated on the moving cars: a wrong scale or flip of the homography would mark edges everywhere."""
    batch = busy_road_pairs[flip]
    labels = batch["labels"]
    marked = motion_unexplained(labels[:, 1], labels[:, 0], batch["to_previous"][:, 0], 4)
    car = labels[:, 1] == 5  # moving car
    assert car.sum() > 1000
    on_cars, elsewhere = marked[car].float().mean(), marked[~car].float().mean()
    assert on_cars > 10 * elsewhere and elsewhere < 0.01


def test_ssp_objective_weights_the_unexplained_pixels(busy_road_pairs):
    segmenter = build_segmenter(TINY, K).eval()
    batch = busy_road_pairs[0.0]
    model = SSP(segmenter, SimilarityHead(segmenter.feature_channels))
    with torch.no_grad():
        plain = SspObjective(model, frozen=True, tc_weight=0.0).train()(batch)["loss"]
        weighted = SspObjective(model, frozen=True, tc_weight=0.0, movers_weight=20.0).train()(batch)["loss"]
        assert not torch.isclose(plain, weighted)
        # a pair of one frame twice: the camera's motion (none) explains every pixel, so the weight changes nothing
        still = {**batch, "images": batch["images"][:, [1, 1]], "labels": batch["labels"][:, [1, 1]],
                 "to_previous": torch.eye(3).expand_as(batch["to_previous"])}
        plain = SspObjective(model, frozen=True, tc_weight=0.0).train()(still)["loss"]
        weighted = SspObjective(model, frozen=True, tc_weight=0.0, movers_weight=20.0).train()(still)["loss"]
        torch.testing.assert_close(plain, weighted)


def test_stabiliser_objective_weights_the_unexplained_cells(busy_road_pairs):
    clips = busy_road_pairs[0.0]
    pairs = {"prev": clips["images"][:, 0], "cur": clips["images"][:, 1], "prev_labels": clips["labels"][:, 0],
             "labels": clips["labels"][:, 1], "to_previous": clips["to_previous"][:, 0]}
    still = {**pairs, "prev": pairs["cur"], "prev_labels": pairs["labels"],
             "to_previous": torch.eye(3).expand_as(pairs["to_previous"])}
    torch.manual_seed(0)
    model = AppearanceSimilarity(8).eval()

    def terms(batch: dict, movers_weight: float) -> tuple[float, float]:
        torch.manual_seed(1)  # the same simulated segmenter for both weights
        with torch.no_grad():
            out = StabiliserObjective(model, K, fusion_weight=0.5, movers_weight=movers_weight)(batch)
        return float(out["bce"]), float(out["fused_ce"])

    plain, weighted = terms(pairs, 0.0), terms(pairs, 20.0)
    assert plain[0] != pytest.approx(weighted[0], rel=1e-3) and plain[1] != pytest.approx(weighted[1], rel=1e-3)
    # the weight lands on the moving cars' cells, not evenly (an even weight would cancel in the weighted means)
    weight = StabiliserObjective(model, K, fusion_weight=0.5, movers_weight=20.0)._cell_weight(pairs)[:, 0]
    car = torch.nn.functional.avg_pool2d((pairs["labels"] == 5).float()[:, None], 4)[:, 0] > 0.5
    assert float(weight[car].mean()) > 1.3 and float(weight[~car].mean()) < 1.05
    # the same frame twice: the camera's motion (none) explains every cell, so the weight changes nothing
    assert terms(still, 0.0) == pytest.approx(terms(still, 20.0), rel=1e-6)


def test_trained_weights_round_trip(tmp_path):
    model = build_ssp(TINY, K)
    for param in model.parameters():  # "trained": not the initial values, and exactly representable in fp16
        param.data = (param.data + 0.01 * torch.randn_like(param)).half().float()
    model.eval()
    path = save_weights(model, tmp_path / "ssp.safetensors", {"fp16": True, "dataset": "uavid"})
    loaded = build_ssp(dataclasses.replace(TINY, weights=str(path)), K).eval()
    frame = torch.rand(1, 3, 96, 160) * 255
    state = (torch.randn(1, K, 24, 40), torch.randn(1, loaded.segmenter.feature_channels, 24, 40))
    valid, to_previous = torch.ones(1, 1, 24, 40), torch.eye(3)[None]
    with torch.no_grad():
        for a, b in zip(model(frame, *state, valid), loaded(frame, *state, valid)):
            torch.testing.assert_close(a, b)
        logits, feats = loaded.segmenter(frame)
        fused, _, _ = loaded.warp_fusion_step()(logits, feats, *state, to_previous)
        assert fused.shape == logits.shape


# ---------------------------------------------------------------------------------------------------------
# the smoke recipe end to end


def test_smoke_recipe_end_to_end(tmp_path, capsys):
    data = yaml.safe_load((TRAIN_CONFIGS / "smoke.yaml").read_text())
    data["output"].update(dir=str(tmp_path / "run"), weights=str(tmp_path / "ssp.safetensors"))
    recipe = _write(tmp_path / "smoke.yaml", data)
    assert main(recipe) == 0
    out = capsys.readouterr().out
    assert "image stage" in out and "ssp stage" in out and "wall time" in out
    run = tmp_path / "run"
    for name in ("config.yaml", "image_last.pt", "ssp_last.pt", "segmenter.safetensors", "train_log.jsonl"):
        assert (run / name).is_file(), name
    assert load_train_config(run / "config.yaml") == load_train_config(recipe)  # the saved recipe reloads
    meta = read_weights_metadata(tmp_path / "ssp.safetensors")
    assert meta["kind"] == "ssp" and meta["fp16"] and meta["classes"][0] == "clutter"
    model_cfg = ModelConfig(**{**data["model"], "input_size": tuple(data["model"]["input_size"]),
                               "weights": str(tmp_path / "ssp.safetensors")})
    model = build_ssp(model_cfg, K).eval()
    logits, _ = model.segmenter(torch.rand(1, 3, 96, 160) * 255)
    assert torch.isfinite(logits).all()
    records = [yaml.safe_load(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) for r in records if "loss" in r)
    # resume: both stages are complete, so a second run trains nothing and writes the same weights again
    data["output"]["resume"] = True
    assert main(_write(recipe, data)) == 0
    assert "resumed from" in capsys.readouterr().out

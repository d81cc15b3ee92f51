"""Tests of training flow (ssp_train.sources.synthetic_pair_flow, ssp_train.flow_cache), clip augmentation
(ssp_train.augment) and resumable sharded sampling (ssp_train.data.StepBatchSampler)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from test_data_real import make_uavid

from ssp_ros.cli.main import build_parser
from ssp_ros.errors import ConfigError, SspError
from ssp_ros.eval.flow import warp_nearest
from ssp_train.augment import Jitter, random_jitter
from ssp_train.data import ClipDataset, PairDataset, StepBatchSampler
from ssp_train.flow_cache import EstimatedFlow, pair_frames
from ssp_train.sources import SyntheticSource, synthetic_pair_flow


def _agreement(values_a: np.ndarray, values_b: np.ndarray, flow: np.ndarray, valid: np.ndarray) -> float:
    """Share of valid pixels p of frame a with values_a[p] == values_b[p + flow[p]]."""
    pulled, inside = warp_nearest(values_b, flow, valid)
    return float((pulled[inside] == values_a[inside]).mean())


# ---------------------------------------------------------------------------------------------------------
# synthetic flow


@pytest.mark.parametrize("gap", [1, 3])
def test_synthetic_pair_flow_is_exact_both_ways(small_video, gap):
    k = 20
    pair = synthetic_pair_flow(small_video[k - gap : k + 1])
    prev, cur = small_video[k - gap].labels, small_video[k].labels
    if gap == 1:
        np.testing.assert_allclose(pair.forward, small_video[k - 1].flow, atol=1e-4)
    assert pair.forward_valid.mean() > 0.9 and pair.backward_valid.mean() > 0.9
    assert _agreement(prev, cur, pair.forward, pair.forward_valid) > 0.98  # label edges are rendered nearest
    assert _agreement(cur, prev, pair.backward, pair.backward_valid) > 0.98


def test_synthetic_flow_needs_kept_flow(small_video):
    import dataclasses

    stripped = [dataclasses.replace(f, flow=None, valid=None) for f in small_video[:3]]
    with pytest.raises(SspError, match="keep_flow=True"):
        synthetic_pair_flow(stripped)


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_clip_flow_follows_crop_and_flip(small_video, flip_prob):
    clips = ClipDataset(SyntheticSource([small_video]), crop_size=96, frame_gap=(1, 3), flip_prob=flip_prob,
                        length=3, with_flow=True)
    torch.manual_seed(3)
    for index in range(2, len(clips), 9):
        clip = clips[(index, index)]
        assert clip["flow_forward"].shape == (2, 2, 96, 96) and clip["valid_backward"].dtype == torch.bool
        labels = clip["labels"].numpy()
        for t in (1, 2):
            forward = clip["flow_forward"][t - 1].permute(1, 2, 0).numpy()
            backward = clip["flow_backward"][t - 1].permute(1, 2, 0).numpy()
            fv, bv = clip["valid_forward"][t - 1, 0].numpy(), clip["valid_backward"][t - 1, 0].numpy()
            assert fv.mean() > 0.7
            assert _agreement(labels[t - 1], labels[t], forward, fv) > 0.98  # dx not negated on flip: 0.93-0.977
            assert _agreement(labels[t], labels[t - 1], backward, bv) > 0.98


def test_jitter_is_one_colour_map_for_the_whole_clip(small_video):
    plain = PairDataset(SyntheticSource([small_video]), crop_size=64, frame_gap=(2, 2))
    jittered = PairDataset(SyntheticSource([small_video]), crop_size=64, frame_gap=(2, 2), jitter=(0.4, 0.4, 0.4))
    a, b = plain[(7, 11)], jittered[(7, 11)]
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["homography"], b["homography"])  # same crop
    source = torch.cat([a["prev"], a["cur"]], dim=-1).flatten(1).T  # pixels × RGB, both frames
    target = torch.cat([b["prev"], b["cur"]], dim=-1).flatten(1).T
    assert not torch.equal(source, target)
    mapping: dict[tuple, tuple] = {}
    for x, y in zip(map(tuple, source.tolist()), map(tuple, target.tolist())):
        assert mapping.setdefault(x, y) == y  # a colour maps to one colour, in either frame


def test_jitter_factors():
    rng = np.random.default_rng(0)
    assert random_jitter(rng, (0.0, 0.0, 0.0)) == Jitter()
    jitter = random_jitter(rng, (0.3, 0.3, 0.3))
    assert all(0.7 <= f <= 1.3 for f in (jitter.brightness, jitter.contrast, jitter.saturation))
    grey = np.full((2, 2, 3), 100, np.uint8)
    out = Jitter(brightness=1.2, contrast=1.0, saturation=0.0).apply(grey)
    assert (out == 120).all()  # brightness scales; a grey pixel has no saturation to lose


# ---------------------------------------------------------------------------------------------------------
# estimated flow, cached


def test_dis_flow_on_the_fly_and_cached(tmp_path, small_video):
    prev, cur = small_video[10], small_video[11]
    provider = EstimatedFlow("dis", cache=tmp_path / "cache")
    flow = provider("uavid_train/seq1", 10, 11, prev.image, cur.image)
    error = np.linalg.norm(flow.forward - prev.flow, axis=-1)[flow.forward_valid & prev.valid]
    assert np.median(error) < 0.5  # DIS against the exact flow
    path = tmp_path / "cache" / "dis_120x200" / "uavid_train/seq1" / "000010_000011.npz"
    assert path.is_file()
    again = EstimatedFlow("dis", cache=tmp_path / "cache")("uavid_train/seq1", 10, 11, prev.image, cur.image)
    np.testing.assert_allclose(again.backward, flow.backward, atol=0.02)  # read back (float16)
    np.testing.assert_array_equal(again.backward_valid, flow.backward_valid)
    other = EstimatedFlow("raft", weights=tmp_path / "raft.pth", cache=tmp_path / "cache")
    other.estimator_name = "dis"  # same folder, recorded estimator differs
    np.savez(path, estimator="raft", size=np.array([120, 200]), forward=flow.forward, forward_valid=flow.forward_valid,
             backward=flow.backward, backward_valid=flow.backward_valid)
    with pytest.raises(SspError, match=rf"{path}: cached with raft at 200x120, this run wants dis"):
        provider("uavid_train/seq1", 10, 11, prev.image, cur.image)
    path.write_bytes(b"not a zip")
    with pytest.raises(SspError, match=rf"{path}: unreadable flow cache file"):
        provider("uavid_train/seq1", 10, 11, prev.image, cur.image)
    with pytest.raises(SspError, match="needs a local weights file"):
        EstimatedFlow("raft")


def test_flow_cache_command(tmp_path, small_video, capsys):
    root = make_uavid(tmp_path / "uavid", small_video)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {"source": "uavid", "root": str(root), "frame_size": None,
                                               "frame_gap": [1, 2], "val_frames": 0}}))
    args = build_parser().parse_args(["flow-cache", "--config", str(recipe), "--cache", str(tmp_path / "cache")])
    assert args.func(args) == 0
    assert "6 pairs (6 computed, 0 already cached)" in capsys.readouterr().out
    assert len(list((tmp_path / "cache" / "dis_120x200" / "uavid_train" / "seq1").glob("*.npz"))) == 6
    assert args.func(args) == 0
    assert "(0 computed, 6 already cached)" in capsys.readouterr().out
    assert pair_frames([8, 9, 12], [10, 12], (1, 2)) == [(9, 10), (8, 10), (10, 12)]  # labelled frames count


def test_flow_cache_folder_comes_from_the_recipe_and_training_reads_it(tmp_path, small_video, capsys):
    from ssp_train.config import load_train_config
    from ssp_train.train import training_source

    root = make_uavid(tmp_path / "uavid", small_video)
    data = {"source": "uavid", "root": str(root), "frame_size": None, "frame_gap": [1, 2], "val_frames": 0}
    bare = tmp_path / "bare.yaml"
    bare.write_text(yaml.safe_dump({"data": data}))
    parser = build_parser()
    args = parser.parse_args(["flow-cache", "--config", str(bare)])
    with pytest.raises(SspError, match=rf"{bare}: no cache folder: pass --cache or set data.flow_cache"):
        args.func(args)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"data": {**data, "flow_cache": str(tmp_path / "cache")},
                                      "image": {"tc_weight": 0.5}}))
    args = parser.parse_args(["flow-cache", "--config", str(recipe)])
    assert args.func(args) == 0
    assert f"with dis under {tmp_path / 'cache'}" in capsys.readouterr().out  # estimator and folder from the recipe
    provider = training_source(load_train_config(recipe)).flow_provider
    assert provider.cache == tmp_path / "cache" and provider.estimator_name == "dis"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {**data, "flow": "raft"}}))
    with pytest.raises(ConfigError, match=r"data\.flow_weights: flow 'raft' needs a local weights file"):
        load_train_config(bad)


def test_real_clips_carry_estimated_flow(tmp_path, small_video):
    from ssp_train.config import DataConfig, TrainConfig
    from ssp_train.data import video_source

    cfg = TrainConfig(data=DataConfig(source="uavid", root=str(make_uavid(tmp_path / "uavid", small_video)),
                                      frame_size=None, val_frames=0))
    source = video_source(cfg, flow=EstimatedFlow("dis"))
    pair = PairDataset(source, crop_size=96, frame_gap=(1, 1), flip_prob=1.0, with_flow=True)[(1, 5)]
    forward = pair["flow_forward"].permute(1, 2, 0).numpy()
    # frame 19 → 20 under the same crop and flip: the frames match along the estimated flow
    prev, cur = pair["prev"].permute(1, 2, 0).numpy(), pair["cur"].permute(1, 2, 0).numpy()
    pulled, inside = warp_nearest(cur, forward, pair["valid_forward"][0].numpy())
    assert inside.mean() > 0.7 and np.abs(pulled[inside] - prev[inside]).mean() < 8.0


# ---------------------------------------------------------------------------------------------------------
# sampling


def test_step_sampler_resumes_and_shards():
    dataset = list(range(10))
    full = StepBatchSampler(dataset, batch_size=4, seed=5)
    first = [full.batch(step) for step in range(6)]
    resumed = StepBatchSampler(dataset, batch_size=4, seed=5, start=3)
    assert [batch for batch, _ in zip(resumed, range(3))] == first[3:]  # the same batches, seeds included
    # two ranks: each epoch's shards are disjoint and cover the data set
    ranks = [StepBatchSampler(dataset, batch_size=5, seed=5, rank=r, world_size=2) for r in (0, 1)]
    epoch = [{index for index, _ in ranks[r].batch(0)} for r in (0, 1)]
    assert not epoch[0] & epoch[1] and epoch[0] | epoch[1] == set(dataset)
    seeds = [seed for r in (0, 1) for _, seed in ranks[r].batch(0)]
    assert len(set(seeds)) == len(seeds)
    tiny = StepBatchSampler([0, 1, 2], batch_size=8, seed=0)  # smaller than a batch: cycled epoch after epoch
    assert sorted(index for index, _ in tiny.batch(0)[:6]) == [0, 0, 1, 1, 2, 2]

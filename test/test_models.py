"""Tests of ssp_ros.models: backbone levels from timm, shapes, the fusion rule, weights I/O, parameter counts."""

from __future__ import annotations

import argparse
import re

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.models import (
    SIMILARITY_INPUTS,
    SSP,
    Backbone,
    Segmenter,
    SimilarityHead,
    build_segmenter,
    build_similarity,
    build_ssp,
    fuse,
    load_weights,
    read_weights_metadata,
    save_weights,
)
from ssp_ros.models.backbone import _to_timm_keys
from ssp_ros.models.layers import adaptive_avg_pool2d

H, W = 64, 96  # tiny input: stride-4 maps are 16×24
K = 5  # classes
SMALL = ModelConfig(decoder_channels=32)  # the CPU default backbone with a narrow head, for speed

# Measured with this code (timm 1.0.31), sam2_hiera_small + UPerNet-256, 8 classes. The paper's table gives
# 42.17 M for the image model and 43.38 M for SSP; its KD image model row (same architecture) says 43.17 M,
# which is what we count: 33.95 M Hiera-S trunk + 9.22 M UPerNet-256 (+ 0.21 M similarity head for SSP).
PAPER_SEGMENTER_PARAMS = 43_171_272
PAPER_SSP_PARAMS = 43_378_969
PARAM_TOLERANCE = 0.005  # relative; timm releases may move a few norm/bias parameters


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return build_segmenter(SMALL, K).eval()


def _image(n: int = 1, h: int = H, w: int = W) -> torch.Tensor:
    return torch.rand(n, 3, h, w) * 255


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------- backbone


@pytest.mark.parametrize("name", ["mobilenetv3_large_100", "resnet18"])
def test_backbone_levels_come_from_timm(name):
    backbone = Backbone(name)
    info = timm.create_model(name, pretrained=False, features_only=True).feature_info
    # the four levels at strides 4..32, with the widths timm reports for them (not hard-coded)
    expected = {r: c for r, c in zip(info.reduction(), info.channels())}
    assert backbone.reductions == [4, 8, 16, 32]
    assert backbone.channels == [expected[r] for r in backbone.reductions]
    feats = backbone(torch.randn(2, 3, H, W))
    assert [f.shape[1] for f in feats] == backbone.channels
    assert [(f.shape[2], f.shape[3]) for f in feats] == [(H // r, W // r) for r in backbone.reductions]


def test_backbone_unknown_name():
    with pytest.raises(SspError, match="unknown timm backbone 'no_such_net'"):
        Backbone("no_such_net")


def test_backbone_loads_timm_checkpoint_ignoring_classifier(tmp_path):
    full = timm.create_model("resnet18", pretrained=False)  # a classification checkpoint: has fc.*
    path = tmp_path / "resnet18.pth"
    torch.save({"state_dict": full.state_dict()}, path)
    backbone = Backbone("resnet18", checkpoint=path)
    torch.testing.assert_close(backbone.body.conv1.weight, full.conv1.weight)


def test_backbone_checkpoint_of_other_model_lists_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), path)
    expected = r"not a checkpoint of backbone 'mobilenetv3_large_100'.*missing keys \(conv_stem"
    with pytest.raises(SspError, match=expected):
        Backbone("mobilenetv3_large_100", checkpoint=path)


def test_sam2_checkpoint_keys_map_to_timm_hiera():
    with torch.device("meta"):
        hiera = Backbone("sam2_hiera_small")
    own = [k[len("model."):] for k in hiera.body.state_dict()]
    sam2 = {"image_encoder.trunk." + k.replace(".mlp.fc1.", ".mlp.layers.0.").replace(".mlp.fc2.", ".mlp.layers.1."): 0
            for k in own}
    sam2["image_encoder.neck.convs.0.conv.weight"] = 0  # parts of SAM2 that are not the trunk are dropped
    sam2["sam_mask_decoder.iou_token.weight"] = 0
    assert sorted(_to_timm_keys(sam2)) == sorted(own)


# ---------------------------------------------------------------- heads and models


def test_adaptive_pool_matches_torch():
    for shape in [(2, 4, 12, 20), (1, 3, 23, 40), (1, 2, 2, 3)]:
        x = torch.randn(shape)
        for bins in (1, 2, 3, 6):
            torch.testing.assert_close(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins))


def test_segmenter_shapes(segmenter):
    with torch.no_grad():
        logits, feats = segmenter(_image(2))
    assert logits.shape == (2, K, H // 4, W // 4)
    assert feats.shape == (2, segmenter.backbone.channels[0], H // 4, W // 4)
    assert segmenter.feature_channels == segmenter.backbone.channels[0]


def test_segmenter_trains_on_a_batch_of_one():
    model = build_segmenter(SMALL, K).train()
    logits, _ = model(_image(1))
    logits.mean().backward()  # PPM's global-pool branch has no BatchNorm, so N=1 works in training


def test_segmenter_rejects_bad_shape_and_suggests_one(segmenter):
    with pytest.raises(SspError, match=r"height=65, width=90.*divisible by 32.*height=96, width=96"):
        segmenter(_image(1, 65, 90))
    with pytest.raises(SspError, match=r"N×3×H×W"):
        segmenter(torch.rand(1, 4, H, W))


def test_segmenter_folds_normalisation(segmenter):
    assert torch.allclose(segmenter.pixel_mean.flatten(), 255 * torch.tensor([0.485, 0.456, 0.406]))
    assert torch.allclose(segmenter.pixel_std.flatten(), 255 * torch.tensor([0.229, 0.224, 0.225]))


def test_predict_returns_class_ids_at_input_resolution(segmenter):
    ids = segmenter.predict(_image(2))
    assert ids.shape == (2, H, W) and ids.dtype == torch.int64
    assert int(ids.min()) >= 0 and int(ids.max()) < K


def _similarity_inputs(c: int = 24, k: int = K, n: int = 2, h: int = 16, w: int = 24):
    """(warped_prev_feats, cur_feats, warped_prev_logits, cur_logits, valid) of random content."""
    valid = (torch.rand(n, 1, h, w) > 0.3).float()
    return (torch.randn(n, c, h, w) * 10, torch.randn(n, c, h, w) * 10, torch.randn(n, k, h, w),
            torch.randn(n, k, h, w), valid)


def test_similarity_head_range_and_shape():
    head = SimilarityHead(24)
    with torch.no_grad():
        s = head(*_similarity_inputs())
    assert s.shape == (2, 1, 16, 24)
    assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0


@pytest.mark.parametrize("inputs, extra", [((), 0), (("entropy",), 2), (("validity",), 1),
                                           (("validity", "entropy"), 3)])
def test_similarity_head_extra_inputs_widen_its_first_conv(inputs, extra):
    head = SimilarityHead(24, inputs).eval()
    assert head.layers[0][0].in_channels == 48 + extra
    assert head.inputs == tuple(name for name in SIMILARITY_INPUTS if name in inputs)  # canonical order
    args = _similarity_inputs()
    with torch.no_grad():
        s = head(*args)
        flipped = head(*args[:4], 1 - args[4])
    assert s.shape == (2, 1, 16, 24)
    assert torch.equal(s, flipped) == ("validity" not in inputs)  # the mask reaches the head only when asked


@pytest.mark.parametrize("h, w", [(16, 24), (15, 23)])
def test_pooled_similarity_head_is_the_head_at_stride_8(h, w):
    """The pooled head gives ``s`` at the features' size (odd sizes too), and where the inputs are constant over
    each 2×2 block it is the paper's head with the same weights, read at stride 8 and upsampled."""
    pooled = build_similarity("pooled", 24, ("validity",)).eval()
    head = SimilarityHead(24, ("validity",)).eval()
    head.load_state_dict(pooled.state_dict())
    coarse = _similarity_inputs(h=8, w=12)
    blocky = [x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)[..., :h, :w] for x in coarse]
    with torch.no_grad():
        s = pooled(*blocky)
        expected = F.interpolate(head(*coarse), scale_factor=2.0, mode="bilinear", align_corners=False)
    assert s.shape == (2, 1, h, w) and float(s.min()) >= 0.0 and float(s.max()) <= 1.0
    if (h, w) == (16, 24):
        torch.testing.assert_close(s, expected, rtol=0, atol=1e-5)


def test_similarity_entropy_input_sees_the_logits():
    head = SimilarityHead(24, ("entropy",)).eval()
    feats_prev, feats_cur, logits_prev, logits_cur, valid = _similarity_inputs()
    with torch.no_grad():
        sure = head(feats_prev, feats_cur, logits_prev * 100, logits_cur * 100, valid)  # near one-hot: entropy ~0
        unsure = head(feats_prev, feats_cur, logits_prev * 0, logits_cur * 0, valid)  # uniform: entropy 1
    assert not torch.allclose(sure, unsure)


def test_similarity_unknown_input_and_kind_are_named():
    with pytest.raises(SspError, match=r"similarity inputs \['flow'\] unknown"):
        SimilarityHead(8, ("flow",))
    with pytest.raises(SspError, match="similarity 'dot' unknown"):
        build_similarity("dot", 8)
    with pytest.raises(SspError, match=r"need a learned head \(learned, pooled\), not 'cosine'"):
        build_similarity("cosine", 8, ("entropy",))


def test_fixed_blend_is_one_weight_everywhere():
    blend = build_similarity("fixed", 24)
    assert sum(p.numel() for p in blend.parameters()) == 1
    with torch.no_grad():
        blend.weight.fill_(1.0)
        s = blend(*_similarity_inputs())
    assert s.shape == (2, 1, 16, 24)
    torch.testing.assert_close(s, torch.full_like(s, float(torch.sigmoid(torch.tensor(1.0)))))


def test_cosine_blend_follows_feature_similarity():
    blend = build_similarity("cosine", 24)
    prev, _, logits_prev, logits_cur, valid = _similarity_inputs()
    with torch.no_grad():
        same = blend(prev, prev * 3.0, logits_prev, logits_cur, valid)  # cos 1 (scale does not matter)
        opposite = blend(prev, -prev, logits_prev, logits_cur, valid)  # cos -1
    torch.testing.assert_close(same, torch.full_like(same, float(torch.sigmoid(torch.tensor(4.4 - 2.2)))))
    torch.testing.assert_close(opposite, torch.full_like(same, float(torch.sigmoid(torch.tensor(-4.4 - 2.2)))))


@pytest.mark.parametrize("kind, inputs", [("fixed", ()), ("cosine", ()), ("learned", ("entropy", "validity")),
                                          ("pooled", ("validity",))])
def test_weights_record_the_similarity_module_and_rebuild_it(tmp_path, kind, inputs):
    segmenter = build_segmenter(SMALL, K)
    model = SSP(segmenter, build_similarity(kind, segmenter.feature_channels, inputs)).eval()
    path = save_weights(model, tmp_path / f"{kind}.safetensors")
    meta = read_weights_metadata(path)
    assert meta["similarity"] == kind and meta["similarity_inputs"] == list(inputs)
    loaded = build_ssp(ModelConfig(decoder_channels=32, weights=str(path)), K).eval()  # kind from the file
    assert type(loaded.similarity_head) is type(model.similarity_head)
    torch.testing.assert_close(_outputs(model)[0], _outputs(loaded)[0], rtol=0, atol=0)
    with pytest.raises(SspError, match="weights were trained for similarity"):
        load_weights(SSP(build_segmenter(SMALL, K), SimilarityHead(segmenter.feature_channels)), path)


def test_ssp_forward(segmenter):
    model = SSP(segmenter, SimilarityHead(segmenter.feature_channels)).eval()
    c, h, w = segmenter.feature_channels, H // 4, W // 4
    prev_logits, prev_feats = torch.randn(1, K, h, w), torch.randn(1, c, h, w)
    with torch.no_grad():
        fused, s, cur_logits, cur_feats = model(_image(), prev_logits, prev_feats, torch.ones(1, 1, h, w))
        assert fused.shape == (1, K, h, w) and s.shape == (1, 1, h, w) and cur_feats.shape == (1, c, h, w)
        torch.testing.assert_close(fused, s * prev_logits + (1 - s) * cur_logits)
        fused0, *_ = model(_image(), prev_logits, prev_feats, torch.zeros(1, 1, h, w))
        step_fused, step_s = model.fusion_step()(cur_logits, cur_feats, prev_logits, prev_feats, torch.ones(1, 1, h, w))
    torch.testing.assert_close(step_fused, fused)
    torch.testing.assert_close(step_s, s)
    assert not torch.allclose(fused0, fused)  # a different frame, but: invalid everywhere -> its own logits


def test_ssp_rejects_head_of_wrong_width(segmenter):
    with pytest.raises(SspError, match="similarity head built for 7 channels"):
        SSP(segmenter, SimilarityHead(7))


# ---------------------------------------------------------------- fusion rule


def _fuse_inputs():
    rng = np.random.default_rng(0)
    prev = rng.normal(size=(2, K, 8, 12)).astype(np.float32)
    cur = rng.normal(size=(2, K, 8, 12)).astype(np.float32)
    s = rng.uniform(size=(2, 1, 8, 12)).astype(np.float32)
    valid = (rng.uniform(size=(2, 1, 8, 12)) > 0.4).astype(np.float32)
    return prev, cur, s, valid


def test_fuse_limits():
    prev, cur, s, valid = _fuse_inputs()
    ones, zeros = np.ones_like(s), np.zeros_like(s)
    np.testing.assert_array_equal(fuse(prev, cur, ones, ones), prev)
    np.testing.assert_array_equal(fuse(prev, cur, zeros, ones), cur)
    out = fuse(prev, cur, s, valid)
    invalid = np.broadcast_to(valid == 0, out.shape)
    np.testing.assert_array_equal(out[invalid], cur[invalid])  # invalid pixels: cur, whatever s
    np.testing.assert_array_equal(fuse(prev, cur, ones, zeros), cur)
    inside = np.broadcast_to(valid == 1, out.shape)
    np.testing.assert_allclose(out[inside], (s * prev + (1 - s) * cur)[inside], rtol=1e-6, atol=1e-6)


def test_fuse_numpy_and_torch_agree():
    arrays = _fuse_inputs()
    out_np = fuse(*arrays)
    out_t = fuse(*(torch.from_numpy(a) for a in arrays))
    assert isinstance(out_np, np.ndarray) and isinstance(out_t, torch.Tensor)
    np.testing.assert_array_equal(out_t.numpy(), out_np)
    bool_valid = fuse(*arrays[:3], arrays[3].astype(bool))  # a boolean mask works too
    np.testing.assert_array_equal(bool_valid, out_np)


# ---------------------------------------------------------------- weights


def _fresh_ssp(cfg: ModelConfig = SMALL, num_classes: int = K) -> SSP:
    return build_ssp(cfg, num_classes).eval()


def _randomise_bn(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so that a round-trip that forgot buffers would show."""
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)


def _outputs(model: SSP) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    c, h, w = model.segmenter.feature_channels, H // 4, W // 4
    with torch.no_grad():
        return model(_image(), torch.randn(1, K, h, w), torch.randn(1, c, h, w), torch.ones(1, 1, h, w))


def test_weights_round_trip(tmp_path):
    model = _fresh_ssp()
    _randomise_bn(model)
    path = save_weights(model, tmp_path / "ssp.safetensors", {"dataset": "uavid"})
    meta = read_weights_metadata(path)
    assert meta["kind"] == "ssp" and meta["backbone"] == SMALL.backbone and meta["num_classes"] == K
    assert meta["decoder_channels"] == 32 and meta["dataset"] == "uavid" and meta["fp16"] is False
    fresh = _fresh_ssp()
    load_weights(fresh, path)
    for a, b in zip(_outputs(model), _outputs(fresh)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_weights_fp16_storage(tmp_path):
    model = _fresh_ssp()
    _randomise_bn(model)
    fp32 = save_weights(model, tmp_path / "fp32.safetensors")
    fp16 = save_weights(model, tmp_path / "fp16.safetensors", {"fp16": True})
    assert fp16.stat().st_size < 0.6 * fp32.stat().st_size
    fresh = _fresh_ssp()
    load_weights(fresh, fp16)
    assert all(p.dtype == torch.float32 for p in fresh.parameters())
    for a, b in zip(_outputs(model), _outputs(fresh)):
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2)


def test_weights_from_torch_file(tmp_path):
    model = _fresh_ssp()
    path = tmp_path / "ssp.pt"
    torch.save(model.state_dict(), path)
    fresh = _fresh_ssp()
    load_weights(fresh, path)
    torch.testing.assert_close(_outputs(model)[0], _outputs(fresh)[0], rtol=0, atol=0)


def test_ssp_weights_load_into_segmenter_but_not_the_reverse(tmp_path):
    model = _fresh_ssp()
    path = save_weights(model, tmp_path / "ssp.safetensors")
    segmenter = build_segmenter(SMALL, K).eval()
    load_weights(segmenter, path)
    x = _image()
    with torch.no_grad():
        torch.testing.assert_close(segmenter(x)[0], model.segmenter(x)[0], rtol=0, atol=0)
    seg_path = save_weights(segmenter, tmp_path / "seg.safetensors")
    with pytest.raises(SspError, match="load them into model.segmenter"):
        load_weights(_fresh_ssp(), seg_path)
    load_weights(_fresh_ssp().segmenter, seg_path)


def test_weights_backbone_mismatch_names_both(tmp_path):
    other = build_segmenter(ModelConfig(backbone="resnet18", decoder_channels=32), K)
    path = save_weights(other, tmp_path / "resnet.safetensors")
    with pytest.raises(SspError, match="weights were trained for backbone resnet18, config says mobilenetv3_large_100"):
        load_weights(build_segmenter(SMALL, K), path)


def test_weights_num_classes_mismatch(tmp_path):
    path = save_weights(build_segmenter(SMALL, K), tmp_path / "k5.safetensors")
    with pytest.raises(SspError, match="num_classes 5, config says 3"):
        load_weights(build_segmenter(SMALL, 3), path)


def test_weights_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "model.safetensors"
    with pytest.raises(SspError, match=re.escape(str(path)) + ".*not found"):
        load_weights(build_segmenter(SMALL, K), path)


def test_weights_corrupt_file(tmp_path):
    for name in ("bad.safetensors", "bad.pt"):
        path = tmp_path / name
        path.write_bytes(b"\x00garbage" * 10)
        with pytest.raises(SspError, match=re.escape(str(path)) + ": corrupt"):
            load_weights(build_segmenter(SMALL, K), path)
    path = tmp_path / "pickled.pt"
    torch.save({"args": argparse.Namespace(lr=1.0), "weight": torch.zeros(1)}, path)
    with pytest.raises(SspError, match=r"pickled object \(argparse.Namespace\).*weights_only=True"):
        load_weights(build_segmenter(SMALL, K), path)
    with pytest.raises(SspError, match="unknown weights format '.onnx'"):
        (tmp_path / "m.onnx").write_bytes(b"x")
        load_weights(build_segmenter(SMALL, K), tmp_path / "m.onnx")


def test_weights_missing_and_unexpected_keys_listed(tmp_path):
    model = build_segmenter(SMALL, K)
    state = model.state_dict()
    del state["head.classifier.weight"], state["head.classifier.bias"]
    state["head.extra.weight"] = torch.zeros(1)
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(SspError, match=r"2 missing keys \(head.classifier.weight, head.classifier.bias\); "
                                       r"1 unexpected key \(head.extra.weight\)"):
        load_weights(model, path)


def test_weights_shape_mismatch_listed(tmp_path):
    state = build_segmenter(SMALL, K).state_dict()
    state["head.classifier.bias"] = torch.zeros(K + 1)
    path = tmp_path / "shape.pt"
    torch.save(state, path)
    with pytest.raises(SspError, match=r"shape-mismatched key \(head.classifier.bias: file \(6,\) vs model \(5,\)\)"):
        load_weights(build_segmenter(SMALL, K), path)


def test_build_loads_cfg_weights(tmp_path):
    model = _fresh_ssp()
    path = save_weights(model, tmp_path / "ssp.safetensors")
    loaded = build_ssp(ModelConfig(decoder_channels=32, weights=str(path)), K).eval()
    torch.testing.assert_close(_outputs(model)[0], _outputs(loaded)[0], rtol=0, atol=0)


# ---------------------------------------------------------------- paper configuration


def test_paper_configuration_parameter_count():
    cfg = ModelConfig(backbone="sam2_hiera_small", decoder_channels=256)
    with torch.device("meta"):  # no memory, no init: counts only
        model = build_ssp(cfg, num_classes=8, with_weights=False)
    assert model.segmenter.feature_channels == 96, "Hiera-S stage-1 features should have C = 96"
    seg, ssp = _count(model.segmenter), _count(model)
    assert abs(seg - PAPER_SEGMENTER_PARAMS) <= PARAM_TOLERANCE * PAPER_SEGMENTER_PARAMS, (
        f"sam2_hiera_small + UPerNet-256 image model has {seg / 1e6:.2f} M parameters, expected "
        f"{PAPER_SEGMENTER_PARAMS / 1e6:.2f} M ± {PARAM_TOLERANCE:.1%} (paper: 42.17 M image model / 43.17 M KD row)")
    assert abs(ssp - PAPER_SSP_PARAMS) <= PARAM_TOLERANCE * PAPER_SSP_PARAMS, (
        f"SSP (image model + similarity head) has {ssp / 1e6:.2f} M parameters, expected "
        f"{PAPER_SSP_PARAMS / 1e6:.2f} M ± {PARAM_TOLERANCE:.1%} (paper: 43.38 M)")

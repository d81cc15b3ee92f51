"""The stabiliser's own similarity model: simulated input segmenters, its training objective and recipe, the export
to ONNX and the OpenCV runtime, and the shipped folder (models/ssp_stabiliser)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ssp_ros.backends.appearance import AppearanceModel
from ssp_ros.backends.export_info import sha256_file
from ssp_ros.cli.main import main as ssp_main
from ssp_ros.deploy.stabiliser_export import export_stabiliser
from ssp_ros.errors import SspError
from ssp_ros.models import read_weights_metadata, save_weights
from ssp_ros.models.appearance import AppearanceSimilarity
from ssp_ros.resources import share_dir
from ssp_train.config import load_train_config
from ssp_train.data import PairDataset
from ssp_train.input_segmenters import IGNORE, cell_truth, corrupt, probabilities, random_merge, simulate
from ssp_train.objectives import StabiliserObjective
from ssp_train.sources import SyntheticSource
from ssp_train.train import main as train_main

K = 8
SHIPPED = share_dir() / "models" / "ssp_stabiliser"


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    torch.set_num_threads(2)


def test_a_random_merge_uses_every_group_and_only_those() -> None:
    for _ in range(20):
        mapping = random_merge(K)
        groups = int(mapping.max()) + 1
        assert 2 <= groups <= 5 and set(mapping.tolist()) == set(range(groups))


def test_corruption_changes_some_labels_and_never_the_unknown_ones() -> None:
    labels = torch.randint(0, K, (4, 64, 64))
    labels[:, :8] = IGNORE
    changed = []
    for _ in range(10):
        out = corrupt(labels, K)
        assert (out[labels == IGNORE] == IGNORE).all() and int(out[labels != IGNORE].max()) < K
        changed.append(float((out != labels).float().mean()))
    assert max(changed) > 0.01  # it does corrupt (some draws may leave an image clean)


def test_cell_probabilities_sum_to_one_and_unknown_cells_are_uniform() -> None:
    labels = torch.randint(0, K, (2, 16, 16))
    labels[:, :4, :4] = IGNORE
    for soft in (False, True):
        p = probabilities(labels, K, torch.tensor([0.9, 0.6]), soft)
        assert p.shape == (2, K, 4, 4)
        torch.testing.assert_close(p.sum(1), torch.ones(2, 4, 4))
        if not soft:  # (the blur lets the known pixels next to the unknown cell in)
            torch.testing.assert_close(p[:, :, 0, 0], torch.full((2, K), 1.0 / K))
    truth = cell_truth(labels, K)
    assert float(truth[:, :, 0, 0].sum()) == 0.0 and torch.allclose(truth[:, :, 1:, 1:].sum(1), torch.ones(2, 3, 3))


def test_a_simulated_segmenter_gives_both_frames_in_its_own_classes() -> None:
    labels = torch.randint(0, K, (3, 32, 32))
    for _ in range(10):
        out = simulate(labels, labels, K)
        assert out.prev.shape == out.cur.shape == out.truth.shape == (3, out.num_classes, 8, 8)
        assert 2 <= out.num_classes <= K
        torch.testing.assert_close(out.cur.sum(1), torch.ones(3, 8, 8))


def test_the_objective_learns_to_trust_unchanged_content(small_video) -> None:
    model = AppearanceSimilarity(8)
    objective = StabiliserObjective(model, K, fusion_weight=0.5).train()
    dataset = PairDataset(SyntheticSource([small_video]), crop_size=64, frame_gap=(1, 2))
    batch = torch.utils.data.default_collate([dataset[i] for i in (3, 12, 30)])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    bce = []
    for _ in range(25):
        terms = objective(batch)
        optimizer.zero_grad()
        terms["loss"].backward()
        optimizer.step()
        bce.append(float(terms["bce"]))
    assert all(math.isfinite(x) for x in bce)
    assert np.mean(bce[-3:]) < 0.7 * np.mean(bce[:3])
    with torch.no_grad():  # most cells of a slow flight keep their class: s must have learned to be high there
        feats = model.encoder(torch.cat([batch["prev"], batch["cur"]]))
        s = model(feats[3:], feats[3:])
    assert float(s.mean()) > 0.7


def test_the_stabiliser_recipe_trains_and_exports(tmp_path, capsys) -> None:
    data = yaml.safe_load((share_dir() / "config" / "train" / "stabiliser.yaml").read_text())
    data["data"].update(sequences=1, frames_per_sequence=6, frame_size=[96, 160], scenarios=["default"])
    data["stabiliser"].update(steps=3, batch_size=2, crop_size=64)
    data["output"].update(dir=str(tmp_path / "run"), weights=str(tmp_path / "stab.safetensors"), progress=False)
    recipe = tmp_path / "stabiliser.yaml"
    recipe.write_text(yaml.safe_dump(data))
    assert train_main(recipe) == 0
    assert "stabiliser stage: 3 steps" in capsys.readouterr().out
    assert read_weights_metadata(tmp_path / "stab.safetensors")["kind"] == "stabiliser"
    assert ssp_main(["export-stabiliser", "--weights", str(tmp_path / "stab.safetensors"),
                     "--out", str(tmp_path / "exported")]) == 0
    assert AppearanceModel(tmp_path / "exported").channels == data["stabiliser"]["channels"]


def test_the_stabiliser_recipe_refuses_other_stages(tmp_path) -> None:
    data = yaml.safe_load((share_dir() / "config" / "train" / "stabiliser.yaml").read_text())
    data["image"]["steps"] = 10
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(yaml.safe_dump(data))
    with pytest.raises(SspError, match="output.model.*'stabiliser' trains the stabiliser's own model alone"):
        load_train_config(recipe)


def _random_model(channels: int = 6) -> AppearanceSimilarity:
    model = AppearanceSimilarity(channels)
    for module in model.modules():  # BatchNorm statistics that folding must carry into the graph
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    return model.eval()


@pytest.mark.parametrize("size", [(64, 96), (92, 160)])
def test_the_exported_graphs_compute_what_torch_computes_at_any_size(tmp_path, size) -> None:
    model = _random_model()
    save_weights(model, tmp_path / "w.safetensors")
    info = export_stabiliser(tmp_path / "w.safetensors", tmp_path / "out")
    assert info["weights_sha256"] == sha256_file(tmp_path / "w.safetensors") and info["channels"] == 6
    runtime = AppearanceModel(tmp_path / "out")
    rng = np.random.default_rng(0)
    prev, cur = (rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2))
    feats = [runtime.features(image) for image in (prev, cur)]
    s = runtime.similarity(*feats)
    with torch.no_grad():
        want = [model.encoder(torch.from_numpy(image).permute(2, 0, 1)[None].float()) for image in (prev, cur)]
        want_s = model(*want)
    for got, ref in zip([*feats, s], [*want, want_s]):
        np.testing.assert_allclose(got, ref.numpy(), atol=1e-4)
    assert s.shape == (1, 1, size[0] // 4, size[1] // 4)


def test_a_bad_folder_or_input_is_refused_by_name(tmp_path) -> None:
    with pytest.raises(SspError, match=r"not a stabiliser model folder \(missing encoder.onnx"):
        AppearanceModel(tmp_path)
    save_weights(_random_model(), tmp_path / "w.safetensors")
    export_stabiliser(tmp_path / "w.safetensors", tmp_path / "out")
    (tmp_path / "out" / "stabiliser.json").write_text(json.dumps({"format": 9, "channels": 6, "stride": 4}))
    with pytest.raises(SspError, match="format 9, this runtime reads 1"):
        AppearanceModel(tmp_path / "out")
    (tmp_path / "out" / "stabiliser.json").write_text(json.dumps({"format": 1, "channels": 5, "stride": 4}))
    with pytest.raises(SspError, match=r"encoder.onnx: gives features of shape \(1, 6, 4, 4\)"):
        AppearanceModel(tmp_path / "out").features(np.zeros((16, 16, 3), np.uint8))
    (tmp_path / "out" / "encoder.onnx").write_bytes(b"not onnx")
    with pytest.raises(SspError, match="encoder.onnx: OpenCV cannot read this ONNX graph"):
        AppearanceModel(tmp_path / "out")


def test_image_model_weights_are_not_exported_as_a_stabiliser(tmp_path) -> None:
    with pytest.raises(SspError, match="not the stabiliser's weights"):
        export_stabiliser(share_dir() / "models" / "ssp_default.safetensors", tmp_path / "out")


def test_the_shipped_folder_is_small_loads_and_matches_its_weights() -> None:
    info = json.loads((SHIPPED / "stabiliser.json").read_text())
    assert info["weights_sha256"] == sha256_file(SHIPPED / "stabiliser.safetensors")
    assert sum(f.stat().st_size for f in SHIPPED.iterdir()) < 5e6
    model = AppearanceModel(SHIPPED)
    frame = np.full((64, 96, 3), 120, np.uint8)
    s = model.similarity(model.features(frame), model.features(frame))
    assert s.shape == (1, 1, 16, 24) and float(s.mean()) > 0.5  # a frame is like itself


def test_the_shipped_graphs_are_the_shipped_weights(tmp_path: Path) -> None:
    export_stabiliser(SHIPPED / "stabiliser.safetensors", tmp_path / "again")
    ours, again = AppearanceModel(SHIPPED), AppearanceModel(tmp_path / "again")
    frame = np.random.default_rng(1).integers(0, 256, (64, 96, 3), dtype=np.uint8)
    np.testing.assert_allclose(ours.features(frame), again.features(frame), atol=1e-5)

"""``model.pretrained``: timm's pretrained backbone weights when online, one clear error offline, and never a
download when the weights come from a local file."""

import pytest
import timm.models._builder as timm_builder
import torch
from safetensors.torch import save_file

from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.models import build_segmenter, build_ssp, save_weights
from ssp_ros.models.backbone import Backbone

BACKBONE = "mobilenetv3_large_100"


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    """timm's pretrained-weights loader, recorded instead of reaching the network."""
    calls: list[str] = []

    def load_pretrained(model, *args, **kwargs) -> None:  # noqa: ANN001
        calls.append(type(model).__name__)

    monkeypatch.setattr(timm_builder, "load_pretrained", load_pretrained)
    return calls


def test_offline_the_error_says_what_to_download_and_where_to_put_it(monkeypatch) -> None:
    def offline(*args, **kwargs) -> None:
        raise FileNotFoundError("An error happened while trying to locate the file on the Hub")  # an OSError

    monkeypatch.setattr(timm_builder, "load_pretrained", offline)
    with pytest.raises(SspError, match=r"backbone 'mobilenetv3_large_100': model.pretrained is set but its weights "
                                       r"cannot be downloaded \(FileNotFoundError\); download model.safetensors of "
                                       r"https://huggingface.co/timm/mobilenetv3_large_100.ra_in1k and set "
                                       r"model.backbone_weights to the file's local path"):
        build_segmenter(ModelConfig(backbone=BACKBONE, pretrained=True), 8)


def test_pretrained_asks_timm_only_when_nothing_local_initialises_the_backbone(downloads, tmp_path) -> None:
    build_segmenter(ModelConfig(backbone=BACKBONE), 8)
    assert downloads == [], "pretrained is off by default: no network"
    build_segmenter(ModelConfig(backbone=BACKBONE, pretrained=True), 8)
    assert len(downloads) == 1
    checkpoint = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in Backbone(BACKBONE).body.state_dict().items()}, str(checkpoint))
    build_segmenter(ModelConfig(backbone=BACKBONE, pretrained=True, backbone_weights=str(checkpoint)), 8)
    whole = tmp_path / "ssp.safetensors"
    torch.manual_seed(0)
    save_weights(build_ssp(ModelConfig(backbone=BACKBONE), 8), whole, {})
    build_ssp(ModelConfig(backbone=BACKBONE, pretrained=True, weights=str(whole)), 8)
    assert len(downloads) == 1, "local weights never trigger a download"

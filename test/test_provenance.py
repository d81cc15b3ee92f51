"""What the reports of unlabelled video say a model was trained on (``ssp_ros/eval/provenance.py``)."""

import json
from pathlib import Path

import pytest
import torch

from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.eval.provenance import SYNTHETIC, safetensors_metadata, trained_on, trained_on_line
from ssp_ros.models import build_ssp, read_weights_metadata, save_weights


def test_the_header_reader_sees_what_safetensors_sees(tmp_path: Path) -> None:
    """Read without torch or safetensors, the metadata of a file ``save_weights`` wrote is the one the safetensors
    library gives, value for value."""
    torch.manual_seed(0)
    path = tmp_path / "w.safetensors"
    save_weights(build_ssp(ModelConfig(input_size=(64, 96)), 8), path, {"trained_on": "uavid train (/data)"})
    raw = safetensors_metadata(path)
    assert {key: json.loads(value) for key, value in raw.items()} == read_weights_metadata(path)
    assert trained_on(str(path)) == "uavid train (/data)"
    assert trained_on_line(trained_on(str(path))) == "Trained on: uavid train (/data)."


def test_the_shipped_model_says_it_saw_synthetic_worlds_only() -> None:
    value = trained_on("models/ssp_default.safetensors", "models/ssp_default")
    assert value == SYNTHETIC
    line = trained_on_line(value)
    assert "synthetic worlds only" in line and "not reliable" in line and "ssp stabilise" in line


def test_an_export_folder_speaks_when_there_is_no_weights_file(tmp_path: Path) -> None:
    (tmp_path / "export.json").write_text(json.dumps({"trained_on": "ruralscapes train (/r)"}))
    assert trained_on(None, str(tmp_path)) == "ruralscapes train (/r)"
    assert trained_on(str(tmp_path / "gone.safetensors"), str(tmp_path)) == "ruralscapes train (/r)"
    (tmp_path / "export.json").write_text(json.dumps({"format": 2}))  # an export made before it was recorded
    assert trained_on(None, str(tmp_path)) is None
    assert trained_on_line(None).startswith("Trained on: not recorded")
    assert trained_on_line(None, untrained=True).startswith("Trained on: nothing")


@pytest.mark.parametrize("content", [b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}", b"\xff" * 8 + b"{}"])
def test_a_broken_weights_file_is_named(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(content)
    with pytest.raises(SspError, match=r"broken\.safetensors: not a readable safetensors file"):
        trained_on(str(path))

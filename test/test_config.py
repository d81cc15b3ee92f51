import dataclasses
from pathlib import Path

import pytest

from ssp_ros.classes import load_class_set
from ssp_ros.config import (
    ModelConfig,
    NodeConfig,
    RegistrationConfig,
    RuntimeConfig,
    SspConfig,
    available_detectors,
    load_config,
    opencv_detector,
)
from ssp_ros.errors import ConfigError
from ssp_ros.schema import config_from_dict, load_section, read_yaml, to_dict
from ssp_ros.synthetic.config import SimConfig, SyntheticConfig, load_sim_config

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_shipped_default_loads_and_matches_schema_defaults() -> None:
    cfg = load_config()
    # config/ssp.yaml documents the defaults and adds the shipped weights; they must not drift apart
    assert cfg == SspConfig(model=ModelConfig(weights="models/ssp_default.safetensors"),
                            runtime=RuntimeConfig(export_dir="models/ssp_default"))
    assert load_sim_config() == SimConfig(model=ModelConfig(weights="models/ssp_default.safetensors"),
                                          runtime=RuntimeConfig(export_dir="models/ssp_default"))


def test_the_drone_config_has_no_synthetic_section() -> None:
    assert "synthetic" not in {f.name for f in dataclasses.fields(SspConfig)}
    assert not hasattr(load_config(), "synthetic")
    with pytest.raises(ConfigError, match=r"src: synthetic: unknown key \(valid keys: model, registration, "
                                          r"propagation, runtime, node, stabiliser\)"):
        config_from_dict(SspConfig, {"synthetic": {}}, "src")


def test_the_node_leaves_the_scenario_of_a_config_file_unread(tmp_path: Path) -> None:
    """One file serves the node and ``ssp demo``: the drone's loader skips ``synthetic:``, the demo's checks it."""
    path = write(tmp_path, "node:\n  reliable: true\nsynthetic:\n  height: -3\n")
    assert load_config(path) == SspConfig(node=NodeConfig(reliable=True))
    with pytest.raises(ConfigError, match=r"cfg\.yaml: synthetic\.height: must be in \[16, 4320\], got -3"):
        load_sim_config(path)
    scenario = load_sim_config(write(tmp_path, "node:\n  reliable: true\nsynthetic:\n  height: 96\n"))
    assert scenario.node.reliable and scenario.synthetic == SyntheticConfig(height=96)


def test_shipped_scenarios_load() -> None:
    root = ROOT / "config" / "scenarios"
    assert load_section(SyntheticConfig, root / "default.yaml") == SyntheticConfig()
    calm = load_section(SyntheticConfig, root / "calm.yaml")
    assert calm.nuisances.noise_sigma == 0.0 and calm.camera.tilt_deg == 0.0


def test_unknown_key_names_key_file_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "registration:\n  ratoi: 0.7\n")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: registration\.ratoi: unknown key \(did you mean 'ratio'\?\)"):
        load_config(path)


def test_unknown_section_lists_valid_keys(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cfg\.yaml: zzz: unknown key \(valid keys: model, registration"):
        load_config(write(tmp_path, "zzz: {}\n"))


@pytest.mark.parametrize("text, pattern", [
    ("model:\n  decoder_channels: wide\n", r"model\.decoder_channels: expected int, got 'wide'"),
    ("model:\n  decoder_channels: 1.5\n", r"model\.decoder_channels: expected int, got 1\.5"),
    ("propagation:\n  enabled: 'yes'\n", r"propagation\.enabled: expected bool"),
    ("runtime:\n  backend: cuda\n",
     r"runtime\.backend: expected one of \['auto', 'torch', 'onnxruntime', 'tensorrt'\]"),
    ("model:\n  input_size: [384]\n", r"model\.input_size: expected a list of 2 values"),
    ("synthetic:\n  camera: 3\n", r"synthetic\.camera: expected a mapping"),
    ("synthetic:\n  nuisances:\n    jpeg_quality: [90, 'x']\n",
     r"synthetic\.nuisances\.jpeg_quality\[1\]: expected int"),
])
def test_wrong_types_name_the_key_and_file(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"cfg\.yaml: " + pattern):
        load_sim_config(write(tmp_path, text))
    if not text.startswith("synthetic"):
        with pytest.raises(ConfigError, match=r"cfg\.yaml: " + pattern):
            load_config(write(tmp_path, text))


@pytest.mark.parametrize("text, pattern", [
    ("synthetic:\n  height: -3\n", r"synthetic\.height: must be in \[16, 4320\], got -3"),
    ("synthetic:\n  camera:\n    altitude_m: [80, 40]\n",
     r"synthetic\.camera\.altitude_m: expected 5\.0 <= min <= max"),
    ("synthetic:\n  nuisances:\n    drop_prob: 0.5\n", r"synthetic\.nuisances\.drop_prob: must be in \[0\.0, 0\.5\)"),
    ("model:\n  input_size: [368, 640]\n", r"model\.input_size: expected positive multiples of 32"),
    ("registration:\n  min_inliers: 3\n", r"registration\.min_inliers: must be in \[4, 10000\]"),
])
def test_out_of_range_values_name_the_key(tmp_path: Path, text: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"cfg\.yaml: " + pattern):
        load_sim_config(write(tmp_path, text))
    if not text.startswith("synthetic"):
        with pytest.raises(ConfigError, match=r"cfg\.yaml: " + pattern):
            load_config(write(tmp_path, text))


def test_float_fields_accept_ints_and_null_optionals(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "propagation:\n  max_time_gap_s: 1\nmodel:\n  weights: null\n"))
    assert cfg.propagation.max_time_gap_s == 1.0 and isinstance(cfg.propagation.max_time_gap_s, float)
    assert cfg.model.weights is None


def test_invalid_yaml_and_missing_file_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cfg\.yaml: invalid YAML"):
        load_config(write(tmp_path, "model: [unclosed\n"))
    with pytest.raises(ConfigError, match=r"nope\.yaml: cannot read config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"cfg\.yaml: expected a mapping at the top level"):
        load_config(write(tmp_path, "- 1\n- 2\n"))


def test_variable_length_tuples_convert_each_item() -> None:
    from dataclasses import dataclass
    from typing import Literal

    @dataclass
    class Section:
        names: tuple[Literal["a", "b"], ...] = ()

    assert config_from_dict(Section, {"names": ["b", "a", "b"]}).names == ("b", "a", "b")
    assert config_from_dict(Section, {"names": []}).names == ()
    with pytest.raises(ConfigError, match=r"src: names\[1\]: expected one of \['a', 'b'\], got 'c'"):
        config_from_dict(Section, {"names": ["a", "c"]}, "src")
    with pytest.raises(ConfigError, match="src: names: expected a list, got 'a'"):
        config_from_dict(Section, {"names": "a"}, "src")


def test_to_dict_round_trips() -> None:
    cfg = SspConfig(model=ModelConfig(input_size=(736, 1280)))
    assert config_from_dict(SspConfig, to_dict(cfg)) == cfg


def test_dataclasses_validate_when_built_in_code() -> None:
    with pytest.raises(ConfigError, match=r"decoder_channels: must be in \[1, inf\], got 0"):
        ModelConfig(decoder_channels=0)


def _load_train_yaml(path: Path) -> object:
    """A training recipe, or an ablation plan (which names its base recipe and variants)."""
    from ssp_train.ablation import load_plan
    from ssp_train.config import load_train_config

    return (load_plan if "variants" in read_yaml(path) else load_train_config)(path)


LOADERS = {  # folder under config/ -> how its files are read
    ".": lambda path: (load_config(path), load_sim_config(path)),
    "scenarios": lambda path: load_section(SyntheticConfig, path),
    "datasets": load_class_set,
    "train": _load_train_yaml,
}


def test_every_shipped_yaml_loads_with_its_type() -> None:
    paths = sorted((ROOT / "config").rglob("*.y*ml"))
    folders = {str(path.parent.relative_to(ROOT / "config")) for path in paths}
    assert folders <= set(LOADERS), f"no loader for config/{sorted(folders - set(LOADERS))}"
    for path in paths:
        assert LOADERS[str(path.parent.relative_to(ROOT / "config"))](path) is not None, path


@pytest.fixture
def opencv_without_akaze(monkeypatch: pytest.MonkeyPatch) -> str:
    """cv2 as OpenCV 5 without contrib has it: no AKAZE anywhere; returns the version it reports."""
    import cv2

    monkeypatch.delattr(cv2, "AKAZE_create", raising=False)
    monkeypatch.delattr(cv2, "xfeatures2d", raising=False)
    return cv2.__version__


def test_a_detector_this_opencv_lacks_is_refused_naming_file_key_version_and_what_it_has(
        tmp_path: Path, opencv_without_akaze: str) -> None:
    path = write(tmp_path, "registration:\n  detector: akaze\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path}: registration.detector: 'akaze' is not in this OpenCV ({opencv_without_akaze}: no cv2.AKAZE_create "
        "or cv2.xfeatures2d.AKAZE_create), which has orb, sift; OpenCV 5 moved AKAZE to opencv-contrib "
        "(opencv-contrib-python-headless in place of opencv-python-headless)")
    assert available_detectors() == ("orb", "sift")
    load_config(write(tmp_path, "registration:\n  detector: sift\n"))  # the detectors it has still load


def test_akaze_is_found_in_opencv_contribs_xfeatures2d(monkeypatch: pytest.MonkeyPatch,
                                                       opencv_without_akaze: str) -> None:
    """OpenCV 5 with contrib keeps AKAZE as cv2.xfeatures2d.AKAZE_create: that one is used."""
    import types

    import cv2

    contrib = types.SimpleNamespace(AKAZE_create=lambda: "contrib AKAZE")
    monkeypatch.setattr(cv2, "xfeatures2d", contrib, raising=False)
    assert opencv_detector("akaze") is contrib.AKAZE_create
    assert available_detectors() == ("orb", "akaze", "sift")
    assert SspConfig(registration=RegistrationConfig(detector="akaze")).registration.detector == "akaze"


def test_any_missing_detector_is_refused_when_built_in_code(monkeypatch: pytest.MonkeyPatch) -> None:
    import cv2

    monkeypatch.delattr(cv2, "SIFT_create")
    with pytest.raises(ConfigError, match=r"^detector: 'sift' is not in this OpenCV \(.*: no cv2\.SIFT_create\), "
                                          r"which has orb(, akaze)?$"):
        RegistrationConfig(detector="sift")
    with pytest.raises(ConfigError, match=r"detector: unknown detector 'brisk' \(expected one of orb, akaze, sift\)"):
        RegistrationConfig(detector="brisk")

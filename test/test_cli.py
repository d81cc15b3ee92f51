import importlib.util
import re
from pathlib import Path

import pytest
import yaml
from fake_export import write_fake_export

from ssp_ros.cli.main import build_parser, main
from ssp_ros.io import LabelledSequence

SMALL = {"height": 64, "width": 96, "world": {"size_m": 120.0, "gsd_m": 0.12},
         "camera": {"altitude_m": [25.0, 30.0]}}


def scenario(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_synth_writes_a_sequence_and_reports_gt_tc(tmp_path: Path, capsys) -> None:
    out = tmp_path / "seq"
    code = main(["synth", "--out", str(out), "--frames", "6", "--seed", "3", "--quiet",
                 "--scenario", str(scenario(tmp_path, SMALL))])
    assert code == 0
    seq = LabelledSequence(out)
    assert len(seq) == 6 and seq.header["size"] == [64, 96] and seq.header["seed"] == 3
    assert seq.header["scenario"]["world"]["size_m"] == 120.0
    assert seq.header["summary"]["gt_label_tc"] > 90.0
    assert "wrote 6 frames of 64x96" in capsys.readouterr().out


def test_synth_size_overrides_the_scenario(tmp_path: Path) -> None:
    out = tmp_path / "seq"
    assert main(["synth", "--out", str(out), "--frames", "2", "--size", "72x112", "--quiet",
                 "--scenario", str(scenario(tmp_path, SMALL))]) == 0
    assert LabelledSequence(out).header["size"] == [72, 112]


def test_unknown_scenario_key_is_one_clear_error(tmp_path: Path, capsys) -> None:
    path = scenario(tmp_path, {**SMALL, "camera": {"altitude": [30, 40]}})
    assert main(["synth", "--out", str(tmp_path / "seq"), "--scenario", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "scenario.yaml: camera.altitude: unknown key (did you mean 'altitude_m'?)" in err
    assert not (tmp_path / "seq").exists()


def test_negative_size_in_scenario_is_refused(tmp_path: Path, capsys) -> None:
    path = scenario(tmp_path, {**SMALL, "width": -5})
    assert main(["synth", "--out", str(tmp_path / "seq"), "--scenario", str(path), "--quiet"]) == 2
    assert "width: must be in [16, 7680], got -5" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [(["--frames", "0"], "--frames: must be >= 1"),
                                           (["--size=0x10"], "--size: height and width must be positive")])
def test_bad_arguments_exit_non_zero(tmp_path: Path, capsys, args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["synth", "--out", str(tmp_path / "seq"), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_unwritable_output_is_one_clear_error(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = main(["synth", "--out", str(blocker / "seq"), "--frames", "2", "--quiet",
                 "--scenario", str(scenario(tmp_path, SMALL))])
    assert code == 2 and "cannot create the output folder" in capsys.readouterr().err


def test_export_command_writes_a_runnable_folder(tmp_path: Path, capsys) -> None:
    from ssp_ros.backends.export_info import load_export_info

    assert main(["export", "--out", str(tmp_path / "exp"), "--size", "64x96"]) == 0
    out = capsys.readouterr().out
    assert "segmenter.onnx: image [1, 3, 64, 96]" in out and "runtime.export_dir" in out
    info = load_export_info(tmp_path / "exp")
    assert info.input_size == (64, 96) and info.raw["weights"]["file"] == "ssp_default.safetensors"
    written = {path.name for path in (tmp_path / "exp").iterdir() if path.suffix in (".onnx", ".json")}
    for argv in (["export", "--help"], ["--help"]):  # the help names the files export writes, no fewer, no more
        with pytest.raises(SystemExit):
            main(argv)
        summary = " ".join(capsys.readouterr().out.split())
        named = set(re.findall(r"[\w.-]+\.(?:onnx|json)\b", summary))
        assert named == written, f"`ssp {' '.join(argv)}` names {sorted(named)}, export wrote {sorted(written)}"
    assert main(["export", "--out", str(tmp_path / "bad"), "--size", "60x96"]) == 2
    assert "input_size: expected positive multiples of 32, got [60, 96]" in capsys.readouterr().err


def test_build_engine_without_tensorrt_says_what_to_install(tmp_path: Path, capsys) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed: the build itself is tested in test_tensorrt_backend.py")
    write_fake_export(tmp_path / "exp")
    assert main(["build-engine", "--onnx", str(tmp_path / "exp"), "--fp16"]) == 2
    assert "TensorRT is not installed" in capsys.readouterr().err


def test_node_without_rclpy_names_the_ros_extra_ros_and_dds(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "rclpy", None)  # as on a machine without ROS: `import rclpy` fails
    assert main(["node"]) == 1
    err = capsys.readouterr().err
    for remedy in ("pip install -e '.[ros]'", "source a ROS 2 installation", "pip install -e '.[dds]'",
                   "ssp node --transport dds"):
        assert remedy in err, f"{remedy!r} missing from: {err}"


def test_params_says_which_detectors_this_opencv_has(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import cv2

    monkeypatch.delattr(cv2, "AKAZE_create", raising=False)  # as OpenCV 5 without contrib
    monkeypatch.delattr(cv2, "xfeatures2d", raising=False)
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "| `registration.detector` | `\"orb\"` | one of: orb, akaze, sift |" in out
    assert out.rstrip().endswith(f"registration.detector: this OpenCV ({cv2.__version__}) has orb, sift.")


@pytest.mark.parametrize(("argv", "module", "says"), [
    (["replay", "in.mcap", "--out", "out.mcap"], "rosbags", "ssp replay needs the rosbags package: pip install "
                                                            "'ssp_ros[bag]'"),
    (["synth", "--bag", "x.mcap", "--frames", "2"], "rosbags", "ssp synth --bag needs the rosbags package"),
    (["demo", "--frames", "2"], "matplotlib", "ssp demo's TC plot needs the matplotlib package: pip install "
                                              "'ssp_ros[demo]'"),
    (["node", "--transport", "dds"], "rosbags", "ssp node --transport dds needs the rosbags package: pip install "
                                                "'ssp_ros[dds]'"),
])
def test_a_command_without_its_extra_names_the_extra_before_any_work(monkeypatch: pytest.MonkeyPatch, capsys,
                                                                     tmp_path, argv, module, says) -> None:
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)  # as without the extra: find_spec says None
    assert main(argv) == 2
    assert says in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing written"


def test_training_commands_without_the_training_package_say_how_to_install_it(monkeypatch: pytest.MonkeyPatch,
                                                                               capsys) -> None:
    import ssp_ros.cli.main as cli_main

    monkeypatch.setattr(cli_main, "entry_points", lambda group: [])  # as where ./training is not installed
    assert main(["train", "--config", "config/train/default.yaml"]) == 2
    assert ("'ssp train' comes with the training package ssp_train, which is not installed here: in a clone of the "
            "repository, pip install -e ./training") in capsys.readouterr().err
    assert main(["ablate"]) == 2 and "'ssp ablate' comes with the training package" in capsys.readouterr().err


def test_the_training_package_adds_its_commands_through_the_entry_point() -> None:
    from importlib.metadata import entry_points

    (plugin,) = [ep for ep in entry_points(group="ssp_ros.commands") if ep.name == "training"]
    assert plugin.value == "ssp_train.cli:add_commands"
    help_text = build_parser().format_help()
    assert "train" in help_text and "needs the training package" not in help_text


def test_a_plugin_that_cannot_be_imported_does_not_take_the_command_down(monkeypatch: pytest.MonkeyPatch,
                                                                         capsys) -> None:
    from importlib.metadata import EntryPoint

    import ssp_ros.cli.main as cli_main

    stale = EntryPoint(name="training", value="ssp_no_such_package.cli:add_commands", group="ssp_ros.commands")
    monkeypatch.setattr(cli_main, "entry_points", lambda group: [stale])  # metadata left by an old install
    assert main(["train", "--config", "x.yaml"]) == 2
    err = capsys.readouterr().err
    assert "the 'training' commands (ssp_no_such_package.cli:add_commands) cannot be loaded" in err
    assert "'ssp train' comes with the training package ssp_train" in err

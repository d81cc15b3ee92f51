"""``runtime.backend: auto`` and the shipped model's export: the runtime without torch."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ssp_ros.backends.choice import TORCH_STACK, choose_backend
from ssp_ros.backends.export_info import load_export_info, sha256_file
from ssp_ros.config import load_config
from ssp_ros.errors import SspError
from ssp_ros.resources import share_dir

EXPORT = share_dir() / "models" / "ssp_default"
WEIGHTS = share_dir() / "models" / "ssp_default.safetensors"
ROOT = Path(__file__).resolve().parent.parent
# a Python that cannot import the torch stack: `import torch` raises ImportError and find_spec says None
NO_TORCH = f"import sys\nfor name in {TORCH_STACK}: sys.modules[name] = None\n"


@pytest.fixture
def without_torch(monkeypatch):
    """``choice`` sees no torch stack (the rest of the test process keeps its torch)."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name in TORCH_STACK else real(name, *args))


def runtime(cfg, **changes):
    return dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, **changes))


def test_auto_is_torch_where_torch_is_installed() -> None:
    cfg = load_config()
    assert cfg.runtime.backend == "auto" and choose_backend(cfg).runtime.backend == "torch"
    assert choose_backend(runtime(cfg, backend="onnxruntime")) == runtime(cfg, backend="onnxruntime")


def test_auto_without_torch_runs_the_shipped_export(without_torch) -> None:
    chosen = choose_backend(load_config())
    assert chosen.runtime.backend == "onnxruntime"
    assert Path(chosen.runtime.export_dir).resolve() == EXPORT.resolve()


def test_auto_without_torch_refuses_an_export_of_other_weights(without_torch, tmp_path) -> None:
    other = tmp_path / "other.safetensors"
    other.write_bytes(WEIGHTS.read_bytes() + b"\0")
    cfg = load_config()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights=str(other)))
    with pytest.raises(SspError, match=r"runtime.export_dir .*ssp_default: an export of ssp_default.safetensors, not "
                                       r"of model.weights .*other.safetensors \(their SHA-256 differ\)"):
        choose_backend(cfg)


@pytest.mark.parametrize(("model", "says"), [
    ({"weights": None}, r"an export of ssp_default.safetensors, and model.weights is not set \(an untrained model\)"),
    ({"decoder_channels": 128}, r"exported with decoder_channels 64, model.decoder_channels is 128"),
    ({"backbone": "resnet18"}, r"exported with backbone 'mobilenetv3_large_100', model.backbone is 'resnet18'"),
])
def test_auto_without_torch_refuses_an_export_of_another_model(without_torch, model, says) -> None:
    cfg = load_config()
    with pytest.raises(SspError, match=says):
        choose_backend(dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **model)))


def test_a_package_imported_without_a_spec_counts_as_installed(monkeypatch) -> None:
    import types

    from ssp_ros.errors import package_installed

    monkeypatch.setitem(sys.modules, "ssp_fake_stub", types.ModuleType("ssp_fake_stub"))  # __spec__ is None
    assert package_installed("ssp_fake_stub") and not package_installed("ssp_no_such_package")


def test_auto_without_torch_refuses_another_input_size(without_torch) -> None:
    cfg = load_config()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, input_size=(736, 1280)))
    with pytest.raises(SspError, match="exported at input 384x640, model.input_size is 736x1280"):
        choose_backend(cfg)


def test_auto_without_torch_or_an_export_says_what_to_install(without_torch, monkeypatch) -> None:
    cfg = load_config()
    with pytest.raises(SspError, match=r"torch is not installed \(torch, torchvision, timm, safetensors missing\) and "
                                       r"runtime.export_dir is not set"):
        choose_backend(runtime(cfg, export_dir=None))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "onnxruntime" else real(name, *args))
    with pytest.raises(SspError, match=r"neither torch \(.*\) nor onnxruntime is installed"):
        choose_backend(cfg)


def test_the_shipped_export_is_of_the_shipped_weights_and_small() -> None:
    info = load_export_info(EXPORT)  # checks every graph against its SHA-256
    assert info.raw["weights"]["sha256"] == sha256_file(WEIGHTS)
    assert info.input_size == load_config().model.input_size and info.raw["compact"]
    for path in EXPORT.iterdir():
        assert path.stat().st_size <= 10 * 1024 * 1024, path


@pytest.mark.slow
def test_the_shipped_export_computes_what_the_shipped_weights_do() -> None:
    """The export's parity with torch through the pipeline (segmenter, registration, fusion) on a synthetic flight:
    the same masks but for a few pixels where two classes nearly tie."""
    from ssp_ros.backends.onnx_backend import OnnxRuntimeBackend
    from ssp_ros.backends.torch_backend import TorchBackend
    from ssp_ros.pipeline import Pipeline
    from ssp_ros.synthetic import SyntheticVideo
    from ssp_ros.synthetic.config import load_sim_config
    from ssp_ros.synthetic.video import snug_world

    cfg = load_config()
    frames = list(SyntheticVideo(snug_world(load_sim_config().synthetic), frames=6, seed=2000))
    masks = {}
    for name, backend in (("onnx", OnnxRuntimeBackend(load_export_info(EXPORT))),
                          ("torch", TorchBackend.from_config(cfg.model, 8))):
        pipeline = Pipeline(cfg, backend)
        masks[name] = [pipeline.process(frame.image, frame.stamp).mask for frame in frames]
    for onnx_mask, torch_mask in zip(masks["onnx"], masks["torch"]):
        assert (onnx_mask != torch_mask).mean() < 1e-3


@pytest.mark.slow
def test_the_demo_runs_without_torch(tmp_path) -> None:
    """``ssp demo`` in a Python where the torch stack cannot be imported: on ONNX Runtime, the shipped export."""
    out = tmp_path / "demo"
    script = NO_TORCH + (f"from ssp_ros.cli.main import main\n"
                         f"sys.exit(main(['demo', '--frames', '8', '--out', {str(out)!r}]))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "onnxruntime" and report["frames"] == 8


@pytest.mark.slow
def test_eval_of_a_weights_file_without_torch_says_to_give_an_export(tmp_path) -> None:
    script = NO_TORCH + (f"from ssp_ros.cli.main import main\n"
                         f"sys.exit(main(['eval', '--weights', 'a={WEIGHTS}', '--frames', '2', "
                         f"'--out', {str(tmp_path / 'e')!r}]))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "is a weights file, which runs on torch, and torch is not installed here: give an `ssp export` " \
           "folder instead" in done.stderr


@pytest.mark.slow
def test_the_node_runs_the_shipped_export_without_torch() -> None:
    """The node's own code path (SegmentationNode on the shipped config) in a Python without the torch stack."""
    script = NO_TORCH + textwrap.dedent(f"""
        sys.path.insert(0, {str(ROOT / "test")!r})
        import numpy as np
        from rosbags.typesys import Stores, get_typestore
        from test_node import _MemoryTransport
        from ssp_ros.config import load_config
        from ssp_ros.ros.node import SegmentationNode
        from ssp_ros.synthetic import SyntheticVideo
        from ssp_ros.synthetic.config import load_sim_config
        from ssp_ros.synthetic.video import snug_world

        frame = next(iter(SyntheticVideo(snug_world(load_sim_config().synthetic), frames=1, seed=2000)))
        types = get_typestore(Stores.ROS2_HUMBLE).types
        h, w = frame.image.shape[:2]
        header = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=10, nanosec=0),
                                               frame_id="camera")
        image = types["sensor_msgs/msg/Image"](header=header, height=h, width=w, encoding="rgb8", is_bigendian=0,
                                               step=3 * w, data=np.ascontiguousarray(frame.image).reshape(-1))
        transport = _MemoryTransport(subscribers={{"/ssp/mask": 1}})
        transport.clock = 10.0
        segmenter = SegmentationNode(transport, load_config())
        try:
            segmenter.process(image)
        finally:
            segmenter.close()
        print(segmenter.hardware_id, len(transport.sent["/ssp/mask"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["onnxruntime", "1"]

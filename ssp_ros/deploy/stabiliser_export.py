"""``ssp export-stabiliser``: the stabiliser's trained similarity model → the folder the runtime loads.

The folder (``models/ssp_stabiliser/`` ships one) holds two ONNX graphs, which OpenCV's DNN module runs
(``ssp_ros/backends/appearance.py``), and a JSON description:

- ``encoder.onnx``: ``image`` (1×3×H×W float32 RGB 0..255, H and W multiples of 4; the normalisation is inside)
  → ``feats`` (1×C×H/4×W/4); H and W are free, so one file serves any input size;
- ``similarity.onnx``: ``warped_prev_feats``, ``cur_feats`` (1×C×h×w each) → ``s`` (1×1×h×w, 0..1);
- ``stabiliser.json``: the channel count, the stride, the opset and the SHA-256 of the weights it came from;
- ``stabiliser.safetensors``: those weights (for fine-tuning; the runtime does not read them).

BatchNorm is folded into the convolutions by the exporter's constant folding: the graphs are a few conv layers.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import torch

from ssp_ros.backends.export_info import sha256_file
from ssp_ros.deploy.export import OPSET
from ssp_ros.errors import SspError
from ssp_ros.models.appearance import STRIDE, AppearanceSimilarity
from ssp_ros.models.weights import load_weights, read_weights_metadata

FORMAT = 1
TRACE_SIZE = (64, 96)  # the size the graphs are traced at; their spatial axes are left free


def load_model(weights: Path) -> AppearanceSimilarity:
    """The trained similarity model of ``weights`` (its channel count read from the file), in eval mode."""
    meta = read_weights_metadata(weights)
    if meta.get("kind") != "stabiliser":
        raise SspError(f"{weights}: not the stabiliser's weights (kind {meta.get('kind')!r}); train them with "
                       "config/train/stabiliser.yaml")
    model = AppearanceSimilarity(int(meta["channels"]))
    load_weights(model, weights)
    return model.eval()


def _export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str],
            output: str) -> None:
    axes = {name: {2: "height", 3: "width"} for name in [*inputs, output]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=inputs, output_names=[output], opset_version=OPSET,
                          dynamic_axes=axes, dynamo=False)


def export_stabiliser(weights: Path, out: Path) -> dict:
    """Write ``out`` (see the module docstring) from the stabiliser ``weights``; returns its description."""
    model = load_model(weights)
    out.mkdir(parents=True, exist_ok=True)
    h, w = TRACE_SIZE
    image = torch.rand(1, 3, h, w) * 255
    feats = torch.rand(1, model.channels, h // STRIDE, w // STRIDE)
    _export(model.encoder, (image,), out / "encoder.onnx", ["image"], "feats")
    _export(model, (feats, feats), out / "similarity.onnx", ["warped_prev_feats", "cur_feats"], "s")
    if weights.resolve() != (out / "stabiliser.safetensors").resolve():
        shutil.copyfile(weights, out / "stabiliser.safetensors")
    meta = read_weights_metadata(weights)
    info = {"format": FORMAT, "channels": model.channels, "stride": STRIDE, "opset": OPSET,
            "weights_sha256": sha256_file(weights), "trained_on": meta.get("trained_on", "unknown")}
    (out / "stabiliser.json").write_text(json.dumps(info, indent=2) + "\n")
    return info

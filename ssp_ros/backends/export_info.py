"""The exported model folder (``ssp export --out DIR``) and its ``export.json`` sidecar, without torch.

A folder holds three ONNX graphs, so that the previous frame's state can stay on the device between them:

- ``segmenter.onnx``: ``image`` 1×3×H×W float32 RGB in 0..255 (normalisation is in the graph) →
  ``logits`` 1×K×H/4×W/4 and ``feats`` 1×C×H/4×W/4 (the stride-4 features the similarity head compares);
- ``fusion.onnx``: ``cur_logits``, ``cur_feats``, ``prev_logits`` (the previous *fused* logits),
  ``prev_feats`` and ``to_previous`` 1×3×3 (current → previous stride-4 cells) → ``fused`` logits and
  ``similarity`` 1×1×H/4×W/4; the warp is in the graph (GridSample). TensorRT and CUDA run this one;
- ``blend.onnx``: the fusion graph without the warp, for CPU runtimes that warp with OpenCV
  (``backends/cpu_warp.py``): ``cur_logits``, ``cur_feats``, ``warped_logits``, ``warped_feats`` (the
  previous state already warped) and ``valid`` 1×1×H/4×W/4 → ``fused`` and ``similarity``.

``export.json`` records what a runtime must know (input size, classes, shapes) and the SHA-256 of each
graph, which TensorRT engine sidecars repeat so that a stale engine is refused (``engine_cache.py``).
TensorRT engines built from the graphs live in the same folder (``segmenter.fp16.engine`` …).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssp_ros.errors import SspError

SIDECAR = "export.json"
FORMAT = 2  # 2: blend.onnx added
GRAPHS = ("segmenter", "fusion")  # the graphs TensorRT engines are built from
EXPORTED_GRAPHS = (*GRAPHS, "blend")
SEGMENTER_INPUTS = ("image",)
SEGMENTER_OUTPUTS = ("logits", "feats")
FUSION_INPUTS = ("cur_logits", "cur_feats", "prev_logits", "prev_feats", "to_previous")
FUSION_OUTPUTS = ("fused", "similarity")
BLEND_INPUTS = ("cur_logits", "cur_feats", "warped_logits", "warped_feats", "valid")
BLEND_OUTPUTS = FUSION_OUTPUTS


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class GraphInfo:
    """One exported graph: its file, hash and tensor shapes (name → shape; runtimes bind by name)."""

    file: Path
    sha256: str
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]


@dataclass(frozen=True)
class ExportInfo:
    """What ``export.json`` says about an exported model folder."""

    folder: Path
    input_size: tuple[int, int]
    num_classes: int
    classes: tuple[str, ...]
    feature_channels: int
    opset: int
    graphs: dict[str, GraphInfo]
    raw: dict[str, Any]

    @property
    def stride_size(self) -> tuple[int, int]:
        """(h, w) of the stride-4 maps."""
        return self.input_size[0] // 4, self.input_size[1] // 4

    def graph(self, name: str) -> GraphInfo:
        """The graph called ``name`` (one of ``EXPORTED_GRAPHS``)."""
        return self.graphs[name]


def _field(data: dict, key: str, kind: type, source: Path) -> Any:
    if key not in data:
        raise SspError(f"{source}: missing field '{key}' (re-export with `ssp export`)")
    value = data[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise SspError(f"{source}: field '{key}' should be {kind.__name__}, got {type(value).__name__}")
    return value


def _graph(folder: Path, name: str, data: dict, source: Path, check_hash: bool) -> GraphInfo:
    where = f"graphs.{name}"
    entry = _field(data, name, dict, source)
    file = folder / _field(entry, "file", str, source)
    if not file.is_file():
        raise SspError(f"{file}: graph file named by {source} ({where}.file) is missing")
    sha = _field(entry, "sha256", str, source)
    if check_hash and sha256_file(file) != sha:
        raise SspError(f"{file}: contents do not match the SHA-256 in {source} ({where}.sha256): the folder mixes "
                       "files of two exports; re-export with `ssp export`")
    inputs, outputs = _field(entry, "inputs", dict, source), _field(entry, "outputs", dict, source)
    return GraphInfo(file, sha, {k: list(v) for k, v in inputs.items()}, {k: list(v) for k, v in outputs.items()})


def load_export_info(folder: str | Path, check_hash: bool = True) -> ExportInfo:
    """Read and check ``folder/export.json`` (and, with ``check_hash``, that the graphs match their hashes)."""
    folder = Path(folder)
    source = folder / SIDECAR
    if not folder.is_dir():
        raise SspError(f"{folder}: exported model folder not found (write one with `ssp export --out {folder}`)")
    if not source.is_file():
        raise SspError(f"{source}: missing: {folder} is not a folder written by `ssp export`")
    try:
        data = json.loads(source.read_text())
    except json.JSONDecodeError as err:
        raise SspError(f"{source}: not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise SspError(f"{source}: expected a JSON object at the top level")
    version = _field(data, "format", int, source)
    if version != FORMAT:
        raise SspError(f"{source}: export format {version}, this ssp_ros reads format {FORMAT}: re-export")
    size = _field(data, "input_size", list, source)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 and v % 32 == 0 for v in size):
        raise SspError(f"{source}: field 'input_size' should be [H, W], multiples of 32, got {size}")
    graphs = _field(data, "graphs", dict, source)
    classes = tuple(_field(data, "classes", list, source))
    num_classes = _field(data, "num_classes", int, source)
    if len(classes) != num_classes:
        raise SspError(f"{source}: {len(classes)} class names for num_classes {num_classes}")
    return ExportInfo(folder=folder, input_size=(size[0], size[1]), num_classes=num_classes, classes=classes,
                      feature_channels=_field(data, "feature_channels", int, source),
                      opset=_field(data, "opset", int, source),
                      graphs={name: _graph(folder, name, graphs, source, check_hash) for name in EXPORTED_GRAPHS},
                      raw=data)


def write_export_info(folder: Path, info: dict[str, Any]) -> Path:
    """Write ``info`` as ``folder/export.json`` (sorted keys, so two exports of one model diff cleanly)."""
    path = folder / SIDECAR
    path.write_text(json.dumps({"format": FORMAT, **info}, indent=2, sort_keys=True) + "\n")
    return path

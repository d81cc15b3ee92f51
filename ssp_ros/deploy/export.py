"""Export a trained SSP model to the two ONNX graphs the deployment runtimes run (``ssp export``).

The folder layout and tensor names are defined in ``ssp_ros/backends/export_info.py``. Each graph has its shape
arithmetic folded into constants, then is checked with ``onnx.checker`` and against ``TENSORRT_OPS``, the
ONNX operators that TensorRT's ONNX parser supports and that this model family may use; anything else
fails the export, so a graph that TensorRT would reject never reaches the drone. The legacy TorchScript
exporter is used (``dynamo=False``): it needs no ``onnxscript``.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from ssp_ros.backends.export_info import (
    FUSION_INPUTS,
    FUSION_OUTPUTS,
    SEGMENTER_INPUTS,
    SEGMENTER_OUTPUTS,
    sha256_file,
    write_export_info,
)
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig
from ssp_ros.errors import SspError
from ssp_ros.models import SSP, build_ssp
from ssp_ros.models.ssp import WarpFusionStep

OPSET = 17  # GridSample needs ≥ 16; 17 is the newest opset TensorRT 8.5 (JetPack 5) parses

# ONNX operators listed as supported in onnx-tensorrt's operator matrix (docs/operators.md) that timm
# backbones, UPerNet and the fusion step export to. A new backbone that needs more ops extends this list
# after checking the matrix of the oldest TensorRT we deploy to. Log and LogSoftmax: the entropy input of the
# similarity head (ssp.similarity_inputs).
TENSORRT_OPS = frozenset({
    "Abs", "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "Div", "Equal", "Erf", "Exp", "Expand", "Flatten", "Gather", "Gemm",
    "GlobalAveragePool", "GlobalMaxPool", "Greater", "GridSample", "HardSigmoid", "HardSwish", "Identity",
    "LayerNormalization", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min", "Mul", "Neg",
    "Not", "Pad", "Pow", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Reshape", "Resize", "Shape",
    "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose", "Unsqueeze", "Where",
})


class _FusionGraph(nn.Module):
    """The exported fusion step: ``WarpFusionStep`` without its validity output (runtimes do not use it)."""

    def __init__(self, step: WarpFusionStep) -> None:
        super().__init__()
        self.step = step

    def forward(self, cur_logits: torch.Tensor, cur_feats: torch.Tensor, prev_logits: torch.Tensor,
                prev_feats: torch.Tensor, to_previous: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fused, s, _ = self.step(cur_logits, cur_feats, prev_logits, prev_feats, to_previous)
        return fused, s


def operator_counts(model: onnx.ModelProto) -> Counter:
    """How often each operator type appears in the graph (subgraphs included)."""
    counts: Counter = Counter()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            counts[node.op_type] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)

    visit(model.graph)
    return counts


def check_graph(path: Path) -> Counter:
    """Run ``onnx.checker`` (with shape inference) on ``path`` and refuse operators TensorRT cannot parse."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise SspError(f"{path}: ONNX checker failed: {err}") from None
    counts = operator_counts(onnx.load(str(path)))
    unsupported = sorted(set(counts) - TENSORRT_OPS)
    if unsupported:
        raise SspError(f"{path}: operators outside the TensorRT-supported list: {', '.join(unsupported)} "
                       "(see TENSORRT_OPS in ssp_ros/deploy/export.py)")
    return counts


def _shapes(model: onnx.ModelProto, kind: str) -> dict[str, list[int | str]]:
    values = model.graph.input if kind == "inputs" else model.graph.output
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: tuple[str, ...],
            outputs: tuple[str, ...], dynamic_batch: bool) -> None:
    axes = {name: {0: "batch"} for name in inputs + outputs} if dynamic_batch else None
    with warnings.catch_warnings():
        # the tracer warns where Python ints are taken from shapes: deliberate, spatial sizes are static
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(outputs),
                          opset_version=OPSET, do_constant_folding=True, dynamic_axes=axes, dynamo=False)


def fold_constants(path: Path) -> None:
    """Rewrite ``path`` with its shape arithmetic folded into constants (ONNX Runtime's basic, platform-
    independent optimisation level, which emits only standard ONNX operators; polygraphy's ``--fold-constants``
    does the same). timm backbones compute sizes in the graph (Shape → Gather → Mod → If …); with static
    spatial sizes these are constants, and TensorRT's parser does not take every such operator."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    # ONNX Runtime declares every operator domain it knows; keep only those the graph uses
    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [opset for opset in model.opset_import if opset.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def export_model(model: SSP, input_size: tuple[int, int], out: Path, *, classes: tuple[str, ...],
                 dynamic_batch: bool = False, extra: dict[str, Any] | None = None) -> Path:
    """Write ``segmenter.onnx``, ``fusion.onnx`` and ``export.json`` for ``model`` into ``out``.

    The graphs are exported into a temporary folder next to ``out`` and moved in only when both pass the
    checks, so a failed export never leaves a half-written model folder behind.
    """
    h, w = input_size
    segmenter = model.segmenter.eval()
    if h % segmenter.input_multiple or w % segmenter.input_multiple:
        raise SspError(f"input size {h}x{w}: height and width must be multiples of {segmenter.input_multiple}")
    k, c, stride = segmenter.num_classes, segmenter.feature_channels, segmenter.output_stride
    fusion = _FusionGraph(model.warp_fusion_step()).eval()
    image = torch.rand(1, 3, h, w) * 255.0
    cells = (1, k, h // stride, w // stride), (1, c, h // stride, w // stride)
    fusion_args = (torch.randn(cells[0]), torch.randn(cells[1]), torch.randn(cells[0]), torch.randn(cells[1]),
                   torch.eye(3)[None])
    out.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp, torch.no_grad():
        staged = Path(tmp)
        for name, module, args, inputs, outputs in (
                ("segmenter", segmenter, (image,), SEGMENTER_INPUTS, SEGMENTER_OUTPUTS),
                ("fusion", fusion, fusion_args, FUSION_INPUTS, FUSION_OUTPUTS)):
            path = staged / f"{name}.onnx"
            _export(module, args, path, inputs, outputs, dynamic_batch)
            fold_constants(path)
            counts = check_graph(path)
            graph = onnx.load(str(path), load_external_data=False)
            unused = [i for i in inputs if i not in {v.name for v in graph.graph.input}]
            if unused:  # the exporter drops inputs the module never reads; runtimes bind all of them by name
                raise SspError(f"{name} graph: the model does not use input(s) {unused}, so the exporter dropped "
                               f"them and no runtime could feed it ({model.describe().get('similarity', '')} "
                               "similarity?): only models that read every input can be exported")
            graphs[name] = {"file": path.name, "sha256": sha256_file(path), "inputs": _shapes(graph, "inputs"),
                            "outputs": _shapes(graph, "outputs"), "operators": dict(sorted(counts.items()))}
        for name in graphs:
            (staged / graphs[name]["file"]).replace(out / graphs[name]["file"])
    info = {"input_size": [h, w], "stride": stride, "num_classes": k, "classes": list(classes),
            "feature_channels": c, "opset": OPSET, "dynamic_batch": dynamic_batch,
            "input": "image: RGB float32 in 0..255, N×3×H×W; normalisation is inside the graph",
            "mean": [v / 255.0 for v in segmenter.pixel_mean.flatten().tolist()],
            "std": [v / 255.0 for v in segmenter.pixel_std.flatten().tolist()],
            "model": segmenter.describe(), "graphs": graphs,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(extra or {})}
    write_export_info(out, info)
    return out


def export_config(model_cfg: ModelConfig, out: Path, dynamic_batch: bool = False) -> Path:
    """Build the model of ``model_cfg`` (with its weights, if set) and export it into ``out``."""
    from ssp_ros.backends.torch_backend import resolve_weights

    model_cfg = resolve_weights(model_cfg)
    classes = load_class_set(model_cfg.dataset)
    model = build_ssp(model_cfg, classes.num_classes).eval()
    weights = None
    if model_cfg.weights is not None:
        weights = {"file": Path(model_cfg.weights).name, "sha256": sha256_file(model_cfg.weights)}
    return export_model(model, model_cfg.input_size, out, classes=classes.names, dynamic_batch=dynamic_batch,
                        extra={"dataset": classes.name, "weights": weights,
                               "model_config": dataclasses.asdict(model_cfg)})

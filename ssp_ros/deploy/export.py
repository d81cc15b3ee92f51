"""Export a trained SSP model to the ONNX graphs the deployment runtimes run (``ssp export``).

The folder layout and tensor names are defined in ``ssp_ros/backends/export_info.py``. Each graph has its shape
arithmetic folded into constants, then is checked with ``onnx.checker`` and against the operator matrix of each
supported TensorRT version (``OPERATOR_MATRICES``: the ONNX operators of this model family that its parser takes,
its newest opset, and the attribute restrictions that matter here), or of the one version ``--trt-version``
names; anything else fails the export, so a graph that TensorRT would reject never reaches the drone. The legacy
TorchScript exporter is used (``dynamo=False``): it needs no ``onnxscript``.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper
import torch
from torch import nn

from ssp_ros.backends.export_info import (
    BLEND_INPUTS,
    BLEND_OUTPUTS,
    FUSION_INPUTS,
    FUSION_OUTPUTS,
    SEGMENTER_INPUTS,
    SEGMENTER_OUTPUTS,
    sha256_file,
    write_export_info,
)
from ssp_ros.backends.tensorrt_common import SUPPORTED_TENSORRT, check_tensorrt_version, parse_tensorrt_version
from ssp_ros.classes import load_class_set
from ssp_ros.config import ModelConfig
from ssp_ros.deploy.compact import WEIGHT_REWRITES, store_exact_fp16
from ssp_ros.errors import SspError
from ssp_ros.models import SSP, build_ssp, read_weights_metadata
from ssp_ros.models.ssp import WarpFusionStep

OPSET = 17  # GridSample needs ≥ 16; 17 is the newest opset TensorRT 8.6 (JetPack 6.0) parses

# ONNX operators that timm backbones, UPerNet and the fusion step export to, all listed as supported in the
# operator matrices of the supported TensorRT versions (onnx-tensorrt docs/operators.md at release/8.6-GA and
# release/10.0-GA / 10.1-GA). A new backbone that needs more ops extends this list after checking those matrices.
# Log and LogSoftmax: the entropy input of the similarity head (ssp.similarity_inputs). QuantizeLinear and
# DequantizeLinear: the `ssp export --int8` segmenter (see QDQ_RULE below for the form TensorRT takes).
MODEL_OPS = frozenset({
    "Abs", "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant",
    "ConstantOfShape", "Conv", "ConvTranspose", "DequantizeLinear", "Div", "Equal", "Erf", "Exp", "Expand", "Flatten",
    "Gather", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GridSample", "HardSigmoid", "HardSwish",
    "Identity", "LayerNormalization", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min", "Mul",
    "Neg", "Not", "Pad", "Pow", "QuantizeLinear", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu",
    "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub", "Tanh",
    "Transpose", "Unsqueeze", "Where",
})


@dataclasses.dataclass(frozen=True)
class OperatorMatrix:
    """What one TensorRT version's ONNX parser takes of ``MODEL_OPS``, from onnx-tensorrt's docs/operators.md at
    that version's tag (and its importer where the matrix is silent)."""

    source: str  # the tag the matrix was read at
    max_opset: int  # the newest default-domain opset the parser takes
    missing: frozenset[str]  # operators of MODEL_OPS the matrix marks N
    constant_inputs: tuple[tuple[str, int, str], ...] = ()  # (op, input index, its name): "must be an initializer"
    max_pool_dilations: bool = False  # MaxPool: "`dilations` must be empty or all ones" (10.x)


# Keyed by the oldest TensorRT (major, minor) each matrix describes; a version uses the newest matrix at or below it.
# 8.5 is outside SUPPORTED_TENSORRT and kept to say why: its matrix marks LayerNormalization (32 nodes in the paper's
# Hiera-S backbone at opset 17) and HardSwish N (timm's MobileNetV3 writes hard-swish as HardSigmoid × x).
OPERATOR_MATRICES = {
    (8, 5): OperatorMatrix("release/8.5-GA", 17, frozenset({"LayerNormalization", "HardSwish"}),
                           (("Squeeze", 1, "axes"),)),
    (8, 6): OperatorMatrix("release/8.6-GA", 17, frozenset(), (("Squeeze", 1, "axes"),)),
    (10, 0): OperatorMatrix("release/10.0-GA, release/10.1-GA", 20, frozenset(),
                            (("Squeeze", 1, "axes"), ("Pad", 3, "axes"), ("ReduceMax", 1, "axes"),
                             ("ReduceMean", 1, "axes"), ("ReduceMin", 1, "axes"), ("ReduceSum", 1, "axes")),
                            max_pool_dilations=True),
}

# Attribute values the importers take, the same in 8.6 and 10.x (matrix and importer source): GridSample
# (builtin_op_importers.cpp, 8.6-GA: any other mode silently becomes nearest/zeros, so it is refused here),
# Resize (the matrix lists nearest and linear; the importer also takes cubic on the two innermost dimensions).
ALLOWED_ATTRIBUTES = {
    "GridSample": {"mode": ("bilinear", "nearest", "bicubic"), "padding_mode": ("zeros", "border", "reflection"),
                   "align_corners": (0, 1)},
    "Resize": {"mode": ("nearest", "linear", "cubic"),
               "coordinate_transformation_mode": ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn",
                                                  "asymmetric", "align_corners"),
               "nearest_mode": ("floor", "ceil", "round_prefer_floor", "round_prefer_ceil"), "antialias": (0,)},
}
# QuantizeLinear/DequantizeLinear: INT8 with a zero point of 0 ("`y_zero_point` must be 0"; 8.6 refuses UINT8,
# 10.x reads a UINT8 zero point as INT8), and per-channel scales on weights (initializers) only ("activations-
# quantization does not support per-axis quantization" in the importer): the "s8s8" scheme of deploy/quantize.py.
# Its "u8s8" scheme (unsigned activations, zero point 128) is for ONNX Runtime only.
QDQ_RULE = ("TensorRT takes INT8 Q/DQ with zero point 0 and per-channel scales on weights only "
            "(ssp export --int8-scheme s8s8)")


def _matrix_version(version: tuple[int, int]) -> tuple[int, int]:
    known = [v for v in OPERATOR_MATRICES if v <= version]
    if not known:
        raise SspError(f"TensorRT {version[0]}.{version[1]}: no operator matrix that old (oldest: "
                       f"{min(OPERATOR_MATRICES)[0]}.{min(OPERATOR_MATRICES)[1]})")
    return max(known)


def tensorrt_ops(version: tuple[int, int]) -> frozenset[str]:
    """The operators of ``MODEL_OPS`` that TensorRT ``version`` (major, minor) parses."""
    return MODEL_OPS - OPERATOR_MATRICES[_matrix_version(version)].missing


def supported_matrices() -> list[tuple[int, int]]:
    """The matrix versions inside ``SUPPORTED_TENSORRT``: the versions ``ssp export`` checks by default."""
    oldest, first_refused = SUPPORTED_TENSORRT
    return [v for v in OPERATOR_MATRICES if oldest <= v < first_refused]


# the operators the oldest supported TensorRT parses; export refuses graphs with any other
TENSORRT_OPS = tensorrt_ops(SUPPORTED_TENSORRT[0])


def _attribute(node: onnx.NodeProto, name: str) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            value = onnx.helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else value
    return None


def _qdq_problem(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto], weights: set[str]) -> str | None:
    if len(node.input) < 3 or not node.input[2]:  # ONNX then means uint8 (zero point 0 of type uint8)
        return "no zero point (an INT8 zero point of 0 must be given)"
    zero = initializers.get(node.input[2])
    if zero is None:
        return "its zero point is not a constant"
    if zero.data_type != onnx.TensorProto.INT8:
        return f"zero point of type {onnx.TensorProto.DataType.Name(zero.data_type)}, not INT8"
    if onnx.numpy_helper.to_array(zero).any():
        return "a zero point other than 0"
    scale = initializers.get(node.input[1])
    if scale is not None and int(np.prod(scale.dims)) > 1 and node.input[0] not in weights:
        return "per-channel scales on an activation (not a weight)"
    return None


def tensorrt_problems(model: onnx.ModelProto, version: tuple[int, int], quantization: bool = True) -> list[str]:
    """What TensorRT ``version``'s ONNX parser would refuse in ``model`` (empty: it parses): operators outside its
    list, a newer opset, and the attribute restrictions of its operator matrix (``ALLOWED_ATTRIBUTES``, the
    constant inputs, and with ``quantization`` the Q/DQ rule). Subgraphs are not looked into: exported graphs
    have their control flow folded away (``fold_constants``), and their operators are refused by the list."""
    matrix = OPERATOR_MATRICES[_matrix_version(version)]
    where = f"TensorRT {version[0]}.{version[1]} ({matrix.source})"
    problems = []
    unsupported = sorted(set(operator_counts(model)) - tensorrt_ops(version))
    if unsupported:
        problems.append(f"operators outside the TensorRT-supported list: {', '.join(unsupported)} (see MODEL_OPS "
                        f"and OPERATOR_MATRICES in ssp_ros/deploy/export.py; {where})")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset > matrix.max_opset:
        problems.append(f"opset {opset}: {where} parses up to opset {matrix.max_opset}")
    initializers = {t.name: t for t in model.graph.initializer}
    constants = set(initializers) | {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    weights = set(constants)  # constants and what QuantizeLinear makes of them (a Q → DQ pair on a weight)
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] in weights:
            weights.update(node.output)
    for node in model.graph.node:
        name = f"{node.op_type} node '{node.name}'"
        for attribute, allowed in ALLOWED_ATTRIBUTES.get(node.op_type, {}).items():
            value = _attribute(node, attribute)
            if value is not None and value not in allowed:
                problems.append(f"{name}: {attribute}={value!r}; {where} takes {', '.join(map(repr, allowed))}")
        for op, index, input_name in matrix.constant_inputs:
            if node.op_type == op and len(node.input) > index and node.input[index] and \
                    node.input[index] not in constants:
                problems.append(f"{name}: its {input_name} input must be an initializer for {where}")
        if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
            problems.append(f"{name}: the Indices output is not supported by {where}")
        if node.op_type == "MaxPool" and matrix.max_pool_dilations and any(d != 1 for d in
                                                                          _attribute(node, "dilations") or ()):
            problems.append(f"{name}: dilations must be empty or all ones for {where}")
        if node.op_type == "LayerNormalization" and any(node.output[1:]):
            problems.append(f"{name}: only the first output (Y) is supported by {where}")
        if quantization and node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problem = _qdq_problem(node, initializers, weights)
            if problem is not None:
                problems.append(f"{name}: {problem}; {QDQ_RULE}")
    return problems


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


def check_graph(path: Path, trt_version: str | None = None) -> Counter:
    """Run ``onnx.checker`` (with shape inference) on ``path`` and refuse what TensorRT cannot parse
    (``tensorrt_problems``): by default what any supported TensorRT (``SUPPORTED_TENSORRT``) cannot parse, with
    ``trt_version`` ("10.3") what that version cannot. The Q/DQ form is checked only against a named version:
    by default an INT8 graph may use the ONNX-Runtime-only "u8s8" scheme (TensorRT engines are built, and
    calibrated, from the FP32 export)."""
    versions = supported_matrices()
    if trt_version is not None:
        check_tensorrt_version(trt_version)
        versions = [parse_tensorrt_version(trt_version)]
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise SspError(f"{path}: ONNX checker failed: {err}") from None
    model = onnx.load(str(path))
    problems = list(dict.fromkeys(p for v in versions
                                  for p in tensorrt_problems(model, v, quantization=trt_version is not None)))
    if problems:
        raise SspError(f"{path}: " + "\n  ".join(problems))
    return operator_counts(model)


def _shapes(model: onnx.ModelProto, kind: str) -> dict[str, list[int | str]]:
    values = model.graph.input if kind == "inputs" else model.graph.output
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: tuple[str, ...],
            outputs: tuple[str, ...], dynamic_batch: bool, keep_batchnorm: bool = False) -> None:
    """``keep_batchnorm``: export BatchNorm as its own operator instead of folding it into the convolutions. The
    exporter folds Conv + BatchNorm as part of its constant folding, so that is left to ``fold_constants``, which
    can keep the weights as they are."""
    if module.training:
        raise SspError(f"{path.name}: the module is in training mode; export an eval() module")
    axes = {name: {0: "batch"} for name in inputs + outputs} if dynamic_batch else None
    with warnings.catch_warnings():
        # the tracer warns where Python ints are taken from shapes: deliberate, spatial sizes are static
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(module, args, str(path), input_names=list(inputs), output_names=list(outputs),
                          opset_version=OPSET, do_constant_folding=not keep_batchnorm, dynamic_axes=axes,
                          dynamo=False)


def fold_constants(path: Path, keep_weights: bool = False) -> None:
    """Rewrite ``path`` with its shape arithmetic folded into constants (ONNX Runtime's basic, platform-
    independent optimisation level, which emits only standard ONNX operators; polygraphy's ``--fold-constants``
    does the same). timm backbones compute sizes in the graph (Shape → Gather → Mod → If …); with static
    spatial sizes these are constants, and TensorRT's parser does not take every such operator.
    ``keep_weights``: leave out the rewrites that fold BatchNorm, Mul or Add into convolution weights
    (``compact.WEIGHT_REWRITES``), so the stored weights stay the trained values."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(path)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                         disabled_optimizers=list(WEIGHT_REWRITES) if keep_weights else None)
    keep_used_domains(path)


def keep_used_domains(path: Path) -> None:
    """Rewrite ``path`` without the operator domains that ONNX Runtime's tools declare (every one they know) but the
    graph does not use: TensorRT and ``check_graph`` want the default domain only."""
    model = onnx.load(str(path))
    used = {node.domain for node in model.graph.node} | {""}
    kept = [opset for opset in model.opset_import if opset.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, str(path))


def export_model(model: SSP, input_size: tuple[int, int], out: Path, *, classes: tuple[str, ...],
                 dynamic_batch: bool = False, extra: dict[str, Any] | None = None,
                 trt_version: str | None = None, compact: bool = False) -> Path:
    """Write ``segmenter.onnx``, ``fusion.onnx``, ``blend.onnx`` and ``export.json`` for ``model`` into ``out``.

    The graphs are exported into a temporary folder next to ``out`` and moved in only when all pass the
    checks, so a failed export never leaves a half-written model folder behind. ``trt_version``: check the graphs
    against that TensorRT version instead of every supported one (see ``check_graph``). ``compact``: BatchNorm
    unfolded and exactly-representable weights stored as float16 (``compact.py``); export.json says how many.
    """
    if trt_version is not None:
        check_tensorrt_version(trt_version)
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
    blend_args = (*fusion_args[:4], torch.ones(1, 1, *cells[0][2:]))
    out.mkdir(parents=True, exist_ok=True)
    graphs: dict[str, Any] = {}
    storage: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as tmp, torch.no_grad():
        staged = Path(tmp)
        for name, module, args, inputs, outputs in (
                ("segmenter", segmenter, (image,), SEGMENTER_INPUTS, SEGMENTER_OUTPUTS),
                ("fusion", fusion, fusion_args, FUSION_INPUTS, FUSION_OUTPUTS),
                ("blend", model.fusion_step().eval(), blend_args, BLEND_INPUTS, BLEND_OUTPUTS)):
            path = staged / f"{name}.onnx"
            _export(module, args, path, inputs, outputs, dynamic_batch, keep_batchnorm=compact)
            fold_constants(path, keep_weights=compact)
            if compact:
                storage[name] = store_exact_fp16(path)
            counts = check_graph(path, trt_version)
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
            "model": segmenter.describe(), "graphs": graphs, "compact": storage or None,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **(extra or {})}
    write_export_info(out, info)
    return out


def export_config(model_cfg: ModelConfig, out: Path, dynamic_batch: bool = False,
                  trt_version: str | None = None, compact: bool = False) -> Path:
    """Build the model of ``model_cfg`` (with its weights, if set) and export it into ``out`` (``trt_version``,
    ``compact``: see ``export_model``)."""
    from ssp_ros.backends.torch_backend import resolve_weights

    model_cfg = resolve_weights(model_cfg)
    classes = load_class_set(model_cfg.dataset)
    model = build_ssp(model_cfg, classes.num_classes).eval()
    weights, trained_on = None, None
    if model_cfg.weights is not None:
        weights = {"file": Path(model_cfg.weights).name, "sha256": sha256_file(model_cfg.weights)}
        trained_on = read_weights_metadata(model_cfg.weights).get("trained_on")
    extra = {"dataset": classes.name, "weights": weights, "trained_on": trained_on,
             "model_config": dataclasses.asdict(model_cfg)}
    return export_model(model, model_cfg.input_size, out, classes=classes.names, dynamic_batch=dynamic_batch,
                        trt_version=trt_version, compact=compact, extra=extra)

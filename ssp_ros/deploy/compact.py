"""``ssp export --compact``: store the weights that float16 holds exactly as float16, losing nothing.

The shipped model keeps its parameters in float16 (``models/ssp_default.safetensors``), so every trained weight
is a float16 value. A plain export folds BatchNorm into the convolutions, and the products are no longer float16
values: the graph needs float32 storage (16.8 MB for the shipped segmenter, over the 10 MB a file may weigh in
``models/``). A compact export keeps BatchNorm as its own operator (``keep_batchnorm`` in ``export.py``), so the
trained values reach the graph unchanged; this module then stores each large float32 initializer that float16
represents exactly as float16, with a ``Cast`` back to float32 in front of its consumers. The graph computes in
float32 on the same numbers, bit for bit; ONNX Runtime folds the casts and BatchNorm at load.

onnxconverter-common's ``convert_float_to_float16`` rounds every weight and computes in float16; that is a
different, lossy model, so it is not used here.

TensorRT engines are built from a plain export (``tensorrt_build.py`` refuses a compact one): TensorRT 8.6's
parser turns a ``Cast`` of a constant into a layer, and a convolution whose kernel is a tensor is a different
build path that this project has not measured.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper

# Only tensors this large are stored as float16: the convolution kernels, nearly all the bytes. Small constants
# (Resize scales, shapes, epsilons) stay as they are, where TensorRT and shape inference expect plain initializers.
MIN_ELEMENTS = 1024
# ONNX Runtime's basic-level rewrites that change stored weights (fold a BatchNorm, Mul or Add into a Conv, a
# BatchNorm into a MatMul): a compact export runs its constant folding without them, so that the stored weights stay
# the trained float16 values. ONNX Runtime ignores a name it does not know: the tests check that BatchNorm stays.
WEIGHT_REWRITES = ("ConvBNFusion", "ConvMulFusion", "ConvAddFusion", "MatMul_BatchNormalization_Fusion")
SUFFIX = "_fp16"


def exact_in_fp16(values: np.ndarray) -> bool:
    """Whether float16 represents every element of ``values`` (float32) exactly."""
    return bool(np.array_equal(values.astype(np.float16).astype(np.float32), values))


def store_exact_fp16(path: Path) -> dict[str, int]:
    """Rewrite ``path`` with its exactly-representable float32 initializers of ``MIN_ELEMENTS`` or more stored as
    float16 behind a ``Cast``; return how many initializers were stored each way and the file's size in bytes."""
    model = onnx.load(str(path))
    graph = model.graph
    casts, kept = [], []
    stored = {"fp16_initializers": 0, "fp32_initializers": 0}
    inputs = {i.name for i in graph.input}  # an initializer that is also an input (old IR) keeps its name and type
    taken = {t.name for t in graph.initializer} | inputs
    for tensor in graph.initializer:
        values = onnx.numpy_helper.to_array(tensor)
        storable = tensor.name not in inputs and tensor.name + SUFFIX not in taken
        if tensor.data_type != onnx.TensorProto.FLOAT or values.size < MIN_ELEMENTS or not storable \
                or not exact_in_fp16(values):
            kept.append(tensor)
            stored["fp32_initializers"] += tensor.data_type == onnx.TensorProto.FLOAT
            continue
        half = onnx.numpy_helper.from_array(values.astype(np.float16), tensor.name + SUFFIX)
        kept.append(half)
        casts.append(onnx.helper.make_node("Cast", [half.name], [tensor.name], name=f"{tensor.name}{SUFFIX}_cast",
                                           to=onnx.TensorProto.FLOAT))
        stored["fp16_initializers"] += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)  # the casts first: nodes stay in topological order
    onnx.save(model, str(path))
    return {**stored, "bytes": path.stat().st_size}

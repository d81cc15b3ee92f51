"""Small ONNX segmenters and the YAML that describes one (``backends/external.py``), for the tests of
``ssp stabilise``, ``ssp demo`` and ``ssp replay`` with ``--segmenter``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SHIPPED_SEGMENTER = Path(__file__).resolve().parent.parent / "models" / "ssp_default" / "segmenter.onnx"


def segmenter_yaml(folder: Path, **values) -> Path:
    """``segmenter.yaml`` in ``folder`` with these fields (JSON is YAML)."""
    path = folder / "segmenter.yaml"
    path.write_text(json.dumps(values))
    return path


def _save(graph, path: Path) -> Path:
    import onnx
    from onnx import helper

    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def argmax_segmenter(path: Path, size: tuple[int, int]) -> Path:
    """A 'segmenter' whose class is the brightest RGB channel (ArgMax over channels, int64 labels 1×1×H×W)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("ArgMax", ["image"], ["labels"], axis=1, keepdims=1)], "argmax",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *size])],
                              [helper.make_tensor_value_info("labels", TensorProto.INT64, [1, 1, *size])])
    return _save(graph, path)


def conv_segmenter(path: Path, size: tuple[int, int], classes: int) -> Path:
    """A 'segmenter' of one 1×1 convolution with fixed random weights: logits 1×K×H×W of each pixel's colour."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(classes, 3, 1, 1)).astype(np.float32), "weight")
    graph = helper.make_graph([helper.make_node("Conv", ["image", "weight"], ["logits"])], "conv",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, classes, *size])],
                              initializer=[weight])
    return _save(graph, path)

"""A minimal exported-model folder for tests that only need export.json and graph hashes (engine cache,
sidecars, engine I/O checks), written without torch or the real exporter."""

from __future__ import annotations

from pathlib import Path

from ssp_ros.backends.export_info import ExportInfo, load_export_info, sha256_file, write_export_info

INPUT_SIZE = (64, 96)
CLASSES = ("road", "tree", "car")
FEATURES = 4


def graph_shapes(batch: int | str = 1) -> dict[str, dict[str, dict[str, list]]]:
    """export.json inputs/outputs of the three graphs for INPUT_SIZE, CLASSES and FEATURES."""
    h, w = INPUT_SIZE[0] // 4, INPUT_SIZE[1] // 4
    logits, feats = [batch, len(CLASSES), h, w], [batch, FEATURES, h, w]
    return {"segmenter": {"inputs": {"image": [batch, 3, *INPUT_SIZE]},
                          "outputs": {"logits": logits, "feats": feats}},
            "fusion": {"inputs": {"cur_logits": logits, "cur_feats": feats, "prev_logits": logits,
                                  "prev_feats": feats, "to_previous": [batch, 3, 3]},
                       "outputs": {"fused": logits, "similarity": [batch, 1, h, w]}},
            "blend": {"inputs": {"cur_logits": logits, "cur_feats": feats, "warped_logits": logits,
                                 "warped_feats": feats, "valid": [batch, 1, h, w]},
                      "outputs": {"fused": logits, "similarity": [batch, 1, h, w]}}}


def write_fake_export(folder: Path, content: bytes = b"graph", batch: int | str = 1) -> ExportInfo:
    """Write ``segmenter.onnx``, ``fusion.onnx`` and ``blend.onnx`` (placeholder bytes, distinct per graph) and
    export.json;
    ``content`` changes the graphs' bytes, so a re-export with other content changes their hashes."""
    folder.mkdir(parents=True, exist_ok=True)
    graphs = {}
    for name, shapes in graph_shapes(batch).items():
        path = folder / f"{name}.onnx"
        path.write_bytes(b"fake onnx " + name.encode() + b" " + content)
        graphs[name] = {"file": path.name, "sha256": sha256_file(path), **shapes}
    write_export_info(folder, {"input_size": list(INPUT_SIZE), "num_classes": len(CLASSES), "classes": list(CLASSES),
                               "feature_channels": FEATURES, "opset": 17, "graphs": graphs})
    return load_export_info(folder)

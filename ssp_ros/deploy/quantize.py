"""INT8 static quantization of an exported segmenter graph with ONNX Runtime (``ssp export --int8``).

``quantize_export`` rewrites the ``segmenter.onnx`` of an ``ssp export`` folder as an INT8 QDQ graph
(QuantizeLinear / DequantizeLinear around the float operators; ONNX Runtime fuses them into integer kernels),
calibrated with MinMax ranges over frames letterboxed exactly as the pipeline does (``calibration.model_input``):
a folder of frames, or synthetic frames of the training flights (seeds 1000–1011, never the held-aside
2000–2004 that ``ssp eval`` measures on). The fusion graphs stay FP32: their inputs are logits and features, whose
ranges would need the whole pipeline (registration included) to calibrate.

Two schemes (``SCHEMES``), because the CPU and TensorRT want different ones (measured, models/README.md):

- ``u8s8`` (default): uint8 activations with zero points, int8 symmetric per-channel weights. ONNX Runtime's x86
  kernels (VNNI / AMX) are u8×s8, so this is the fast one on the CPU. TensorRT cannot parse it (uint8, zero points).
- ``s8s8``: int8 symmetric activations (zero point 0), int8 symmetric per-channel weights on axis 0, float bias,
  MatMul left in float (ONNX Runtime would scale its weights per channel along axis 1, which TensorRT's importer does
  not promise to take): TensorRT's explicit quantization (onnx-tensorrt docs/operators.md: Q/DQ INT8 only, zero
  point 0). On x86
  ONNX Runtime it runs slower than FP32 (Relu cannot fold into a zero-point-0 int8 quantizer, and there are no
  s8×s8 kernels), so it is for building TensorRT engines only.

The u8s8 weights depend on the CPU the graph is for (``CPU_TARGETS``; why: ``backends/int8_cpu.py``): full 8-bit
weights for a CPU with VNNI or AMX, 7-bit weights (``reduce_range``) for any CPU, because without VNNI ONNX Runtime's
u8s8 kernels saturate their 16-bit pair sums. ``auto`` picks by the CPU the export runs on; ``export.json`` records
the target and the CPU it was made on, and the runtime warns when a VNNI graph runs on a CPU without VNNI.

The quantized graph is written into a temporary folder and checked (``export.check_graph``) before it replaces the
FP32 graph and ``export.json`` is rewritten, so a failed quantization leaves the FP32 export as it was.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ssp_ros.backends.export_info import SEGMENTER_INPUTS, load_export_info, sha256_file, write_export_info
from ssp_ros.backends.int8_cpu import ANY_CPU, CPU_TARGETS, VNNI, this_cpu
from ssp_ros.deploy.calibration import CalibrationSet, model_input
from ssp_ros.deploy.export import check_graph, keep_used_domains
from ssp_ros.errors import SspError
from ssp_ros.synthetic.config import SyntheticConfig

TRAINING_SEEDS = tuple(range(1000, 1012))  # the shipped recipe's training flights (config/train/default.yaml)
HELD_ASIDE_SEEDS = frozenset(range(2000, 2005))  # `ssp eval`'s test flights: never calibrate on them
FLIGHT_FRAMES = 100  # synthetic calibration frames are spread over the first this many frames of each flight
DEFAULT_FRAMES = 120  # 10 frames per training flight
METHOD = "MinMax"
SCHEMES: dict[str, dict[str, Any]] = {
    "u8s8": {"activations": "uint8", "weights": "int8", "activation_symmetric": False, "quantize_bias": True,
             "float_ops": ()},
    "s8s8": {"activations": "int8", "weights": "int8", "activation_symmetric": True, "quantize_bias": False,
             "float_ops": ("MatMul",)},
}
CPU_TARGET_TEXT = {VNNI: "x86 CPUs with VNNI or AMX", ANY_CPU: "any CPU", "tensorrt": "TensorRT"}


def weights_target(scheme: str, cpu_target: str) -> str:
    """The CPU a ``scheme`` graph's weights are made for: ``cpu_target``, with ``auto`` resolved on this CPU; s8s8
    graphs are for TensorRT, which does not run ONNX Runtime's CPU kernels."""
    if cpu_target not in CPU_TARGETS:
        raise SspError(f"INT8 CPU target '{cpu_target}': expected one of {', '.join(CPU_TARGETS)}")
    if scheme == "s8s8":
        if cpu_target != "auto":
            raise SspError(f"INT8 CPU target '{cpu_target}' is for the u8s8 scheme (ONNX Runtime on a CPU); "
                           "s8s8 graphs are for TensorRT")
        return "tensorrt"
    if cpu_target == "auto":
        return VNNI if this_cpu().family == VNNI else ANY_CPU
    return cpu_target


def synthetic_frames(scenario: SyntheticConfig, input_size: tuple[int, int], frames: int,
                     seeds: tuple[int, ...] = TRAINING_SEEDS) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, 3×H×W float32 model input)`` for ``frames`` synthetic frames at the model input size, spread evenly
    over the flights of ``seeds`` (round robin) and over the first ``FLIGHT_FRAMES`` frames of each."""
    if HELD_ASIDE_SEEDS & set(seeds):
        raise SspError(f"calibration seeds {sorted(HELD_ASIDE_SEEDS & set(seeds))} are held aside for `ssp eval`")
    cfg = dataclasses.replace(scenario, height=input_size[0], width=input_size[1])
    counts = [frames // len(seeds) + (i < frames % len(seeds)) for i in range(len(seeds))]
    for seed, count in zip(seeds, counts):
        if count == 0:
            continue
        picks = set(np.linspace(0, FLIGHT_FRAMES - 1, count).round().astype(int).tolist())
        for frame in _flight(cfg, max(picks) + 1, seed):
            if frame.index in picks:
                yield f"synthetic seed {seed} frame {frame.index}", model_input(frame.image, input_size)


def _flight(cfg: SyntheticConfig, frames: int, seed: int):  # noqa: ANN202 - a SyntheticVideo
    from ssp_ros.synthetic import SyntheticVideo

    return SyntheticVideo(cfg, frames=frames, seed=seed)


def folder_frames(frames: CalibrationSet) -> Iterator[tuple[str, np.ndarray]]:
    """``(file name, model input)`` for each frame of a calibration folder (read lazily; a broken file raises
    ``calibration.read_frame``'s error naming it)."""
    for path, batch in zip(frames.files, frames.batches()):
        yield str(path), batch[0]


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next``) over ``(name, input)`` pairs; counts the
    frames fed and remembers the last name, for the record and for error messages."""

    def __init__(self, frames: Iterator[tuple[str, np.ndarray]]) -> None:
        self._frames = frames
        self.used = 0
        self.last = "the first frame"

    def get_next(self) -> dict[str, np.ndarray] | None:
        item = next(self._frames, None)
        if item is None:
            return None
        self.last, image = item
        self.used += 1
        return {SEGMENTER_INPUTS[0]: np.ascontiguousarray(image[None], dtype=np.float32)}


def _quantize(source: Path, target: Path, reader: _Reader, scheme: str, reduce_range: bool) -> None:
    """``quantize_static`` of ``source`` into ``target`` (QDQ, per-channel weights, MinMax ranges; 7-bit weights with
    ``reduce_range``)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = SCHEMES[scheme]
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    prepared = target.with_name("prepared.onnx")
    # the export already folded its constants: shape inference only (symbolic inference is for transformers)
    quant_pre_process(str(source), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
    default_ops = set(QDQRegistry) | set(QLinearOpsRegistry)  # what quantize_static quantizes by default
    op_types = sorted(default_ops - set(spec["float_ops"]))
    quantize_static(str(prepared), str(target), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=reduce_range, op_types_to_quantize=op_types,
                    activation_type=types[spec["activations"]], weight_type=types[spec["weights"]],
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": spec["activation_symmetric"], "WeightSymmetric": True,
                                   "QuantizeBias": spec["quantize_bias"]})


def _run_quantization(source: Path, target: Path, reader: _Reader, scheme: str, reduce_range: bool) -> None:
    """``_quantize`` with every failure as one SspError naming the graph (and the frame, when one was being read)."""
    try:
        _quantize(source, target, reader, scheme, reduce_range)
    except SspError:
        raise
    except Exception as err:  # noqa: BLE001 - onnxruntime's pybind and quantization errors derive from Exception
        raise SspError(f"{source}: INT8 quantization failed after {reader.used} calibration frame(s) "
                       f"(last: {reader.last}): {type(err).__name__}: {err}") from None
    if reader.used == 0:
        raise SspError(f"{source}: INT8 quantization got no calibration frames")


def quantize_export(folder: str | Path, calib_dir: str | Path | None = None, calib_frames: int = DEFAULT_FRAMES, *,
                    scenario: SyntheticConfig | None = None, seeds: tuple[int, ...] = TRAINING_SEEDS,
                    scheme: str = "u8s8", cpu_target: str = "auto") -> dict[str, Any]:
    """Quantize ``folder``'s segmenter to INT8 in place, calibrated on ``calib_dir`` (at most ``calib_frames``
    frames, evenly spaced) or, without it, on ``calib_frames`` synthetic frames of ``scenario`` flown with ``seeds``,
    with weights for ``cpu_target`` (``CPU_TARGETS``); rewrite ``export.json`` (segmenter hash and operators,
    ``precision``, ``calibration``) and return the calibration record."""
    folder = Path(folder)
    info = load_export_info(folder)
    source = info.graph("segmenter").file
    if info.raw.get("precision", {}).get("segmenter", "fp32") != "fp32":
        raise SspError(f"{source}: already quantized ({folder / 'export.json'} precision.segmenter is "
                       f"{info.raw['precision']['segmenter']}): quantize a fresh FP32 export")
    if info.raw.get("compact"):
        raise SspError(f"{source}: a compact export (`ssp export --compact`): quantize a plain FP32 export")
    if scheme not in SCHEMES:
        raise SspError(f"INT8 scheme '{scheme}': expected one of {', '.join(SCHEMES)}")
    if calib_frames < 1:
        raise SspError(f"calibration frames must be >= 1, got {calib_frames}")
    target = weights_target(scheme, cpu_target)
    reduce_range = target == ANY_CPU
    if calib_dir is not None:
        frames = CalibrationSet(calib_dir, info.input_size, batch_size=1, limit=calib_frames)
        reader = _Reader(folder_frames(frames))
        record: dict[str, Any] = {"source": str(calib_dir), "frames_sha256": frames.sha256()}
    else:
        if scenario is None:
            raise SspError("INT8 calibration without a frame folder needs the synthetic scenario (config synthetic)")
        reader = _Reader(synthetic_frames(scenario, info.input_size, calib_frames, seeds))
        record = {"source": "synthetic", "seeds": list(seeds[:calib_frames]), "frame_size": list(info.input_size),
                  "frames_per_flight_span": FLIGHT_FRAMES}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".quantize-") as tmp:
        staged = Path(tmp) / source.name
        _run_quantization(source, staged, reader, scheme, reduce_range)
        keep_used_domains(staged)
        counts = check_graph(staged)
        record.update(frames=reader.used, method=METHOD, scheme=scheme, per_channel=True,
                      activations=SCHEMES[scheme]["activations"], weights=SCHEMES[scheme]["weights"],
                      weight_bits=7 if reduce_range else 8, cpu_target=target, made_on=this_cpu().describe())
        raw = _updated_info(info.raw, staged, counts, record)
        staged.replace(source)
        write_export_info(Path(tmp), raw).replace(folder / "export.json")
    return record


def _updated_info(raw: dict[str, Any], graph: Path, counts: dict[str, int], record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``export.json``'s contents for the quantized segmenter ``graph``."""
    raw = json.loads(json.dumps(raw))
    raw["graphs"]["segmenter"].update(sha256=sha256_file(graph), operators=dict(sorted(counts.items())))
    raw["precision"] = {name: "fp32" for name in raw["graphs"]} | {"segmenter": "int8"}
    raw["calibration"] = record
    return raw


def describe(record: dict[str, Any]) -> str:
    """One line saying what an INT8 export was calibrated on (for ``ssp export --int8``)."""
    if record["source"] == "synthetic":
        seeds = record["seeds"]
        where = (f"synthetic frames of training flights (seeds {seeds[0]}-{seeds[-1]}) at "
                 f"{record['frame_size'][0]}x{record['frame_size'][1]}")
    else:
        where = f"frames of {record['source']}"
    return (f"INT8 segmenter ({record['scheme']}: {record['activations']} activations, {record['weight_bits']}-bit "
            f"{record['weights']} per-channel weights for {CPU_TARGET_TEXT[record['cpu_target']]}; made on "
            f"{record['made_on']}), {record['method']} calibration on {record['frames']} {where}")

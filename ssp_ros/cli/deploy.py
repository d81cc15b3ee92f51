"""The deployment wing on the command line: ``ssp export``, ``ssp export-stabiliser`` and ``ssp build-engine``."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ssp_ros.backends.export_info import EXPORTED_GRAPHS, SIDECAR
from ssp_ros.backends.int8_cpu import ANY_CPU, CPU_TARGETS, VNNI
from ssp_ros.cli.args import size
from ssp_ros.errors import SspError, require_package

if TYPE_CHECKING:
    from ssp_ros.synthetic.config import SimConfig


def cmd_export(args: argparse.Namespace) -> int:
    """Export the configured (or --weights) model to the ONNX graphs of the deployment runtimes."""
    import dataclasses

    from ssp_ros.backends.export_info import load_export_info
    from ssp_ros.backends.tensorrt_common import check_tensorrt_version
    from ssp_ros.deploy.export import check_graph, export_config
    from ssp_ros.synthetic.config import load_sim_config

    if args.compact and args.int8:
        raise SspError("--compact stores the FP32 weights that float16 holds exactly; --int8 quantizes them: "
                       "choose one")
    if not args.int8 and (args.calib is not None or args.calib_frames is not None or args.int8_cpu != "auto"):
        raise SspError("--calib, --calib-frames and --int8-cpu are only used with --int8")
    if args.calib_frames is not None and args.calib_frames < 1:
        raise SspError(f"--calib-frames must be >= 1, got {args.calib_frames}")
    if args.int8:
        from ssp_ros.deploy.quantize import weights_target

        weights_target(args.int8_scheme, args.int8_cpu)  # refuse a bad combination before minutes of export
    if args.trt_version is not None:
        check_tensorrt_version(args.trt_version)
        if args.int8 and args.int8_scheme == "u8s8":
            raise SspError("--int8-scheme u8s8 is for ONNX Runtime only (unsigned activations, zero point 128): "
                           "TensorRT takes the s8s8 scheme; use --int8-scheme s8s8 with --trt-version")
    cfg = load_sim_config(args.config)
    model_cfg = cfg.model
    if args.weights is not None:
        model_cfg = dataclasses.replace(model_cfg, weights=str(args.weights))
    if args.size is not None:
        model_cfg = dataclasses.replace(model_cfg, input_size=args.size)
    export_config(model_cfg, args.out, dynamic_batch=args.dynamic_batch, trt_version=args.trt_version,
                  compact=args.compact)
    if args.int8:
        _quantize(args, cfg)
        if args.trt_version is not None:  # the quantized segmenter, with its Q/DQ form, against that version
            check_graph(load_export_info(args.out).graph("segmenter").file, args.trt_version)
    info = load_export_info(args.out)
    for graph in info.graphs.values():
        print(f"{graph.file}: {', '.join(f'{k} {v}' for k, v in graph.inputs.items())} -> "
              f"{', '.join(f'{k} {v}' for k, v in graph.outputs.items())}")
    engines = (f", or `ssp build-engine --onnx {args.out} --fp16` on the drone" if not (args.int8 or args.compact)
               else "; build TensorRT engines from a plain FP32 export (ssp build-engine calibrates INT8 itself)")
    print(f"wrote {args.out}/export.json (opset {info.opset}, {info.num_classes} classes, input "
          f"{info.input_size[0]}x{info.input_size[1]}); use it with runtime.backend: onnxruntime and "
          f"runtime.export_dir: {args.out}{engines}")
    return 0


def _quantize(args: argparse.Namespace, cfg: SimConfig) -> None:
    """``ssp export --int8``: quantize the fresh export's segmenter and say what it was calibrated on."""
    from ssp_ros.deploy.quantize import DEFAULT_FRAMES, describe, quantize_export

    start = time.perf_counter()
    record = quantize_export(args.out, args.calib, args.calib_frames or DEFAULT_FRAMES, scenario=cfg.synthetic,
                             scheme=args.int8_scheme, cpu_target=args.int8_cpu)
    print(f"{describe(record)} ({time.perf_counter() - start:.0f} s); the fusion graphs stay FP32")


def cmd_build_engine(args: argparse.Namespace) -> int:
    """Build the TensorRT engines of ``args.onnx`` (an ``ssp export`` folder) on this machine's GPU."""
    from ssp_ros.deploy.tensorrt_build import BuildOptions, build_engines

    if args.calib_frames < 1:
        raise SspError(f"--calib-frames must be >= 1, got {args.calib_frames}")
    options = BuildOptions(precision=args.precision, workspace_mb=args.workspace_mb, device_index=args.device,
                           calib_dir=args.calib, calib_frames=args.calib_frames)
    start = time.perf_counter()
    written = build_engines(args.onnx, options)
    print(f"built {len(written)} engines in {time.perf_counter() - start:.0f} s; run them with runtime.backend: "
          f"tensorrt, runtime.export_dir: {args.onnx}, runtime.precision: {args.precision}")
    return 0


def cmd_export_stabiliser(args: argparse.Namespace) -> int:
    """Export the stabiliser's trained similarity model to the folder ``stabiliser.model`` names."""
    require_package("torch", "torch", "ssp export-stabiliser")
    require_package("onnx", "onnx", "ssp export-stabiliser")
    from ssp_ros.deploy.stabiliser_export import export_stabiliser

    info = export_stabiliser(args.weights, args.out)
    print(f"export-stabiliser: wrote {args.out} (C = {info['channels']}, weights {info['weights_sha256'][:12]})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp export``, ``ssp export-stabiliser`` and ``ssp build-engine``."""
    graphs = ", ".join(f"{name}.onnx" for name in EXPORTED_GRAPHS)
    summary = f"export the model to the ONNX graphs of the deployment runtimes ({graphs}) + {SIDECAR}"
    export = sub.add_parser("export", help=summary, description=f"E{summary[1:]}.")
    export.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/ssp_export")
    export.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    export.add_argument("--weights", type=Path, help="model weights, overriding the config's model.weights")
    export.add_argument("--size", type=size, help="model input HxW, multiples of 32 (default: model.input_size)")
    export.add_argument("--dynamic-batch", action="store_true", help="dynamic batch dimension (default static 1)")
    export.add_argument("--trt-version", metavar="X.Y", help="check the graphs against the ONNX parser of this "
                        "TensorRT version (e.g. 8.6 for JetPack 6.0, 10.3 for JetPack 6.1/6.2) instead of every "
                        "supported one (8.6 through 10.x)")
    export.add_argument("--compact", action="store_true", help="keep BatchNorm unfolded and store the weights "
                        "that float16 holds exactly as float16: for fp16-trained weights like the shipped model's, "
                        "half the size and the same numbers on ONNX Runtime; TensorRT builds from a plain export")
    export.add_argument("--int8", action="store_true", help="quantize the segmenter to INT8 (ONNX Runtime static "
                        "QDQ, per-channel weights); the fusion graphs stay FP32")
    export.add_argument("--int8-scheme", choices=("u8s8", "s8s8"), default="u8s8",
                        help="--int8: u8s8 (default) runs fast on x86 ONNX Runtime; s8s8 (symmetric, zero points "
                        "0) is the form TensorRT's explicit quantization parses")
    export.add_argument("--int8-cpu", choices=CPU_TARGETS, default="auto",
                        help=f"--int8 u8s8: the CPUs the weights are for: {VNNI} (8-bit weights; AVX-512 VNNI, "
                        f"AVX-VNNI or AMX), {ANY_CPU} (7-bit weights: ONNX Runtime's kernels without VNNI saturate "
                        "8-bit ones), auto (default: this CPU's)")
    export.add_argument("--calib", type=Path, help="--int8: folder of frames (png/jpg) to calibrate with (default: "
                        "synthetic frames of the training flights, seeds 1000-1011)")
    export.add_argument("--calib-frames", type=int, help="--int8: use at most this many frames, evenly spaced "
                        "(default 120)")
    export.set_defaults(func=cmd_export)

    stab = sub.add_parser("export-stabiliser", help="export the stabiliser's similarity model (appearance "
                          "encoder + similarity head, trained with config/train/stabiliser.yaml) for ssp stabilise "
                          "and the node")
    stab.add_argument("--weights", type=Path, required=True, help="the trained weights (.safetensors)")
    stab.add_argument("--out", type=Path, default=Path("models/ssp_stabiliser"),
                      help="output folder (default models/ssp_stabiliser, the config's stabiliser.model)")
    stab.set_defaults(func=cmd_export_stabiliser)

    parser = sub.add_parser("build-engine", help="build TensorRT engines for an exported model folder (the "
                            "precision applies to the segmenter; the fusion engine is FP32 at every precision)")
    parser.add_argument("--onnx", type=Path, required=True, help="folder written by `ssp export`")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--fp32", dest="precision", action="store_const", const="fp32", help="FP32 segmenter")
    precision.add_argument("--fp16", dest="precision", action="store_const", const="fp16",
                           help="FP16 segmenter (the default)")
    precision.add_argument("--int8", dest="precision", action="store_const", const="int8",
                           help="INT8 segmenter (calibrated with --calib)")
    parser.add_argument("--calib", type=Path, help="--int8: folder of frames (png/jpg) to calibrate with")
    parser.add_argument("--calib-frames", type=int, default=500,
                        help="--int8: use at most this many frames, evenly spaced (default 500)")
    parser.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT workspace limit in MiB (default 1024)")
    parser.add_argument("--device", type=int, default=0, help="GPU index to build on (default 0)")
    parser.set_defaults(func=cmd_build_engine, precision="fp16")

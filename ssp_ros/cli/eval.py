"""The evaluation wing on the command line: ``ssp demo``, ``ssp bench`` and ``ssp eval``."""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from ssp_ros.cli.args import positive, size
from ssp_ros.cli.args import scenario as args_scenario
from ssp_ros.config import RUNTIMES
from ssp_ros.errors import SspError, require_package
from ssp_ros.eval.evaluate import HELD_ASIDE_SEEDS, parse_candidate


def cmd_demo(args: argparse.Namespace) -> int:
    """Image model vs SSP (or, with ``--segmenter``, the user's segmenter vs it stabilised) on a synthetic drone
    sequence (default) or a video: report, overlay, plot."""
    from ssp_ros.eval.clips import file_clip, synthetic_clip
    from ssp_ros.eval.demo import run_demo, run_segmenter_demo
    from ssp_ros.synthetic.config import load_sim_config

    cfg = load_sim_config(args.config)
    if args.input is not None:
        make_clip = partial(file_clip, args.input, args.frames)
    else:
        make_clip = partial(synthetic_clip, args_scenario(args.scenario, args.size, cfg.synthetic), args.frames or 200,
                            args.seed)
    if args.segmenter is not None:
        return _print_stabilised(run_segmenter_demo(cfg, args.out, make_clip, args.segmenter), args.out)
    require_package("matplotlib", "demo", "ssp demo's TC plot")
    if cfg.model.weights is None:
        raise SspError(f"{args.config or 'config/ssp.yaml'}: model.weights is not set: the demo needs trained "
                       "weights (ssp train --config config/train/default.yaml)")
    report = run_demo(cfg, args.out, make_clip)
    image, ssp = report["models"]["image"], report["models"]["ssp"]

    def show(x: float | None) -> str:
        return "  n/a" if x is None else f"{x:6.2f}"

    print(f"{report['frames']} frames of {report['size'][0]}x{report['size'][1]} from {report['source']}")
    print(report["trained_on_line"])
    print("model         mIoU     TC  flicker  change    FPS")
    for label, m in (("image model", image), ("SSP", ssp)):
        print(f"{label:<11} {show(m['miou'])} {show(m['tc'])} {show(m['flicker'])}  {show(m['change_rate'])} "
              f"{show(m['fps'])}")
    if not report["labelled"]:
        print("no labels: TC and change rate say how steady the masks are, not whether they are right; see the "
              "class shares in report.md and the overlay")
    print(f"SSP - image model: TC {ssp['tc'] - image['tc']:+.2f} points"
          + (f", mIoU {ssp['miou'] - image['miou']:+.2f} points" if ssp["miou"] is not None else "")
          + f"; fusion adds {100 * ssp['latency_ms'].get('fusion', 0) / image['latency_ms']['total']:.1f} %; "
            f"registration takes {show(ssp['registration_ms']).strip()} ms per frame in its own thread, and the "
            f"frame waits {ssp['latency_ms'].get('registration', 0):.1f} ms for it")
    reg = ssp["registration"]
    ratio = reg["inlier_ratio"]["median"] if reg["inlier_ratio"] else "n/a"
    print(f"registration: registered {reg['registered']} of {reg['pairs']} frame pairs (inlier ratio median {ratio}), "
          f"failed {reg['failed']}; resets: {', '.join(f'{r} {n}' for r, n in reg['resets'].items()) or 'none'}")
    print(f"wrote {args.out}/report.md, report.json, overlay.mp4, tc_over_time.png, strip.png, masks/")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Latency per stage, params, GFLOPs and memory of the image model vs SSP, per backend and size."""
    require_package("matplotlib", "demo", "ssp bench's plot")
    from ssp_ros.eval.bench import run_bench, write_report
    from ssp_ros.synthetic.config import load_sim_config

    cfg = load_sim_config(args.config)
    report = run_bench(cfg, args.size or [(368, 640), (736, 1280)], args.backend or list(RUNTIMES), args.frames,
                       args.warmup, paper=args.paper, int8=args.int8)
    json_path, md_path, png_path = write_report(report, args.out)
    print(md_path.read_text())
    print(f"wrote {json_path}, {md_path} and {png_path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``ssp eval``: evaluate weights files and exported folders, print the table, write eval.json / eval.md."""
    from ssp_ros.eval.evaluate import run_eval
    from ssp_ros.eval.report import cell
    from ssp_ros.resources import share_dir
    from ssp_ros.synthetic.config import load_sim_config

    cfg = load_sim_config(args.config)
    paths = args.scenario or [None, share_dir() / "config" / "scenarios" / "oblique.yaml"]
    scenarios = {("default" if path is None else path.stem): args_scenario(path, args.size, cfg.synthetic)
                 for path in paths}
    report = run_eval(cfg, args.weights, args.out, args.seeds, args.frames, args.input, scenarios)
    print(f"{'model':<38} {'mIoU':>6} {'TC':>6} {'flicker':>7} {'FPS':>6}")
    for row in report["rows"]:
        print(f"{row['label']:<38} " + " ".join(f"{cell(row[k]):>{w}}" for k, w in
                                                 (("miou", 6), ("tc", 6), ("flicker", 7), ("fps", 6))))
    print(f"wrote {args.out / 'eval.json'} and {args.out / 'eval.md'}")
    return 0


def cmd_stabilise(args: argparse.Namespace) -> int:
    """``ssp stabilise``: another segmenter's label images over a clip, made temporally consistent."""
    from ssp_ros.config import load_config
    from ssp_ros.eval.stabilise import run_stabilise

    report = run_stabilise(load_config(args.config), args.input, args.masks, args.out, args.num_classes,
                           args.confidence, args.labels, args.overwrite, args.classes, args.scores == "logits",
                           args.segmenter)
    return _print_stabilised(report, args.out)


def _print_stabilised(report: dict, out: Path) -> int:
    """The summary of ``ssp stabilise`` (and ``ssp demo --segmenter``): before -> after, and what was written."""
    from ssp_ros.eval.report import cell

    before, after = report["before"], report["after"]
    print(f"{report['frames']} frames, {report['num_classes']} classes: TC {cell(before['tc'])} -> "
          f"{cell(after['tc'])}, change rate {cell(before['change_rate'])} -> {cell(after['change_rate'])} %, "
          f"mIoU {cell(before['miou'])} -> {cell(after['miou'])}; {report['ms_per_frame']} ms per frame")
    if report["miou_missing"]:
        print(f"no mIoU: {report['miou_missing']}")
    print(f"wrote {out}/masks/, {report['overlay']}, report.json, report.md")
    return 0


def cmd_stabilise_check(args: argparse.Namespace) -> int:
    """The stabiliser on held-aside flights with three unseen segmenters; prints the table and the targets."""
    from ssp_ros.config import load_config
    from ssp_ros.eval.stabiliser_check import markdown, run_stabiliser_check

    report = run_stabiliser_check(load_config(args.config), args.out, args.frames)
    print(markdown(report))
    print(f"wrote {args.out / 'report.json'} and {args.out / 'report.md'}")
    return 0


def confidence(text: str) -> float:
    """A probability for argparse: a float in (0, 1]."""
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp demo``, ``ssp bench``, ``ssp eval`` and ``ssp stabilise``."""
    stab = sub.add_parser("stabilise", help="make another segmenter's label images temporally consistent (SSP's "
                          "registration and fusion over any segmenter)")
    stab.add_argument("--input", type=Path, required=True, help="the frames: a video, a folder of images or an "
                      "`ssp synth` folder")
    given = stab.add_mutually_exclusive_group(required=True)
    given.add_argument("--segmenter", type=Path, help="YAML of an ONNX segmenter to run on the frames (model, "
                       "input_size, mean, std, output: logits|probabilities|labels, output_name, classes)")
    given.add_argument("--masks", type=Path, help="folder of label PNGs (8- or 16-bit class ids, 255 "
                       "= unknown; each of its frame's size) or of .npy soft scores (K×h×w floats, any h×w), one per "
                       "frame in sorted order")
    stab.add_argument("--scores", choices=("probabilities", "logits"), default="probabilities",
                      help=".npy masks hold probabilities (default) or logits")
    stab.add_argument("--out", type=Path, required=True, help="output folder (masks/, report.json, report.md)")
    stab.add_argument("--num-classes", type=int, help="K, 2..256 (default: from --classes, else the largest label "
                      "in the masks + 1)")
    stab.add_argument("--classes", type=Path, help="the segmenter's class list (YAML as config/datasets/*.yaml: "
                      "names and colours for the overlay)")
    stab.add_argument("--confidence", type=confidence, help="probability a hard label gives its class "
                      "(default: the config's stabiliser.confidence, 0.9; the other classes share the rest)")
    stab.add_argument("--labels", type=Path, help="folder of ground-truth label PNGs (one per frame) for mIoU")
    stab.add_argument("--config", type=Path, help="ssp_ros config YAML (registration, propagation, stabiliser)")
    stab.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    stab.set_defaults(func=cmd_stabilise)

    check = sub.add_parser("stabilise-check", help="measure the stabiliser on held-aside synthetic flights (nadir, "
                           "oblique) with three segmenters it never saw in training: TC / mIoU before and after")
    check.add_argument("--out", type=Path, default=Path("out/stabiliser_check"), help="report folder "
                       "(default out/stabiliser_check)")
    check.add_argument("--frames", type=int, default=40, help="frames per flight (default 40)")
    check.add_argument("--config", type=Path, help="ssp_ros config YAML (the image model, stabiliser.model)")
    check.set_defaults(func=cmd_stabilise_check)

    demo = sub.add_parser("demo", help="image model vs SSP on a synthetic drone video (default) or your video")
    demo.add_argument("--input", type=Path, help="video file, image folder or `ssp synth` folder (default: "
                      "a held-aside synthetic sequence)")
    demo.add_argument("--out", type=Path, default=Path("out"), help="output folder (default ./out)")
    demo.add_argument("--frames", type=positive, help="frames to use (default 200 synthetic / all of --input)")
    demo.add_argument("--seed", type=int, default=2000, help="synthetic seed (default 2000: the shipped model was "
                      "trained on seeds 1000-1015 and validated on 999)")
    demo.add_argument("--scenario", type=Path, help="synthetic scenario YAML (default: the config's synthetic)")
    demo.add_argument("--size", type=size, help="synthetic frame size HxW (e.g. 736x1280)")
    demo.add_argument("--segmenter", type=Path, help="YAML of your ONNX segmenter (as for `ssp stabilise "
                      "--segmenter`): your segmenter vs it stabilised, instead of image model vs SSP")
    demo.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    demo.set_defaults(func=cmd_demo)

    bench = sub.add_parser("bench", help="benchmark image model vs SSP per backend and frame size (JSON + MD)")
    bench.add_argument("--out", type=Path, default=Path("bench"), help="output folder (default ./bench)")
    bench.add_argument("--config", type=Path, help="ssp_ros config YAML (default: the shipped config/ssp.yaml)")
    bench.add_argument("--size", type=size, action="append", help="frame size HxW; repeat for several "
                       "(default 368x640 and 736x1280)")
    bench.add_argument("--backend", choices=RUNTIMES, action="append",
                       help="backend to measure; repeat for several (default: every one installed)")
    bench.add_argument("--frames", type=positive, default=30, help="timed frames per run (default 30)")
    bench.add_argument("--warmup", type=positive, default=5, help="untimed frames first (default 5)")
    bench.add_argument("--int8", action="store_true", help="also measure ONNX Runtime with the segmenter quantized "
                       "to INT8 (calibrated on synthetic training flights)")
    bench.add_argument("--paper", action="store_true", help="also count params/GFLOPs of the paper's model "
                       "(sam2_hiera_small + UPerNet 256 at 736x1280)")
    bench.set_defaults(func=cmd_bench)

    parser = sub.add_parser("eval", help="mIoU / TC / flicker / VC of image model, SSP and KD-SSP weights on "
                                   "held-aside synthetic video or an `ssp synth` folder")
    parser.add_argument("--weights", type=parse_candidate, action="append", required=True, metavar="NAME=PATH",
                        help="weights file (torch) or `ssp export` folder (ONNX Runtime, e.g. INT8) to evaluate "
                        "(repeat); SSP models give an image-model row and an SSP row")
    parser.add_argument("--input", type=Path, help="an `ssp synth` folder (labels + flow) instead of generated video")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(HELD_ASIDE_SEEDS),
                        help="synthetic seeds (default 2000-2004, held aside from every shipped recipe)")
    parser.add_argument("--frames", type=positive, default=100, help="frames per sequence (default 100)")
    parser.add_argument("--scenario", type=Path, action="append", help="synthetic scenario YAML; repeat for several "
                        "(default: the config's synthetic and config/scenarios/oblique.yaml)")
    parser.add_argument("--size", type=size, help="synthetic frame size HxW (e.g. 384x640)")
    parser.add_argument("--config", type=Path, help="ssp_ros config YAML (registration, propagation; default: "
                        "the shipped config/ssp.yaml); the weights' architecture comes from each file")
    parser.add_argument("--out", type=Path, default=Path("out/eval"), help="output folder (default out/eval)")
    parser.set_defaults(func=cmd_eval)

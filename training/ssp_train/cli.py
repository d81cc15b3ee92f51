"""The training package's ``ssp`` commands: ``ssp train``, ``ssp flow-cache`` and ``ssp ablate``.

``ssp`` (``ssp_ros.cli.main``) finds ``add_commands`` through the ``ssp_ros.commands`` entry point in
``setup.py``; the runtime never imports this package. Each command is a small function over a library
``run_*``/``main`` function, imported only when the command runs, so ``ssp --help`` stays light.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssp_ros.eval.flow import FLOW_ESTIMATORS


def cmd_train(args: argparse.Namespace) -> int:
    """Train the image model, then the SSP similarity head, from a recipe (config/train/*.yaml)."""
    from ssp_train.train import main as train_main

    return train_main(args.config)


def cmd_flow_cache(args: argparse.Namespace) -> int:
    """Fill the flow cache of the recipe in ``args.config``; prints a summary."""
    from ssp_train.flow_cache import run_flow_cache

    print(f"flow-cache: {run_flow_cache(args.config, args.cache, args.flow, args.flow_weights)}")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    """Train and evaluate the plan's variants; print the table and where it was written."""
    from ssp_train.ablation import load_plan, markdown, run_ablation

    report = run_ablation(load_plan(args.config), args.only)
    out = Path(report["image_model"]).parent
    print(markdown(report))
    print(f"wrote {out / 'ablation.json'} and {out / 'ablation.md'}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``ssp train``, ``ssp flow-cache`` and ``ssp ablate`` on the ``ssp`` sub-parsers."""
    train = sub.add_parser("train", help="train the image model and the SSP head on synthetic drone video")
    train.add_argument("--config", type=Path, required=True, help="training recipe, e.g. config/train/default.yaml")
    train.set_defaults(func=cmd_train)

    flow_cache = sub.add_parser(
        "flow-cache", help="precompute optical flow of the training pairs of a real data set (DIS or RAFT)",
        description="Compute the flow, both directions, of every pair (k - gap, k) of the recipe's data.dataset "
                    "at data.frame_size, for each gap in data.frame_gap, and store it under --cache.")
    flow_cache.add_argument("--config", type=Path, required=True, help="training recipe (config/train/*.yaml) with "
                        "data.dataset set")
    flow_cache.add_argument("--cache", type=Path, help="cache folder (default: the recipe's data.flow_cache, which "
                        "training reads)")
    flow_cache.add_argument("--flow", choices=FLOW_ESTIMATORS, help="flow estimator (default: the recipe's data.flow)")
    flow_cache.add_argument("--flow-weights", type=Path, help="local RAFT weights (default: the recipe's "
                        "data.flow_weights)")
    flow_cache.set_defaults(func=cmd_flow_cache)

    ablate = sub.add_parser("ablate", help="train and evaluate the SSP ablations (fixed blend, cosine, no "
                                   "registration, λ, ...) on held-aside synthetic video")
    ablate.add_argument("--config", type=Path, default=Path("config/train/ablation.yaml"),
                        help="ablation plan YAML (default config/train/ablation.yaml)")
    ablate.add_argument("--only", nargs="+", metavar="NAME", help="(re)train these variants only; finished ones "
                        "are reused from the plan's out folder")
    ablate.set_defaults(func=cmd_ablate)

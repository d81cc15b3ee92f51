"""The ``ssp`` command: one sub-command per job, each a small function over the library.

Each wing has its own module here (``synthetic``, ``eval``, ``deploy``, ``ros``, ``tools``) with an
``add_commands`` function. The companion training package adds its commands (``train``, ``flow-cache``,
``ablate``) through the ``ssp_ros.commands`` entry-point group declared in its ``training/setup.py``, so the
runtime never imports it; where it is not installed, those commands say how to install it.
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import entry_points

from ssp_ros.cli import deploy as deploy_commands
from ssp_ros.cli import eval as eval_commands
from ssp_ros.cli import ros as ros_commands
from ssp_ros.cli import synthetic as synthetic_commands
from ssp_ros.cli import tools as tools_commands
from ssp_ros.errors import SspError

COMMAND_GROUP = "ssp_ros.commands"  # entry points: callables taking the sub-parsers object, like add_commands
TRAINING_COMMANDS = ("train", "flow-cache", "ablate")  # the training package's, named when it is not installed


def missing_training(args: argparse.Namespace) -> int:
    """What ``ssp train`` (``flow-cache``, ``ablate``) does where the training package is not installed."""
    raise SspError(f"'ssp {args.command}' comes with the training package ssp_train, which is not installed here: "
                   "in a clone of the repository, pip install -e ./training (it brings torch)")


def build_parser() -> argparse.ArgumentParser:
    """The ``ssp`` parser with the runtime's commands and those of every installed companion package."""
    parser = argparse.ArgumentParser(prog="ssp", description="Temporally consistent drone segmentation (SSP).")
    sub = parser.add_subparsers(dest="command", required=True)
    for wing in (synthetic_commands, eval_commands, deploy_commands, ros_commands, tools_commands):
        wing.add_commands(sub)
    for plugin in sorted(entry_points(group=COMMAND_GROUP), key=lambda ep: ep.name):
        try:
            add_commands = plugin.load()
        except ImportError as err:  # e.g. an install whose metadata outlived its package: the rest still works
            print(f"ssp: the '{plugin.name}' commands ({plugin.value}) cannot be loaded ({err}); reinstall the "
                  "package that provides them", file=sys.stderr)
            continue
        add_commands(sub)
    for name in TRAINING_COMMANDS:
        if name not in sub.choices:
            missing = sub.add_parser(name, help="needs the training package: pip install -e ./training")
            missing.set_defaults(func=missing_training)  # its arguments are left unparsed (main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ssp`` command; errors we can explain exit with status 2 and one line."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.func is not missing_training:  # the training commands' arguments are unknown without it
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.func(args)
    except SspError as err:
        print(f"ssp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ssp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

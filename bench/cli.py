"""`bench`: convert datasets, run suites, report, tune.

Each subcommand lives in its own module, which provides ``add_arguments(parser)``
and ``main(args) -> int``. Bad input raises :class:`bench.errors.InputError`, which
is printed as one line with a non-zero exit.
"""
from __future__ import annotations

import argparse
import importlib
import sys

import bench.compat  # noqa: F401
from bench.errors import InputError

COMMANDS = {
    "convert": ("bench.convert", "Convert a published dataset into RecBole atomic files under dataset_atomic/."),
    "run": ("bench.suite", "Run a benchmark suite (default: every model on MovieLens-100k) and write its report."),
    "report": ("bench.report", "Rebuild every report from stored results, without training."),
    "tune": ("hyper.tune", "Tune a model's hyperparameters with Optuna, trials run in parallel on Ray."),
    "clean": ("bench.ray_cleanup", "End the processes an earlier local Ray left behind (a killed driver's agents)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.add_arguments(command)
        command.set_defaults(_main=module.main)
    return parser


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Only the chosen command's module is imported (Ray and Optuna load slowly)."""
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        return build_parser()
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module_name, help_text = COMMANDS[chosen]
    command = sub.add_parser(chosen, help=help_text, description=help_text)
    module = importlib.import_module(module_name)
    module.add_arguments(command)
    command.set_defaults(_main=module.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser_for(argv).parse_args(argv)
    try:
        return int(args._main(args) or 0)
    except InputError as err:
        print(f"bench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"bench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Converters: published dataset files -> RecBole atomic files + manifest.

``bench convert FORMAT SRC --name NAME`` writes ``OUT/NAME/`` as described in
``dataset_atomic/README.md`` (the contract). One module per source format reads
it into :mod:`bench.convert.sequences`; the rest is shared:

* :mod:`~bench.convert.protocols` splits into train / valid / test rows,
* :mod:`~bench.convert.inter_files` writes them, :mod:`~bench.convert.negatives`
  draws the sampled candidates, :mod:`~bench.convert.recbole_yaml` the config,
* :mod:`~bench.convert.manifest` records counts and checksums,
* :mod:`~bench.convert.staging` makes the whole output appear at once or not at all.

Python API: ``convert(fmt, src, name, out_root)``; the CLI calls
``add_arguments(parser)`` and ``main(args)``.
"""
from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.convert import (
    diginetica_raw,
    manifest,
    movielens,
    negatives,
    pairs,
    protocols,
    recbole_yaml,
    srgnn,
    user_lines,
    yoochoose_raw,
)
from bench.convert.movielens import recbole_ml100k_path
from bench.convert.protocols import LEAVE_ONE_OUT, SESSION
from bench.convert.sequences import Loaded
from bench.convert.staging import staged_folder
from bench.errors import InputError

__all__ = ["FORMATS", "Converter", "add_arguments", "convert", "main", "recbole_ml100k_path"]

log = logging.getLogger(__name__)

DEFAULT_OUT = "dataset_atomic"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
RECBOLE_RESERVED_NAMES = ("ml-100k",)  # Config._set_default_parameters overrides data_path for it


@dataclass(frozen=True)
class Converter:
    """A source format: its reader, its protocol and the options it takes."""

    read: Callable[..., Loaded]
    protocol: str
    description: str
    options: tuple[str, ...] = ()  # reader keyword options beyond --max-len / --seed


FORMATS: dict[str, Converter] = {
    "srgnn": Converter(srgnn.read, SESSION,
                       "SR-GNN pickles all_train_seq.txt + test.txt (Diginetica, Yoochoose 1/64, 1/4)"),
    "diginetica-raw": Converter(diginetica_raw.read, SESSION,
                                "raw Diginetica train-item-views.csv, NARM/SR-GNN preprocessing"),
    "yoochoose-raw": Converter(yoochoose_raw.read, SESSION,
                               "raw Yoochoose yoochoose-clicks.dat, NARM/SR-GNN preprocessing (needs --fraction)",
                               options=("fraction",)),
    "pairs": Converter(pairs.read, LEAVE_ONE_OUT, "SASRec 'user item' pairs per line, in time order"),
    "user-lines": Converter(user_lines.read, LEAVE_ONE_OUT, "one user per line: 'user item1 item2 ...'"),
    "movielens": Converter(movielens.read, LEAVE_ONE_OUT,
                           "MovieLens ratings.dat / ratings.csv / u.data / RecBole ml-100k.inter (file or folder)"),
}


def _check_options(fmt: str, name: str, max_len: int | None, fraction: int | None, seed: int | None) -> Converter:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(FORMATS))}")
    if not NAME_PATTERN.fullmatch(name or ""):
        raise InputError(f"invalid dataset name {name!r}: use letters, digits, '.', '_' and '-' "
                         "(it names a folder and RecBole's file prefix)")
    if name in RECBOLE_RESERVED_NAMES:
        raise InputError(f"dataset name {name!r} is reserved: RecBole 1.2.1 always loads it from its own "
                         "package folder, ignoring data_path; choose another name (e.g. 'ml100k')")
    if max_len is not None and (isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1):
        raise InputError(f"--max-len must be a positive integer, got {max_len!r}")
    converter = FORMATS[fmt]
    if fraction is not None and "fraction" not in converter.options:
        raise InputError(f"--fraction applies only to yoochoose-raw, not to {fmt}")
    if seed is not None and converter.protocol != LEAVE_ONE_OUT:
        raise InputError(f"--seed seeds the leave-one-out negatives; {fmt} has none")
    return converter


def convert(fmt: str, src: str | Path, name: str, out_root: str | Path = DEFAULT_OUT, *,
            max_len: int | None = None, fraction: int | None = None, seed: int | None = None) -> Path:
    """Convert ``src`` in format ``fmt`` into ``out_root/name``; return that folder.

    Args:
        fmt: a key of :data:`FORMATS`.
        src: the source file, or the folder holding it.
        name: dataset name: the folder and RecBole's file prefix.
        out_root: folder of all converted datasets (RecBole's ``data_path``).
        max_len: history length kept per row (default 50; 200 for MovieLens ``ratings.dat`` and ``ratings.csv``).
        fraction: yoochoose-raw only: keep the most recent 1/64 or 1/4 of the training
            prefix rows, in whole sessions (SR-GNN's ``all_train_seq.txt``).
        seed: leave-one-out only: seed of the 100 sampled negatives (default 2020).

    Raises:
        InputError: on any bad input; ``out_root/name`` is then left as it was.
    """
    converter = _check_options(fmt, name, max_len, fraction, seed)
    src, out_root = Path(src), Path(out_root)
    reader_options = {"fraction": fraction} if "fraction" in converter.options else {}
    log.info("reading %s (%s)", src, fmt)
    try:
        loaded = converter.read(src, **reader_options)
    except OSError as err:  # unreadable source (permissions, a folder where a file belongs...)
        raise InputError(f"cannot read: {err.strerror or err}", err.filename or src) from None
    if converter.protocol == LEAVE_ONE_OUT and not len(protocols.evaluated_users(loaded.data)):
        raise InputError(f"no user has at least {protocols.MIN_LOO_LENGTH} actions, so no user gets a validation "
                         "and a test target (leave-one-out)", loaded.sources[0])
    max_len = max_len or loaded.default_max_len
    settings = {"max_len": max_len, **reader_options, **loaded.details}
    try:
        with staged_folder(out_root, name) as folder:
            log.info("writing %s", out_root / name)
            if converter.protocol == SESSION:
                counts = protocols.write_session(loaded.data, folder, name, max_len)
            else:
                counts = protocols.write_leave_one_out(loaded.data, folder, name, max_len)
                seed = negatives.DEFAULT_SEED if seed is None else seed
                settings |= {"num_negatives": negatives.NUM_NEGATIVES, "seed": seed}
                rows = protocols.evaluated_users(loaded.data)
                negatives.write(folder / f"{name}.negatives", loaded.data.users[rows],
                                negatives.sample(loaded.data.sequences, rows, seed=seed))
            recbole_yaml.write(folder / f"{name}.yaml", converter.protocol, max_len)
            manifest.write(folder, name=name, fmt=fmt, protocol=converter.protocol, max_len=max_len,
                           counts=counts, settings=settings, sources=loaded.sources, notes=loaded.notes)
    except OSError as err:
        raise InputError(f"cannot write the dataset: {err.strerror or err}", err.filename or out_root / name) from None
    return out_root / name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``bench convert`` arguments to ``parser`` (the CLI owns the subcommand)."""
    formats = "; ".join(f"{key}: {c.description}" for key, c in FORMATS.items())
    parser.add_argument("fmt", metavar="FORMAT", choices=list(FORMATS), help=f"source format ({formats})")
    parser.add_argument("src", metavar="SRC", help="source file, or the folder holding it")
    parser.add_argument("--name", required=True, help="dataset name: folder and RecBole file prefix")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output root, RecBole's data_path (default {DEFAULT_OUT})")
    parser.add_argument("--max-len", dest="max_len", type=int, default=None, metavar="N",
                        help="history items kept per row (default 50; 200 for MovieLens ratings.dat and ratings.csv)")
    parser.add_argument("--fraction", type=int, choices=(64, 4), default=None,
                        help="yoochoose-raw: keep the most recent 1/64 or 1/4 of the training prefix rows "
                             "(whole sessions, as SR-GNN's all_train_seq.txt)")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"leave-one-out: seed of the sampled negatives (default {negatives.DEFAULT_SEED})")


def main(args: argparse.Namespace) -> int:
    """Run ``bench convert`` from parsed arguments; print one line; return the exit code."""
    try:
        folder = convert(args.fmt, args.src, args.name, getattr(args, "out", DEFAULT_OUT) or DEFAULT_OUT,
                         max_len=getattr(args, "max_len", None), fraction=getattr(args, "fraction", None),
                         seed=getattr(args, "seed", None))
    except InputError as err:
        print(f"bench convert: error: {err}", file=sys.stderr)  # the same line bench.cli prints
        return 2
    summary = manifest.read(folder)
    print(f"{folder}: {summary['num_sequences']} sequences, {summary['num_items']} items, "
          f"{summary['num_interactions']} interactions; cases train {summary['num_train_cases']}, "
          f"valid {summary['num_valid_cases']}, test {summary['num_test_cases']}")
    return 0

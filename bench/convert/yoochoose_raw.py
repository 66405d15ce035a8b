"""Raw Yoochoose (RecSys Challenge 2015) ``yoochoose-clicks.dat``, preprocessed as NARM / SR-GNN.

``session,timestamp,item,category`` without a header, timestamps like
``2014-04-07T10:51:09.277Z``. A first line naming those columns
(``session_id,timestamp,item_id,category``, which SR-GNN's ``preprocess.py`` needs and
its users add) is skipped. The test set is the last day; training keeps the most
recent 1/64 or 1/4 of the training prefix rows (``fraction``). See
:mod:`bench.convert.click_sessions` for the rules. The real file has 33M lines;
:mod:`bench.convert.tables` parses it without a Python loop per line, and the
category column is never read.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.convert.click_sessions import preprocess_clicks
from bench.convert.sequences import Loaded
from bench.convert.sources import header_names, require_file
from bench.convert.tables import read_table
from bench.errors import InputError

FILE_NAME = "yoochoose-clicks.dat"
FRACTIONS = (64, 4)
DAY_SECONDS = 86_400
HEADER = ("session", "timestamp", "item", "category")


def _has_header(path: Path) -> bool:
    """Whether the first line names the columns (``session_id`` or ``sessionId`` alike).
    A first line of data, or of anything else, is parsed as data and fails there with
    its own line number."""
    names = header_names(path, ",")
    return len(names) == len(HEADER) and all(name in (column, column + "id") for name, column in zip(names, HEADER))


def read(src: Path, fraction: int | None = None) -> Loaded:
    """Read ``yoochoose-clicks.dat`` (the file, or a folder holding it)."""
    if fraction not in FRACTIONS:
        raise InputError("yoochoose-raw needs --fraction 64 or --fraction 4 "
                         "(training keeps the most recent 1/64 or 1/4 of the training prefix rows)")
    path = require_file(src / FILE_NAME if src.is_dir() else src, "Yoochoose yoochoose-clicks.dat")
    frame = read_table(path, sep=",", ncols=4, skip=int(_has_header(path)),
                       columns={0: ("session", "int"), 1: ("timestamp", "timestamp"), 2: ("item", "int")},
                       what="Yoochoose clicks (session,timestamp,item,category)")
    # As SR-GNN's script: a session's clicks stay in file order (it sorts Diginetica's
    # by timeframe, never Yoochoose's), and dates are whole seconds (it parses
    # timestamp[:19]), so sessions ending in the same second tie and keep id order.
    seconds = frame["timestamp"].to_numpy() // 10**9
    data = preprocess_clicks(path, frame["session"].to_numpy(), np.arange(len(seconds)), frame["item"].to_numpy(),
                             seconds, window=DAY_SECONDS, fraction=fraction)
    return Loaded(data, [path], details={"fraction": fraction})

"""Raw Yoochoose (RecSys Challenge 2015) ``yoochoose-clicks.dat``, preprocessed as NARM / SR-GNN.

``session,timestamp,item,category`` without a header, timestamps like
``2014-04-07T10:51:09.277Z``. The test set is the last day; training keeps the most
recent 1/64 or 1/4 of the training sessions (``fraction``). See
:mod:`bench.convert.click_sessions` for the rules. The real file has 33M lines;
:mod:`bench.convert.tables` parses it without a Python loop per line, and the
category column is never read.
"""
from __future__ import annotations

from pathlib import Path

from bench.convert.click_sessions import preprocess_clicks
from bench.convert.sequences import Loaded
from bench.convert.sources import require_file
from bench.convert.tables import read_table
from bench.errors import InputError

FILE_NAME = "yoochoose-clicks.dat"
FRACTIONS = (64, 4)
DAY_NS = 86_400 * 10**9


def read(src: Path, fraction: int | None = None) -> Loaded:
    """Read ``yoochoose-clicks.dat`` (the file, or a folder holding it)."""
    if fraction not in FRACTIONS:
        raise InputError("yoochoose-raw needs --fraction 64 or --fraction 4 "
                         "(training keeps the most recent 1/64 or 1/4 of the sessions)")
    path = require_file(src / FILE_NAME if src.is_dir() else src, "Yoochoose yoochoose-clicks.dat")
    frame = read_table(path, sep=",", ncols=4,
                       columns={0: ("session", "int"), 1: ("timestamp", "timestamp"), 2: ("item", "int")},
                       what="Yoochoose clicks (session,timestamp,item,category)")
    ns = frame["timestamp"].to_numpy()
    data = preprocess_clicks(path, frame["session"].to_numpy(), ns, frame["item"].to_numpy(), ns,
                             window=DAY_NS, fraction=fraction)
    return Loaded(data, [path], details={"fraction": fraction})

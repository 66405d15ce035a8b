"""Raw Yoochoose (RecSys Challenge 2015) ``yoochoose-clicks.dat``, preprocessed as NARM / SR-GNN.

``session,timestamp,item,category`` without a header, timestamps like
``2014-04-07T10:51:09.277Z``. The test set is the last day; training keeps the most
recent 1/64 or 1/4 of the training sessions (``fraction``). See
:mod:`bench.convert.click_sessions` for the rules.

The real file has 33M lines: it is parsed by pandas' C reader with fixed dtypes and
the category column is never read.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from bench.convert.click_sessions import preprocess_clicks
from bench.convert.sequences import Loaded
from bench.convert.sources import read_table, require_file
from bench.errors import InputError

FILE_NAME = "yoochoose-clicks.dat"
FRACTIONS = (64, 4)
DAY_NS = 86_400 * 10**9


def _check_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _timestamps_to_ns(chunk: pd.DataFrame) -> pd.DataFrame:
    """Replace the timestamp strings of a chunk by int64 nanoseconds since the epoch (UTC)."""
    stamps = pd.to_datetime(chunk["timestamp"], format="ISO8601", utc=True, errors="coerce")
    if stamps.isna().any():
        raise ValueError("bad timestamp")
    chunk["timestamp"] = stamps.dt.tz_convert(None).to_numpy().astype("datetime64[ns]").astype(np.int64)
    return chunk


def read(src: Path, fraction: int | None = None) -> Loaded:
    """Read ``yoochoose-clicks.dat`` (the file, or a folder holding it)."""
    if fraction not in FRACTIONS:
        raise InputError("yoochoose-raw needs --fraction 64 or --fraction 4 "
                         "(training keeps the most recent 1/64 or 1/4 of the sessions)")
    path = require_file(src / FILE_NAME if src.is_dir() else src, "Yoochoose yoochoose-clicks.dat")
    table = dict(sep=",", ncols=4, columns={0: "session", 1: "timestamp", 2: "item"},
                 what="Yoochoose clicks (session,timestamp,item,category)",
                 int_cols=("session", "item"), validators={"timestamp": _check_timestamp})
    frame = read_table(path, **table, transform=_timestamps_to_ns)
    ns = frame["timestamp"].to_numpy()
    data = preprocess_clicks(path, frame["session"].to_numpy(), ns, frame["item"].to_numpy(), ns,
                             window=DAY_NS, fraction=fraction)
    return Loaded(data, [path], details={"fraction": fraction})

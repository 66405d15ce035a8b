"""Raw Diginetica (CIKM Cup 2016) ``train-item-views.csv``, preprocessed as NARM / SR-GNN.

``sessionId;userId;itemId;timeframe;eventdate`` with a header line; ``timeframe``
orders the clicks of a session, ``eventdate`` (``2016-05-09``) dates it. The test
set is the last 7 days. See :mod:`bench.convert.click_sessions` for the rules.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from bench.convert.click_sessions import preprocess_clicks
from bench.convert.sequences import Loaded
from bench.convert.sources import first_line, read_table, require_file
from bench.errors import InputError

FILE_NAME = "train-item-views.csv"
HEADER = ["sessionId", "userId", "itemId", "timeframe", "eventdate"]
TEST_DAYS = 7


def _columns(path: Path) -> dict[int, str]:
    """Column positions by name from the header, which must be Diginetica's."""
    header = [name.strip() for name in first_line(path).lstrip("\ufeff").split(";")]
    missing = [name for name in ("sessionId", "itemId", "timeframe", "eventdate") if name not in header]
    if missing:
        raise InputError(f"not a Diginetica train-item-views file: header lacks {', '.join(missing)} "
                         f"(expected {';'.join(HEADER)})", path, 1)
    wanted = {"sessionId": "session", "itemId": "item", "timeframe": "timeframe", "eventdate": "eventdate"}
    return {header.index(name): short for name, short in wanted.items()}


def _dates_to_days(chunk: pd.DataFrame) -> pd.DataFrame:
    """Replace the eventdate strings of a chunk by day numbers since the epoch."""
    days = pd.to_datetime(chunk["eventdate"], format="%Y-%m-%d", errors="coerce")
    if days.isna().any():
        raise ValueError("bad eventdate")
    chunk["eventdate"] = days.to_numpy().astype("datetime64[D]").astype(np.int64)
    return chunk


def read(src: Path) -> Loaded:
    """Read ``train-item-views.csv`` (the file, or a folder holding it)."""
    path = require_file(src / FILE_NAME if src.is_dir() else src, "Diginetica train-item-views.csv")
    columns = _columns(path)
    ncols = len(first_line(path).split(";"))
    table = dict(sep=";", ncols=ncols, columns=columns, what="Diginetica train-item-views",
                 int_cols=("session", "item", "timeframe"), skip=1,
                 validators={"eventdate": date.fromisoformat})
    frame = read_table(path, **table, transform=_dates_to_days)
    day_number = frame["eventdate"].to_numpy()
    data = preprocess_clicks(path, frame["session"].to_numpy(), frame["timeframe"].to_numpy(),
                             frame["item"].to_numpy(), day_number, window=TEST_DAYS)
    return Loaded(data, [path])

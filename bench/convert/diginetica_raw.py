"""Raw Diginetica (CIKM Cup 2016) ``train-item-views.csv``, preprocessed as NARM / SR-GNN.

``sessionId;userId;itemId;timeframe;eventdate`` with a header line; ``timeframe``
orders the clicks of a session, ``eventdate`` (``2016-05-09``) dates it. The test
set is the last 7 days. Header names are matched without regard to case or
underscores: SR-GNN's ``preprocess.py`` reads the file as
``session_id;user_id;item_id;timeframe;eventdate``, the header of the sample file it
ships, so copies of the file with either header are in use. See
:mod:`bench.convert.click_sessions` for the rules.
"""
from __future__ import annotations

from pathlib import Path

from bench.convert.click_sessions import preprocess_clicks
from bench.convert.sequences import Loaded
from bench.convert.sources import column_key, header_names, require_file
from bench.convert.tables import read_table
from bench.errors import InputError

FILE_NAME = "train-item-views.csv"
HEADER = "sessionId;userId;itemId;timeframe;eventdate"
COLUMNS = {"sessionId": ("session", "int"), "itemId": ("item", "int"),
           "timeframe": ("timeframe", "int"), "eventdate": ("eventdate", "date")}
TEST_DAYS = 7


def read(src: Path) -> Loaded:
    """Read ``train-item-views.csv`` (the file, or a folder holding it)."""
    path = require_file(src / FILE_NAME if src.is_dir() else src, "Diginetica train-item-views.csv")
    header = header_names(path, ";")
    missing = [name for name in COLUMNS if column_key(name) not in header]
    if missing:
        raise InputError(f"not a Diginetica train-item-views file: the header lacks {', '.join(missing)} "
                         f"(expected {HEADER})", path, 1)
    frame = read_table(path, sep=";", ncols=len(header), skip=1, what="Diginetica train-item-views",
                       columns={header.index(column_key(name)): column for name, column in COLUMNS.items()})
    data = preprocess_clicks(path, frame["session"].to_numpy(), frame["timeframe"].to_numpy(),
                             frame["item"].to_numpy(), frame["eventdate"].to_numpy(), window=TEST_DAYS)
    return Loaded(data, [path])

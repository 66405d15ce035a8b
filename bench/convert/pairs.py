"""SASRec's ``user item`` pairs (Amazon Beauty / Games, Steam, MovieLens-1M as SASRec / BERT4Rec publish them).

One space-separated ``user item`` pair of integer ids per line; each user's lines
are in time order. Leave-one-out protocol.
"""
from __future__ import annotations

from pathlib import Path

from bench.convert.sequences import Loaded, UserData
from bench.convert.sources import file_in, require_file
from bench.convert.tables import read_table


def read(src: Path) -> Loaded:
    """Read a pairs file (or the one ``.txt`` file in the folder ``src``)."""
    path = require_file(file_in(src, "*.txt", "user-item pairs"), "user-item pairs")
    frame = read_table(path, sep=r"\s+", ncols=2, columns={0: ("user", "int"), 1: ("item", "int")},
                       what="'user item' pairs")
    data = UserData.from_events(frame["user"].to_numpy(), frame["item"].to_numpy())
    return Loaded(data, [path])

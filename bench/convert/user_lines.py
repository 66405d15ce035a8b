"""One user per line, ``user item1 item2 ...`` in time order (S3-Rec / ICLRec Beauty 5-core).

Leave-one-out protocol. Lines have different lengths, so they are split in Python:
the files of this format are small (one line per user, not per event).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.convert.sequences import Loaded, Sequences, UserData
from bench.convert.sources import file_in, require_file
from bench.convert.tables import check_int
from bench.errors import InputError


def _parse(path: Path) -> tuple[list[int], list[list[int]]]:
    users: list[int] = []
    sequences: list[list[int]] = []
    line_of_user: dict[int, int] = {}
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                ids = [check_int(x) for x in fields]
            except (ValueError, OverflowError):
                bad = next(x for x in fields if not _is_int(x))
                raise InputError(f"not an integer id: {bad[:40]!r} (expected 'user item1 item2 ...')",
                                 path, number) from None
            if len(ids) < 2:
                raise InputError("a user without items (expected 'user item1 item2 ...')", path, number)
            user = ids[0]
            if user in line_of_user:
                raise InputError(f"user {user} already had line {line_of_user[user]}: this format has one "
                                 "line per user (a 'user item' pairs file is the 'pairs' format)", path, number)
            line_of_user[user] = number
            users.append(user)
            sequences.append(ids[1:])
    return users, sequences


def _is_int(text: str) -> bool:
    try:
        check_int(text)
    except (ValueError, OverflowError):
        return False
    return True


def read(src: Path) -> Loaded:
    """Read a user-lines file (or the one ``.txt`` file in the folder ``src``)."""
    path = require_file(file_in(src, "*.txt", "one user per line"), "one user per line")
    users, sequences = _parse(path)
    if not users:
        raise InputError("no users (expected lines 'user item1 item2 ...')", path)
    data = UserData(np.asarray(users, dtype=np.int64), Sequences.from_lists(sequences))
    return Loaded(data, [path])

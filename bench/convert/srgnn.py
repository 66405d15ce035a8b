"""SR-GNN pickles (Diginetica, Yoochoose 1/64 and 1/4 as SR-GNN / GCE-GNN publish them).

* ``all_train_seq.txt``: a list of training sessions, each a list of item ids, oldest
  click first, sessions in time order.
* ``test.txt``: a tuple ``(prefixes, labels)``: every prefix of every test session
  with its next item, longest prefix first.

The published test cases are kept exactly, in published order, so that numbers
compare with the papers. The test sessions themselves (for session ids and
counts) are rebuilt from the prefixes.
"""
from __future__ import annotations

from pathlib import Path

from bench.convert import safe_pickle
from bench.convert.sequences import Loaded, Sequences, SessionData
from bench.convert.sources import require_file
from bench.errors import InputError

TRAIN_FILE = "all_train_seq.txt"
TEST_FILE = "test.txt"


def rebuild_sessions(prefixes: list[list[int]], labels: list[int]) -> tuple[list[list[int]], list[int]]:
    """Test sessions from SR-GNN's prefix rows, and the session index of every row.

    A row continues the previous one when it is the previous prefix without its last
    item, and its label is that last item. Anything else starts a new session,
    whose items are the row's prefix followed by its label.
    """
    sessions: list[list[int]] = []
    session_of_row: list[int] = []
    prev: list[int] | None = None
    for prefix, label in zip(prefixes, labels):
        continues = (prev is not None and len(prefix) == len(prev) - 1
                     and label == prev[-1] and prefix == prev[:-1])
        if not continues:
            sessions.append(prefix + [label])
        session_of_row.append(len(sessions) - 1)
        prev = prefix
    return sessions, session_of_row


def read(src: Path) -> Loaded:
    """Read the SR-GNN folder ``src`` (or a file inside it)."""
    folder = src.parent if src.is_file() else src
    train_path = require_file(folder / TRAIN_FILE, "the SR-GNN training sessions")
    test_path = require_file(folder / TEST_FILE, "the SR-GNN test cases")

    train = safe_pickle.check_int_lists(safe_pickle.load(train_path), train_path, "training session")
    if not train:
        raise InputError("no training sessions", train_path)

    test = safe_pickle.load(test_path)
    if type(test) is not tuple or len(test) != 2:
        raise InputError("expected a tuple (prefixes, labels)", test_path)
    prefixes = safe_pickle.check_int_lists(test[0], test_path, "test prefix")
    labels = safe_pickle.check_ints(test[1], test_path, "test label")
    if len(prefixes) != len(labels):
        raise InputError(f"{len(prefixes)} test prefixes but {len(labels)} labels", test_path)
    if not prefixes:
        raise InputError("no test cases", test_path)

    sessions, session_of_row = rebuild_sessions(prefixes, labels)
    data = SessionData(
        train=Sequences.from_lists(train),
        test=Sequences.from_lists(sessions),
        test_cases=(prefixes, labels, session_of_row),
    )
    return Loaded(data, [train_path, test_path], notes=[
        "The SR-GNN pickles have no timestamps: session order stands in for time (the validation split, "
        "and the recency of session kNN's neighbours)."])

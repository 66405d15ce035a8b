"""NARM / SR-GNN preprocessing of a raw click log into train and test sessions.

The rules, in the order the SR-GNN script applies them:

1. clicks of a session are put in order (stable: ties keep file order): Diginetica's by
   ``timeframe``; Yoochoose's are left in file order, which the script never sorts;
   a session's date is the date of its last line in the file, taken before any
   filtering (the script dates a session when its id changes; in Yoochoose that is
   its latest click, while Diginetica's file lists a session's clicks out of time
   order, and a session spanning midnight may be dated by its first day);
2. sessions of length 1 are dropped;
3. items seen fewer than 5 times are dropped, then sessions shorter than 2 again;
4. test = sessions dated after ``max_date - window``, train = sessions dated before it;
   sessions dated exactly ``max_date - window`` are in neither (the script compares
   with ``<`` and ``>``; on Diginetica, whose dates are days, that is a whole day of
   sessions, and without it the split is not SR-GNN's);
5. sessions are sorted by date, ties by session id (so validation, the last 10% of
   training sessions, is the most recent);
6. test clicks on items unseen in the training sessions are dropped, then test
   sessions shorter than 2;
7. optionally (Yoochoose 1/64 and 1/4) only the most recent ``1/fraction`` of the
   training prefix rows is kept: ``floor(rows / fraction)`` of them, counted back from
   the newest, and the whole session that holds the oldest of them, as SR-GNN's
   ``all_train_seq.txt`` keeps (its ``train.txt`` starts mid-session). The test set
   is the same for every fraction, as SR-GNN's is (one ``test.txt`` for both), so it
   may hold items that the kept sessions never show.

Checked against SR-GNN's ``preprocess.py`` on the sample of ``train-item-views.csv`` that
its repository ships, and on a generated ``yoochoose-clicks.dat`` (1/4 and 1/64): the
same sessions, items and prefixes, in the same order, as its pickles.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.convert.sequences import Sequences, SessionData
from bench.errors import InputError

MIN_ITEM_COUNT = 5


def preprocess_clicks(path: Path, session: np.ndarray, order: np.ndarray, item: np.ndarray,
                      date: np.ndarray, *, window: int, fraction: int | None = None) -> SessionData:
    """Train and test sessions from aligned per-click arrays.

    ``order`` sorts clicks within a session, ``date`` is in the unit of ``window``;
    ``path`` is only named in errors.
    """
    ids, last_line = np.unique(session[::-1], return_index=True)
    dates = date[len(session) - 1 - last_line]  # per session, in the order of ids
    by_session = np.lexsort((order, session))  # lexsort is stable
    seqs = Sequences.from_groups(session[by_session], item[by_session])  # one per id, in id order

    keep = seqs.lengths > 1
    seqs, ids, dates = seqs.select(keep), ids[keep], dates[keep]

    _, inverse, counts = np.unique(seqs.items, return_inverse=True, return_counts=True)
    seqs = seqs.keep_items(counts[inverse] >= MIN_ITEM_COUNT)
    keep = seqs.lengths >= 2
    seqs, ids, dates = seqs.select(keep), ids[keep], dates[keep]
    if len(seqs) == 0:
        raise InputError("no session is left after dropping length-1 sessions and items seen < 5 times", path)

    split = dates.max() - window
    is_test, is_train = dates > split, dates < split

    def in_time_order(mask: np.ndarray) -> Sequences:
        index = np.flatnonzero(mask)
        return seqs.select(index[np.lexsort((ids[index], dates[index]))])

    train, test = in_time_order(is_train), in_time_order(is_test)
    if len(train) == 0:
        raise InputError("every session falls in the test period: no training sessions", path)

    test = test.keep_items(np.isin(test.items, train.items))
    test = test.select(test.lengths >= 2)
    if len(test) == 0:
        raise InputError("no test session is left (test period empty, or all its items unseen in training)", path)
    if fraction is not None:
        train = most_recent_rows(train, fraction, path)
    return SessionData(train=train, test=test)


def most_recent_rows(train: Sequences, fraction: int, path: Path) -> Sequences:
    """The sessions holding the newest ``floor(rows / fraction)`` prefix rows (rule 7)."""
    rows_before = np.cumsum(train.lengths - 1)  # prefix rows up to and with each session
    kept = int(rows_before[-1]) // fraction
    if kept == 0:
        raise InputError(f"fewer than {fraction} training prefix rows: 1/{fraction} of them is none", path)
    first = int(np.searchsorted(rows_before, rows_before[-1] - kept, side="right"))
    return train.select(np.arange(first, len(train)))

"""NARM / SR-GNN preprocessing of a raw click log into train and test sessions.

The rules, in the order the SR-GNN script applies them:

1. clicks of a session are ordered by time (stable: ties keep file order);
   a session's date is its latest click date, taken before any filtering;
2. sessions of length 1 are dropped;
3. items seen fewer than 5 times are dropped, then sessions shorter than 2 again;
4. test = sessions dated after ``max_date - window``, train = the rest;
5. sessions are sorted by date, ties by session id (so validation, the last 10% of
   training sessions, is the most recent);
6. optionally only the most recent ``1/fraction`` of training sessions is kept
   (Yoochoose 1/64 and 1/4);
7. test clicks on items unseen in the (kept) training sessions are dropped, then
   test sessions shorter than 2.

One deliberate difference: SR-GNN's script compares with ``<`` and ``>``, so it loses
the sessions dated exactly ``max_date - window``; here they are training sessions.
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
    by_session = np.lexsort((order, session))  # lexsort is stable
    session, item, date = session[by_session], item[by_session], date[by_session]
    seqs = Sequences.from_groups(session, item)
    ids = session[seqs.offsets[:-1]]
    dates = np.maximum.reduceat(date, seqs.offsets[:-1])

    keep = seqs.lengths > 1
    seqs, ids, dates = seqs.select(keep), ids[keep], dates[keep]

    _, inverse, counts = np.unique(seqs.items, return_inverse=True, return_counts=True)
    seqs = seqs.keep_items(counts[inverse] >= MIN_ITEM_COUNT)
    keep = seqs.lengths >= 2
    seqs, ids, dates = seqs.select(keep), ids[keep], dates[keep]
    if len(seqs) == 0:
        raise InputError("no session is left after dropping length-1 sessions and items seen < 5 times", path)

    is_test = dates > dates.max() - window

    def in_time_order(mask: np.ndarray) -> Sequences:
        index = np.flatnonzero(mask)
        return seqs.select(index[np.lexsort((ids[index], dates[index]))])

    train, test = in_time_order(~is_test), in_time_order(is_test)
    if len(train) == 0:
        raise InputError("every session falls in the test period: no training sessions", path)
    if fraction is not None:
        kept = len(train) // fraction
        if kept == 0:
            raise InputError(f"fewer than {fraction} training sessions: 1/{fraction} of them is none", path)
        train = train.select(np.arange(len(train) - kept, len(train)))

    test = test.keep_items(np.isin(test.items, train.items))
    test = test.select(test.lengths >= 2)
    if len(test) == 0:
        raise InputError("no test session is left (test period empty, or all its items unseen in training)", path)
    return SessionData(train=train, test=test)

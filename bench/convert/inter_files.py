"""Writing RecBole ``.inter`` files of (sequence id, item history, target) rows.

The header is RecBole's typed header; ``item_id_list`` holds the history oldest
first, separated by single spaces, cut to the most recent ``max_len`` items
(RecBole 1.2.1 would keep the oldest ones if it cut them itself).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ITEM_FIELD = "item_id"
ITEM_LIST_FIELD = "item_id_list"


def tokens(items: np.ndarray) -> list[str]:
    """The token of every item id, as written to the files."""
    return list(map(str, items.tolist()))


class InterFile:
    """One ``.inter`` file being written; ``rows`` counts its examples."""

    def __init__(self, path: Path, uid_field: str, max_len: int):
        self.path = path
        self.max_len = max_len
        self.rows = 0
        self._file = open(path, "w", encoding="utf-8", newline="\n")
        self._file.write(f"{uid_field}:token\t{ITEM_LIST_FIELD}:token_seq\t{ITEM_FIELD}:token\n")

    def add_prefixes(self, uid: str, seq: list[str], first: int, stop: int) -> None:
        """Rows predicting ``seq[k]`` from ``seq[:k]``, for ``first <= k < stop`` (``first >= 1``)."""
        if stop <= first:
            return
        # Join once and slice: the history of every target is a substring of the
        # joined sequence, so long sequences cost no repeated joins.
        joined = " ".join(seq[:stop - 1])
        starts = [0] * stop
        for k in range(1, stop):
            starts[k] = starts[k - 1] + len(seq[k - 1]) + 1
        lines = []
        for k in range(first, stop):
            lo = starts[max(0, k - self.max_len)]
            lines.append(f"{uid}\t{joined[lo:starts[k] - 1]}\t{seq[k]}\n")
        self._file.writelines(lines)
        self.rows += stop - first

    def add_case(self, uid: str, history: list[int], target: int) -> None:
        """One row with an explicit history (published test cases)."""
        self._file.write(f"{uid}\t{' '.join(map(str, history[-self.max_len:]))}\t{target}\n")
        self.rows += 1

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> InterFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_items(path: Path, items: np.ndarray) -> int:
    """``NAME.item``: every item of the dataset, sorted by id; returns how many.

    RecBole builds its item vocabulary from the files it loads. An item held only by
    a user with a single action appears in no ``.inter`` row, yet it belongs to the
    catalogue (SASRec ranks and samples negatives over every item id), so the item
    file puts it in the vocabulary.
    """
    catalogue = np.unique(items)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"{ITEM_FIELD}:token\n")
        f.writelines(f"{item}\n" for item in tokens(catalogue))
    return len(catalogue)


def read_rows(path: Path) -> list[tuple[str, list[str], str]]:
    """The ``(sequence id, history, target)`` rows of an ``.inter`` file we wrote."""
    with open(path, encoding="utf-8") as f:
        next(f)  # typed header
        rows = []
        for line in f:
            uid, history, target = line.rstrip("\n").split("\t")
            rows.append((uid, history.split(" "), target))
    return rows

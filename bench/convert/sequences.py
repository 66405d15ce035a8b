"""In-memory form shared by every reader: integer item sequences, stored flat.

A reader turns its published files into either :class:`SessionData` (session
protocol: sessions already split into train and test) or :class:`UserData`
(leave-one-out: one sequence per user). Everything downstream (cases, files,
negatives, manifest) works on these two, so a new format only needs a reader.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Sequences:
    """Variable-length int64 sequences: sequence ``i`` is ``items[offsets[i]:offsets[i + 1]]``.

    Flat arrays instead of a list of lists, because the raw formats have millions of
    clicks and every filtering rule is then a vectorised mask.
    """

    items: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_lists(cls, lists: list[list[int]]) -> Sequences:
        lengths = np.fromiter((len(s) for s in lists), dtype=np.int64, count=len(lists))
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.fromiter((i for s in lists for i in s), dtype=np.int64, count=int(offsets[-1]))
        return cls(items, offsets)

    @classmethod
    def from_groups(cls, keys: np.ndarray, items: np.ndarray) -> Sequences:
        """One sequence per run of equal consecutive ``keys`` (the caller sorts by key)."""
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
        offsets = np.r_[starts, len(keys)].astype(np.int64)
        return cls(np.asarray(items, dtype=np.int64), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i]:self.offsets[i + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def select(self, index: np.ndarray) -> Sequences:
        """The sequences at ``index`` (an int array or a boolean mask), in that order."""
        index = np.arange(len(self))[index] if np.asarray(index).dtype == bool else np.asarray(index)
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Position of every kept item in the old flat array, without a Python loop.
        starts = np.repeat(self.offsets[:-1][index] - offsets[:-1], lengths)
        return Sequences(self.items[starts + np.arange(offsets[-1])], offsets)

    def keep_items(self, mask: np.ndarray) -> Sequences:
        """Drop the items where ``mask`` (aligned with ``items``) is False; sequences stay."""
        kept_before = np.r_[0, np.cumsum(mask)]
        return Sequences(self.items[mask], kept_before[self.offsets].astype(np.int64))


@dataclass
class SessionData:
    """Session protocol input: sessions in time order, oldest first.

    ``test_cases`` holds published test cases ``(prefixes, targets, session)`` that are
    written exactly as given (SR-GNN ``test.txt``); ``session[j]`` is the index in
    ``test`` of the session case ``j`` belongs to. Without it every prefix of every
    test session is a case.
    """

    train: Sequences
    test: Sequences
    test_cases: tuple[list[list[int]], list[int], list[int]] | None = None


@dataclass
class UserData:
    """Leave-one-out input: one sequence per user, in the order they are written."""

    users: np.ndarray
    sequences: Sequences

    @classmethod
    def from_events(cls, users: np.ndarray, items: np.ndarray, time: np.ndarray | None = None) -> UserData:
        """Group ``(user, item)`` events into one sequence per user.

        Without ``time`` the events are in time order already (file order). With it,
        events are sorted by time, ties kept in file order. Users come in the order of
        their first event.
        """
        if time is not None:
            by_time = np.argsort(time, kind="stable")
            users, items = users[by_time], items[by_time]
        codes, uniques = pd.factorize(users)  # codes follow first appearance
        by_user = np.argsort(codes, kind="stable")
        return cls(np.asarray(uniques, dtype=np.int64), Sequences.from_groups(codes[by_user], items[by_user]))


@dataclass
class Loaded:
    """What a reader returns: the data, the files it read, and protocol defaults."""

    data: SessionData | UserData
    sources: list[Path]
    default_max_len: int = 50
    details: dict = field(default_factory=dict)  # reader-specific facts for the manifest's settings
    notes: list[str] = field(default_factory=list)  # sentences for the manifest's reader (not its identity)

"""SASRec's sampled protocol: 100 items per user that the user never interacted with.

Drawn once, uniformly and without repetition, with ``numpy.random.default_rng(seed)``,
so that every model in every run ranks the target against the same candidates.

Sampling is vectorised: every user draws a block of candidate items at once,
candidates the user has seen (or drew before) are rejected, and the first ``k``
survivors are kept. The few users whose block runs short (users who saw most of
the catalogue) are sampled exactly from their complement afterwards.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.convert.inter_files import tokens
from bench.convert.sequences import Sequences

NUM_NEGATIVES = 100
DEFAULT_SEED = 2020


def sample(seqs: Sequences, rows: np.ndarray, k: int = NUM_NEGATIVES, seed: int = DEFAULT_SEED) -> list[np.ndarray]:
    """For every sequence in ``rows``, up to ``k`` distinct item ids absent from it.

    Fewer than ``k`` only when the catalogue holds fewer unseen items than that.
    """
    catalogue = np.unique(seqs.items)  # sorted, so the draw does not depend on file order
    n = len(catalogue)
    sub = seqs.select(rows)
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), sub.lengths)
    seen = np.unique(owner * n + np.searchsorted(catalogue, sub.items))  # sorted keys row*n + item
    distinct = np.bincount(seen // n, minlength=len(rows))
    need = np.minimum(k, n - distinct)

    rng = np.random.default_rng(seed)
    # A little more than k draws per user: on sparse data nearly all are usable.
    draws = rng.integers(0, n, size=(len(rows), k + k // 4 + 16))
    keys = np.arange(len(rows), dtype=np.int64)[:, None] * n + draws
    pos = np.minimum(np.searchsorted(seen, keys), max(len(seen) - 1, 0))
    fresh = seen[pos] != keys if len(seen) else np.ones(keys.shape, dtype=bool)
    ok = fresh & ~_repeats(draws)
    ok &= np.cumsum(ok, axis=1) <= need[:, None]

    result = [draws[r][ok[r]] for r in range(len(rows))]
    for r in np.flatnonzero(ok.sum(axis=1) < need):
        # Rare: the block ran short; draw exactly from the unseen items.
        lo, hi = np.searchsorted(seen, [r * n, (r + 1) * n])
        mine = seen[lo:hi] - r * n
        unseen = np.setdiff1d(np.arange(n), mine, assume_unique=True)
        result[r] = rng.choice(unseen, size=need[r], replace=False)
    return [catalogue[idx] for idx in result]


def _repeats(draws: np.ndarray) -> np.ndarray:
    """True where a row repeats a value drawn earlier in the same row."""
    order = np.argsort(draws, axis=1, kind="stable")  # stable: a first draw sorts first
    ranked = np.take_along_axis(draws, order, axis=1)
    repeat_ranked = np.zeros(draws.shape, dtype=bool)
    repeat_ranked[:, 1:] = ranked[:, 1:] == ranked[:, :-1]
    repeats = np.empty_like(repeat_ranked)
    np.put_along_axis(repeats, order, repeat_ranked, axis=1)
    return repeats


def write(path: Path, users: np.ndarray, negatives: list[np.ndarray]) -> None:
    """``NAME.negatives``: ``user_id:token  neg_item_id_list:token_seq``."""
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("user_id:token\tneg_item_id_list:token_seq\n")
        f.writelines(f"{user}\t{' '.join(tokens(neg))}\n" for user, neg in zip(tokens(users), negatives))

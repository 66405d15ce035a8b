"""The one evaluator: every model, every protocol, the same test cases and the same rule.

A model is asked for a score for every item on every test case
(``full_sort_predict``, RecBole's uniform interface). From the scores we keep one
number per case, the **rank of the target**, and derive every metric from it:

* **Tie rule** (GRU4Rec's "standard" mode): ``rank = 1 + #higher + #tied / 2``,
  where ``#higher`` counts items scored strictly above the target and ``#tied`` the
  other items scored exactly the same. It is the mean of the optimistic and the
  pessimistic rank, so it never depends on item-id order: a model that scores every
  item the same gets the middle rank, not rank 1. Ranks are therefore half-integers.
* Item 0 is RecBole's padding token and never a candidate.
* **Full ranking** ranks the target against every item. **Sampled** ranking (the
  leave-one-out protocol of the SASRec paper) ranks it against the 100 negatives the
  converter drew once per user, the same for every model.
* No item is masked, seen or not: a next item may be a repeat. Leave-one-out test
  cases are also ranked a second way, **seen items excluded** (``unseen``, as RecBole's
  full-sort evaluation and most leave-one-out papers do): the items the user interacted
  with before the target are not candidates, and a target among them is a miss (rank
  ``n + 1`` over ``n`` candidates). The other candidates' ranks do not move: an
  excluded item counts as scored below the target.
* ``Recall@K`` (= HR@K, one target per case) = rank <= K;
  ``MRR@K`` = 1/rank if rank <= K else 0; ``NDCG@K`` = 1/log2(rank + 1) if rank <= K.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

METRICS = ("recall", "mrr", "ndcg")
DEFAULT_KS = (10, 20)


# Rows of a score matrix ranked at once: ~4 MB of scratch, so the difference, its sign
# and the row sums pass over data still in cache; only the first read of each score
# comes from memory (Diginetica's 43k items: 24 rows).
RANK_CHUNK_ELEMENTS = 1 << 20


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """Rank (float64, tie rule above) of ``targets[b]`` among the columns of ``scores[b]``.

    With ``S = sum_i sign(score_i - score_target)`` = #higher - #lower over the ``n``
    candidates, the tie rule's rank ``1 + #higher + (#tied - 1) / 2`` equals
    ``(n + 1 + S) / 2``: one pass over the scores instead of two comparisons. Rows are
    ranked a few at a time (:data:`RANK_CHUNK_ELEMENTS`) in ``buffer``, scratch reused
    across calls. A row with a NaN score gets a NaN rank (``sign(nan)`` is 0, so the
    check is made on the differences).
    """
    n_rows, n_cols = scores.shape
    target_scores = scores.gather(1, targets.view(-1, 1))
    if not torch.isfinite(target_scores).all():
        # inf - inf would be NaN: clamp infinities to the largest finite values first.
        finite = torch.finfo(scores.dtype)
        scores = scores.clamp(finite.min, finite.max)
        target_scores = target_scores.clamp(finite.min, finite.max)
    rows = max(1, min(n_rows, RANK_CHUNK_ELEMENTS // max(1, n_cols)))
    if buffer is None or buffer.numel() < rows * n_cols or buffer.dtype != scores.dtype:
        buffer = torch.empty(rows * n_cols, dtype=scores.dtype, device=scores.device)
    sums = torch.empty(n_rows, dtype=torch.float64, device=scores.device)
    for start in range(0, n_rows, rows):
        chunk = scores[start:start + rows]
        diff = torch.sub(chunk, target_scores[start:start + rows], out=buffer[:chunk.numel()].view(chunk.shape))
        has_nan = bool(torch.isnan(diff.sum()))  # NaN anywhere in the chunk; rows resolved below
        nan_rows = torch.isnan(diff).any(dim=1) if has_nan else None
        torch.sum(diff.sign_(), dim=1, dtype=torch.float64, out=sums[start:start + rows])
        if nan_rows is not None:
            sums[start:start + rows][nan_rows] = torch.nan
    return (n_cols + 1 + sums) / 2.0


def metrics_from_ranks(ranks: np.ndarray, ks: Iterable[int] = DEFAULT_KS) -> "OrderedDict[str, float]":
    """Recall/HR, MRR and NDCG at every K, averaged over cases."""
    ranks = np.asarray(ranks, dtype=np.float64)
    out: "OrderedDict[str, float]" = OrderedDict()
    if ranks.size == 0:
        raise ValueError("no test cases to score")
    for k in ks:
        hit = ranks <= k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / ranks, 0.0).mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0).mean())
    return out


@dataclass
class CaseSet:
    """A fixed, ordered set of evaluation cases (a RecBole dataset split) and its candidates.

    ``negatives`` is a ``[num_users, n]`` tensor of internal item ids, indexed by the
    internal user/session id, for sampled ranking; ``None`` means full ranking only.
    ``seen`` is ``(indptr, items)``, a CSR of the internal item ids each user interacted
    with before the case's target (user ``u``'s are ``items[indptr[u]:indptr[u + 1]]``),
    for the ``unseen`` ranking; ``None`` leaves it out.
    """

    dataset: object  # recbole Dataset holding one case per row, in file order
    batch_size: int = 1024
    negatives: torch.Tensor | None = None
    seen: tuple[torch.Tensor, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    # Largest score matrix per batch (elements; 256 MB of fp32). Ranking works on a few
    # rows at a time, so the batch size hardly matters past a few hundred rows (all
    # 60,858 Diginetica test cases over 43k items, `bench.benchmarks.eval_speed`: 8.1 s
    # in batches of 512, 7.6 s of 1024, 7.5 s of 4096); a model's scores are the memory.
    max_batch_elements = 1 << 26

    @property
    def rows_per_batch(self) -> int:
        return max(1, min(self.batch_size, self.max_batch_elements // max(1, self.dataset.item_num)))

    def batches(self) -> Iterator[object]:
        inter = self.dataset.inter_feat
        rows = self.rows_per_batch
        for start in range(0, len(inter), rows):
            yield inter[start : start + rows]

    @property
    def protocols(self) -> Sequence[str]:
        return (("full",) + (("unseen",) if self.seen is not None else ())
                + (("sampled",) if self.negatives is not None else ()))


def seen_mask(seen: tuple[torch.Tensor, torch.Tensor], users: torch.Tensor, n_items: int) -> torch.Tensor:
    """``[len(users), n_items]`` booleans: True where the row's user saw the item."""
    indptr, items = seen
    starts, lengths = indptr[users], indptr[users + 1] - indptr[users]
    rows = torch.repeat_interleave(torch.arange(len(users), device=users.device), lengths)
    # the k-th seen item of all rows together is items[k + start of its row - where its row begins in k]
    shift = torch.repeat_interleave(starts - (torch.cumsum(lengths, 0) - lengths), lengths)
    mask = torch.zeros(len(users), n_items, dtype=torch.bool, device=users.device)
    mask[rows, items[torch.arange(len(rows), device=users.device) + shift]] = True
    return mask


class ScoreError(RuntimeError):
    """A model produced scores the evaluator cannot rank (wrong shape, NaN)."""


@torch.no_grad()
def rank_cases(model, cases: CaseSet, device: torch.device | str = "cpu") -> "dict[str, np.ndarray]":
    """Per-case target ranks for every protocol of ``cases``, in case order."""
    dataset = cases.dataset
    item_field, user_field = dataset.iid_field, dataset.uid_field
    was_training = model.training
    model.eval()
    out: dict[str, list[np.ndarray]] = {p: [] for p in cases.protocols}
    negatives = None if cases.negatives is None else cases.negatives.to(device)
    seen = None if cases.seen is None else tuple(t.to(device) for t in cases.seen)
    buffer = None
    try:
        for batch in cases.batches():
            batch = batch.to(device)
            scores = model.full_sort_predict(batch).view(len(batch), -1).float()
            if scores.shape[1] != dataset.item_num:
                raise ScoreError(f"{type(model).__name__} scored {scores.shape[1]} items, expected {dataset.item_num}")
            targets = batch[item_field].long()
            if buffer is None:  # room for one chunk, or for one row where a row is longer than a chunk
                buffer = torch.empty(max(RANK_CHUNK_ELEMENTS, scores.shape[1]), dtype=scores.dtype, device=scores.device)
            # Column 0 is the padding token: rank over items 1.. (a view: the model's tensor is never written).
            full = target_ranks(scores[:, 1:], targets - 1, buffer)
            if torch.isnan(full).any():  # a NaN score anywhere in the row
                raise ScoreError(f"{type(model).__name__} produced NaN scores")
            out["full"].append(full.cpu().numpy())
            if seen is not None:
                excluded = seen_mask(seen, batch[user_field].long(), scores.shape[1])
                unseen = target_ranks(scores.masked_fill(excluded, -torch.inf)[:, 1:], targets - 1, buffer)
                n_candidates = scores.shape[1] - 1
                unseen[excluded.gather(1, targets.view(-1, 1)).squeeze(1)] = n_candidates + 1  # a seen target: a miss
                out["unseen"].append(unseen.cpu().numpy())
            if negatives is not None:
                candidates = torch.cat([targets.view(-1, 1), negatives[batch[user_field].long()]], dim=1)
                sampled = scores.gather(1, candidates)
                sampled[:, 1:].masked_fill_(candidates[:, 1:] == 0, -torch.inf)  # padding: fewer negatives
                zero = torch.zeros(len(batch), dtype=torch.long, device=sampled.device)
                out["sampled"].append(target_ranks(sampled, zero).cpu().numpy())
    finally:
        model.train(was_training)
    return {p: np.concatenate(r) if r else np.empty(0) for p, r in out.items()}


def metrics_for(ranks: "dict[str, np.ndarray]", ks: Iterable[int] = DEFAULT_KS) -> "dict[str, OrderedDict[str, float]]":
    return {protocol: metrics_from_ranks(r, ks) for protocol, r in ranks.items()}

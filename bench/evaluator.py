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
* No item is masked, seen or not: a next item may be a repeat.
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


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """Rank (float, tie rule above) of ``targets[b]`` among the columns of ``scores[b]``.

    With ``S = sum_i sign(score_i - score_target)`` = #higher - #lower over the ``n``
    candidates, the tie rule's rank ``1 + #higher + (#tied - 1) / 2`` equals
    ``(n + 1 + S) / 2``: one pass over the scores instead of two comparisons.
    Scores must not be NaN (``sign(nan)`` is 0): :func:`rank_cases` rejects them.
    """
    target_scores = scores.gather(1, targets.view(-1, 1))
    if not torch.isfinite(target_scores).all():
        # inf - inf would be NaN: clamp infinities to the largest finite values first.
        finite = torch.finfo(scores.dtype)
        scores = scores.clamp(finite.min, finite.max)
        target_scores = target_scores.clamp(finite.min, finite.max)
    # ``buffer`` (reused across batches) spares a fresh allocation, and its page faults, per batch.
    if buffer is None or buffer.numel() < scores.numel():
        buffer = torch.empty(scores.numel(), dtype=scores.dtype, device=scores.device)
    signs = torch.sub(scores, target_scores, out=buffer[: scores.numel()].view(scores.shape))
    signs.sign_()
    return (scores.shape[1] + 1 + signs.sum(dim=1, dtype=torch.float64)) / 2.0


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
    """

    dataset: object  # recbole Dataset holding one case per row, in file order
    batch_size: int = 1024
    negatives: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    # Largest score matrix per batch (elements): big batches are faster (4096 rows of
    # Diginetica's 43k items: 24 s for all 60,858 cases, 1024 rows: 30 s), but memory is
    # rows x items x 4 bytes, twice (scores and the evaluator's scratch buffer).
    max_batch_elements = 1 << 28

    def batches(self) -> Iterator[object]:
        inter = self.dataset.inter_feat
        rows = max(1, min(self.batch_size, self.max_batch_elements // max(1, self.dataset.item_num)))
        for start in range(0, len(inter), rows):
            yield inter[start : start + rows]

    @property
    def protocols(self) -> Sequence[str]:
        return ("full", "sampled") if self.negatives is not None else ("full",)


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
    buffer = None
    try:
        for batch in cases.batches():
            batch = batch.to(device)
            scores = model.full_sort_predict(batch).view(len(batch), -1).float()
            if scores.shape[1] != dataset.item_num:
                raise ScoreError(f"{type(model).__name__} scored {scores.shape[1]} items, expected {dataset.item_num}")
            targets = batch[item_field].long()
            # Column 0 is the padding token: rank over items 1.. (a view: the model's tensor is never written).
            # A row sum is NaN if any score is (cheap); confirm before failing (inf - inf).
            if torch.isnan(scores.sum(dim=1)).any() and torch.isnan(scores).any():
                raise ScoreError(f"{type(model).__name__} produced NaN scores")
            if buffer is None or buffer.numel() < scores.numel():
                buffer = torch.empty(scores.numel(), dtype=scores.dtype, device=scores.device)
            full = target_ranks(scores[:, 1:], targets - 1, buffer)
            out["full"].append(full.cpu().numpy())
            if negatives is not None:
                candidates = torch.cat([targets.view(-1, 1), negatives[batch[user_field].long()]], dim=1)
                sampled = scores.gather(1, candidates)
                zero = torch.zeros(len(batch), dtype=torch.long, device=sampled.device)
                out["sampled"].append(target_ranks(sampled, zero).cpu().numpy())
    finally:
        model.train(was_training)
    return {p: np.concatenate(r) if r else np.empty(0) for p, r in out.items()}


def metrics_for(ranks: "dict[str, np.ndarray]", ks: Iterable[int] = DEFAULT_KS) -> "dict[str, OrderedDict[str, float]]":
    return {protocol: metrics_from_ranks(r, ks) for protocol, r in ranks.items()}

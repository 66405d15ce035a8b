"""The one evaluator: ranks, the tie rule, metrics, and identical candidates for every model."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.evaluator import CaseSet, metrics_from_ranks, rank_cases, target_ranks


def test_rank_counts_strictly_higher_items():
    scores = torch.tensor([[0.0, 0.9, 0.1, 0.5, 0.3]])
    assert target_ranks(scores, torch.tensor([3])).tolist() == [2.0]  # only 0.9 is higher
    assert target_ranks(scores, torch.tensor([1])).tolist() == [1.0]
    assert target_ranks(scores, torch.tensor([0])).tolist() == [5.0]


def test_tie_rule_is_the_mean_of_optimistic_and_pessimistic_rank():
    # target (item 2) ties with two others, one item is higher:
    # optimistic rank 2, pessimistic rank 4 -> 3
    scores = torch.tensor([[0.5, 0.9, 0.5, 0.5, 0.1]])
    assert target_ranks(scores, torch.tensor([2])).tolist() == [3.0]


def test_constant_scores_give_the_mean_rank_whatever_the_target_id():
    n = 101
    scores = torch.zeros(3, n)
    ranks = target_ranks(scores, torch.tensor([0, 50, 100]))
    assert ranks.tolist() == [(n + 1) / 2] * 3


def test_tie_rule_does_not_depend_on_item_order():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 4, (64, 30), generator=gen).float()
    targets = torch.randint(0, 30, (64,), generator=gen)
    perm = torch.randperm(30, generator=gen)
    inverse = torch.argsort(perm)
    permuted = target_ranks(scores[:, perm], inverse[targets])
    assert torch.equal(target_ranks(scores, targets), permuted)


def test_ranks_do_not_depend_on_how_many_rows_are_ranked_at_once(monkeypatch):
    import bench.evaluator

    gen = torch.Generator().manual_seed(1)
    scores = torch.randint(0, 5, (37, 30), generator=gen).float()
    targets = torch.randint(0, 30, (37,), generator=gen)
    whole = target_ranks(scores, targets)
    for chunk_elements in (1, 30, 65, 10_000):  # 1 row (also below one row), 1, 2 and all 37 rows per chunk
        monkeypatch.setattr(bench.evaluator, "RANK_CHUNK_ELEMENTS", chunk_elements)
        assert torch.equal(target_ranks(scores, targets, torch.empty(5)), whole)


def test_a_row_with_a_nan_score_gets_a_nan_rank_and_only_that_row():
    scores = torch.tensor([[0.1, 0.5, 0.2], [0.3, float("nan"), 0.2], [0.0, 0.0, 1.0]])
    ranks = target_ranks(scores, torch.tensor([1, 0, 2]))
    assert ranks[0] == 1.0 and math.isnan(ranks[1]) and ranks[2] == 1.0


def test_metrics_on_hand_computed_cases():
    ranks = np.array([1.0, 2.0, 3.5, 11.0, 25.0])
    m = metrics_from_ranks(ranks, ks=(10, 20))
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["recall@20"] == pytest.approx(4 / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 2 + 1 / 3.5) / 5)
    assert m["mrr@20"] == pytest.approx((1 + 1 / 2 + 1 / 3.5 + 1 / 11) / 5)
    ndcg10 = (1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4.5)) / 5
    assert m["ndcg@10"] == pytest.approx(ndcg10)
    ndcg20 = ndcg10 + (1 / math.log2(12)) / 5
    assert m["ndcg@20"] == pytest.approx(ndcg20)


def test_metrics_of_an_empty_case_set_fail_loudly():
    with pytest.raises(ValueError):
        metrics_from_ranks(np.array([]))


class _Split:
    """A minimal stand-in for a RecBole dataset split (the fields the evaluator reads)."""

    def __init__(self, users, targets, item_num):
        from recbole.data.interaction import Interaction

        self.inter_feat = Interaction({"user_id": torch.tensor(users), "item_id": torch.tensor(targets)})
        self.uid_field, self.iid_field, self.item_num = "user_id", "item_id", item_num

    def __len__(self):
        return len(self.inter_feat)


class _Recorder(torch.nn.Module):
    """A model with fixed scores that records which cases it was asked to score."""

    def __init__(self, scores):
        super().__init__()
        self.scores, self.seen = scores, []

    def full_sort_predict(self, batch):
        self.seen.append(batch["user_id"].clone())
        return self.scores[batch["user_id"]]


def test_two_models_see_identical_cases_and_candidates():
    n_items, users = 50, list(range(20))
    gen = torch.Generator().manual_seed(1)
    targets = torch.randint(1, n_items, (20,), generator=gen).tolist()
    negatives = torch.randint(1, n_items, (20, 10), generator=gen)
    cases = CaseSet(_Split(users, targets, n_items), batch_size=7, negatives=negatives)
    a = _Recorder(torch.rand(20, n_items, generator=gen))
    b = _Recorder(torch.rand(20, n_items, generator=gen))
    ranks_a, ranks_b = rank_cases(a, cases), rank_cases(b, cases)
    assert torch.equal(torch.cat(a.seen), torch.cat(b.seen))
    assert set(ranks_a) == set(ranks_b) == {"full", "sampled"}
    # sampled ranks are computed over exactly [target] + that user's negatives
    for u in users:
        cand = torch.cat([torch.tensor([targets[u]]), negatives[u]])
        expected = target_ranks(a.scores[u, cand].view(1, -1), torch.tensor([0])).item()
        assert ranks_a["sampled"][u] == expected


def test_padding_item_is_never_a_candidate():
    scores = torch.tensor([[9.0, 1.0, 2.0, 3.0]])  # item 0 (padding) scored highest
    cases = CaseSet(_Split([0], [3], 4), batch_size=4)
    assert rank_cases(_Recorder(scores), cases)["full"].tolist() == [1.0]


def test_nan_scores_are_rejected():
    from bench.evaluator import ScoreError

    cases = CaseSet(_Split([0], [1], 3), batch_size=4)
    with pytest.raises(ScoreError):
        rank_cases(_Recorder(torch.tensor([[0.0, float("nan"), 1.0]])), cases)

"""Leave-one-out test cases ranked with the user's seen items excluded (``unseen``).

Hand-computed ranks on fixed scores, and the seen sets of a converted file checked
against the raw file, with a history longer than the 50-item window.
"""
from __future__ import annotations

import numpy as np
import torch

from bench.convert import convert
from bench.evaluator import CaseSet, rank_cases, seen_mask
from conftest import shared
from test_evaluator import _Recorder, _Split


def _csr(per_user: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    indptr = torch.tensor([0] + list(np.cumsum([len(s) for s in per_user])), dtype=torch.long)
    return indptr, torch.tensor([i for s in per_user for i in s], dtype=torch.long)


def test_seen_mask_marks_each_users_items():
    seen = _csr([[2, 4], [], [1]])
    mask = seen_mask(seen, torch.tensor([2, 0, 1, 0]), 5)
    assert mask.tolist() == [[False, True, False, False, False],
                             [False, False, True, False, True],
                             [False] * 5,
                             [False, False, True, False, True]]


def test_seen_items_are_not_candidates_and_a_seen_target_is_a_miss():
    # items 1..5 (0 is padding); scores by item id
    scores = torch.tensor([[0.0, 0.9, 0.8, 0.7, 0.6, 0.5],   # user 0 saw items 1 and 2, target 4
                           [0.0, 0.1, 0.9, 0.9, 0.3, 0.2],   # user 1 saw item 3 (tied with 2), target 5
                           [0.0, 0.5, 0.4, 0.3, 0.2, 0.1]])  # user 2 saw item 3, the target itself
    cases = CaseSet(_Split([0, 1, 2], [4, 5, 3], 6), batch_size=2, seen=_csr([[1, 2], [3], [3]]))
    assert cases.protocols == ("full", "unseen")
    ranks = rank_cases(_Recorder(scores), cases)
    # full: user 0's target 4 has 3 items above; user 1's target 5 has items 2, 3, 4 above;
    # user 2's target 3 has items 1 and 2 above
    assert ranks["full"].tolist() == [4.0, 4.0, 3.0]
    # unseen: items 1 and 2 gone for user 0 (only 3 above); item 3 gone for user 1 (2 and 4
    # above); user 2's target is seen: rank n + 1 = 6 over the 5 candidates
    assert ranks["unseen"].tolist() == [2.0, 3.0, 6.0]


def test_session_and_validation_cases_have_no_unseen_ranking():
    cases = CaseSet(_Split([0], [1], 3), batch_size=4)
    assert cases.protocols == ("full",)


def test_seen_sets_are_every_item_before_the_test_target(tmp_path):
    """Users of the real Beauty file, one of them with a history longer than the
    window: the seen set of each test case is exactly the user's items before it."""
    from bench.data import load_splits, make_config, seen_before_test
    from bench.registry import resolve_model

    users: dict[str, list[str]] = {}
    for line in shared("amazon-beauty", "Beauty.txt").read_text().splitlines():
        user, item = line.split()
        users.setdefault(user, []).append(item)
    long_user = max(users, key=lambda u: len(users[u]))
    assert len(users[long_user]) > 52  # longer than max_len 50 + validation + test
    chosen = [long_user] + [u for u in list(users)[:40] if u != long_user]
    src = tmp_path / "slice.txt"
    src.write_text("".join(f"{u} {i}\n" for u in chosen for i in users[u]))
    convert("pairs", src, "slice", tmp_path / "atomic")

    config = make_config(resolve_model("pop"), "slice", {"device": "cpu", "use_gpu": False}, tmp_path / "atomic")
    splits = load_splits(config, tmp_path / "atomic")
    indptr, items = seen_before_test(splits)
    dataset = splits.dataset
    for u in chosen:
        uid = int(dataset.token2id("user_id", u))
        seen = set(dataset.id2token("item_id", items[indptr[uid]:indptr[uid + 1]].numpy()).tolist())
        assert seen == set(users[u][:-1]), u
    assert splits.cases("test").protocols == ("full", "unseen", "sampled")
    assert splits.cases("valid").protocols == ("full", "sampled")

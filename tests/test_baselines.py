"""POP, S-POP, Item-KNN and BPR-MF (the GRU4Rec paper's baselines).

The non-trained baselines are checked against scores computed by hand on a toy
dataset of four training sessions, written as atomic files by the contract of
dataset_atomic/README.md. BPR-MF is checked on the real Diginetica slice.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from bench.data import load_splits, make_config, sequence_events
from bench.registry import resolve_model
from bench.runner import build_model, flat, run_once

TOY = "toy"
# Training sessions (item tokens; the validation session is the most recent 10%, here 1).
TRAIN = [[1, 2, 3], [2, 3, 2, 4], [1, 3], [5, 2]]
VALID = [[3, 4]]
TEST = [[2, 1, 5], [3, 3, 1, 6]]  # item 6 occurs in no training session
TOY_YAML = """\
USER_ID_FIELD: session_id
ITEM_ID_FIELD: item_id
ITEM_LIST_LENGTH_FIELD: item_length
LIST_SUFFIX: _list
MAX_ITEM_LIST_LENGTH: 50
RATING_FIELD: ~
TIME_FIELD: ~
alias_of_item_id: [item_id_list]
benchmark_filename: [train, valid, test]
field_separator: "\\t"
seq_separator: " "
filter_inter_by_user_or_item: false
item_inter_num_interval: "[0,inf)"
user_inter_num_interval: "[0,inf)"
rm_dup_inter: ~
val_interval: ~
load_col:
  inter: [session_id, item_id_list, item_id]
"""


def _write_prefixes(path, sessions, first_id):
    lines = ["session_id:token\titem_id_list:token_seq\titem_id:token"]
    for sid, session in enumerate(sessions, start=first_id):
        for end in range(1, len(session)):
            lines.append(f"{sid}\t{' '.join(map(str, session[:end]))}\t{session[end]}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-atomic")
    folder = root / TOY
    folder.mkdir()
    _write_prefixes(folder / f"{TOY}.train.inter", TRAIN, 1)
    _write_prefixes(folder / f"{TOY}.valid.inter", VALID, 1 + len(TRAIN))
    _write_prefixes(folder / f"{TOY}.test.inter", TEST, 1 + len(TRAIN) + len(VALID))
    (folder / f"{TOY}.yaml").write_text(TOY_YAML)
    (folder / "manifest.json").write_text(json.dumps({"name": TOY, "protocol": "session", "max_len": 50}))
    return root


def _model_and_splits(name, root, overrides=None):
    spec = resolve_model(name)
    config = make_config(spec, TOY, {"device": "cpu", "use_gpu": False, **(overrides or {})}, root)
    splits = load_splits(config, root)
    return build_model(spec, config, splits), splits


def _scores(model, splits) -> list[dict[int, float]]:
    """Each test case's scores as {item token: score}, for the tokens 1..6."""
    scores = model.full_sort_predict(splits.test.inter_feat).view(len(splits.test), -1)
    ids = splits.dataset.token2id(splits.dataset.iid_field, [str(t) for t in range(1, 7)])
    return [{t: float(row[i]) for t, i in zip(range(1, 7), ids)} for row in scores]


# Training events per item (validation and test sessions not counted).
POP = {1: 2, 2: 4, 3: 3, 4: 1, 5: 1, 6: 0}


def test_sequence_events_counts_every_training_click(toy):
    _, splits = _model_and_splits("pop", toy)
    seq, items = sequence_events(splits.train)
    tokens = splits.dataset.id2token(splits.dataset.iid_field, items).astype(int)
    assert sorted(tokens.tolist()) == sorted(i for s in TRAIN for i in s)
    assert len(set(seq.tolist())) == len(TRAIN)


def test_pop_scores_are_training_counts(toy):
    model, splits = _model_and_splits("pop", toy)
    for case in _scores(model, splits):
        assert case == POP


def test_spop_counts_the_session_and_breaks_ties_by_popularity(toy):
    model, splits = _model_and_splits("spop", toy)
    scale = max(POP.values()) + 1
    prefixes = [s[:end] for s in TEST for end in range(1, len(s))]
    cases = _scores(model, splits)
    assert len(cases) == len(prefixes)
    for prefix, case in zip(prefixes, cases):
        assert case == {i: prefix.count(i) * scale + POP[i] for i in range(1, 7)}
    # prefix (3, 3, 1): 3 twice beats 1 once beats 2 (most popular, not in the session)
    last = cases[-1]
    assert last[3] > last[1] > last[2] > last[4] == last[5] > last[6]


def test_spop_ranks_ties_by_the_mean_rule(toy):
    result = run_once("spop", TOY, 0, toy / "run-spop", {"device": "cpu"}, data_root=toy)
    # For the test, S-POP is fitted on all training sessions, the validation session
    # [3, 4] included: popularity 1: 2, 2: 4, 3: 4, 4: 2, 5: 1, 6: 0.
    # test cases in order: (2)->1, (2 1)->5, (3)->3, (3 3)->1, (3 3 1)->6
    # (2)->1: 2 (in the session) and 3 (pop 4) beat 1 (pop 2), which ties with 4: 1 + 2 + 1/2
    # (2 1)->5: 2 and 1 in the session, then 3 and 4; nothing ties with 5 (pop 1): rank 5
    # (3 3)->1: 3 (twice) and 2 (pop 4) beat 1 (pop 2), which ties with 4: 1 + 2 + 1/2
    # (3 3 1)->6: everything else scores higher: rank 6
    assert result.ranks["test_full"].tolist() == [3.5, 5.0, 1.0, 3.5, 6.0]
    assert result.fit_protocol == "train+valid"
    # Validation scores come from the fit on the training sessions alone: (3)->4 with
    # 3 in the session, then 2 (pop 4) and 1 (pop 2); 4 ties with 5 (pop 1): 1 + 3 + 1/2.
    assert result.ranks["valid_full"].tolist() == [4.5]


# Item-KNN by hand. The paper's definition counts sessions: S1 {1,2,3}, S2 {2,3,4},
# S3 {1,3}, S4 {2,5}; |S_i| = 2, 3, 3, 1, 1 and |S_i ∩ S_j| below.
SESSIONS = {1: 2, 2: 3, 3: 3, 4: 1, 5: 1, 6: 0}
CO_SESSIONS = {(1, 2): 1, (1, 3): 2, (2, 3): 2, (2, 4): 1, (2, 5): 1, (3, 4): 1}
# GRU4Rec's code counts clicks: support = POP, and item 2 clicked twice in S2 counts
# twice with each of its partners there: C[2,3] = 1 (S1) + 2*1 (S2), C[2,4] = 2*1.
CO_CLICKS = {(1, 2): 1, (1, 3): 2, (2, 3): 3, (2, 4): 2, (2, 5): 1, (3, 4): 1}


def _knn(i, j, lam, alpha, count_repeats):
    support, co = (POP, CO_CLICKS) if count_repeats else (SESSIONS, CO_SESSIONS)
    c = co.get((min(i, j), max(i, j)), 0) if i != j else 0
    return c / ((support[i] + lam) ** alpha * (support[j] + lam) ** (1 - alpha))


@pytest.mark.parametrize("count_repeats", [False, True])
@pytest.mark.parametrize("lam,alpha", [(20.0, 0.5), (1.0, 0.5), (0.0, 1.0)])
def test_itemknn_scores_are_regularised_cosine_of_the_last_item(toy, lam, alpha, count_repeats):
    model, splits = _model_and_splits("itemknn", toy, {"knn_lambda": lam, "knn_alpha": alpha,
                                                       "knn_neighbours": None, "knn_count_repeats": count_repeats})
    last_items = [s[end - 1] for s in TEST for end in range(1, len(s))]
    cases = _scores(model, splits)
    for last, case in zip(last_items, cases):
        expected = {j: _knn(last, j, lam, alpha, count_repeats) for j in range(1, 7)}
        assert case == pytest.approx(expected, rel=1e-6, abs=1e-9)
    if (lam, alpha) == (1.0, 0.5):  # case (2), from item 2: sim(2,3) = 2/sqrt(4*4), or 3/sqrt(5*4) counting clicks
        assert cases[0][3] == pytest.approx(3 / math.sqrt(20) if count_repeats else 0.5, rel=1e-6)


def test_itemknn_keeps_the_top_neighbours_only(toy):
    model, splits = _model_and_splits("itemknn", toy, {"knn_lambda": 1.0, "knn_neighbours": 2})
    # from 2: 3 (.5), then 4 and 5 tie (1/sqrt(8)), then 1 (1/sqrt(12)): the tie goes to the lower id
    from_2 = _scores(model, splits)[0]
    assert from_2[3] > from_2[4] > 0
    assert from_2[5] == from_2[1] == from_2[2] == from_2[6] == 0


def test_bprmf_beats_pop_on_held_out_cases_and_is_deterministic(diginetica_slice, tmp_path):
    root, name = diginetica_slice
    torch.set_num_threads(1)
    settings = {"epochs": 2, "embedding_size": 32}
    pop = flat(run_once("pop", name, 0, tmp_path / "pop", {}, data_root=root))
    first = run_once("bprmf", name, 0, tmp_path / "a", settings, data_root=root)
    again = run_once("bprmf", name, 0, tmp_path / "b", settings, data_root=root)
    bpr = flat(first)
    assert bpr["recall@20"] > pop["recall@20"] + 0.05
    assert bpr["mrr@20"] > 3 * pop["mrr@20"]
    np.testing.assert_array_equal(first.ranks["test_full"], again.ranks["test_full"])
    other_seed = run_once("bprmf", name, 1, tmp_path / "c", settings, data_root=root)
    assert not np.array_equal(first.ranks["test_full"], other_seed.ranks["test_full"])

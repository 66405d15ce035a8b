"""SKNN and V-SKNN (custom_models/session_knn.py): scores computed by hand on a toy
dataset, and the vectorised model against a plain per-case transcription of the
definitions on real Diginetica cases, for every weighting option."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.data import sequence_events
from custom_models.session_knn import SessionNeighbours, position_weight, step_decay
from test_baselines import TEST, TOY, _model_and_splits, _scores, toy  # noqa: F401  (the toy fixture)


# The toy's training sessions, oldest first: S1 {1,2,3}, S2 {2,3,4} (2 clicked twice),
# S3 {1,3}, S4 {2,5}. Cases in order: (2), (2 1), (3), (3 3), (3 3 1).

def test_sknn_by_hand(toy):
    model, splits = _model_and_splits("sknn", toy, {"k": 2, "sample_size": 3})
    cases = _scores(model, splits)
    # (2 1): items {1, 2}; sessions sharing one: S1..S4; the 3 most recent: S2, S3, S4.
    # cosine: S2 1/sqrt(2*3) = .408, S3 1/sqrt(2*2) = .5, S4 1/sqrt(2*2) = .5 -> neighbours S3, S4
    assert cases[1] == pytest.approx({1: .5, 2: .5, 3: .5, 4: 0, 5: .5, 6: 0})
    # (3): S1, S2, S3 share 3; the most recent 3 are all of them. cosine 1/sqrt(3), 1/sqrt(3),
    # 1/sqrt(2): neighbours S3 (.707) and, of the tied S1 and S2, the more recent S2 (.577)
    a, b = 1 / math.sqrt(2), 1 / math.sqrt(3)
    assert cases[2] == pytest.approx({1: a, 2: b, 3: a + b, 4: b, 5: 0, 6: 0})


def test_vsknn_by_hand(toy):
    model, splits = _model_and_splits("vsknn", toy, {"k": 3, "sample_size": 4, "similarity": "vec",
                                                      "weighting": "div", "weighting_score": "div",
                                                      "idf_weighting": 0})
    cases = _scores(model, splits)
    # (3 3 1): weights by last click, div i/n with n = 3: item 3 -> 2/3, item 1 -> 3/3 = 1;
    # vec = shared weight / 2 distinct items: S1 {1,2,3}: (1 + 2/3)/2 = 5/6, S2 {2,3,4}: (2/3)/2 = 1/3,
    # S3 {1,3}: 5/6, S4: none. Top 3: S1, S3, S2.
    # decay div 1/d, d = how far back the neighbour's most recent shared click is: S1 and S3 hold 1
    # (d = 1), S2 holds only 3 (d = 2): 1/2.
    s1 = s3 = 5 / 6
    s2 = (1 / 3) / 2
    assert cases[4] == pytest.approx({1: s1 + s3, 2: s1 + s2, 3: s1 + s3 + s2, 4: s2, 5: 0, 6: 0})


def test_vsknn_idf_boost_by_hand(toy):
    model, splits = _model_and_splits("vsknn", toy, {"k": 10, "sample_size": 10, "similarity": "vec",
                                                      "weighting": "same", "weighting_score": "same",
                                                      "idf_weighting": 2})
    cases = _scores(model, splits)
    # (2): every session holding 2 (S1, S2, S4) shares it: vec = 1/1 = 1 each.
    # idf = log(4 sessions / clicks): 1: log 2, 2: log(4/4) = 0, 3: log(4/3), 4: log 4, 5: log 4
    idf = {1: math.log(2), 2: 0.0, 3: math.log(4 / 3), 4: math.log(4), 5: math.log(4), 6: 0.0}
    count = {1: 1, 2: 3, 3: 2, 4: 1, 5: 1, 6: 0}  # neighbours holding each item
    assert cases[0] == pytest.approx({i: count[i] * (1 + 2 * idf[i]) for i in range(1, 7)})


def test_weight_functions_are_session_recs():
    n = np.array([5.0])
    assert position_weight("quadratic", np.array([2]), n) == pytest.approx((2 / 5) ** 2)
    assert position_weight("linear", np.array([4]), n) == pytest.approx(1 - 0.1 * 1)
    assert position_weight("linear", np.array([11]), np.array([12.0])) == 0.0  # session-rec: i <= 10 only
    assert position_weight("log", np.array([5]), n) == pytest.approx(1 / math.log10(1.7))
    assert step_decay("linear", np.array([3.0])) == pytest.approx(0.7)
    assert step_decay("quadratic", np.array([2.0])) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        position_weight("cubic", 1, 1)


def reference_scores(sessions, items_seq, n_items, k, sample_size, similarity, weighting, weighting_score,
                     idf_weighting):
    """The definitions, one case at a time, with Python sets (sessions oldest first)."""
    sets = [set(s) for s in sessions]
    clicks = np.zeros(n_items)
    for s in sessions:
        for i in s:
            clicks[i] += 1
    out = np.zeros((len(items_seq), n_items))
    for row, seq in enumerate(items_seq):
        n = len(seq)
        weight = {}
        for pos, item in enumerate(seq, 1):
            weight[item] = float(position_weight(weighting, pos, n))
        relevant = [s for s in range(len(sets)) if sets[s] & set(seq)]
        sample = sorted(relevant)[-sample_size:]
        sims = []
        for s in sample:
            shared = sets[s] & set(seq)
            if similarity == "vec":
                sim = sum(weight[i] for i in shared) / len(weight)
            else:
                sim = sum(weight[i] for i in shared) / (math.sqrt(sum(w * w for w in weight.values()))
                                                        * math.sqrt(len(sets[s])))
            if sim > 0:
                sims.append((sim, s))
        neighbours = sorted(sims, key=lambda t: (-t[0], -t[1]))[:k]
        for sim, s in neighbours:
            back = next(d for d, item in enumerate(reversed(seq), 1) if item in sets[s])
            decay = float(step_decay(weighting_score, back))
            for item in sets[s]:
                idf = math.log(len(sessions) / clicks[item])
                out[row, item] += sim * decay * (1 + idf * idf_weighting if idf_weighting else 1)
    return out


@pytest.mark.parametrize("options", [
    dict(similarity="cosine", weighting="same", weighting_score="same", idf_weighting=0),   # SKNN
    dict(similarity="vec", weighting="quadratic", weighting_score="linear", idf_weighting=10),  # Diginetica V-SKNN
    dict(similarity="cosine", weighting="div", weighting_score="div", idf_weighting=1),
    dict(similarity="vec", weighting="log", weighting_score="quadratic", idf_weighting=0),
    dict(similarity="vec", weighting="linear", weighting_score="log", idf_weighting=2),
])
def test_vectorised_scores_equal_the_per_case_definition_on_real_sessions(diginetica_slice, options):
    from bench.data import load_splits, make_config
    from bench.registry import resolve_model

    root, name = diginetica_slice
    config = make_config(resolve_model("pop"), name, {"device": "cpu", "use_gpu": False}, root)
    splits = load_splits(config, root)
    seq_ids, items = sequence_events(splits.train)
    order = np.argsort(seq_ids, kind="stable")
    sessions = [list(items[order][seq_ids[order] == s]) for s in np.unique(seq_ids)][-600:]
    keep_ids = np.unique(seq_ids)[-600:]
    mask = np.isin(seq_ids, keep_ids)
    n_items = splits.dataset.item_num
    index = SessionNeighbours(seq_ids[mask], items[mask], n_items, k=20, sample_size=150, **options)
    test = splits.test.inter_feat
    seq, lengths = test["item_id_list"][:120].numpy(), test["item_length"][:120].numpy()
    got = index.scores(seq, lengths)
    want = reference_scores(sessions, [list(s[:n]) for s, n in zip(seq, lengths)], n_items, 20, 150, **options)
    assert np.abs(want).sum() > 0
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def stan_reference(sessions, items_seq, n_items, k, sample_size, lambda_spw, lambda_snh, lambda_inh,
                   lambda_ipw=None, lambda_idf=None):
    """STAN's definition, one case at a time (sessions oldest first; session s at time s,
    the current session at time len(sessions))."""
    out = np.zeros((len(items_seq), n_items))
    for row, seq in enumerate(items_seq):
        n = len(seq)
        weight = {item: math.exp((pos - n) / lambda_spw) for pos, item in enumerate(seq, 1)}
        current = set(seq)
        relevant = [s for s in range(len(sessions)) if set(sessions[s]) & current]
        sims = []
        for s in sorted(relevant)[-sample_size:]:
            shared = set(sessions[s]) & current
            sim = sum(weight[i] for i in shared) / (math.sqrt(sum(w * w for w in weight.values()))
                                                    * math.sqrt(len(set(sessions[s]))))
            sim *= math.exp(-(len(sessions) - s) / (lambda_snh * 86400))
            sims.append((sim, s))
        clicks = {}
        for session in sessions:
            for item in session:
                clicks[item] = clicks.get(item, 0) + 1
        for sim, s in sorted(sims, key=lambda t: (-t[0], -t[1]))[:k]:
            last = {item: pos for pos, item in enumerate(sessions[s], 1)}
            star = max(pos for pos, item in enumerate(sessions[s], 1) if item in current)
            ipw = 1.0
            if lambda_ipw is not None:
                latest = max(pos for pos, item in enumerate(seq, 1) if item in last)
                ipw = math.exp((latest - n) / lambda_ipw)
            for item, pos in last.items():
                value = sim * math.exp(-abs(pos - star) / lambda_inh)
                if lambda_idf is not None:
                    value *= 1 + math.log(len(sessions) / clicks[item]) * lambda_idf
                out[row, item] += value * ipw
    return out


def test_stan_by_hand(toy):
    model, splits = _model_and_splits("stan", toy, {"k": 2, "sample_size": 4, "lambda_spw": 1.0,
                                                     "lambda_snh": 1e9, "lambda_inh": 1.0})
    cases = _scores(model, splits)
    # (2 1): weights 2: e^-1, 1: e^0 = 1; norm sqrt(e^-2 + 1). S1 [1,2,3]: (e^-1 + 1)/(norm sqrt 3),
    # S2 [2,3,2,4]: e^-1/(norm sqrt 3), S3 [1,3]: 1/(norm sqrt 2), S4 [5,2]: e^-1/(norm sqrt 2).
    # Top 2: S3 (.62) and S1 (.62 ... ) -> compute and compare the item scores.
    e = math.exp(-1)
    norm = math.sqrt(e * e + 1)
    sims = {"S1": (e + 1) / (norm * math.sqrt(3)), "S2": e / (norm * math.sqrt(3)),
            "S3": 1 / (norm * math.sqrt(2)), "S4": e / (norm * math.sqrt(2))}
    top = sorted(sims, key=lambda s: -sims[s])[:2]
    assert top == ["S1", "S3"]
    # S1 [1,2,3]: last shared position p* = 2 (item 2): item 1 at 1 -> e^-1, 2 -> 1, 3 -> e^-1.
    # S3 [1,3]: p* = 1 (item 1): 1 -> 1, 3 -> e^-1.
    want = {1: sims["S1"] * e + sims["S3"], 2: sims["S1"], 3: sims["S1"] * e + sims["S3"] * e, 4: 0, 5: 0, 6: 0}
    assert cases[1] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("lambdas", [(1.25, 80, 5), (0.625, 1e-5, 1.25), (10, 5, 0.625),
                                     (1.25, 100, 10, 10, 10), (5, 80, 5, 0.625, 1)])  # the last two: V-STAN
def test_stan_vectorised_equals_the_per_case_definition_on_real_sessions(diginetica_slice, lambdas):
    from bench.data import load_splits, make_config
    from bench.registry import resolve_model
    from custom_models.session_knn import StanNeighbours

    root, name = diginetica_slice
    config = make_config(resolve_model("pop"), name, {"device": "cpu", "use_gpu": False}, root)
    splits = load_splits(config, root)
    seq_ids, items = sequence_events(splits.train)
    keep_ids = np.unique(seq_ids)[-600:]
    mask = np.isin(seq_ids, keep_ids)
    order = np.argsort(seq_ids[mask], kind="stable")
    s_ids, s_items = seq_ids[mask][order], items[mask][order]
    sessions = [list(s_items[s_ids == s]) for s in keep_ids]
    n_items = splits.dataset.item_num
    spw, snh, inh, *vstan = lambdas
    extra = dict(zip(("lambda_ipw", "lambda_idf"), vstan))
    index = StanNeighbours(seq_ids[mask], items[mask], n_items, k=20, sample_size=150,
                           lambda_spw=spw, lambda_snh=snh, lambda_inh=inh, **extra)
    test = splits.test.inter_feat
    seq, lengths = test["item_id_list"][:120].numpy(), test["item_length"][:120].numpy()
    got = index.scores(seq, lengths)
    want = stan_reference(sessions, [list(s[:n]) for s, n in zip(seq, lengths)], n_items, 20, 150, spw, snh, inh,
                          **extra)
    assert np.abs(want).sum() > 0
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)

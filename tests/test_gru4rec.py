"""GRU4Rec: session-parallel mini-batches, losses, sampler, optimiser, and training on real data."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

import bench  # noqa: F401
from bench.data import load_splits, make_config, whole_sequence_rows
from bench.evaluator import metrics_from_ranks, target_ranks
from bench.registry import resolve_model
from custom_models.gru4rec import bpr_loss, bpr_max_loss, cross_entropy_loss, top1_loss, top1_max_loss
from custom_models.gru4rec_trainer import (AdagradM, PopularitySampler, rows_summed_in_place, session_order,
                                           session_parallel, sessions_from_rows)

from conftest import shared

SMALL = {"layers": [16], "n_sample": 8, "train_batch_size": 2, "dropout_p_embed": 0.0,
         "dropout_p_hidden": 0.0, "sample_cache_size": 800, "epochs": 1}


def build(data, tmp_path, overrides=None):
    """(config, splits, model, trainer) on a converted dataset, as the runner builds them."""
    root, name = data
    spec = resolve_model("gru4rec")
    settings = {**SMALL, **(overrides or {}), "seed": 0, "device": "cpu", "use_gpu": False,
                "checkpoint_dir": str(tmp_path / "checkpoints")}
    config = make_config(spec, name, settings, root)
    splits = load_splits(config, root)
    torch.manual_seed(0)
    model = spec.cls(config, splits.train)
    return config, splits, model, spec.trainer(config, model)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small matrices: threads only add synchronisation, a lot of it on a shared box."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def slice_setup(diginetica_slice, tmp_path_factory):
    return build(diginetica_slice, tmp_path_factory.mktemp("gru4rec"))


# -- session-parallel mini-batches ---------------------------------------------------------
SESSIONS = [[1, 2, 3], [4, 5], [15], [6, 7, 8, 9], [10, 11], [12, 13, 14]]
# lane 0: s0 s0 s3 s4 s4 | lane 1: s1 s2 s2 s2 (dropped: no session left); [15] has nothing to predict
EXPECTED_INPUTS = [[1, 4], [2, 6], [10, 7], [12, 8], [13]]
EXPECTED_TARGETS = [[2, 5], [3, 7], [11, 8], [13, 9], [14]]
EXPECTED_RESETS = [[True, True], [False, True], [True, False], [True, False], [False]]


def flat(sessions):
    items = np.array([i for s in sessions for i in s])
    return items, np.r_[0, np.cumsum([len(s) for s in sessions])]


def test_session_parallel_lanes_and_resets():
    items, offsets = flat(SESSIONS)
    steps = list(session_parallel(offsets, batch_size=2))
    assert [items[p].tolist() for p, _, _ in steps] == EXPECTED_INPUTS
    assert [items[p + 1].tolist() for p, _, _ in steps] == EXPECTED_TARGETS
    assert [r.tolist() for _, r, _ in steps] == EXPECTED_RESETS
    assert [None if k is None else k.tolist() for _, _, k in steps] == [None, None, None, None, [True, False]]


def predicted_pairs(items, offsets, order=None, batch_size=2):
    steps = list(session_parallel(offsets, batch_size, order))
    return steps, sorted((int(items[p]), int(items[p + 1])) for positions, _, _ in steps for p in positions)


def test_sessions_enter_the_lanes_in_the_given_order():
    items, offsets = flat(SESSIONS)
    order = np.array([4, 2, 0, 5, 3, 1])
    steps, pairs = predicted_pairs(items, offsets, order)
    # lane 0: s4 s5 s5 s1 (then dropped) | lane 1: s0 s0 s3 s3 s3; s2 has one item, nothing to predict
    assert [items[p].tolist() for p, _, _ in steps] == [[10, 1], [12, 2], [13, 6], [4, 7], [8]]
    assert [r.tolist() for _, r, _ in steps] == [[True, True], [True, False], [False, True], [True, False], [False]]
    # every event but a session's last is predicted once, whatever the order
    assert pairs == predicted_pairs(items, offsets)[1]


def test_longest_first_keeps_every_lane_busy():
    """Stored order: the long session enters late and runs alone; longest first: it starts
    at once and the short ones fill the other lane meanwhile."""
    items, offsets = flat([[1, 2], [3, 4], [5, 6, 7, 8, 9, 10]])
    as_stored, pairs = predicted_pairs(items, offsets, session_order(offsets, "data"))
    longest, same_pairs = predicted_pairs(items, offsets, session_order(offsets, "longest_first"))
    assert same_pairs == pairs and len(pairs) == 7
    assert len(as_stored) == 6 and len(longest) == 5  # 7 events on 2 lanes: 4 at best, 5 with a 5-step session
    assert [items[p].tolist() for p, _, _ in longest] == [[5, 1], [6, 3], [7], [8], [9]]


def test_random_order_is_a_new_permutation_per_epoch_and_seeded():
    offsets = np.r_[0, np.cumsum(np.full(50, 3))]
    first, second = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = session_order(offsets, "random", first), session_order(offsets, "random", first)
    assert sorted(a.tolist()) == list(range(50)) and not np.array_equal(a, b)
    assert np.array_equal(a, session_order(offsets, "random", second))
    with pytest.raises(ValueError, match="session_order must be one of"):
        session_order(offsets, "time")


def test_the_trainer_feeds_sessions_in_the_configured_order(diginetica_slice, tmp_path):
    _, _, model, trainer = build(diginetica_slice, tmp_path, {"session_order": "longest_first"})
    inputs = []
    real_step = model.session_step
    model.session_step = lambda i, *rest: (inputs.append(i.tolist()), real_step(i, *rest))[1]
    trainer.train_sessions(*flat(SESSIONS))
    items, offsets = flat(SESSIONS)
    steps = session_parallel(offsets, 2, session_order(offsets, "longest_first"))
    assert inputs == [items[p].tolist() for p, _, _ in steps]
    assert inputs[0] == [6, 1]  # the 4-item session first, then the 3-item ones as stored
    with pytest.raises(ValueError, match="session_order must be one of"):
        build(diginetica_slice, tmp_path, {"session_order": "by-time"})


def test_longest_first_on_real_user_sequences(ml100k, tmp_path):
    """MovieLens-100k as the speed benchmark trains on it (943 users, 128 lanes): about
    a third fewer mini-batches, and as many predicted events."""
    config, splits, _, _ = build(ml100k, tmp_path, {"train_batch_size": 128})
    items, offsets = sessions_from_rows(whole_sequence_rows(splits.train))
    as_stored, pairs = predicted_pairs(items, offsets, None, 128)
    longest, same_pairs = predicted_pairs(items, offsets, session_order(offsets, "longest_first"), 128)
    assert same_pairs == pairs
    longest_session = int(np.diff(offsets).max()) - 1
    events = len(items) - (len(offsets) - 1)
    assert max(longest_session, -(-events // 128)) <= len(longest) < 0.75 * len(as_stored)


def test_a_new_session_starts_from_a_zero_state(slice_setup):
    """The trainer's actual loop: the state handed to each step is zero exactly where a
    lane starts a new session, and otherwise the lane's state after its previous step."""
    _, _, model, trainer = slice_setup
    calls = []
    real_step = model.session_step

    def spy(inputs, targets, samples, H, log_q=None):
        loss, new = real_step(inputs, targets, samples, H, log_q)
        calls.append((inputs.tolist(), targets.tolist(), H[0].clone(), new[0].clone()))
        return loss, new

    model.session_step = spy
    known = model.known_items.clone()
    try:
        trainer.train_sessions(*flat(SESSIONS))
    finally:
        del model.session_step
        model.known_items.copy_(known)
    assert [c[0] for c in calls] == EXPECTED_INPUTS
    assert [c[1] for c in calls] == EXPECTED_TARGETS
    lanes_before = [[0, 1], [0, 1], [0, 1], [0, 1], [0]]  # lane k at step t was lane lanes_before[t][k] at t-1
    for t, (_, _, state_in, _) in enumerate(calls):
        for k, reset in enumerate(EXPECTED_RESETS[t]):
            if reset:
                assert torch.count_nonzero(state_in[k]) == 0, (t, k)
            else:
                previous = calls[t - 1][3][lanes_before[t][k]]
                assert torch.count_nonzero(previous) > 0
                assert torch.equal(state_in[k], previous), (t, k)


def test_items_outside_the_training_sessions_score_minus_inf(slice_setup):
    """The model knows the items of the sessions it is built on (the trainer writes nothing
    into it); the others score -inf, as in the official code."""
    from bench.rows import sequence_events

    _, splits, model, _ = slice_setup
    _, items = sequence_events(splits.train)
    known = torch.zeros(model.n_items, dtype=torch.bool)
    known[torch.as_tensor(items)] = True
    known[0] = False
    assert torch.equal(model.known_items, known) and 0 < int(known.sum()) < model.n_items - 1
    with torch.no_grad():
        scores = model.full_sort_predict(splits.test.inter_feat[:5])
    assert torch.isfinite(scores[:, known]).all()
    assert torch.isneginf(scores[:, ~known]).all()


def test_sessions_are_rebuilt_from_whole_sequence_rows(tmp_path):
    """Real Diginetica sessions, converted with max_len 5 so that long sessions come as
    several rows: stitched back, they are the published sessions, in order."""
    from bench.convert import convert

    src = shared("diginetica")
    with open(src / "all_train_seq.txt", "rb") as f:
        train = pickle.load(f)[-300:]  # noqa: S301  (trusted shared data)
    with open(src / "test.txt", "rb") as f:
        prefixes, labels = pickle.load(f)  # noqa: S301
    with open(tmp_path / "all_train_seq.txt", "wb") as f:
        pickle.dump(train, f)
    with open(tmp_path / "test.txt", "wb") as f:
        pickle.dump((prefixes[:1], labels[:1]), f)
    convert("srgnn", tmp_path, "digi-tiny", tmp_path / "atomic", max_len=5)
    config, splits, _, _ = build((tmp_path / "atomic", "digi-tiny"), tmp_path)
    assert max(map(len, train)) > 6  # some sessions really are split
    whole = whole_sequence_rows(splits.train)
    items, offsets = sessions_from_rows(whole)
    tokens = splits.dataset.id2token(splits.dataset.iid_field, items)
    rebuilt = [[int(t) for t in tokens[a:b]] for a, b in zip(offsets[:-1], offsets[1:])]
    assert rebuilt == train[: len(rebuilt)]
    assert len(rebuilt) == len(train) - len(train) // 10  # the rest is validation
    with pytest.raises(ValueError, match="train_stride"):  # overlapping windows are not sessions
        sessions_from_rows(whole_sequence_rows(splits.train, stride=2))
    with pytest.raises(ValueError, match="whole sequences"):
        sessions_from_rows(splits.train)  # every prefix: not sessions


# -- losses ------------------------------------------------------------------------------
def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def reference_losses(R, bpreg):
    """Every loss written out plainly, row by row (row i's target is column i)."""
    out = {k: [] for k in ("top1", "bpr", "top1-max", "bpr-max", "cross-entropy")}
    for i, row in enumerate(R):
        pos = row[i]
        neg = [r for j, r in enumerate(row) if j != i]
        z = sum(math.exp(r) for r in neg)
        s = [math.exp(r) / z for r in neg]
        out["top1"].append(sum(sig(r - pos) + sig(r * r) for r in neg) / len(neg))
        out["bpr"].append(sum(-math.log(sig(pos - r)) for r in neg) / len(neg))
        out["top1-max"].append(sum(sj * (sig(r - pos) + sig(r * r)) for sj, r in zip(s, neg)))
        out["bpr-max"].append(-math.log(sum(sj * sig(pos - r) for sj, r in zip(s, neg)))
                              + bpreg * sum(sj * r * r for sj, r in zip(s, neg)))
        out["cross-entropy"].append(-math.log(math.exp(pos) / sum(math.exp(r) for r in row)))
    return out


def test_losses_equal_their_definitions():
    R = torch.randn(4, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2
    expected = reference_losses(R.tolist(), bpreg=0.7)
    got = {"top1": top1_loss(R), "bpr": bpr_loss(R), "top1-max": top1_max_loss(R),
           "bpr-max": bpr_max_loss(R, 0.7), "cross-entropy": cross_entropy_loss(R)}
    for name, values in got.items():
        assert values.tolist() == pytest.approx(expected[name], rel=1e-9), name


@pytest.mark.parametrize("loss", ["top1", "bpr", "top1-max", "bpr-max", "cross-entropy"])
def test_session_step_scores_targets_and_samples(slice_setup, loss):
    """One mini-batch: R = h . W_y[column] + b_y[column] over the batch's targets and the
    samples, the final activation (ELU 1) before the ranking losses, sum / batch size."""
    _, _, model, _ = slice_setup
    saved = model.loss_name
    model.loss_name = loss
    try:
        model.eval()  # no dropout
        with torch.no_grad():
            model.out_bias.uniform_(-0.5, 0.5)
        inputs, targets, samples = torch.tensor([3, 5]), torch.tensor([7, 3]), torch.tensor([11, 7, 2])
        H = [torch.randn(2, 16, generator=torch.Generator().manual_seed(2))]
        loss_value, new = model.session_step(inputs, targets, samples, H)
        h = model.cells[0](model.out_weight[inputs], H[0])
        # float32 tolerances: the CPU layer's GRU cell (tested in test_cpu_paths) rounds differently
        torch.testing.assert_close(new[0], h)
        columns = torch.cat([targets, samples])
        R = (h @ model.out_weight[columns].t() + model.out_bias[columns].view(1, -1)).double()
        if loss != "cross-entropy":
            R = torch.where(R > 0, R, torch.exp(R) - 1)  # ELU(1)
        per_row = reference_losses(R.tolist(), bpreg=model.bpreg)[loss]
        assert loss_value.item() == pytest.approx(sum(per_row) / model.batch_size, rel=1e-5)
    finally:
        model.loss_name = saved
        model.train()


def test_cross_entropy_logq_correction(slice_setup):
    _, _, model, _ = slice_setup
    saved = model.loss_name, model.logq
    model.loss_name, model.logq = "cross-entropy", 0.5
    try:
        R = torch.randn(3, 7, dtype=torch.float64)
        log_q = torch.randn(7, dtype=torch.float64)
        expected = reference_losses((R - 0.5 * log_q).tolist(), 0.0)["cross-entropy"]
        assert model.session_loss(R, log_q).tolist() == pytest.approx(expected)
    finally:
        model.loss_name, model.logq = saved


# -- sampler and optimiser -----------------------------------------------------------------
def test_sampler_draws_proportional_to_count_to_the_alpha():
    counts = torch.tensor([0, 1, 4, 9, 16, 100, 0, 50])
    sampler = PopularitySampler(counts, alpha=0.5, n_sample=1000, cache_size=20_000,
                                generator=torch.Generator().manual_seed(0))
    draws = torch.cat([sampler.sample() for _ in range(100)])  # 5 refills of the cache
    freq = torch.bincount(draws, minlength=len(counts)).double() / len(draws)
    expected = counts.double() ** 0.5 / (counts.double() ** 0.5).sum()
    assert freq[0] == 0 and freq[6] == 0
    assert torch.allclose(freq, expected, atol=0.005)
    assert sampler.sample().shape == (1000,)


def test_adagrad_momentum_dense_step_by_hand():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0], dtype=torch.float64))
    opt = AdagradM([p], lr=0.1, momentum=0.5, eps=1e-6)
    g1, g2 = [0.5, 1.0], [-1.0, 0.5]
    expected, acc, v = [1.0, -2.0], [0.0, 0.0], [0.0, 0.0]
    for g in (g1, g2):
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        for i in range(2):
            acc[i] += g[i] ** 2
            v[i] = 0.5 * v[i] - 0.1 * g[i] / math.sqrt(acc[i] + 1e-6)
            expected[i] += v[i]
    assert p.tolist() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("sync_free", [False, True], ids=["coalesced (CPU)", "sync-free (GPU)"])
def test_adagrad_momentum_sparse_rows_are_lazy(sync_free):
    emb = torch.nn.Embedding(4, 1, sparse=True).double()
    with torch.no_grad():
        emb.weight.copy_(torch.tensor([[0.0], [1.0], [2.0], [3.0]]))
    opt = AdagradM(emb.parameters(), lr=0.1, momentum=0.5, eps=1e-6, sync_free=sync_free)
    # step 1: row 1 twice (gradients 1 + 2 = 3: summed before squaring), row 3 once (-1)
    emb(torch.tensor([1, 1, 3])).mul(torch.tensor([[1.0], [2.0], [-1.0]], dtype=torch.float64)).sum().backward()
    opt.step()
    opt.zero_grad()
    # step 2: row 3 only (gradient 2); row 1 keeps its value and its momentum
    emb(torch.tensor([3])).mul(2.0).sum().backward()
    opt.step()
    v1 = -0.1 * 3 / math.sqrt(9 + 1e-6)
    v3 = -0.1 * -1 / math.sqrt(1 + 1e-6)
    v3 = 0.5 * v3 - 0.1 * 2 / math.sqrt(1 + 4 + 1e-6)
    w = emb.weight.detach().view(-1).tolist()
    assert w == pytest.approx([0.0, 1.0 + v1, 2.0, 3.0 + (-0.1 * -1 / math.sqrt(1 + 1e-6)) + v3], rel=1e-12)
    assert opt.state[emb.weight]["mom"].view(-1).tolist() == pytest.approx([0.0, v1, 0.0, v3], rel=1e-12)


def test_rows_summed_in_place_by_hand():
    rows, values = torch.tensor([5, 2, 5, 7, 2, 5]), torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    distinct, summed, once = rows_summed_in_place(rows, values)
    assert distinct.tolist() == [2, 5, 7, 7, 7, 7]  # 3 distinct rows, then the last one repeated
    assert summed.view(-1).tolist() == [7.0, 10.0, 4.0, 4.0, 4.0, 4.0]
    assert once.view(-1).tolist() == [1, 1, 1, 0, 0, 0]
    empty = rows_summed_in_place(rows[:0], values[:0])
    assert len(empty[0]) == 0 and empty[2].shape == (0, 1)


def test_the_sync_free_sparse_step_is_the_coalescing_one():
    """Random steps of repeated rows on two copies of a table: the same parameters and
    optimiser state, whichever way the repeated rows are summed."""
    gen = torch.Generator().manual_seed(0)
    start = torch.randn(50, 8, generator=gen, dtype=torch.float64)
    tables = [torch.nn.Parameter(start.clone()) for _ in range(2)]
    opts = [AdagradM([t], lr=0.05, momentum=0.3, sync_free=free) for t, free in zip(tables, (False, True))]
    for _ in range(6):
        rows = torch.randint(0, 50, (40,), generator=gen)  # many repeats
        values = torch.randn(40, 8, generator=gen, dtype=torch.float64)
        for table, opt in zip(tables, opts):
            table.grad = torch.sparse_coo_tensor(rows.view(1, -1), values, table.shape, check_invariants=True)
            opt.step()
    torch.testing.assert_close(tables[1], tables[0], rtol=1e-12, atol=1e-12)
    for key in ("acc", "mom"):
        torch.testing.assert_close(opts[1].state[tables[1]][key], opts[0].state[tables[0]][key], rtol=1e-12, atol=1e-12)


def test_the_sampler_cache_lives_on_its_device():
    counts = torch.tensor([0, 3, 1, 5])
    here = PopularitySampler(counts, 0.5, n_sample=4, cache_size=8, generator=torch.Generator().manual_seed(1))
    there = PopularitySampler(counts, 0.5, n_sample=4, cache_size=8, generator=torch.Generator().manual_seed(1),
                              device="meta")
    assert here.sample().device.type == "cpu" and there.sample().device.type == "meta"


# -- whole sequences ---------------------------------------------------------------------------
def model_variant(setup, **changes):
    """A fresh model on the same config with some settings changed."""
    config, splits, _, _ = setup
    saved = {k: config[k] for k in changes}
    try:
        for k, v in changes.items():
            config[k] = v
        torch.manual_seed(0)
        return type(setup[2])(config, splits.train)
    finally:
        for k, v in saved.items():
            config[k] = v


@pytest.mark.parametrize("embedding", ["constrained", "separate", "one-hot"])
def test_per_position_loss_equals_the_loss_over_prefix_rows(slice_setup, embedding):
    """Causal GRU: the loss at every position of whole sessions (one padded batch) is the
    loss over the explicit prefix rows, each run from a zero state (full-softmax CE)."""
    _, splits, _, _ = slice_setup
    model = model_variant(slice_setup, layers=[16, 12], constrained_embedding=embedding == "constrained",
                          embedding=8 if embedding == "separate" else 0)
    model.eval()
    with torch.no_grad():  # sharper scores: an untrained model's loss is ~log(n_items) at every position
        model.out_weight.mul_(20)
        model.known_items[1:] = True  # the training loss is over every item: score every item too
    whole = whole_sequence_rows(splits.train).inter_feat
    short = torch.nonzero(whole["item_length"] < 10).view(-1)[:40]  # no truncated windows
    whole = whole[short]
    sessions = set(whole["session_id"].tolist())
    prefixes = splits.train.inter_feat
    prefixes = prefixes[torch.as_tensor([s in sessions for s in prefixes["session_id"].tolist()])]
    n_positions = int(whole["item_length"].sum())
    assert len(prefixes) == n_positions > len(whole)
    with torch.no_grad():
        per_position = model.calculate_loss(whole).item() * n_positions
        scores = model.full_sort_predict(prefixes)
        prefix_loss = -torch.log_softmax(scores, 1).gather(1, prefixes["item_id"].view(-1, 1)).sum().item()
        assert model.predict(prefixes).tolist() == pytest.approx(
            scores.gather(1, prefixes["item_id"].view(-1, 1)).view(-1).tolist(), rel=1e-5, abs=1e-6)
    assert per_position == pytest.approx(prefix_loss, rel=1e-5)
    # RecBole's own training path (calculate_loss, backward, our optimiser) runs too
    model.train()
    optimizer = AdagradM(model.parameters(), lr=0.05, momentum=0.1)
    model.calculate_loss(whole).backward()
    optimizer.step()


def test_session_parallel_training_for_every_input_embedding(slice_setup):
    _, _, _, trainer = slice_setup
    for embedding in ("separate", "one-hot"):
        model = model_variant(slice_setup, layers=[16, 12], constrained_embedding=False,
                              embedding=8 if embedding == "separate" else 0, dropout_p_embed=0.2,
                              dropout_p_hidden=0.2)
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        saved = trainer.model, trainer.optimizer
        trainer.model, trainer.optimizer = model, AdagradM(model.parameters(), lr=0.05, momentum=0.1)
        trainer._prepared_for = None
        try:
            loss = trainer.train_sessions(*flat(SESSIONS))
        finally:
            trainer.model, trainer.optimizer = saved
            trainer._prepared_for = None
        assert math.isfinite(loss)
        changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
        assert changed == set(before), (embedding, set(before) - changed)


# -- training on real data ------------------------------------------------------------------------
def pop_metrics(splits):
    """POP: training counts as scores, ranked by the one evaluator's functions."""
    items, _ = sessions_from_rows(whole_sequence_rows(splits.train))
    counts = torch.bincount(torch.as_tensor(items), minlength=splits.dataset.item_num).double()
    test = splits.test.inter_feat
    scores = counts.view(1, -1).repeat(len(test), 1)
    scores[:, 0] = -torch.inf
    return metrics_from_ranks(target_ranks(scores, test["item_id"]).numpy())


def test_training_beats_pop_and_is_reproducible(diginetica_slice, slice_setup, tmp_path):
    from bench.runner import run_once

    root, name = diginetica_slice
    overrides = {"layers": [64], "n_sample": 256, "epochs": 2, "train_batch_size": 32,
                 "sample_cache_size": 100_000}
    first = run_once("gru4rec", name, 0, tmp_path / "a", overrides, data_root=root)
    second = run_once("gru4rec", name, 0, tmp_path / "b", overrides, data_root=root)
    assert first.metrics == second.metrics
    assert np.array_equal(first.ranks["test_full"], second.ranks["test_full"])
    ours, pop = first.metrics["test"]["full"], pop_metrics(slice_setup[1])
    assert ours["recall@20"] > 3 * pop["recall@20"] and ours["recall@20"] > 0.05
    assert ours["mrr@20"] > 3 * pop["mrr@20"]
    assert first.curve[1]["train_loss"] < first.curve[0]["train_loss"]

"""``batch_unit: iid_targets``: batches of targets drawn i.i.d. from every prefix, the rows
that hold them encoded once (bench.batching.IIDTargetBatchLoader), on real Diginetica rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import bench  # noqa: F401
from bench.batching import IIDTargetBatchLoader
from bench.config_keys import common_keys
from bench.data import load_splits, make_config
from bench.registry import resolve_model
from bench.runner import build_model, train_loader


@pytest.fixture(scope="module")
def setup(diginetica_slice):
    root, name = diginetica_slice

    def build(model="narm", **overrides):
        spec = resolve_model(model)
        config = make_config(spec, name, {"device": "cpu", "use_gpu": False, "batch_unit": "iid_targets",
                                          **overrides}, root)
        splits = load_splits(config, root)
        return spec, config, splits

    return build


def _targets(batch, splits):
    """Every (session token, history tuple, target) the batch puts a loss on."""
    ds = splits.dataset
    out = []
    for sid, seq, length, last, mask in zip(batch["session_id"], batch["item_id_list"], batch["item_length"],
                                            batch["item_id"], batch["loss_mask"]):
        full = seq[:length].tolist() + [int(last)]
        for p in np.flatnonzero(mask.numpy()):
            assert p < length
            out.append((int(sid), tuple(full[:p + 1]), full[p + 1]))
    return out


def test_an_epoch_holds_every_prefix_row_once_in_batches_of_exactly_the_budget(setup):
    spec, config, splits = setup(train_batch_size=100)
    loader = train_loader(spec, config, splits)
    assert isinstance(loader, IIDTargetBatchLoader)
    train = splits.train.inter_feat
    expected = sorted((int(s), tuple(seq[:n].tolist()), int(t)) for s, seq, n, t in
                      zip(train["session_id"], train["item_id_list"], train["item_length"], train["item_id"]))
    seen, sizes = [], []
    for batch in loader:
        targets = _targets(batch, splits)
        sizes.append(len(targets))
        seen += targets
        assert len(set(batch["session_id"].tolist())) == len(batch)  # a session is encoded once per batch
    assert sorted(seen) == expected  # RecBole's prefix rows, each once
    assert len(sizes) == len(loader) == -(-len(expected) // 100)
    assert all(s == 100 for s in sizes[:-1])


def test_batches_are_shuffled_i_i_d_and_reproducible(setup):
    spec, config, splits = setup(train_batch_size=64)
    first = [b["session_id"].tolist() for b in train_loader(spec, config, splits)]
    again = [b["session_id"].tolist() for b in train_loader(spec, config, splits)]
    assert first == again  # the same seed draws the same epoch
    # i.i.d. over prefixes: a batch's 64 targets come from ~64 sessions (not ~15 whole sessions)
    assert np.mean([len(b) for b in first[:-1]]) > 50


def test_the_loss_is_the_mean_prefix_row_cross_entropy(setup):
    spec, config, splits = setup(train_batch_size=50, dropout_probs=[0.0, 0.0])
    model = build_model(spec, config, splits)
    model.eval()
    batch = next(iter(train_loader(spec, config, splits)))
    loss = model.calculate_loss(batch)
    # the same targets as RecBole's prefix rows, scored one row at a time
    rows = _targets(batch, splits)
    width = config["MAX_ITEM_LIST_LENGTH"]
    seq = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (_, history, _) in enumerate(rows):
        seq[i, :len(history)] = torch.as_tensor(history)
    lengths = torch.as_tensor([len(h) for _, h, _ in rows])
    scores = model.full_sort_predict(_interaction(model, seq, lengths))
    target = torch.as_tensor([t for *_, t in rows])
    reference = F.cross_entropy(scores[:, 1:], target - 1)  # item 0 (padding) is never a candidate
    assert float(loss.detach()) == pytest.approx(float(reference.detach()), rel=1e-5)


def _interaction(model, seq, lengths):
    from recbole.data.interaction import Interaction

    return Interaction({model.ITEM_SEQ: seq, model.ITEM_SEQ_LEN: lengths})


def test_narm_batch_unit_auto_is_iid_on_sessions_and_whole_sequences_on_leave_one_out(diginetica_slice, ml100k):
    spec = resolve_model("narm")
    units = {}
    for root, name in (diginetica_slice, ml100k):
        config = make_config(spec, name, {"device": "cpu", "use_gpu": False}, root)
        units[name] = config["batch_unit"]
    assert units == {diginetica_slice[1]: "iid_targets", ml100k[1]: "targets"}


def _groups(order: np.ndarray, target_row: np.ndarray, size: int) -> list[tuple[int, int]]:
    """(row, targets) of each run of one row's targets in ``order``, runs cut at ``size``."""
    runs, row, length = [], None, 0
    for r in target_row[order]:
        if r == row and length < size:
            length += 1
            continue
        if row is not None:
            runs.append((int(row), length))
        row, length = r, 1
    runs.append((int(row), length))
    return runs


def test_targets_per_row_cuts_each_rows_shuffled_targets_into_groups_in_random_order():
    from types import SimpleNamespace

    # rows 0, 1, 2 with 3, 2 and 1 targets; 2 a row: groups (0: 2 + 1), (1: 2), (2: 1)
    target_row = np.array([0, 0, 0, 1, 1, 2])
    orders = []
    for seed in range(20):
        loader = SimpleNamespace(target_row=target_row, group=2, generator=torch.Generator().manual_seed(seed))
        order = IIDTargetBatchLoader.grouped_order(loader)
        assert sorted(order.tolist()) == list(range(6))  # every target once
        assert sorted(_groups(order, target_row, 2)) == [(0, 1), (0, 2), (1, 2), (2, 1)]
        orders.append(tuple(order.tolist()))
    assert len(set(orders)) > 5  # the groups' order and the targets within a row are drawn


def test_targets_per_row_keeps_every_prefix_once_in_exact_batches_from_fewer_rows(setup):
    spec, config, splits = setup(train_batch_size=64, targets_per_row=4)
    train = splits.train.inter_feat
    expected = sorted((int(s), tuple(seq[:n].tolist()), int(t)) for s, seq, n, t in
                      zip(train["session_id"], train["item_id_list"], train["item_length"], train["item_id"]))
    seen, sizes, rows = [], [], []
    for batch in train_loader(spec, config, splits):
        targets = _targets(batch, splits)
        seen += targets
        sizes.append(len(targets))
        rows.append(len(batch))
    assert sorted(seen) == expected
    assert all(s == 64 for s in sizes[:-1])
    plain = [len(b) for b in train_loader(*setup(train_batch_size=64)[:2], splits)]
    assert np.mean(rows[:-1]) < 0.8 * np.mean(plain[:-1])  # a row gives up to 4 targets to a batch
    assert "targets_per_row" in common_keys()  # a suite may set it
    spec, config, splits = setup(train_batch_size=64, targets_per_row=0)
    with pytest.raises(ValueError, match="targets_per_row must be at least 1"):
        train_loader(spec, config, splits)

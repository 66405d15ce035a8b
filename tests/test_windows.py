"""Whole-sequence rows of long histories (bench.data.whole_sequence_rows) on real MovieLens-100k:
every target is trained exactly once, with at least ``max_len - stride + 1`` items before it."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bench  # noqa: F401
from bench.batching import TargetBatchLoader
from bench.data import LOSS_START_FIELD, load_splits, make_config, whole_sequence_rows, window_stride
from bench.registry import resolve_model
from bench.runner import train_loader
from custom_models.narm import BenchNARM
from custom_models.sasrec import BenchSASRec
from training_checks import assert_whole_rows_loss_is_prefix_rows_loss


@pytest.fixture(scope="module")
def ml100k_narm(ml100k):
    root, name = ml100k
    spec = resolve_model("narm")
    config = make_config(spec, name, {"device": "cpu", "use_gpu": False}, root)
    return spec, config, load_splits(config, root)


@pytest.mark.parametrize("stride", [50, 25, 7, 1])
def test_every_target_is_trained_once_with_at_least_max_len_minus_stride_plus_one_items_before_it(ml100k_narm, stride):
    _, config, splits = ml100k_narm
    train = splits.train.inter_feat
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    uid, seqs = train["user_id"].numpy(), train["item_id_list"].numpy()
    lengths, targets = train["item_length"].numpy(), train["item_id"].numpy()
    assert lengths.max() == max_len and np.bincount(uid).max() > 3 * max_len  # long histories are windowed

    rows = whole_sequence_rows(splits.train, stride).inter_feat
    # full history of each user, from its prefix rows: the first row's item, then every target
    history = {}
    for i in np.flatnonzero(np.r_[True, uid[1:] != uid[:-1]]):
        user = uid[i]
        history[user] = [int(seqs[i, 0])] + targets[uid == user].tolist()
    seen = {}  # (user, index of the target in its history) -> items before it in the window
    for seq, length, start, target, user in zip(rows["item_id_list"].numpy(), rows["item_length"].numpy(),
                                                rows[LOSS_START_FIELD].numpy(), rows["item_id"].numpy(),
                                                rows["user_id"].numpy()):
        window = seq[:length].tolist() + [int(target)]
        full = history[user]
        # where the window sits in the history: it ends at the row's target
        end = next(e for e in range(len(full), 0, -1) if full[e - length - 1:e] == window)
        assert 0 <= start < length
        for position in range(start, length):
            key = (user, end - length + position)  # index of the target of this position
            assert key not in seen, "a target trained twice"
            seen[key] = position + 1
    assert len(seen) == len(train)  # every prefix row's target, each once
    for (user, index), before in seen.items():
        assert before >= min(index, max_len - stride + 1)
    if stride == 1:  # exactly RecBole's prefix rows: every target with min(index, max_len) items before it
        assert all(before == min(index, max_len) for (user, index), before in seen.items())


def test_a_stride_outside_one_to_max_len_is_refused(ml100k_narm):
    _, _, splits = ml100k_narm
    for stride in (0, 51, 0.0, 1.5, -0.5, True, "25"):
        with pytest.raises(ValueError, match="train_stride"):
            whole_sequence_rows(splits.train, stride)


@pytest.mark.parametrize("fraction, items", [(1.0, 50), (0.5, 25), (0.25, 12), (0.001, 1)])
def test_a_float_stride_is_that_fraction_of_max_len(ml100k_narm, fraction, items):
    _, _, splits = ml100k_narm
    as_fraction = whole_sequence_rows(splits.train, fraction).inter_feat
    as_items = whole_sequence_rows(splits.train, items).inter_feat
    for field in ("user_id", "item_id", "item_length", LOSS_START_FIELD):
        assert torch.equal(as_fraction[field], as_items[field])
    assert window_stride(fraction, 200) == max(1, round(fraction * 200))


@pytest.mark.parametrize("model_class", [BenchNARM, BenchSASRec])
def test_with_stride_one_the_per_position_loss_is_the_loss_over_recbole_prefix_rows(ml100k_narm, model_class):
    """Long histories too: stride 1 keeps each prefix row and its last position's loss only."""
    _, config, splits = ml100k_narm
    sasrec = {"hidden_size": 16, "n_layers": 2, "n_heads": 1, "dropout_prob": 0.2, "loss_type": "CE"}
    saved = {key: config[key] for key in sasrec}
    if model_class is BenchSASRec:
        for key, value in sasrec.items():
            config[key] = value
    try:
        torch.manual_seed(0)
        model = model_class(config, splits.train).eval()
    finally:
        for key, value in saved.items():
            config[key] = value
    train = splits.train.inter_feat
    users = torch.isin(train["user_id"], torch.unique(train["user_id"])[:3])
    prefix_rows = train[users.nonzero().squeeze(1)]
    assert int(prefix_rows["item_length"].max()) == 50 and len(prefix_rows) > 100
    windows = whole_sequence_rows(splits.train.copy(prefix_rows), stride=1).inter_feat
    assert_whole_rows_loss_is_prefix_rows_loss(model, windows, prefix_rows)


def test_target_batches_count_only_the_positions_with_a_loss(ml100k_narm):
    spec, config, splits = ml100k_narm
    config["train_stride"], config["batch_unit"] = 25, "targets"
    try:
        loader = train_loader(spec, config, splits)
    finally:
        config["train_stride"], config["batch_unit"] = None, "iid_targets"
    assert isinstance(loader, TargetBatchLoader)
    assert int(loader.row_targets.sum()) == len(splits.train)
    sizes = [int((b["item_length"] - b[LOSS_START_FIELD]).sum()) for b in loader]
    assert sum(sizes) == len(splits.train)
    assert all(512 - 50 < s < 512 + 50 for s in sizes[:-1])


def test_iid_batches_over_windows_hold_every_target_once(ml100k_narm):
    """With overlapping windows, ``iid_targets`` draws only the positions with a loss."""
    spec, config, splits = ml100k_narm
    config["train_stride"] = 25
    try:
        loader = train_loader(spec, config, splits)
    finally:
        config["train_stride"] = None
    assert len(loader.target_row) == len(splits.train)
    assert len(loader) == -(-len(splits.train) // 512)
    assert sum(int(b["loss_mask"].sum()) for b in loader) == len(splits.train)

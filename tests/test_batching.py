"""Batches of whole sequences sized by targets (bench.batching), on real MovieLens-100k rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import bench  # noqa: F401
from bench.batching import TargetBatchLoader, target_batches
from bench.data import load_splits, make_config
from bench.registry import resolve_model
from bench.runner import train_loader


def test_rows_go_to_the_batch_where_their_first_target_falls():
    targets = np.array([3, 5, 2, 7, 1, 4])
    batches = target_batches(targets, np.arange(6), budget=6)
    # targets before each row: 0, 3, 8, 10, 17, 18 -> batches 0, 0, 1, 1, 2, 3
    assert [b.tolist() for b in batches] == [[0, 1], [2, 3], [4], [5]]
    shuffled = np.array([5, 0, 3, 1, 4, 2])
    assert np.array_equal(np.concatenate(target_batches(targets, shuffled, 6)), shuffled)


def test_budget_larger_than_everything_is_one_batch_and_budget_one_is_a_row_each():
    targets = np.array([3, 5, 2])
    assert len(target_batches(targets, np.arange(3), 100)) == 1
    assert [b.tolist() for b in target_batches(targets, np.arange(3), 1)] == [[0], [1], [2]]


@pytest.fixture(scope="module")
def ml100k_setup(ml100k):
    root, name = ml100k
    spec = resolve_model("narm")

    def build(**overrides):
        config = make_config(spec, name, {"device": "cpu", "use_gpu": False, **overrides}, root)
        return config, load_splits(config, root)

    return spec, build


def test_an_epoch_covers_every_target_once_in_batches_of_about_the_budget(ml100k_setup):
    spec, build = ml100k_setup
    config, splits = build(train_batch_size=512, batch_unit="targets")
    loader = train_loader(spec, config, splits)
    assert isinstance(loader, TargetBatchLoader)
    max_len = config["MAX_ITEM_LIST_LENGTH"]
    total = int(loader.row_targets.sum())
    assert total == len(splits.train)  # one target per prefix row RecBole would train on

    steps = len(loader)
    sizes, seen = [], []
    for batch in loader:
        sizes.append(int(batch["item_length"].sum()))
        seen.append(batch["user_id"])
    assert len(sizes) == steps
    assert steps in (-(-total // 512) - 1, -(-total // 512))  # RecBole's step count at batch 512, or one fewer
    assert sum(sizes) == total
    assert all(512 - max_len < s < 512 + max_len for s in sizes[:-1])
    # every whole-sequence row exactly once
    rows = torch.cat(seen)
    assert len(rows) == len(loader.row_targets)


def test_same_seed_same_batches_and_epochs_differ(ml100k_setup):
    spec, build = ml100k_setup
    config, splits = build(train_batch_size=256, batch_unit="targets")

    def epochs(loader, n=2):
        return [[b["item_length"].sum().item() for b in loader] for _ in range(n)]

    first = epochs(train_loader(spec, config, splits))
    again = epochs(train_loader(spec, config, splits))
    assert first == again
    assert first[0] != first[1]  # reshuffled every epoch


def test_sequences_unit_is_recbole_loader_and_bad_unit_is_refused(ml100k_setup):
    spec, build = ml100k_setup
    config, splits = build(train_batch_size=64, batch_unit="sequences")
    loader = train_loader(spec, config, splits)
    assert not isinstance(loader, TargetBatchLoader)
    assert len(next(iter(loader))["item_length"]) == 64
    config, splits = build(batch_unit="prefixes")
    with pytest.raises(ValueError, match="batch_unit"):
        train_loader(spec, config, splits)

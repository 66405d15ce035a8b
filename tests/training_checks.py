"""Shared checks of the trainable models' tests: trained twice with one seed, then POP;
the loss on whole-sequence rows against the loss on prefix rows; a process killed
after an epoch's validation."""
from __future__ import annotations

import numpy as np


class Killed(Exception):
    """Stands for the process dying (the session's end, a kill -9) in a run."""


def killed_at_epoch(epoch: int):
    """An ``on_epoch`` callback that kills the run after ``epoch``'s validation: before
    that epoch's progress is saved, so the epoch is lost with the process."""
    def on_epoch(epoch_idx, score):
        if epoch_idx == epoch:
            raise Killed
    return on_epoch


def train_twice_and_pop(model: str, root, name: str, overrides: dict, tmp_path):
    """Runs ``model`` twice with seed 0 (same metrics and per-case ranks, or the
    assertion fails) and POP once on the same dataset. Returns (our run, POP's full-ranking test metrics)."""
    import torch

    from bench.runner import run_once

    torch.set_num_threads(1)
    first = run_once(model, name, 0, tmp_path / "a", overrides, data_root=root)
    second = run_once(model, name, 0, tmp_path / "b", overrides, data_root=root)
    assert first.metrics == second.metrics
    np.testing.assert_array_equal(first.ranks["test_full"], second.ranks["test_full"])
    pop = run_once("pop", name, 0, tmp_path / "pop", data_root=root).metrics["test"]["full"]
    return first, pop


def assert_whole_rows_loss_is_prefix_rows_loss(model, whole_rows, prefix_rows) -> None:
    """``model.calculate_loss`` on whole-sequence rows, times the number of prefix rows,
    equals the summed full-softmax cross-entropy of ``full_sort_predict`` on those prefix
    rows (RecBole's training rows, one target each). The item embedding is scaled up
    first: an untrained model's loss is ~log(n_items) at every position, so a wrong
    target or mask would pass unnoticed."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        model.item_embedding.weight.mul_(20)
        per_position = model.calculate_loss(whole_rows) * len(prefix_rows)
        scores = model.full_sort_predict(prefix_rows)
        scores[:, 0] = -torch.inf
        prefix = F.cross_entropy(scores, prefix_rows["item_id"], reduction="sum")
    torch.testing.assert_close(per_position, prefix, rtol=1e-5, atol=1e-3)

"""Shared check of the trainable models' tests: trained twice with one seed, then POP."""
from __future__ import annotations

import numpy as np


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

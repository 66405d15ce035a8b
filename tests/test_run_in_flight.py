"""bench.benchmarks.run_in_flight: the best checkpoint of a run cut off after an epoch
scores what the run itself reports when it stops there."""
from __future__ import annotations

import pytest
import torch

from bench.benchmarks.run_in_flight import evaluate_in_flight, main
from bench.runner import run_once
from bench.training import StopTraining
from training_checks import Killed, killed_at_epoch

NARM = {"epochs": 4, "embedding_size": 16, "hidden_size": 16, "train_batch_size": 128}


def test_a_cut_off_run_scores_as_the_same_run_stopped_there(diginetica_slice, tmp_path):
    root, name = diginetica_slice
    torch.set_num_threads(1)

    def stop_after_epoch_1(epoch, score):
        if epoch == 1:
            raise StopTraining

    stopped = run_once("narm", name, 0, tmp_path / "w0", {**NARM, "device": "cpu"}, data_root=root,
                       on_epoch=stop_after_epoch_1)

    progress = tmp_path / "progress"
    with pytest.raises(Killed):
        run_once("narm", name, 0, tmp_path / "w1", {**NARM, "device": "cpu"}, data_root=root,
                 progress_dir=progress, on_epoch=killed_at_epoch(2))
    result = evaluate_in_flight("narm", name, 0, NARM, progress / "fit", root)

    # the kill came after epoch 2's validation and before its progress: the curve has
    # epochs 0 and 1, and the checkpoint is their best (epoch 2's model was lost with it)
    assert result["epochs_trained"] == 2 and result["best_epoch"] == stopped.best_epoch
    for ours, theirs in zip(result["curve"], stopped.curve[:2], strict=True):
        assert ours["valid"] == pytest.approx(theirs["valid"], rel=1e-6)
    for split in ("valid", "test"):
        assert result[split]["full"] == pytest.approx(stopped.metrics[split]["full"], rel=1e-6)
    best = stopped.curve[stopped.best_epoch]["valid"]
    assert result["valid"]["full"]["mrr@20"] == pytest.approx(best["mrr@20"], rel=1e-6)
    assert result["test"]["full"]["recall@20"] > 0


def test_without_a_run_in_flight_it_says_so(tmp_path, capsys):
    assert main(["default", "--results", str(tmp_path / "empty"), "--data-root", str(tmp_path / "atomic")]) == 1
    assert "no run of default in flight" in capsys.readouterr().err

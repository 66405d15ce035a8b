"""bench.benchmarks.gpu_check: its plan runs end to end (on the CPU, with a tiny budget),
budgets end training, and without CUDA it refuses in one line. No timing is asserted."""
from __future__ import annotations

import json

import pytest
import torch

from bench.benchmarks import gpu_check


def test_without_cuda_it_says_so_in_one_line_and_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", "unused"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("gpu_check: no CUDA device here") and err.count("\n") == 1


def test_the_check_runs_pairs_and_baselines_and_writes_its_table(diginetica_slice, tmp_path, capsys):
    data_root, name = diginetica_slice
    rc = gpu_check.main(["--device", "cpu", "--budget-seconds", "1", "--session-data", name,
                         "--data-root", str(data_root), "--models", "narm,recbole:NARM,pop", "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads((tmp_path / "gpu_check.json").read_text())
    runs = {r["label"]: r for r in out["runs"]}
    assert set(runs) == {"NARM", "NARM (RecBole)", "POP"}
    for label in ("NARM", "NARM (RecBole)"):  # a 1-second share: the budget ends training after epoch 1
        assert runs[label]["epochs"] == 1 and runs[label]["valid_metric"] == "mrr@20"
        assert runs[label]["test"]["full"]["mrr@20"] > 0
    assert runs["POP"]["epochs"] == 0 and runs["POP"]["test"]["full"]["recall@20"] > 0
    their_best = runs["NARM (RecBole)"]["curve"][0]["valid"]
    assert runs["NARM"]["recbole_best_valid"] == pytest.approx(their_best)
    ours = runs["NARM"]["curve"][0]
    reached = ours["valid"] >= their_best
    assert (runs["NARM"]["seconds_to_recbole_best"] is not None) == reached
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| NARM (RecBole) | digi-slice | 1 |" in table and "| POP | digi-slice | 0 |" in table


def test_seconds_to_a_score_add_training_and_validation_until_it_is_reached():
    run = {"curve": [{"train_seconds": 2.0, "valid_seconds": 1.0, "valid": 0.1},
                     {"train_seconds": 2.0, "valid_seconds": 1.0, "valid": 0.3},
                     {"train_seconds": 2.0, "valid_seconds": 1.0, "valid": 0.2}]}
    assert gpu_check.seconds_to(run, 0.1) == 3.0
    assert gpu_check.seconds_to(run, 0.25) == 6.0
    assert gpu_check.seconds_to(run, 0.31) is None

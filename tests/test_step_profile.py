"""bench.benchmarks.step_profile: it profiles ours and RecBole's models on real batches
(on the CPU here), writes its table, and without CUDA it refuses in one line. No timing
is asserted."""
from __future__ import annotations

import json

import torch

from bench.benchmarks import step_profile


def test_without_cuda_it_says_so_in_one_line_and_exits_1(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert step_profile.main(["--out", "unused"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("step_profile: no CUDA device here") and err.count("\n") == 1


def test_it_profiles_ours_and_recboles_models_and_writes_its_table(diginetica_slice, tmp_path):
    data_root, name = diginetica_slice
    rc = step_profile.main(["--device", "cpu", "--steps", "2", "--warmup", "1", "--profile-steps", "1",
                            "--session-data", name, "--data-root", str(data_root),
                            "--models", "narm,recbole:NARM,gru4rec", "--out", str(tmp_path)])
    assert rc == 0
    out = json.loads((tmp_path / "step_profile.json").read_text())
    runs = {r["label"]: r for r in out["runs"]}
    assert set(runs) == {"NARM", "NARM (RecBole)", "GRU4Rec"}
    for run in runs.values():
        assert run["step_ms"] > 0 and run["steps_per_epoch"] > 0 and run["top_operators"]
        assert run["epoch_estimate_s"] == (run["step_ms"] + run["host_batch_ms"]) * run["steps_per_epoch"] / 1000
    assert int(runs["NARM"]["batch"].split("x")[0]) <= 512  # rows holding 512 i.i.d. targets
    assert runs["NARM"]["host_batch_ms"] > 0 and runs["GRU4Rec"]["batch"] == "128 lanes"
    table = (tmp_path / "step_profile.md").read_text()
    assert "| NARM (RecBole) | digi-slice |" in table and "## GRU4Rec: top operators by self CPU time" in table

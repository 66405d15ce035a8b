"""Epoch-level resume: a run killed after epoch k goes on from epoch k + 1 and ends as
an uninterrupted run ends (same thread count, CPU), for the fit and for the refit."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.execution import _usable_progress_dir
from bench.runner import run_once
from bench.store import ResultStore, RunKey
from bench.training import HarnessTrainer
from custom_models.gru4rec_trainer import GRU4RecTrainer, PopularitySampler
from training_checks import Killed, killed_at_epoch

NARM = {"device": "cpu", "epochs": 3, "embedding_size": 16, "hidden_size": 16, "train_batch_size": 128}
GRU4REC = {"device": "cpu", "epochs": 3, "layers": [32], "n_sample": 64, "train_batch_size": 32,
           "sample_cache_size": 640, "refit": True}  # a cache of 10 chunks: refilled within an epoch


def _same_run(a, b):
    assert [c["epoch"] for c in a.curve] == [c["epoch"] for c in b.curve]
    for x, y in zip(a.curve, b.curve):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-6)
        assert x["valid"] == pytest.approx(y["valid"], rel=1e-6)
    assert a.best_epoch == b.best_epoch
    for x, y in zip(a.refit_curve, b.refit_curve):
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-6)
    np.testing.assert_array_equal(a.ranks["test_full"], b.ranks["test_full"])


def test_a_fit_killed_after_an_epoch_resumes_there_and_ends_as_an_uninterrupted_one(diginetica_slice, tmp_path):
    root, name = diginetica_slice
    torch.set_num_threads(1)
    whole = run_once("narm", name, 0, tmp_path / "w0", NARM, data_root=root)
    # killed right after an epoch that was a new best: RecBole saved that model before
    # our progress was saved, the case where a best model could outlive its epoch
    valid_mrr = [c["valid"]["mrr@20"] for c in whole.curve]
    kill_at = next((k for k in range(1, len(valid_mrr)) if valid_mrr[k] > max(valid_mrr[:k])), None)
    assert kill_at is not None, "this check needs an epoch after the first to be a new best"

    progress = tmp_path / "progress"
    with pytest.raises(Killed):
        run_once("narm", name, 0, tmp_path / "w1", NARM, data_root=root, progress_dir=progress,
                 on_epoch=killed_at_epoch(kill_at))
    saved = torch.load(progress / "fit" / "progress.pth", weights_only=False)
    assert saved["epoch"] == kill_at - 1
    # the best model kept is one the saved progress holds, not the lost epoch's, which a
    # resume that is not bit-reproducible would train differently
    assert torch.load(progress / "fit" / "best.pth", weights_only=True)["epoch"] <= kill_at - 1
    epochs_seen = []
    resumed = run_once("narm", name, 0, tmp_path / "w2", NARM, data_root=root, progress_dir=progress,
                       on_epoch=lambda epoch, score: epochs_seen.append(epoch))
    # the killed epoch was lost with the process and is trained again
    assert resumed.resumed == {"fit": kill_at} and epochs_seen == list(range(kill_at, NARM["epochs"]))
    _same_run(resumed, whole)
    assert resumed.train_seconds > sum(c["train_seconds"] for c in resumed.curve[kill_at:])  # earlier time kept
    assert not (progress / "fit" / "best.pth.pending").exists()


def test_an_ended_fit_is_not_trained_again_and_a_killed_refit_resumes(diginetica_slice, tmp_path, monkeypatch):
    root, name = diginetica_slice
    torch.set_num_threads(1)
    whole = run_once("gru4rec", name, 0, tmp_path / "w0", GRU4REC, data_root=root)
    assert whole.best_epoch >= 1, "the refit needs two epochs for this test"

    real = GRU4RecTrainer.train_epoch

    def dies_in_the_refit(self, train_data, epoch_idx, show_progress=False):
        if not self._validating and epoch_idx == 1:
            raise Killed
        return real(self, train_data, epoch_idx, show_progress)

    progress = tmp_path / "progress"
    monkeypatch.setattr(GRU4RecTrainer, "train_epoch", dies_in_the_refit)
    with pytest.raises(Killed):
        run_once("gru4rec", name, 0, tmp_path / "w1", GRU4REC, data_root=root, progress_dir=progress)
    monkeypatch.setattr(GRU4RecTrainer, "train_epoch", real)

    calls = []
    monkeypatch.setattr(GRU4RecTrainer, "train_epoch",
                        lambda self, *a, **k: calls.append(self._validating) or real(self, *a, **k))
    resumed = run_once("gru4rec", name, 0, tmp_path / "w2", GRU4REC, data_root=root, progress_dir=progress)
    assert resumed.resumed == {"fit": len(whole.curve), "refit": 1}
    assert calls == [False] * whole.best_epoch  # no fit epoch again; refit epochs 1..best only
    _same_run(resumed, whole)


def test_the_negative_sampler_continues_exactly_from_its_saved_position():
    counts = torch.tensor([0, 5, 1, 3, 8, 2])
    gen = torch.Generator().manual_seed(3)
    sampler = PopularitySampler(counts, 0.5, n_sample=4, cache_size=12, generator=gen)  # 3 chunks
    for _ in range(4):  # into the second cache
        sampler.sample()
    saved, saved_gen = sampler.state(), gen.get_state()
    expected = [sampler.sample().tolist() for _ in range(5)]

    gen2 = torch.Generator().manual_seed(99)
    gen2.set_state(saved_gen)
    again = PopularitySampler(counts, 0.5, n_sample=4, cache_size=12, generator=gen2)
    again.restore(saved)
    assert [again.sample().tolist() for _ in range(5)] == expected
    assert torch.equal(gen2.get_state(), gen.get_state())
    assert all(0 not in draw for draw in expected)  # count 0 is never drawn


def test_progress_folders_are_per_config_and_stale_ones_go(tmp_path):
    store = ResultStore(tmp_path / "results")
    key = RunKey("diginetica", "diginetica", "recbole:NARM", 2)
    folder = store.progress_dir(key, "abc123")
    assert folder == tmp_path / "results" / ".partial" / "diginetica" / "diginetica" / "recbole-NARM" / "seed-2" / "abc123"
    stale = folder.parent / "old999"
    (stale / "fit").mkdir(parents=True)
    (stale / "fit" / "progress.pth").write_bytes(b"x")
    assert _usable_progress_dir(str(folder)) == folder and folder.is_dir() and not stale.exists()
    assert store.records() == [] and store.suites() == []  # readers never see it
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert _usable_progress_dir(str(blocker / "sub" / "x")) is None  # cannot be written: no resume
    assert _usable_progress_dir(None) is None


def test_without_a_progress_folder_nothing_is_written(diginetica_slice, tmp_path):
    root, name = diginetica_slice
    result = run_once("narm", name, 0, tmp_path / "w", {**NARM, "epochs": 1}, data_root=root)
    assert result.resumed == {}
    assert not list(Path(tmp_path).rglob("progress.pth"))
    assert HarnessTrainer.progress_state(object.__new__(HarnessTrainer)) == {}


def test_a_stored_runs_progress_goes_with_its_empty_parents_only(tmp_path):
    from bench.execution import _discard_progress

    store = ResultStore(tmp_path / "results")
    mine = store.progress_dir(RunKey("s", "d", "narm", 0), "aaa")
    other = store.progress_dir(RunKey("s", "d", "sasrec", 0), "bbb")
    for folder in (mine, other):
        (folder / "fit").mkdir(parents=True)
    _discard_progress(mine)
    assert not mine.parent.exists() and other.is_dir()  # narm/seed-0 gone, sasrec's kept
    _discard_progress(other)
    assert not (tmp_path / "results" / ".partial").exists() and (tmp_path / "results").is_dir()


def test_a_stored_fit_stage_leaves_the_refits_progress(tmp_path):
    from bench.execution import _discard_progress, stored_progress

    store = ResultStore(tmp_path / "results")
    folder = store.progress_dir(RunKey("s", "d", "narm", 0), "aaa")
    for stage in ("fit", "refit"):
        (folder / stage).mkdir(parents=True)
    assert stored_progress(folder, "whole") == folder
    _discard_progress(stored_progress(folder, "fit"))  # bench run --fit-only stored the fit
    assert not (folder / "fit").exists() and (folder / "refit").is_dir()  # a killed refit resumes
    _discard_progress(stored_progress(folder, "whole"))
    assert not (tmp_path / "results" / ".partial").exists()

"""The step schedule (``lr_step``, ``lr_gamma``): the public PyTorch NARM cuts its
learning rate 10x at epoch 80. Hand-computed rates; a fit, a resumed fit and a refit
follow it from the epoch index alone."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from bench.runner import run_once
from bench.training import HarnessTrainer, step_schedule
from training_checks import Killed, killed_at_epoch

NARM = {"device": "cpu", "epochs": 3, "embedding_size": 16, "hidden_size": 16, "train_batch_size": 128}


def schedule_of(**keys):
    return step_schedule({"lr_step": keys.get("lr_step"), "lr_gamma": keys.get("lr_gamma")})


def test_the_rate_of_each_epoch_by_hand():
    trainer = SimpleNamespace(learning_rate=0.001)
    trainer.lr_step, trainer.lr_gamma = schedule_of(lr_step=80)  # gamma 0.1 when not given
    rate = lambda epoch: HarnessTrainer.learning_rate_at(trainer, epoch)  # noqa: E731
    assert rate(0) == rate(79) == 0.001
    assert rate(80) == pytest.approx(0.0001) and rate(159) == pytest.approx(0.0001)
    assert rate(160) == pytest.approx(0.00001)
    trainer.lr_step, trainer.lr_gamma = schedule_of(lr_step=2, lr_gamma=0.5)
    assert [rate(e) for e in range(5)] == pytest.approx([0.001, 0.001, 0.0005, 0.0005, 0.00025])
    trainer.lr_step, trainer.lr_gamma = schedule_of()
    assert rate(1000) == 0.001  # no schedule: a constant rate


@pytest.mark.parametrize("keys, message", [
    ({"lr_gamma": 0.5}, "lr_gamma needs lr_step"),
    ({"lr_step": 0}, "lr_step must be"), ({"lr_step": 2.5}, "lr_step must be"), ({"lr_step": True}, "lr_step must be"),
    ({"lr_step": 5, "lr_gamma": 0}, "lr_gamma must be"), ({"lr_step": 5, "lr_gamma": 1.5}, "lr_gamma must be"),
    ({"lr_step": 5, "lr_gamma": "0.1"}, "lr_gamma must be"),
])
def test_bad_schedules_say_what_is_wrong(keys, message):
    with pytest.raises(ValueError, match=message):
        schedule_of(**keys)


def test_a_fit_and_its_refit_train_each_epoch_at_the_scheduled_rate(diginetica_slice, tmp_path, monkeypatch):
    root, name = diginetica_slice
    torch.set_num_threads(1)
    used = []
    real = HarnessTrainer.train_epoch

    def spy(self, train_data, epoch_idx, show_progress=False):
        used.append((self._validating, epoch_idx, [g["lr"] for g in self.optimizer.param_groups]))
        return real(self, train_data, epoch_idx, show_progress)

    monkeypatch.setattr(HarnessTrainer, "train_epoch", spy)
    result = run_once("narm", name, 0, tmp_path / "w", {**NARM, "learning_rate": 0.004, "lr_step": 1,
                                                        "lr_gamma": 0.5, "refit": True}, data_root=root)
    expected = [0.004, 0.002, 0.001]
    fit = [(epoch, rates) for validating, epoch, rates in used if validating]
    refit = [(epoch, rates) for validating, epoch, rates in used if not validating]
    assert fit == [(e, [pytest.approx(expected[e])]) for e in range(3)]
    assert [c["learning_rate"] for c in result.curve] == pytest.approx(expected)
    assert refit == [(e, [pytest.approx(expected[e])]) for e in range(result.best_epoch + 1)]
    assert [c["learning_rate"] for c in result.refit_curve] == pytest.approx(expected[:result.best_epoch + 1])


def test_a_resumed_fit_goes_on_at_its_epochs_rate(diginetica_slice, tmp_path, monkeypatch):
    root, name = diginetica_slice
    torch.set_num_threads(1)
    settings = {**NARM, "lr_step": 1, "lr_gamma": 0.5}

    with pytest.raises(Killed):
        run_once("narm", name, 0, tmp_path / "w1", settings, data_root=root, progress_dir=tmp_path / "p",
                 on_epoch=killed_at_epoch(1))
    resumed = run_once("narm", name, 0, tmp_path / "w2", settings, data_root=root, progress_dir=tmp_path / "p")
    whole = run_once("narm", name, 0, tmp_path / "w0", settings, data_root=root)
    assert resumed.resumed == {"fit": 1}
    assert [c["learning_rate"] for c in resumed.curve] == pytest.approx([0.001, 0.0005, 0.00025])
    for a, b in zip(resumed.curve, whole.curve, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)

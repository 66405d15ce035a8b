"""RecBole's trainer, with the one evaluator plugged in and every epoch recorded.

``HarnessTrainer`` is RecBole's ``Trainer`` (optimiser, early stopping, best-model
checkpoint) with these changes:

* ``evaluate`` ranks cases with :mod:`bench.evaluator` instead of RecBole's metrics,
  so validation (early stopping) and test use the same code for every model;
* each epoch's training loss, seconds and validation metrics land in ``curve``;
* subclasses change how an epoch trains by overriding ``train_epoch`` (GRU4Rec's
  session-parallel mini-batches), not RecBole's private ``_train_epoch``;
* Adam and AdamW run fused;
* autograd's anomaly detection, which importing RecBole's sequential models switches
  on (:mod:`bench.compat`), is switched off: every model trains at full speed;
* with :meth:`HarnessTrainer.keep_progress` a fit saves its state after every epoch
  and a later process resumes it there (a suite run of hours killed at epoch 10 goes
  on from epoch 11, not from 0).

**Resuming.** The progress file holds what the next epoch depends on: the model, the
optimiser, the early-stopping state (best score, epochs without improvement), the epoch
curve, the seconds spent, the random states (torch, numpy, Python, the data loader's
generator) and what a trainer adds through :meth:`HarnessTrainer.progress_state`
(GRU4Rec's generator and its negative sampler's position). It is written after every
validated epoch (every epoch of a fit without validation), atomically, so a kill leaves
the previous epoch's file. On CPU with the same thread count a resumed run trains
exactly as an uninterrupted one (tests/test_resume.py); state that is cheap to redraw
(GRU4Rec's cache of pre-drawn negatives) is drawn again from the generator state it was
first drawn from, not saved.
"""
from __future__ import annotations

import os
import random
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.compat import disable_anomaly_detection
from bench.evaluator import DEFAULT_KS, CaseSet, metrics_for, rank_cases
from recbole.trainer import Trainer


def flat_metrics(metrics: "dict[str, dict[str, float]]") -> "OrderedDict[str, float]":
    """``{'full': {...}, 'sampled': {...}}`` -> ``{'mrr@20': .., 'sampled_mrr@20': ..}``."""
    flat: "OrderedDict[str, float]" = OrderedDict()
    for protocol, values in metrics.items():
        prefix = "" if protocol == "full" else f"{protocol}_"
        flat.update((prefix + k, v) for k, v in values.items())
    return flat


PROGRESS_FILE = "progress.pth"
BEST_MODEL_FILE = "best.pth"
# RecBole saves a new best model before our callback saves the epoch's progress. Written
# here first, it becomes best.pth only once the progress of its epoch is saved, so that a
# kill in between cannot leave a best model from an epoch the progress does not hold.
PENDING_BEST_FILE = "best.pth.pending"


def step_schedule(config) -> tuple[int | None, float]:
    """``lr_step`` and ``lr_gamma`` from a run's config, checked; ``(None, 1.0)`` without a schedule."""
    step, gamma = config["lr_step"], config["lr_gamma"]
    if step is None:
        if gamma is not None:
            raise ValueError("lr_gamma needs lr_step, the epochs between two cuts of the learning rate")
        return None, 1.0
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"lr_step must be a whole number of epochs >= 1, not {step!r}")
    gamma = 0.1 if gamma is None else gamma
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0 < gamma <= 1:
        raise ValueError(f"lr_gamma must be a factor in (0, 1], not {gamma!r}")
    return step, float(gamma)


class StopTraining(Exception):
    """Raised by a run's ``on_epoch`` callback to end training after this epoch (a time
    budget, say): the best model so far is kept and tested, as after early stopping."""


class HarnessTrainer(Trainer):
    def __init__(self, config, model, ks=DEFAULT_KS):
        super().__init__(config, model)
        disable_anomaly_detection()  # RecBole's model imports switch it on for the whole process
        self.ks = tuple(ks)
        self.curve: list[dict] = []
        self.last_ranks: dict[str, np.ndarray] | None = None
        self.last_metrics: dict | None = None
        self.last_eval_seconds = 0.0
        self.progress_file: Path | None = None
        self._pending_epoch: int | None = None  # the epoch of the pending best model this process wrote
        self.resumed_at: int | None = None  # epochs already trained by an earlier process
        self.seconds_before = 0.0  # fit seconds spent by earlier processes
        self._validating = False
        self._fit_started = 0.0
        # called with the epoch index after each training epoch of a fit without validation
        # (a refit), whose progress no validation callback reports
        self.on_train_epoch: Callable[[int], None] | None = None
        self.lr_step, self.lr_gamma = step_schedule(config)

    # -- resuming -------------------------------------------------------------------
    def keep_progress(self, folder: str | Path) -> None:
        """Save the fit's progress (and its best model) in ``folder`` after every epoch, and
        resume from what an earlier process left there. ``folder`` must belong to one
        run and one config: the caller keys it by the config hash."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.progress_file = folder / PROGRESS_FILE
        self.saved_model_file = str(folder / BEST_MODEL_FILE)
        self.pending_best_file = folder / PENDING_BEST_FILE

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        # (epoch -1 is RecBole's save of an untrained model, with no epoch to wait for)
        if self.progress_file is not None and self._validating and epoch >= 0 and "saved_model_file" not in kwargs:
            kwargs["saved_model_file"] = str(self.pending_best_file)  # promoted by _save_progress
            self._pending_epoch = epoch
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)

    def _settle_pending_best(self, progress_epoch: int | None) -> None:
        """Promote the pending best model if the saved progress reached its epoch, else
        drop it: its epoch was lost with the process that trained it."""
        pending = self.pending_best_file
        if not pending.exists():
            return
        epoch = self._pending_epoch
        if epoch is None:  # an earlier process wrote it: its epoch is in the file
            epoch = torch.load(pending, map_location="cpu", weights_only=True)["epoch"]
        self._pending_epoch = None
        if progress_epoch is not None and epoch <= progress_epoch:
            os.replace(pending, self.saved_model_file)
        else:
            pending.unlink()

    def progress_state(self) -> dict:
        """What a subclass's next epoch depends on beyond model and optimiser (its own
        generators, say), saved with the progress; :meth:`load_progress_state` restores it."""
        return {}

    def load_progress_state(self, state: dict) -> None:
        pass

    def _random_state(self, train_data) -> dict:
        loader = getattr(train_data, "generator", None)
        return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "loader": loader.get_state() if isinstance(loader, torch.Generator) else None}

    def _set_random_state(self, state: dict, train_data) -> None:
        torch.set_rng_state(state["torch"])
        np.random.set_state(state["numpy"])
        random.setstate(state["python"])
        if state["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        loader = getattr(train_data, "generator", None)
        if state["loader"] is not None and isinstance(loader, torch.Generator):
            loader.set_state(state["loader"])

    def _save_progress(self, epoch_idx: int, train_data, stopped: bool) -> None:
        state = {"epoch": epoch_idx, "stopped": stopped, "cur_step": self.cur_step,
                 "best_valid_score": self.best_valid_score, "best_valid_result": self.best_valid_result,
                 "curve": self.curve, "seconds": self.seconds_before + time.perf_counter() - self._fit_started,
                 "state_dict": self.model.state_dict(), "other_parameter": self.model.other_parameter(),
                 "optimizer": self.optimizer.state_dict(), "random": self._random_state(train_data),
                 "trainer": self.progress_state()}
        partial = self.progress_file.with_name(f".{PROGRESS_FILE}.{os.getpid()}")
        torch.save(state, partial)
        os.replace(partial, self.progress_file)  # atomic: a kill leaves the last complete epoch
        self._settle_pending_best(epoch_idx)

    def _resume(self, train_data) -> dict:
        # our own file, written by _save_progress: it holds numpy's and Python's RNG states.
        # Loaded on the CPU: RNG states must be CPU tensors; load_state_dict moves the
        # model's and the optimiser's tensors to their parameters' device.
        state = torch.load(self.progress_file, map_location="cpu", weights_only=False)
        self._settle_pending_best(state["epoch"])
        self.model.load_state_dict(state["state_dict"])
        self.model.load_other_parameter(state["other_parameter"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.start_epoch, self.cur_step = state["epoch"] + 1, state["cur_step"]
        self.best_valid_score, self.best_valid_result = state["best_valid_score"], state["best_valid_result"]
        self.curve, self.seconds_before = list(state["curve"]), float(state["seconds"])
        self.resumed_at = self.start_epoch
        self._set_random_state(state["random"], train_data)
        self.load_progress_state(state["trainer"])
        return state

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        """RecBole's fit; with :meth:`keep_progress`, resumed where an earlier process stopped."""
        self._validating = valid_data is not None and self.eval_step > 0
        self._fit_started = time.perf_counter()
        if self.progress_file is None:
            return super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        if not self.progress_file.exists():
            self._settle_pending_best(None)  # a process killed within the first epoch
        else:
            state = self._resume(train_data)
            if state["stopped"] or self.start_epoch >= self.epochs:
                return self.best_valid_score, self.best_valid_result  # that fit had ended

        def after_validation(epoch_idx, valid_score):
            try:
                if callback_fn is not None:
                    callback_fn(epoch_idx, valid_score)
            except StopTraining:
                self._save_progress(epoch_idx, train_data, stopped=True)
                raise
            # RecBole's early_stopping stops once cur_step exceeds stopping_step
            self._save_progress(epoch_idx, train_data, stopped=self.cur_step > self.stopping_step)

        return super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)

    @property
    def fit_seconds(self) -> float:
        """Seconds of the fit so far, earlier processes' included."""
        return self.seconds_before + time.perf_counter() - self._fit_started

    # -- training -----------------------------------------------------------------
    def _build_optimizer(self, **kwargs):
        """RecBole's optimiser; Adam and AdamW with the fused kernel (one pass per
        parameter instead of ~10 ops: the same update, -17% per step of our SASRec on
        MovieLens-100k, where ~760 small steps an epoch make the optimiser count)."""
        learner = str(kwargs.get("learner", self.learner)).lower()
        params = list(kwargs.get("params", self.model.parameters()))
        fusable = learner in ("adam", "adamw") and params and all(
            p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
        if not fusable:
            return super()._build_optimizer(**{**kwargs, "params": params})
        cls = torch.optim.Adam if learner == "adam" else torch.optim.AdamW
        return cls(params, lr=kwargs.get("learning_rate", self.learning_rate),
                   weight_decay=kwargs.get("weight_decay", self.weight_decay), fused=True)

    def train_epoch(self, train_data, epoch_idx, show_progress=False):
        """One training epoch; returns the loss. Override to change how a model trains."""
        return super()._train_epoch(train_data, epoch_idx, show_progress=show_progress)

    def learning_rate_at(self, epoch_idx: int) -> float:
        """The step schedule's rate for an epoch: a function of the epoch alone, so that a
        resumed fit and a refit follow it without a scheduler's state."""
        if self.lr_step is None:
            return self.learning_rate
        return self.learning_rate * self.lr_gamma ** (epoch_idx // self.lr_step)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.lr_step is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate_at(epoch_idx)
        start = time.perf_counter()
        loss = self.train_epoch(train_data, epoch_idx, show_progress=show_progress)
        total = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
        self.curve.append({"epoch": epoch_idx, "train_loss": total, "train_seconds": time.perf_counter() - start})
        if self.lr_step is not None:
            self.curve[-1]["learning_rate"] = self.learning_rate_at(epoch_idx)
        if not self._validating:  # no validation callback follows: progress is saved and told here
            if self.progress_file is not None:
                self._save_progress(epoch_idx, train_data, stopped=False)
            if self.on_train_epoch is not None:
                self.on_train_epoch(epoch_idx)
        return loss

    def _valid_epoch(self, valid_data, show_progress=False):
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)
        if self.curve:
            self.curve[-1]["valid"] = dict(result)
            self.curve[-1]["valid_seconds"] = self.last_eval_seconds
        return score, result

    # -- evaluation -----------------------------------------------------------------
    def load_best(self, model_file: str | None = None) -> None:
        checkpoint = torch.load(model_file or self.saved_model_file, map_location=self.device, weights_only=True)
        self.model.load_state_dict(checkpoint["state_dict"])
        self.model.load_other_parameter(checkpoint.get("other_parameter"))

    @torch.no_grad()
    def evaluate(self, eval_data: CaseSet, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model:
            self.load_best(model_file)
        start = time.perf_counter()
        self.last_ranks = rank_cases(self.model, eval_data, self.device)
        self.last_eval_seconds = time.perf_counter() - start
        self.last_metrics = metrics_for(self.last_ranks, self.ks)
        return flat_metrics(self.last_metrics)

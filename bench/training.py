"""RecBole's trainer, with the one evaluator plugged in and every epoch recorded.

``HarnessTrainer`` is RecBole's ``Trainer`` (optimiser, early stopping, best-model
checkpoint) with three changes:

* ``evaluate`` ranks cases with :mod:`bench.evaluator` instead of RecBole's metrics,
  so validation (early stopping) and test use the same code for every model;
* each epoch's training loss, seconds and validation metrics land in ``curve``;
* subclasses change how an epoch trains by overriding ``train_epoch`` (GRU4Rec's
  session-parallel mini-batches), not RecBole's private ``_train_epoch``;
* Adam and AdamW run fused;
* autograd's anomaly detection, which importing RecBole's sequential models switches
  on (:mod:`bench.compat`), is switched off: every model trains at full speed.
"""
from __future__ import annotations

import time
from collections import OrderedDict

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

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        start = time.perf_counter()
        loss = self.train_epoch(train_data, epoch_idx, show_progress=show_progress)
        total = float(sum(loss)) if isinstance(loss, tuple) else float(loss)
        self.curve.append({"epoch": epoch_idx, "train_loss": total, "train_seconds": time.perf_counter() - start})
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

"""One trial, as a Ray worker runs it: the objective, its pruning reports, its result.

The driver (:mod:`hyper.tune`) asks the study for a trial and samples its parameters;
the worker gets a :class:`TrialJob`, runs the objective with a heartbeat going,
reports every epoch's validation score to the study (the pruner decides there and
then), and tells the study the outcome itself. The result is in durable storage the
moment the trial ends, whatever happens to the driver afterwards.

An objective is any ``fn(ctx: TrialContext) -> float`` (higher is better), given to
the tuner as a callable or as ``"module:function"``. The default,
:func:`train_and_validate`, trains the model with the trial's parameters and returns
the validation metric; the test cases are never ranked during tuning.
"""
from __future__ import annotations

import importlib
import math
import os
import socket
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from hyper.storage import Heartbeat, open_storage

DEFAULT_OBJECTIVE = "hyper.trial:train_and_validate"
PRUNERS = ("median", "hyperband", "none")


@dataclass(frozen=True)
class TrialJob:
    """Everything a worker needs to run one trial (sent to Ray, so plain values)."""

    storage: str
    study_name: str
    trial_id: int
    number: int
    params: dict  # RecBole config overrides of this trial
    model: str
    dataset: str
    data_root: str
    seed: int
    metric: str  # e.g. "mrr@20", a key of bench.training.flat_metrics
    epochs: int | None
    objective: Any  # callable or "module:function"
    pruner: str
    heartbeat: float


def make_pruner(name: str, epochs: int | None) -> optuna.pruners.BasePruner:
    """The same pruner in the driver and in every worker (Optuna asks it in the worker)."""
    if name == "median":
        # Never on the first epoch (step 0), and only once 5 trials have finished.
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs or "auto", reduction_factor=3)
    return optuna.pruners.NopPruner()


def resolve_objective(objective) -> Callable:
    if callable(objective):
        return objective
    module_name, _, function = str(objective).partition(":")
    return getattr(importlib.import_module(module_name), function)


class TrialContext:
    """What an objective sees of its trial."""

    def __init__(self, job: TrialJob, study: optuna.Study, workdir: Path):
        self.job = job
        self.study = study
        self.number = job.number
        self.params = dict(job.params)
        self.workdir = workdir
        self.reported: dict[int, float] = {}

    def report(self, epoch: int, value: float) -> None:
        """Report the validation score after ``epoch``; raises ``optuna.TrialPruned`` to stop."""
        value = float(value)
        self.reported[epoch] = value
        storage = self.study._storage
        storage.set_trial_intermediate_value(self.job.trial_id, epoch, value)
        if self.study.pruner.prune(self.study, storage.get_trial(self.job.trial_id)):
            raise optuna.TrialPruned(f"pruned after epoch {epoch}: {self.job.metric} {value:.4f}")

    def set_user_attr(self, key: str, value: Any) -> None:
        self.study._storage.set_trial_user_attr(self.job.trial_id, key, value)


def train_and_validate(ctx: TrialContext) -> float:
    """Train the model with the trial's parameters; the value is the validation metric."""
    from bench.runner import run_once
    from bench.training import flat_metrics

    job = ctx.job
    # Early stopping, the kept checkpoint and pruning all follow the tuned metric.
    overrides = {**ctx.params, "valid_metric": job.metric.upper()}
    if job.epochs is not None:
        overrides["epochs"] = job.epochs
    result = run_once(job.model, job.dataset, job.seed, ctx.workdir, overrides, data_root=job.data_root,
                      on_epoch=ctx.report, evaluate_test=False)
    valid = dict(flat_metrics(result.metrics["valid"]))
    ctx.set_user_attr("valid", {k: round(v, 6) for k, v in valid.items()})
    ctx.set_user_attr("epochs_trained", result.epochs_trained)
    ctx.set_user_attr("best_epoch", result.best_epoch)
    ctx.set_user_attr("seconds_per_epoch", result.seconds_per_epoch)
    return valid[job.metric]


_STORAGES: dict[str, optuna.storages.BaseStorage] = {}


def run_trial(job: TrialJob) -> dict:
    """Run one trial to its end and tell the study (the body of the Ray task)."""
    import torch

    task_start = time.perf_counter()
    torch.set_num_threads(1)  # one CPU per trial: Ray reserved exactly that
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _STORAGES.get(job.storage) or _STORAGES.setdefault(job.storage, open_storage(job.storage))
    study = optuna.load_study(study_name=job.study_name, storage=storage,
                              sampler=optuna.samplers.RandomSampler(),  # parameters come from the driver
                              pruner=make_pruner(job.pruner, job.epochs))
    outcome = {"number": job.number, "error": None, "value": None}
    storage.set_trial_user_attr(job.trial_id, "worker", f"{socket.gethostname()}:{os.getpid()}")
    with Heartbeat(storage, job.trial_id, job.heartbeat), \
            tempfile.TemporaryDirectory(prefix=f"tune-trial-{job.number}-") as workdir:
        context = TrialContext(job, study, Path(workdir))
        start = time.perf_counter()
        try:
            value = float(resolve_objective(job.objective)(context))
            state = TrialState.COMPLETE if math.isfinite(value) else TrialState.FAIL
            outcome["value"] = value
            if state == TrialState.FAIL:
                outcome["error"] = f"the objective returned {value}"
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except Exception as err:  # noqa: BLE001  (any objective error fails this trial only)
            state = TrialState.FAIL
            outcome["error"] = f"{type(err).__name__}: {err}"
            outcome["traceback"] = traceback.format_exc()
        objective_seconds = time.perf_counter() - start
    storage.set_trial_user_attr(job.trial_id, "worker_seconds", round(objective_seconds, 3))
    if outcome["error"]:
        storage.set_trial_user_attr(job.trial_id, "error", outcome["error"][:500])
    try:
        if state == TrialState.COMPLETE:
            study.tell(job.number, outcome["value"])
        else:
            study.tell(job.number, state=state)
        outcome["state"] = state.name
    except (UpdateFinishedTrialError, ValueError, RuntimeError) as err:
        # Another driver failed this trial as stale meanwhile: its result is not ours to keep.
        outcome["state"] = "LOST"
        outcome["error"] = f"trial was finished by another process: {err}"
    outcome["objective_seconds"] = objective_seconds
    outcome["task_seconds"] = time.perf_counter() - task_start
    return outcome

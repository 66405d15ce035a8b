"""One run: (model, dataset, seed, overrides) -> trained model -> metrics and per-case ranks.

Every model, ours or RecBole's, goes through the same steps: RecBole config and
dataset, the model's training (early stopping on the validation score, best model
kept), then the test cases ranked once by the one evaluator with the best model.

A model class may declare:

* ``trainable = False``: nothing to fit beyond its constructor (POP, S-POP, kNN);
* ``train_on = "sequences"``: it trains on whole sequences with a loss at every
  position, so it gets one row per sequence instead of every prefix, in batches of
  ``train_batch_size`` targets or sequences (``batch_unit``, :mod:`bench.batching`);
  a sequence longer than the window is cut into windows ``train_stride`` apart
  (:func:`bench.data.whole_sequence_rows`);
and the registry may give it a trainer of its own (``custom_models.TRAINERS``): a
:class:`bench.training.HarnessTrainer` subclass.
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import bench.compat  # noqa: F401
from bench.batching import BATCH_UNITS, IIDTargetBatchLoader, TargetBatchLoader
from bench.data import DEFAULT_DATA_ROOT, Splits, load_splits, make_config, train_and_valid, whole_sequence_rows
from bench.evaluator import metrics_for, rank_cases
from bench.precision import use_tf32
from bench.registry import ModelSpec, resolve_model
from bench.training import HarnessTrainer, StopTraining, flat_metrics


@dataclass
class RunResult:
    """What one run measured. ``ranks`` are per-case target ranks, in case order."""

    config: dict
    metrics: dict  # {"test": {"full": {...}, "sampled": {...}}, "valid": {...}}
    ranks: dict  # {"test_full": array, "test_sampled": array, "valid_full": array, ...}
    curve: list = field(default_factory=list)
    best_epoch: int | None = None
    epochs_trained: int = 0
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    num_test_cases: int = 0
    num_parameters: int = 0
    peak_memory_mb: float = 0.0
    fit_protocol: str = "train"  # a key of bench.protocol.FIT_PROTOCOLS
    refit_seconds: float = 0.0
    refit_curve: list = field(default_factory=list)
    validation_from: dict | None = None  # ValidationStage.source when the early-stopped fit was reused
    resumed: dict = field(default_factory=dict)  # {"fit": epoch, "refit": epoch}: where a stage resumed

    @property
    def seconds_per_epoch(self) -> float | None:
        epochs = [c["train_seconds"] for c in self.curve]
        return float(np.mean(epochs)) if epochs else None


@dataclass
class ValidationStage:
    """An early-stopped fit that a stored run already made: what ``refit: true`` needs of it.

    A run with ``refit: true`` whose config equals a stored, finished run's but for
    ``refit`` gets that run's epoch curve and validation ranks instead of training the
    same early-stopped model again (the same seed, data and settings give the same
    fit), and only retrains on train + valid. ``source`` says where it came from.
    """

    curve: list
    best_epoch: int
    epochs_trained: int
    train_seconds: float
    valid_ranks: dict  # {"full": array, "sampled": array}, as rank_cases returns them
    source: dict  # the stored run's commit, finished_at and config_hash


def resolved_config(config) -> dict:
    """The config as plain JSON-able values (what a run record stores)."""
    from bench.compat import _plain

    return {k: _plain(v) for k, v in sorted(config.final_config_dict.items()) if k not in {"device"}}


def _reset_peak_memory() -> None:
    """Restart the kernel's peak-RSS counter (VmHWM), so a reused worker measures this run only."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux, or not allowed: the process-wide peak is reported instead


def _peak_memory_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def build_model(spec: ModelSpec, config, splits: Splits, train=None):
    """``spec``'s model on the training rows (``train``: other rows, e.g. train + valid)."""
    model = spec.cls(config, splits.train if train is None else train)
    return model.to(config["device"])


def train_loader(spec: ModelSpec, config, splits: Splits, train=None):
    from recbole.data.utils import create_samplers, get_dataloader

    train = splits.train if train is None else train
    loader_class = get_dataloader(config, "train")
    if getattr(spec.cls, "train_on", "prefixes") == "sequences":
        train = whole_sequence_rows(train, config["train_stride"])
        unit = config["batch_unit"] or "sequences"
        if unit not in BATCH_UNITS:
            raise ValueError(f"batch_unit must be one of {', '.join(BATCH_UNITS)}, not {unit!r}")
        if unit == "targets":
            loader_class = TargetBatchLoader
        elif unit == "iid_targets":
            loader_class = IIDTargetBatchLoader
    train_sampler, _, _ = create_samplers(config, splits.dataset, [train, splits.valid, splits.test])
    return loader_class(config, train, train_sampler, shuffle=config["shuffle"])


def run_once(model: str, dataset: str, seed: int, workdir: str | Path, overrides: dict | None = None,
             data_root: str | Path = DEFAULT_DATA_ROOT,
             on_epoch: Callable[[int, float], None] | None = None,
             evaluate_test: bool = True, validated: ValidationStage | None = None,
             progress_dir: str | Path | None = None,
             on_refit_epoch: Callable[[int | None, int], None] | None = None) -> RunResult:
    """Train ``model`` on ``dataset`` with ``seed`` and evaluate it; checkpoints go to ``workdir``.

    ``on_epoch(epoch, valid_score)`` is called after every validation (progress
    display, Optuna pruning); it may raise to stop the run, or raise
    :class:`bench.training.StopTraining` to end training there and test the best model
    so far (a time budget). ``evaluate_test=False``
    (tuning) never ranks the test cases: the result holds validation metrics only.
    ``validated``: the early-stopped fit of a stored run, reused by ``refit: true``
    (:class:`ValidationStage`). ``progress_dir``: a folder of this run and config alone;
    each training stage saves its progress there after every epoch and resumes from it
    (:meth:`bench.training.HarnessTrainer.keep_progress`). ``on_refit_epoch(epoch, epochs)``
    follows a ``refit: true`` retraining, which has no validation to report: once with
    ``None`` as it starts, then after each of its ``epochs`` epochs.
    """
    from recbole.utils import init_seed

    _reset_peak_memory()
    spec = resolve_model(model)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    settings = {**(overrides or {}), "seed": seed, "checkpoint_dir": str(workdir / "checkpoints")}
    if not torch.cuda.is_available():
        settings.setdefault("device", "cpu")
        settings.setdefault("use_gpu", False)
    config = make_config(spec, dataset, settings, data_root)
    use_tf32(config["tf32"])  # None (not set): PyTorch's defaults
    init_seed(config["seed"], config["reproducibility"])
    splits = load_splits(config, data_root)
    init_seed(config["seed"], config["reproducibility"])
    net = build_model(spec, config, splits)

    result = RunResult(config=resolved_config(config), metrics={}, ranks={},
                       num_test_cases=len(splits.test),
                       num_parameters=sum(p.numel() for p in net.parameters() if p.requires_grad))
    valid_cases, test_cases = splits.cases("valid"), splits.cases("test")
    trainable = getattr(spec.cls, "trainable", True)
    if validated is not None and not (trainable and config["refit"] and evaluate_test):
        raise ValueError("a stored validation stage is reused only by a trained model with refit: true")
    start = time.perf_counter()
    if validated is not None:
        result.curve, result.best_epoch = validated.curve, validated.best_epoch
        result.epochs_trained, result.train_seconds = validated.epochs_trained, validated.train_seconds
        result.validation_from = validated.source
        valid_ranks = validated.valid_ranks
    elif trainable:
        trainer_cls = spec.trainer or HarnessTrainer
        trainer = trainer_cls(config, net)
        if progress_dir is not None:
            trainer.keep_progress(Path(progress_dir) / "fit")
        try:
            trainer.fit(train_loader(spec, config, splits), valid_cases, saved=True, callback_fn=on_epoch,
                        show_progress=live_progress())
        except StopTraining:
            pass  # the callback ended training after an epoch; its best checkpoint is saved
        result.train_seconds = trainer.fit_seconds
        if trainer.resumed_at is not None:
            result.resumed["fit"] = trainer.resumed_at
        result.curve = trainer.curve
        best = max(trainer.curve, key=lambda c: c.get("valid", {}).get(trainer.valid_metric, -np.inf), default=None)
        result.best_epoch = None if best is None else best["epoch"]
        result.epochs_trained = len(trainer.curve)
        trainer.load_best()
    if validated is None:
        valid_ranks = rank_cases(net, valid_cases, config["device"])
    tested = net
    if evaluate_test:
        tested = _model_for_test(spec, config, splits, net, result, progress_dir, on_refit_epoch)
    start = time.perf_counter()
    test_ranks = rank_cases(tested, test_cases, config["device"]) if evaluate_test else {}
    result.eval_seconds = time.perf_counter() - start
    result.metrics = {"valid": metrics_for(valid_ranks), **({"test": metrics_for(test_ranks)} if evaluate_test else {})}
    result.ranks = {**{f"valid_{p}": r for p, r in valid_ranks.items()},
                    **{f"test_{p}": r for p, r in test_ranks.items()}}
    result.peak_memory_mb = _peak_memory_mb()
    return result


def live_progress() -> bool:
    """A tqdm bar with an ETA within each epoch, on a terminal only: Ray workers' and CI's
    stderr is a file or a pipe, so they stay quiet."""
    return sys.stderr.isatty()


def _model_for_test(spec: ModelSpec, config, splits: Splits, net, result: RunResult,
                    progress_dir: str | Path | None = None,
                    on_refit_epoch: Callable[[int | None, int], None] | None = None):
    """The model that ranks the test cases (:data:`bench.protocol.FIT_PROTOCOLS`).

    A model with nothing to fit by gradient (POP, S-POP, kNN) is fitted again on all
    training data, validation rows included, as the papers fit it; its validation
    scores come from the fit on the training rows alone. With ``refit: true`` a
    trained model is trained again from scratch on train + valid for the number of
    epochs that early stopping selected, and that model is tested (the official
    GRU4Rec's protocol). Otherwise the early-stopped model is tested.
    """
    from recbole.utils import init_seed

    trainable = getattr(spec.cls, "trainable", True)
    if trainable and not config["refit"]:
        result.fit_protocol = "train"
        return net
    if trainable and result.best_epoch is None:
        raise ValueError("refit: true needs a validation score per epoch to select the epoch count")
    all_training = train_and_valid(splits)
    init_seed(config["seed"], config["reproducibility"])
    if not trainable:
        result.fit_protocol = "train+valid"
        return build_model(spec, config, splits, all_training)
    epochs = int(result.best_epoch) + 1  # RecBole counts epochs from 0
    config["epochs"] = epochs
    refitted = build_model(spec, config, splits, all_training)
    trainer = (spec.trainer or HarnessTrainer)(config, refitted)
    if progress_dir is not None:
        trainer.keep_progress(Path(progress_dir) / "refit")
    else:
        trainer.saved_model_file = str(Path(config["checkpoint_dir"]) / "refit.pth")
    if on_refit_epoch is not None:
        on_refit_epoch(None, epochs)
        trainer.on_train_epoch = lambda epoch: on_refit_epoch(epoch, epochs)
    trainer.fit(train_loader(spec, config, splits, all_training), None, saved=True)
    result.refit_seconds = trainer.fit_seconds
    if trainer.resumed_at is not None:
        result.resumed["refit"] = trainer.resumed_at
    result.refit_curve = trainer.curve
    result.fit_protocol = "refit"
    return refitted


def flat(result: RunResult, split: str = "test") -> dict:
    return dict(flat_metrics(result.metrics[split]))

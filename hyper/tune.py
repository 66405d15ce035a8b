"""`bench tune MODEL DATASET`: an Optuna study whose trials Ray runs in parallel.

    bench tune narm diginetica --trials 64 --parallel 4
    bench tune narm diginetica --trials 64 --parallel 16 --address ray://head:10001 \\
        --storage postgresql://user@db/optuna

How it works:

* The study, in durable storage (:mod:`hyper.storage`; by default the SQLite file
  ``hyper/studies/<dataset>__<model>.db``), is the single source of truth. Rerunning
  the same command resumes it: it runs trials until the study holds ``--trials``
  finished ones (COMPLETE or PRUNED). FAILed trials do not count; a trial whose
  process died is run again with the same parameters (at most twice).
* This process (the driver) asks the study for each trial and samples its
  parameters from the search space (:mod:`hyper.space`) with a TPE sampler, then
  hands it to a Ray task (one CPU, one torch thread; :mod:`hyper.trial`). At most
  ``--parallel`` trials run at once. Without ``--address``/``RAY_ADDRESS``, Ray is a
  local instance with ``--parallel`` CPUs.
* Every epoch's validation score goes to the study, where the pruner (median by
  default) stops poor trials early. Selection uses validation metrics only: the test
  cases are never ranked during tuning.
* Killed driver or worker: a finished trial is already in the study. A worker that
  dies is seen by its driver, which fails the trial and queues its parameters again.
  A driver that dies takes its workers with it; their trials stop beating and the
  next run fails and queues them once their heartbeat is older than ``--grace``
  seconds (so a rerun right after a SIGKILL waits up to that long for them; trials
  of a live driver elsewhere keep beating and are left alone).
* Seeding: the sampler of trial ``n`` is seeded with ``(--seed, n)``, so trial
  ``n``'s parameters depend only on the seed and on the trials finished when it was
  asked. With ``--parallel 1`` a study is reproducible, resumed or not; with P
  workers, which trials have finished when a trial is asked depends on timing, so
  only the first trials (TPE's random start-up, 10 trials) are reproducible.
* At the end: the best parameters go to ``hyper/best/<dataset>/<model>.yaml``
  (:mod:`hyper.best`), where `bench run` picks them up, and a report with every
  trial, the optimisation history and the parameter importances to
  ``reports/tune-<dataset>-<model>.md``.

Ray Tune is not used: its OptunaSearch ignores Optuna's pruners and leaves orphan
RUNNING trials after a restore (measured, see DESIGN.md).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

import bench.compat  # noqa: F401
from bench.data import DEFAULT_DATA_ROOT, read_manifest
from bench.errors import InputError
from bench.execution import ray_session
from bench.registry import resolve_model
from hyper import best as best_store
from hyper.space import SearchSpace, load_space
from hyper.storage import beat, fail_trial, open_storage, reclaim_stale, requeue
from hyper.trial import DEFAULT_OBJECTIVE, PRUNERS, TrialJob, make_pruner, resolve_objective, run_trial

STUDIES_DIR = Path(__file__).resolve().parent / "studies"
_METRIC = re.compile(r"^(sampled_)?(recall|mrr|ndcg)@(\d+)$")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class TuneSettings:
    model: str
    dataset: str
    trials: int = 32
    parallel: int = 1
    storage: str | None = None  # default: sqlite file under hyper/studies/
    study_name: str | None = None  # default: "<dataset>__<model>"
    metric: str | None = None  # default: the protocol's main metric (MRR@20 sessions, NDCG@10 leave-one-out)
    epochs: int | None = None  # default: the model's config
    seed: int = 0
    timeout: float | None = None  # seconds: no new trial starts after it
    address: str | None = None  # Ray cluster; default RAY_ADDRESS or a local instance
    data_root: str | Path = DEFAULT_DATA_ROOT
    space: str | Path | None = None  # default: hyper/spaces/<model>.yaml
    objective: Any = DEFAULT_OBJECTIVE  # callable or "module:function"
    pruner: str = "median"
    heartbeat: float = 10.0
    grace: float = 60.0
    max_retry: int = 2  # runs of the parameters of a trial whose process died
    report_dir: str | Path = "reports"
    best_root: str | Path | None = None  # default: hyper/best
    progress: bool = True


@dataclass
class TuneResult:
    study_name: str
    storage: str
    counts: dict  # state name -> number of trials in the study
    best_number: int | None
    best_value: float | None
    best_params: dict
    best_path: Path | None
    report_path: Path | None
    stopped: str  # why the driver stopped: "done", "timeout", "failures"
    wall_seconds: float
    last_error: str | None = None
    driver_seconds: dict = field(default_factory=dict)  # trial number -> submit-to-result seconds
    worker_seconds: dict = field(default_factory=dict)  # trial number -> objective seconds in the worker
    task_seconds: dict = field(default_factory=dict)  # trial number -> whole Ray task seconds


class TuneFailed(RuntimeError):
    """The job could not go on (every trial failing); the message says why."""


def default_storage(dataset: str, model: str) -> str:
    STUDIES_DIR.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{STUDIES_DIR / (dataset + '__' + model.replace(':', '-'))}.db"


# -- checks before any trial ----------------------------------------------------------
@dataclass
class _Prepared:
    settings: TuneSettings
    space: SearchSpace
    storage_url: str
    study: optuna.Study
    data_root: str


def prepare(s: TuneSettings) -> _Prepared:
    """Check every input and open the study; raises InputError before any trial runs."""
    for name, value, low in (("--trials", s.trials, 1), ("--parallel", s.parallel, 1)):
        if value < low:
            raise InputError(f"{name} must be at least {low}, not {value}")
    if s.epochs is not None and s.epochs < 1:
        raise InputError(f"--epochs must be at least 1, not {s.epochs}")
    if s.timeout is not None and s.timeout <= 0:
        raise InputError(f"--timeout must be positive, not {s.timeout}")
    if not (0 < s.heartbeat < s.grace):
        raise InputError(f"need 0 < --heartbeat ({s.heartbeat}) < --grace ({s.grace})")
    if s.pruner not in PRUNERS:
        raise InputError(f"--pruner must be one of {', '.join(PRUNERS)}, not {s.pruner!r}")
    resolve_model(s.model)
    manifest = read_manifest(s.dataset, s.data_root)
    if s.metric is None:
        from bench.protocol import MAIN_METRIC

        s = dataclasses.replace(s, metric=MAIN_METRIC.get(manifest.get("protocol"), "mrr@20"))
    _check_metric(s.metric, manifest)
    space = load_space(s.model, s.space)
    if not callable(s.objective):
        try:
            resolve_objective(s.objective)
        except (ImportError, AttributeError, ValueError) as err:
            raise InputError(f"cannot import the objective {s.objective!r}: {err}") from None
    url = s.storage or default_storage(s.dataset, s.model)
    storage = open_storage(url)
    name = s.study_name or f"{s.dataset}__{s.model}"
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=make_pruner(s.pruner, s.epochs))
    _check_study(study, s, space)
    return _Prepared(s, space, url, study, str(Path(s.data_root).resolve()))


def _check_metric(metric: str, manifest: dict) -> None:
    from bench.evaluator import DEFAULT_KS

    match = _METRIC.match(metric)
    if match is None or int(match[3]) not in DEFAULT_KS:
        raise InputError(f"--metric {metric!r}: expected recall|mrr|ndcg@K with K in {list(DEFAULT_KS)}, "
                         f"optionally prefixed sampled_ (e.g. mrr@20)")
    if match[1] and manifest.get("protocol") != "leave-one-out":
        raise InputError(f"--metric {metric!r}: sampled metrics exist only on leave-one-out datasets, "
                         f"and {manifest.get('name')!r} is {manifest.get('protocol')!r}")


def _check_study(study: optuna.Study, s: TuneSettings, space: SearchSpace) -> None:
    """A resumed study must be the same job; its first run records what that job is."""
    identity = {"model": s.model, "dataset": s.dataset, "metric": s.metric}
    attrs = study.user_attrs
    if not attrs:
        for key, value in {**identity, "space": str(space.path), "space_digest": space.digest,
                           "epochs": s.epochs, "seed": s.seed, "pruner": s.pruner}.items():
            study.set_user_attr(key, value)
        return
    for key, value in identity.items():
        if attrs.get(key) != value:
            raise InputError(f"study {study.study_name!r} tunes {key} {attrs.get(key)!r}, not {value!r}; "
                             f"give another --study-name (or --storage) for a new study")
    if attrs.get("space_digest") != space.digest:
        print(f"bench tune: warning: the search space {space.path} changed since study "
              f"{study.study_name!r} began; earlier trials keep their parameters", file=sys.stderr)
    if attrs.get("epochs") != s.epochs:
        print(f"bench tune: warning: study {study.study_name!r} began with --epochs {attrs.get('epochs')}, "
              f"this run uses {s.epochs}", file=sys.stderr)


# -- Ray ------------------------------------------------------------------------------
@contextlib.contextmanager
def _workers_see_our_path():
    """Local workers import what this process imports (an objective given as
    "module:function" from a test folder, say): they inherit PYTHONPATH at Ray's start."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([p for p in sys.path if p] + ([saved] if saved else []))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


# -- the driver -------------------------------------------------------------------------
def tune(settings: TuneSettings | None = None, **kwargs) -> TuneResult:
    """Run (or resume) the tuning job; see the module docstring."""
    s = settings or TuneSettings(**kwargs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    prepared = prepare(s)
    s = prepared.settings  # the metric resolved
    study = prepared.study
    start = time.perf_counter()
    result = TuneResult(study.study_name, prepared.storage_url, {}, None, None, {}, None, None, "done", 0.0)
    progress = Progress(s, study)
    if _finished(study) < s.trials:
        import ray

        import hyper  # its trials run our objective: workers on a cluster need the package

        # The suite's Ray session: local (never an unrelated `ray start` cluster) unless
        # --address / RAY_ADDRESS names one; a program already running Ray keeps its own.
        with _workers_see_our_path(), ray_session(s.parallel, s.address or os.environ.get("RAY_ADDRESS"),
                                                  packages=[hyper]):
            _drive(ray, prepared, result, progress, start)
    progress.close()
    result.wall_seconds = time.perf_counter() - start
    _finish(prepared, result)
    if result.stopped == "failures":
        raise TuneFailed(f"stopped after {_consecutive_limit(s)} trials in a row failed; "
                         f"last error: {result.last_error}")
    return result


def _finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def _consecutive_limit(s: TuneSettings) -> int:
    return 2 * s.parallel + 1


def _drive(ray, prepared: _Prepared, result: TuneResult, progress: "Progress", start: float) -> None:
    s, study, space = prepared.settings, prepared.study, prepared.space
    remote = ray.remote(num_cpus=1, max_retries=0)(run_trial)
    inflight: dict = {}  # ObjectRef -> (trial number, trial id, submit time)
    consecutive_failures, last_beat = 0, 0.0
    deadline = None if s.timeout is None else start + s.timeout
    try:
        while True:
            now = time.perf_counter()
            if now - last_beat >= s.heartbeat:  # this driver vouches for its queued and running trials
                for number, trial_id, _ in inflight.values():
                    beat(study._storage, trial_id)
                last_beat = now
            reclaim_stale(study, s.grace, {n for n, _, _ in inflight.values()}, s.max_retry)
            trials = study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            stop_launching = (deadline is not None and now >= deadline) or consecutive_failures >= _consecutive_limit(s)
            room = s.trials - finished - running  # running trials of other (or dead) drivers count too
            while not stop_launching and room > 0 and len(inflight) < s.parallel:
                ref, number, trial_id = _launch(remote, prepared, study, space)
                inflight[ref] = (number, trial_id, time.perf_counter())
                room -= 1
            progress.update()
            if not inflight:
                if stop_launching or finished >= s.trials:
                    break
                time.sleep(min(1.0, s.heartbeat))  # waiting out other drivers' trials or orphans
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=min(1.0, s.heartbeat))
            for ref in ready:
                number, trial_id, submitted = inflight.pop(ref)
                ok = _collect(ray, ref, number, submitted, study, s, result, progress)
                consecutive_failures = 0 if ok else consecutive_failures + 1
        if consecutive_failures >= _consecutive_limit(s):
            result.stopped = "failures"
        elif deadline is not None and _finished(study) < s.trials:
            result.stopped = "timeout"
    except KeyboardInterrupt:
        for ref, (number, _, _) in inflight.items():
            ray.cancel(ref, force=True)
            if fail_trial(study, number, "interrupted (Ctrl-C)"):
                requeue(study, study.get_trials(deepcopy=False)[number], s.max_retry)
        raise


def _launch(remote, prepared: _Prepared, study: optuna.Study, space: SearchSpace):
    s = prepared.settings
    trial, params = ask(study, space, s.seed)
    job = TrialJob(storage=prepared.storage_url, study_name=study.study_name, trial_id=trial._trial_id,
                   number=trial.number, params=params, model=s.model, dataset=s.dataset,
                   data_root=prepared.data_root, seed=s.seed, metric=s.metric, epochs=s.epochs,
                   objective=s.objective, pruner=s.pruner, heartbeat=s.heartbeat)
    return remote.remote(job), trial.number, trial._trial_id


def ask(study: optuna.Study, space: SearchSpace, seed: int) -> tuple[optuna.Trial, dict]:
    """A new trial (a queued rerun first) and its RecBole config overrides."""
    import numpy as np

    number = len(study.get_trials(deepcopy=False))  # the next trial's number (a queued rerun keeps its own)
    # Seeded per trial (see the module docstring); constant_liar keeps parallel asks apart.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.TPESampler(seed=int(np.random.SeedSequence([seed, number]).generate_state(1)[0]),
                                                   multivariate=True, group=True, constant_liar=True)
    trial = study.ask()
    beat(study._storage, trial._trial_id)  # before anything else can go wrong
    return trial, space.sample(trial)


def _collect(ray, ref, number: int, submitted: float, study: optuna.Study, s: TuneSettings,
             result: TuneResult, progress: "Progress") -> bool:
    """Take one finished Ray task; returns False if its trial failed."""
    result.driver_seconds[number] = time.perf_counter() - submitted
    try:
        outcome = ray.get(ref)
    except Exception as err:  # noqa: BLE001  (the worker process died: Ray's errors)
        reason = f"worker died: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
        if fail_trial(study, number, reason):  # unless it told its result before dying
            requeue(study, study.get_trials(deepcopy=False)[number], s.max_retry)
            progress.note(f"trial {number} failed ({reason}); its parameters are queued again")
            result.last_error = reason
            return False
        return True
    result.worker_seconds[number] = outcome["objective_seconds"]
    result.task_seconds[number] = outcome["task_seconds"]
    if outcome["state"] in ("FAIL", "LOST"):
        progress.note(f"trial {number} failed: {outcome['error']}")
        result.last_error = outcome["error"]
        return False
    return True


def _finish(prepared: _Prepared, result: TuneResult) -> None:
    from hyper.report import write_report

    s, study, space = prepared.settings, prepared.study, prepared.space
    trials = study.get_trials(deepcopy=False)
    result.counts = {state.name: sum(t.state == state for t in trials) for state in TrialState}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = max(complete, key=lambda t: t.value)
        result.best_number, result.best_value = best.number, best.value
        result.best_params = space.to_config(best.params)
        result.best_path = best_store.save_best_params(s.dataset, s.model, result.best_params, provenance={
            "study": study.study_name, "storage": prepared.storage_url, "trial": best.number,
            "value": best.value, "metric": f"valid {s.metric}", "space": str(space.path),
            "finished_trials": sum(t.state in FINISHED for t in trials),
        }, root=s.best_root)
    result.report_path = write_report(study, space, s, result, Path(s.report_dir))


# -- progress -------------------------------------------------------------------------
class Progress:
    """One live line: finished (complete + pruned) / failed / running, best so far."""

    def __init__(self, s: TuneSettings, study: optuna.Study):
        self.s, self.study, self.enabled = s, study, s.progress
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.last = ""

    def line(self) -> str:
        trials = self.study.get_trials(deepcopy=False)
        count = {st: sum(t.state == st for t in trials) for st in TrialState}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = max(complete, key=lambda t: t.value, default=None)
        best_text = "-" if best is None else f"{best.value:.4f} (trial {best.number})"
        done = count[TrialState.COMPLETE] + count[TrialState.PRUNED]
        return (f"tune {self.s.model} on {self.s.dataset}: {done}/{self.s.trials} finished "
                f"({count[TrialState.COMPLETE]} complete, {count[TrialState.PRUNED]} pruned), "
                f"{count[TrialState.RUNNING]} running, {count[TrialState.FAIL]} failed | "
                f"best valid {self.s.metric} {best_text}")

    def update(self) -> None:
        if not self.enabled:
            return
        line = self.line()
        elapsed = time.perf_counter() - self.start
        if self.tty:
            sys.stderr.write(f"\r{line} | {elapsed:5.0f} s\033[K")
            sys.stderr.flush()
        elif line != self.last:
            print(f"{line} | {elapsed:.0f} s", file=sys.stderr, flush=True)
        self.last = line

    def note(self, message: str) -> None:
        if self.enabled:
            print(("\n" if self.tty else "") + f"bench tune: {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled:
            self.update()
            if self.tty:
                sys.stderr.write("\n")


# -- CLI --------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="model to tune: narm, sasrec, gru4rec, itemknn, bprmf or recbole:<Class>")
    parser.add_argument("dataset", help="a converted dataset (under --data-root)")
    parser.add_argument("--trials", type=int, default=32,
                        help="finished trials (complete or pruned) the study should hold; a rerun resumes up to it (default 32)")
    parser.add_argument("--parallel", type=int, default=1, help="trials running at once, one CPU each (default 1)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to run on (e.g. ray://head:10001 or auto); default RAY_ADDRESS, "
                             "else a local Ray with --parallel CPUs")
    parser.add_argument("--storage", default=None,
                        help="Optuna storage URL: sqlite:///FILE, postgresql://..., journal:FILE, redis://... "
                             "(default sqlite:///hyper/studies/DATASET__MODEL.db)")
    parser.add_argument("--study-name", default=None, help="default DATASET__MODEL")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds after which no new trial starts (running ones finish)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training runs and of the sampler (default 0)")
    parser.add_argument("--metric", default=None,
                        help="validation metric to maximise: recall|mrr|ndcg@10|20, sampled_... (default: the "
                             "protocol's main metric, mrr@20 for sessions, ndcg@10 for leave-one-out)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per trial (default: the model's config)")
    parser.add_argument("--space", default=None, help="search space file (default hyper/spaces/MODEL.yaml)")
    parser.add_argument("--pruner", default="median", choices=PRUNERS, help="default median")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT), help="default dataset_atomic")
    parser.add_argument("--report-dir", default="reports", help="where the tuning report goes (default reports)")
    parser.add_argument("--heartbeat", type=float, default=10.0, help="seconds between a trial's heartbeats (default 10)")
    parser.add_argument("--grace", type=float, default=60.0,
                        help="seconds without a heartbeat after which a RUNNING trial is failed and rerun (default 60)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress line")
    # Hidden: another objective (tests, cluster smoke checks), "module:function".
    parser.add_argument("--objective", default=DEFAULT_OBJECTIVE, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    settings = TuneSettings(
        model=args.model, dataset=args.dataset, trials=args.trials, parallel=args.parallel, storage=args.storage,
        study_name=args.study_name, metric=args.metric, epochs=args.epochs, seed=args.seed, timeout=args.timeout,
        address=args.address, data_root=args.data_root, space=args.space, objective=args.objective,
        pruner=args.pruner, heartbeat=args.heartbeat, grace=args.grace, report_dir=args.report_dir,
        progress=args.progress)
    try:
        result = tune(settings)
    except TuneFailed as err:
        print(f"bench tune: error: {err}", file=sys.stderr)
        return 1
    if result.best_number is None:
        print(f"bench tune: no trial completed ({result.stopped}); nothing written to hyper/best", file=sys.stderr)
        return 1
    print(f"best valid {settings.metric} {result.best_value:.4f} (trial {result.best_number}): {result.best_params}")
    print(f"best parameters: {result.best_path}")
    print(f"report: {result.report_path}")
    if result.stopped == "timeout":
        print(f"bench tune: --timeout reached with {result.counts['COMPLETE'] + result.counts['PRUNED']}"
              f"/{settings.trials} trials finished; rerun to continue", file=sys.stderr)
    return 0

"""The runs of a suite as Ray tasks, with a live progress line.

Each (dataset, model, seed) run is one Ray task: ``num_cpus`` CPUs (torch uses as
many threads), ``num_gpus`` GPUs (fractions allowed), a fresh worker process
(``max_calls=1``: no state, threads or memory carried over from an earlier run, and
the peak memory it reports is its own), its own temporary folder for checkpoints, and
:func:`bench.runner.run_once` inside. The worker imports this module, hence
``bench`` and its RecBole shims, before RecBole.

**Who writes records.** The worker returns its record and per-case ranks; the
driver writes them to the results store as each run ends. The driver's disk is then
the only one written, so a cluster needs no shared results folder, and the store has
a single writer. A worker that dies (out of memory, a crash) is recorded as failed by
the driver; a driver that dies loses only its runs in flight: Ray cancels the tasks
of a dead driver, and every run that ended before is already stored (atomically, so
a kill never leaves half a record).

**Where it runs.** Locally by default (``ray.init`` with ``--cpus`` CPUs, no
dashboard, a small object store). ``--address`` / ``RAY_ADDRESS`` connects to an
existing cluster instead, with no change to the code: our packages (``bench``,
``custom_models``, ``hyper``) travel with the job as ``runtime_env`` ``py_modules``;
the nodes need the same Python dependencies installed (``scripts/install.sh``) and
the converted datasets at the same absolute path (a shared filesystem, or
``bench convert`` on each node).
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TextIO

import bench  # noqa: F401  (compat shims: workers import this module before RecBole)
from bench.errors import InputError
from bench.store import PROGRESS_ROOT, RunKey, ResultStore, now

if TYPE_CHECKING:
    from bench.runner import ValidationStage

OBJECT_STORE_BYTES = 200 * 1024**2  # results are a few MB of ranks; Ray's default takes 30% of RAM


@dataclass
class PlannedRun:
    """One run of a suite, with everything the worker and the store need."""

    key: RunKey
    settings: dict  # what run_once gets as overrides (tuned parameters + suite overrides)
    config: dict  # the resolved RecBole config (planned in the driver), for failure records
    config_hash: str
    protocol: str
    manifest: dict
    manifest_sha256: str
    data_root: str  # absolute
    trainable: bool = True
    state: str = "missing"  # missing | failed | changed | finished (what the store holds)
    validation: "ValidationStage | None" = None  # a stored early-stopped fit that refit: true reuses
    progress_dir: str | None = None  # per-epoch progress of this run and config (resumed if there)
    stage: str = "whole"  # "fit": only the early-stopped fit of a refit: true run (bench run --fit-only)

    @property
    def label(self) -> str:
        return f"{self.key.dataset}/{self.key.model}/seed-{self.key.seed}"


# -- the worker side ------------------------------------------------------------------------

def _device_settings() -> dict:
    """Config keys that put the run on the GPU(s) Ray gave this task, or on the CPU.

    RecBole sets ``CUDA_VISIBLE_DEVICES = gpu_id`` (default ``"0"``), which would undo
    Ray's assignment; handing it Ray's own ids keeps each run on its GPU.
    """
    import ray

    gpu_ids = ray.get_gpu_ids()
    if gpu_ids:
        return {"use_gpu": True, "gpu_id": ",".join(str(int(i)) for i in gpu_ids)}
    return {"use_gpu": False, "gpu_id": "", "device": "cpu"}


def _tell(progress, message: tuple) -> None:
    """Push a progress message without waiting for it.

    Fire and forget on the queue's actor: a task that blocks in ``ray.get`` lends its
    CPU back to Ray, which would then start one more run than there are CPUs.
    """
    if progress is None:
        return
    try:
        progress.actor.put_nowait.remote(message)
    except Exception:  # noqa: BLE001  (the progress line must never fail a run)
        pass


SYSTEM_RETRIES = 2  # reruns of a run whose worker died of a system failure


def run_task(run: PlannedRun, progress=None, cpus: float = 1) -> dict:
    """Body of the Ray task: one run, its record built here, returned to the driver."""
    import torch

    from bench.runner import run_once
    from bench.store import environment, record_from_result

    torch.set_num_threads(max(1, int(cpus)))
    started_at, environment_at_start = now(), environment()
    _tell(progress, ("start", run.label, time.time()))
    home = os.getcwd()
    workdir = Path(tempfile.mkdtemp(prefix="bench-run-"))
    os.chdir(workdir)  # RecBole's trainer writes log_tensorboard/ into the current folder
    progress_dir = _usable_progress_dir(run.progress_dir)
    try:
        result = run_once(run.key.model, run.key.dataset, run.key.seed, workdir,
                          {**run.settings, **_device_settings()}, data_root=run.data_root,
                          validated=run.validation, progress_dir=progress_dir,
                          on_epoch=lambda epoch, score: _tell(progress, ("epoch", run.label, epoch, score)),
                          on_refit_epoch=lambda epoch, epochs: _tell(progress, ("refit", run.label, epoch, epochs)))
        record, ranks = record_from_result(run.key, result, run.manifest, run.manifest_sha256,
                                           started_at=started_at, environment_at_start=environment_at_start)
        _discard_progress(stored_progress(progress_dir, run.stage))  # the record holds what it meant
        return {"status": "finished", "record": record, "ranks": ranks}
    except Exception as err:  # noqa: BLE001  (any failure of a run is recorded, the suite goes on)
        return {"status": "failed", "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc(), "started_at": started_at}
    finally:
        os.chdir(home)
        shutil.rmtree(workdir, ignore_errors=True)


def _usable_progress_dir(folder: str | None) -> Path | None:
    """``folder`` made ready for this run's progress, with the progress of the run's
    older configs (sibling folders, other config hashes) removed: a changed config
    starts afresh. None where it cannot be written (a cluster node without the
    driver's results path): the run then trains without resuming."""
    if folder is None:
        return None
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        for stale in folder.parent.iterdir():
            if stale.is_dir() and stale.name != folder.name:
                shutil.rmtree(stale, ignore_errors=True)
        folder.mkdir(exist_ok=True)
    except OSError:
        return None
    return folder


def stored_progress(folder: Path | None, stage: str) -> Path | None:
    """The part of a run's progress folder that its stored record makes useless: all of
    it, or for a fit stage (``--fit-only``) the fit's alone, since a whole run killed in
    its refit left the refit's progress beside it for the next run to resume."""
    if folder is None or stage == "whole":
        return folder
    return folder / stage


def _discard_progress(folder: Path | None) -> None:
    """Remove a stored run's progress folder, and its parents up to the progress root
    while they are empty."""
    if folder is None:
        return
    shutil.rmtree(folder, ignore_errors=True)
    for parent in folder.parents:
        try:
            parent.rmdir()
        except OSError:
            return  # not empty: another run's progress
        if parent.name == PROGRESS_ROOT:
            return


# -- the driver side ------------------------------------------------------------------------

def cluster_runtime_env(packages=()) -> dict:
    """What a job on an existing cluster takes along: our packages, as they are here
    (``bench`` and ``custom_models``, and the caller's own ``packages``, e.g. the tuner's)."""
    import custom_models

    modules = [str(Path(m.__file__).resolve().parent) for m in (bench, custom_models, *packages)]
    return {"py_modules": modules, "env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}}


def _auth_hint(address: str) -> str:
    """Why a cluster that is up may still refuse us. Ray 2.60's `ray start` turns token
    authentication on, and ray.init looks for the token only for ``auto``, never for an
    explicit address; the refusal itself shows only in Ray's log lines."""
    if os.environ.get("RAY_AUTH_MODE") is not None or address == "auto":
        return ""
    return ("; if the cluster uses token authentication (`ray start` turns it on), set RAY_AUTH_MODE=token "
            "with its token in RAY_AUTH_TOKEN or ~/.ray/auth_token (`ray get-auth-token` on the head prints it), "
            "or use --address auto on the head node")


@contextlib.contextmanager
def ray_session(cpus: int, address: str | None = None, packages=()):
    """Start a local Ray (or connect to ``address``, shipping our packages and ``packages``
    to its workers) for the block; reuse one already up."""
    import ray

    if ray.is_initialized():  # a test or a notebook connected already: use it, leave it up
        yield
        return
    if address:
        try:
            ray.init(address=address, runtime_env=cluster_runtime_env(packages), log_to_driver=False,
                     logging_level=logging.ERROR)
        except Exception as err:  # noqa: BLE001  (no cluster there, or it refuses us: one line)
            text = str(err).strip().splitlines()
            raise InputError(f"cannot connect to the Ray cluster at {address}: "
                             f"{text[-1] if text else type(err).__name__}{_auth_hint(address)}") from None
    else:
        from bench.ray_cleanup import end_orphans

        end_orphans()  # what a killed driver's local Ray left behind (found by session folder)
        # "local" starts a new instance even if a `ray start` cluster runs on this machine.
        ray.init(address="local", num_cpus=cpus, include_dashboard=False,
                 object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False, logging_level=logging.ERROR)
    try:
        yield
    finally:
        ray.shutdown()


def default_gpus_per_run() -> float:
    """1 where there is a GPU (this machine's, or the cluster's once connected), else 0."""
    import ray

    if ray.is_initialized():
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def _outcome_of(ref) -> dict:
    import ray

    try:
        return ray.get(ref)
    except ray.exceptions.RayError as err:  # the worker died, or Ray could not run the task
        text = str(err).strip()
        return {"status": "failed", "error": f"{type(err).__name__}: {text.splitlines()[0] if text else ''}",
                "traceback": text, "started_at": None}


def store_outcome(store: ResultStore, run: PlannedRun, outcome: dict) -> None:
    if outcome["status"] == "finished":
        record = outcome["record"] if run.stage == "whole" else {**outcome["record"], "stage": run.stage}
        store.write(run.key, record, outcome["ranks"])
    else:
        store.write_failure(run.key, {**run.config, "seed": run.key.seed}, outcome["error"],
                            outcome.get("traceback"), protocol=run.protocol, started_at=outcome.get("started_at"))


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a scheduler ending the job) stops the suite as Ctrl-C does: runs in flight
    are cancelled and Ray is shut down, instead of the process vanishing mid-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(runs: list[PlannedRun], store: ResultStore, *, cpus: int, cpus_per_run: float = 1,
            gpus_per_run: float | None = None, address: str | None = None,
            stream: TextIO | None = None, on_outcome: Callable[[PlannedRun, dict], None] | None = None) -> dict:
    """Run ``runs`` on Ray, storing each record as it arrives; returns {label: status}."""
    import ray
    from ray.util.queue import Queue

    statuses: dict[str, str] = {}
    if not runs:
        return statuses
    with ray_session(cpus, address), _terminate_as_interrupt():
        if gpus_per_run is None:
            gpus_per_run = default_gpus_per_run()
        progress = Queue(actor_options={"num_cpus": 0})
        # A worker lost to the system (a dead node, the OOM killer, SIGKILL) is retried, as
        # Ray retries tasks by default; an exception of the run itself is caught in run_task
        # and recorded as a failure, never retried (retry_exceptions stays off).
        task = ray.remote(max_calls=1, max_retries=SYSTEM_RETRIES)(run_task).options(num_cpus=cpus_per_run,
                                                                                     num_gpus=gpus_per_run)
        board = Board(runs, stream if stream is not None else sys.stderr)
        pending = {task.remote(run, progress, cpus_per_run): run for run in runs}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                board.drain(progress)
                for ref in ready:
                    run = pending.pop(ref)
                    outcome = _outcome_of(ref)
                    store_outcome(store, run, outcome)
                    statuses[run.label] = outcome["status"]
                    board.ended(run, outcome)
                    if on_outcome is not None:
                        on_outcome(run, outcome)
                board.show()
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
        finally:
            board.close()
            with contextlib.suppress(Exception):
                progress.shutdown()
    return statuses


# -- progress display -----------------------------------------------------------------------

@dataclass
class _Running:
    since: float
    epoch: int | None = None
    score: float | None = None
    refit: tuple[int | None, int] | None = None  # (epoch done, of epochs) once the refit began


def _stage(info: _Running) -> str:
    """``starting``, ``epoch N`` (fit, with validation) or ``refit epoch N/M`` (RecBole
    counts epochs from 0; shown from 1)."""
    if info.refit is not None:
        done, epochs = info.refit
        return f"refit starting ({epochs} epochs)" if done is None else f"refit epoch {done + 1}/{epochs}"
    return "starting" if info.epoch is None else f"epoch {info.epoch + 1}"


@dataclass
class Board:
    """Runs done / running (with their epoch) / failed / queued, as one status line.

    On a terminal the line is redrawn in place; in a log it is printed every
    ``log_every`` seconds. Every run that ends gets a line of its own.
    """

    runs: list[PlannedRun]
    stream: TextIO
    log_every: float = 30.0
    done: int = 0
    failed: int = 0
    running: dict = field(default_factory=dict)
    start: float = field(default_factory=time.time)
    _last_log: float = 0.0
    _width: int = 0

    @property
    def tty(self) -> bool:
        return bool(getattr(self.stream, "isatty", lambda: False)())

    def drain(self, progress) -> None:
        try:
            n = progress.qsize()
            messages = progress.get_nowait_batch(n) if n else []
        except Exception:  # noqa: BLE001
            return
        for kind, label, *rest in messages:
            if kind == "start":
                self.running[label] = _Running(since=rest[0])
            elif kind == "epoch" and label in self.running:
                self.running[label].epoch, self.running[label].score = rest[0], rest[1]
            elif kind == "refit" and label in self.running:
                self.running[label].refit = (rest[0], rest[1])

    def ended(self, run: PlannedRun, outcome: dict) -> None:
        info = self.running.pop(run.label, None)
        seconds = f" ({time.time() - info.since:.0f} s)" if info else ""
        if outcome["status"] == "finished":
            self.done += 1
            metrics = outcome["record"]["metrics"]["test"]["full"]
            text = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("recall@20", "mrr@20", "ndcg@10") if k in metrics)
            self._line(f"done    {run.label}: test {text}{seconds}")
        else:
            self.failed += 1
            self._line(f"FAILED  {run.label}: {outcome['error']}{seconds}")

    def status(self, with_running: bool = True) -> str:
        total = len(self.runs)
        queued = total - self.done - self.failed - len(self.running)
        parts = []
        for label, info in sorted(self.running.items()):
            parts.append(f"{label} " + _stage(info))
        elapsed = time.time() - self.start
        return (f"[{int(elapsed // 60):02d}:{int(elapsed % 60):02d}] {self.done}/{total} done, "
                f"{self.failed} failed, {len(self.running)} running, {queued} queued"
                + (": " + "; ".join(parts) if parts and with_running else ""))

    def show(self) -> None:
        text = self.status()
        if self.tty:
            columns = shutil.get_terminal_size((120, 20)).columns - 1
            text = text[:columns]
            self.stream.write("\r" + text + " " * max(0, self._width - len(text)))
            self._width = len(text)
            self.stream.flush()
        elif time.time() - self._last_log >= self.log_every:
            self._last_log = time.time()
            print(text, file=self.stream, flush=True)

    def _line(self, text: str) -> None:
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
        print(self.status(with_running=bool(self.running)), file=self.stream, flush=True)

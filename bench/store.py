"""The results store: one durable record per run, written atomically.

Layout (``root`` is ``results/`` by default)::

    <root>/<suite>/<dataset>/<model>/seed-<seed>/
        record.json   what the run was and what it measured (schema below)
        ranks.npz     per-case target ranks, in case order: test_full, test_sampled, valid_full, ...
    <root>/<suite>/suite.json   what the suite runner knew (command, suite file, published keys)
    <root>/.partial/<suite>/<dataset>/<model>/seed-<seed>/<config hash>/{fit,refit}/
        progress.pth, best.pth   a run in flight, after its last finished epoch (removed
                                 once the run is stored; a rerun of the same config resumes there)

``<model>`` is the suite's model name with ``:`` replaced by ``-``
(``recbole:GRU4Rec`` -> ``recbole-GRU4Rec``).

**Atomicity.** A run folder is written whole into a hidden temp folder beside it
(``.seed-<seed>.tmp-*``) and renamed into place, so a run killed mid-way never leaves
half a record: readers see the old folder, or the new one, or (killed between the two
renames of a replacement) none, never a mix. Hidden folders are ignored by readers and
swept by the next write of the same run.

**Replacement.** A new record replaces the old one, except that a *failed* record
never replaces a *finished* one with the same config hash: a failed rerun keeps the
result that exists (``write`` returns ``False``). A finished record is thus replaced
only by a rerun that finished, or by any run of a changed config.

**Record schema** (JSON)::

    status "finished" | "failed", error, traceback,
    suite, dataset, model, seed, protocol "session" | "leave-one-out",
    config (resolved RecBole config), config_hash, dataset_manifest_sha256,
    valid_metric ("mrr@20"),
    metrics {"test": {"full": {...}, "sampled": {...}}, "valid": {"full": {...}}},
    curve [{"epoch", "train_loss", "train_seconds", "valid": {...}, "valid_seconds"}],
    best_epoch, epochs_trained, fit_protocol (a key of bench.runner.FIT_PROTOCOLS), refit_curve,
    validation_from (null, or {"commit", "finished_at", "config_hash"} of the stored run whose
    early-stopped fit a ``refit: true`` run reused: its curve and validation ranks),
    resumed (null, or {"fit": epoch, "refit": epoch}: the stage went on from that epoch's saved progress),
    timings {"seconds_per_epoch", "train_seconds", "refit_seconds", "eval_seconds", "eval_cases_per_second"},
    num_test_cases, num_parameters, peak_memory_mb, environment, started_at, finished_at,
    ranks_file ("ranks.npz", or null when no ranks were stored)
"""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the runner imports torch and RecBole; the store and reports need neither
    from bench.runner import RunResult

RECORD_FILE = "record.json"
RANKS_FILE = "ranks.npz"
PROGRESS_ROOT = ".partial"  # per-epoch progress of runs in flight: <root>/.partial/<suite>/...
SUITE_FILE = "suite.json"  # <root>/<suite>/suite.json: the suite runner's metadata, for reports
REPO = Path(__file__).resolve().parents[1]

# Config keys that say where or how a run executed, not what it computed: they differ
# between machines and Ray workers, so they stay out of the config hash. ``seed`` is
# part of the run key, so one hash names a model's config across all its seeds.
RUN_LOCAL_KEYS = frozenset({
    "checkpoint_dir", "data_path", "device", "use_gpu", "gpu_id", "local_rank", "single_spec",
    "world_size", "nproc", "offset", "ip", "port", "worker", "show_progress", "state",
    "log_wandb", "wandb_project", "dataset_save_path", "dataloaders_save_path", "save_dataset",
    "save_dataloaders", "seed",
})

PACKAGES = ("torch", "recbole", "ray", "optuna", "numpy", "pandas", "scipy")


@dataclass(frozen=True)
class RunKey:
    """Which run: a (suite, dataset, model, seed) cell."""

    suite: str
    dataset: str
    model: str
    seed: int

    def __post_init__(self):
        for part in (self.suite, self.dataset, self.model):
            if not part or "/" in part or "\\" in part or part.startswith("."):
                raise ValueError(f"bad name for a results folder: {part!r}")

    @classmethod
    def of(cls, record: dict) -> "RunKey":
        return cls(record["suite"], record["dataset"], record["model"], int(record["seed"]))


def model_dirname(model: str) -> str:
    return model.replace(":", "-")


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# -- helpers -----------------------------------------------------------------------------

def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON of ``config`` without its run-local keys."""
    kept = {k: v for k, v in config.items() if k not in RUN_LOCAL_KEYS}
    return hashlib.sha256(canonical_json(kept).encode()).hexdigest()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dataset_manifest(dataset: str, data_root: str | Path) -> tuple[dict, str]:
    """A converted dataset's manifest and its identity: the sha256 of its ``manifest.json``
    without the reader's notes (:func:`bench.convert.manifest.identity`)."""
    from bench.convert.manifest import identity
    from bench.data import read_manifest

    manifest = read_manifest(dataset, data_root)
    return manifest, identity(manifest)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def _static_environment() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def environment() -> dict:
    """Where a run ran: Python, platform, CPUs, package versions, git commit, CUDA device."""
    env = dict(_static_environment())
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    env["git_commit"] = commit
    env["git_dirty"] = None if status is None else bool(status)
    env["cuda_device"] = None
    torch = sys.modules.get("torch")  # only ask if the run already imported torch
    if torch is not None:
        try:
            if torch.cuda.is_available():
                env["cuda_device"] = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001  (a broken driver must not lose the record)
            pass
        env["torch_threads"] = torch.get_num_threads()
    return env


def _plain_metrics(metrics: dict) -> dict:
    return json.loads(canonical_json(metrics))


def record_from_result(key: RunKey, result: "RunResult", manifest: dict, manifest_sha256: str,
                       started_at: str | None = None, finished_at: str | None = None,
                       environment_at_start: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """A finished run's record and its per-case ranks, from :func:`bench.runner.run_once`'s result.

    ``environment_at_start``: :func:`environment` as the run started. A run takes hours
    and the code it imported is the code at its start: a commit made meanwhile must not
    be named as the one that produced it. Default: the environment now.
    """
    config = _plain_metrics(result.config)
    eval_seconds = float(result.eval_seconds)
    record = {
        "status": "finished",
        "error": None,
        "traceback": None,
        "suite": key.suite,
        "dataset": key.dataset,
        "model": key.model,
        "seed": int(key.seed),
        "protocol": manifest.get("protocol"),
        "config": config,
        "config_hash": config_hash(config),
        "dataset_manifest_sha256": manifest_sha256,
        "valid_metric": str(config.get("valid_metric", "MRR@20")).lower(),
        "metrics": _plain_metrics(result.metrics),
        "curve": _plain_metrics(result.curve),
        "best_epoch": result.best_epoch,
        "epochs_trained": int(result.epochs_trained),
        "fit_protocol": result.fit_protocol,
        "refit_curve": _plain_metrics(result.refit_curve),
        "validation_from": result.validation_from,
        "resumed": dict(result.resumed) or None,  # {"fit": epoch, "refit": epoch}: a stage went on from there
        "timings": {
            "seconds_per_epoch": result.seconds_per_epoch,
            "train_seconds": float(result.train_seconds),
            "refit_seconds": float(result.refit_seconds),
            "eval_seconds": eval_seconds,
            "eval_cases_per_second": result.num_test_cases / eval_seconds if eval_seconds > 0 else None,
        },
        "num_test_cases": int(result.num_test_cases),
        "num_parameters": int(result.num_parameters),
        "peak_memory_mb": float(result.peak_memory_mb),
        "environment": environment_at_start or environment(),
        "started_at": started_at,
        "finished_at": finished_at or now(),
        "ranks_file": RANKS_FILE,
    }
    ranks = {name: np.asarray(r, dtype=np.float64) for name, r in result.ranks.items()}
    return record, ranks


# -- the store ---------------------------------------------------------------------------

class ResultStore:
    """Run records under ``root``; see the module docstring for layout and guarantees."""

    def __init__(self, root: str | Path = "results"):
        self.root = Path(root)

    def run_dir(self, key: RunKey) -> Path:
        return self.root / key.suite / key.dataset / model_dirname(key.model) / f"seed-{key.seed}"

    def progress_dir(self, key: RunKey, digest: str) -> Path:
        """Where a run with config hash ``digest`` keeps its per-epoch progress while it
        trains (:meth:`bench.training.HarnessTrainer.keep_progress`). Outside the
        records (a dot folder, which reports skip and git ignores): checkpoints are
        tens of MB and mean nothing once the run is stored."""
        return (self.root / PROGRESS_ROOT / key.suite / key.dataset / model_dirname(key.model)
                / f"seed-{key.seed}" / digest)

    def read(self, key: RunKey) -> dict | None:
        path = self.run_dir(key) / RECORD_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def is_finished(self, key: RunKey, config_hash: str | None = None) -> bool:
        """True if ``key`` has a finished record (with this config hash, if one is given)."""
        record = self.read(key)
        if record is None or record.get("status") != "finished":
            return False
        return config_hash is None or record.get("config_hash") == config_hash

    def write(self, key: RunKey, record: dict, ranks: dict[str, np.ndarray] | None = None) -> bool:
        """Store ``record`` (and ``ranks``) as ``key``'s run, atomically.

        Returns ``False`` (and writes nothing) when ``record`` is a failure and a
        finished record with the same config hash already exists.
        """
        record = {**record, "suite": key.suite, "dataset": key.dataset, "model": key.model,
                  "seed": int(key.seed), "ranks_file": RANKS_FILE if ranks else None}
        old = self.read(key)
        if (record.get("status") != "finished" and old is not None and old.get("status") == "finished"
                and old.get("config_hash") == record.get("config_hash")):
            return False
        final = self.run_dir(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(final)
        tmp = final.parent / f".{final.name}.tmp-{uuid.uuid4().hex}"
        trash = final.parent / f".{final.name}.old-{uuid.uuid4().hex}"
        tmp.mkdir()
        try:
            if ranks:
                with open(tmp / RANKS_FILE, "wb") as f:
                    np.savez_compressed(f, **{k: np.asarray(v) for k, v in ranks.items()})
            (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1, default=_json_default) + "\n")
            self._fsync_dir(tmp)
            if final.exists():
                # A folder cannot be renamed over a non-empty one: move the old aside first.
                os.replace(final, trash)
                os.replace(tmp, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(tmp, final)
        except BaseException:
            if trash.exists() and not final.exists():
                os.replace(trash, final)  # put the old record back
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return True

    def write_failure(self, key: RunKey, config: dict | None, error: str, traceback: str | None = None,
                      protocol: str | None = None, started_at: str | None = None) -> bool:
        """Record that ``key``'s run failed (see :meth:`write` for when it is kept out)."""
        config = _plain_metrics(config or {})
        record = {
            "status": "failed", "error": error, "traceback": traceback,
            "protocol": protocol, "config": config, "config_hash": config_hash(config),
            "metrics": {}, "curve": [], "environment": environment(),
            "started_at": started_at, "finished_at": now(),
        }
        return self.write(key, record, None)

    def records(self, suite: str | None = None) -> list[dict]:
        """Every stored record (of one suite), in a stable order."""
        base = self.root if suite is None else self.root / suite
        if not base.is_dir():
            return []
        pattern = ("*/" if suite is None else "") + "*/*/seed-*/" + RECORD_FILE
        out = []
        for path in sorted(base.glob(pattern)):
            if any(part.startswith(".") for part in path.relative_to(self.root).parts):
                continue
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue  # not ours, or damaged by hand: reports must still build
        return sorted(out, key=lambda r: (r["suite"], r["dataset"], r["model"], int(r["seed"])))

    def suites(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def write_suite_meta(self, suite: str, meta: dict) -> None:
        """Keep what the suite runner knew (command, suite file, published keys) for reports."""
        folder = self.root / suite
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{SUITE_FILE}.tmp-{uuid.uuid4().hex}"
        tmp.write_text(json.dumps(meta, indent=1, sort_keys=True, default=_json_default) + "\n")
        os.replace(tmp, folder / SUITE_FILE)

    def read_suite_meta(self, suite: str) -> dict | None:
        try:
            return json.loads((self.root / suite / SUITE_FILE).read_text())
        except FileNotFoundError:
            return None

    def load_ranks(self, key_or_record: RunKey | dict) -> dict[str, np.ndarray]:
        key = key_or_record if isinstance(key_or_record, RunKey) else RunKey.of(key_or_record)
        path = self.run_dir(key) / RANKS_FILE
        if not path.is_file():
            return {}
        with np.load(path) as data:
            return {name: data[name] for name in data.files}

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _sweep(final: Path) -> None:
        """Remove temp folders that a killed write of this run left behind."""
        for stale in final.parent.glob(f".{final.name}.*"):
            shutil.rmtree(stale, ignore_errors=True)

    @staticmethod
    def _fsync_dir(folder: Path) -> None:
        for path in folder.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())

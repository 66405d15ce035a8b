"""Where a training step's time goes: ours beside RecBole's same-name models, on any device.

    python -m bench.benchmarks.step_profile [--device cuda] [--steps 50] [--warmup 5]
        [--models narm,recbole:NARM,...] [--session-data diginetica] [--loo-data beauty] [--out DIR]

:mod:`bench.benchmarks.gpu_check` says how fast each model trains; this says why, in a
minute. For each trained model of gpu_check's pairs (the same sizes and data), on real
training batches of its own loader:

* *host batch*: milliseconds to build a batch on the host (the loader's share of a step);
* *step*: milliseconds per step of the trainer's own epoch loop (RecBole's
  ``_train_epoch``: copy to the device, loss, backward, optimiser, and RecBole's
  per-step ``loss.item()``), on batches built beforehand, after ``--warmup`` steps;
* *epoch estimate*: (host batch + step) x the loader's steps per epoch;
* the operators with the most self time on the device (CUDA) or the CPU, from
  ``torch.profiler`` over ``--profile-steps`` steps.

GRU4Rec trains session-parallel inside its trainer (no host batches): its step is its
trainer's ``train_sessions`` over the first sessions, timed per mini-batch.

Written to ``--out``: ``step_profile.json`` and ``step_profile.md``. Without CUDA it
says so in one line and exits 1; ``--device cpu`` profiles the CPU.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

import bench  # noqa: F401  (compat shims before recbole)
from bench.benchmarks.gpu_check import CHECKS, run_header, selected, write_outputs
from bench.data import DEFAULT_DATA_ROOT, load_splits, make_config
from bench.registry import resolve_model
from bench.runner import build_model, train_loader
from bench.training import HarnessTrainer
from custom_models.gru4rec_trainer import GRU4RecTrainer, session_order, session_parallel, sessions_from_rows

TRAINED = [c for c in CHECKS if c.versus is not None or c.model.startswith("recbole:")]


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _top_operators(prof, device: str, rows: int = 12) -> list[dict]:
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)  # aggregated once
    total = sum(getattr(e, key) for e in events) or 1.0
    return [{"name": e.key, "calls": e.count, "self_ms": getattr(e, key) / 1000.0,
             "share": getattr(e, key) / total} for e in events[:rows]]


def _profiled(run, device: str):
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        run()
        _sync(device)
    return _top_operators(prof, device)


def profile_model(check, dataset: str, args, data_root: Path, workdir: str) -> dict:
    """The host-batch and step times of one model, and its top operators."""
    from recbole.utils import init_seed

    spec = resolve_model(check.model)
    settings = {**check.settings, "seed": args.seed, "checkpoint_dir": workdir}
    if args.device == "cpu":
        settings.update(device="cpu", use_gpu=False)
    config = make_config(spec, dataset, settings, data_root)
    init_seed(args.seed, config["reproducibility"])
    splits = load_splits(config, data_root)
    model = build_model(spec, config, splits)
    trainer = (spec.trainer or HarnessTrainer)(config, model)
    loader = train_loader(spec, config, splits)
    n = args.warmup + args.steps
    row = {"label": check.label, "model": check.model, "dataset": dataset, "settings": check.settings,
           "steps_per_epoch": None, "host_batch_ms": 0.0}

    if isinstance(trainer, GRU4RecTrainer):  # session-parallel: the trainer makes its own mini-batches
        items, offsets = sessions_from_rows(loader.dataset)
        lanes = trainer.batch_size

        def first_sessions(steps: int) -> np.ndarray:
            """Offsets of the fewest leading sessions that give ``steps`` mini-batches or more."""
            events = np.diff(offsets) - 1
            k = int(np.searchsorted(np.cumsum(events), steps * lanes)) + lanes + 1
            return offsets[: min(k, len(offsets) - 1) + 1]

        def steps_of(part: np.ndarray) -> int:
            """Mini-batches of ``part`` in the configured ``session_order`` (``random``: one
            draw of it, from a generator of its own: the count hardly moves between draws)."""
            order = session_order(part, trainer.session_order, torch.Generator().manual_seed(0))
            return sum(1 for _ in session_parallel(part, lanes, order))

        trainer.train_sessions(items, first_sessions(args.warmup))
        part = first_sessions(args.steps)
        _sync(args.device)
        start = time.perf_counter()
        trainer.train_sessions(items, part)
        _sync(args.device)
        row["step_ms"] = (time.perf_counter() - start) * 1000 / steps_of(part)
        row["steps_per_epoch"] = steps_of(offsets)
        row["batch"] = f"{lanes} lanes"
        row["top_operators"] = _profiled(lambda: trainer.train_sessions(items, first_sessions(args.profile_steps)),
                                         args.device)
    else:
        model.train()
        start = time.perf_counter()
        batches = list(itertools.islice(iter(loader), n))
        row["host_batch_ms"] = (time.perf_counter() - start) * 1000 / len(batches)
        row["steps_per_epoch"] = len(loader)
        row["batch"] = "x".join(str(s) for s in batches[0][config["ITEM_ID_FIELD"] + config["LIST_SUFFIX"]].shape)
        trainer._train_epoch(batches[: args.warmup], 0)  # RecBole's loop, as every epoch runs it
        _sync(args.device)
        start = time.perf_counter()
        trainer._train_epoch(batches[args.warmup:], 0)
        _sync(args.device)
        row["step_ms"] = (time.perf_counter() - start) * 1000 / (len(batches) - args.warmup)
        row["top_operators"] = _profiled(lambda: trainer._train_epoch(batches[-args.profile_steps:], 0), args.device)
    row["epoch_estimate_s"] = (row["step_ms"] + row["host_batch_ms"]) * row["steps_per_epoch"] / 1000
    return row


def markdown(out: dict) -> str:
    lines = [f"# Step profile: ours beside RecBole's on {out['device']}", "",
             f"Command: `{out['command']}`  ", f"Commit: `{out['commit']}`  ",
             f"torch {out['torch']}, CUDA {out['cuda']}, Python {out['python']}.", "",
             "| model | dataset | batch | host batch ms | step ms | steps / epoch | epoch estimate s |",
             "|---|---|---|---|---|---|---|"]
    for r in out["runs"]:
        lines.append(f"| {r['label']} | {r['dataset']} | {r['batch']} | {r['host_batch_ms']:.2f} | {r['step_ms']:.2f} "
                     f"| {r['steps_per_epoch']} | {r['epoch_estimate_s']:.1f} |")
    lines += ["", "*step*: the trainer's own loop on batches built beforehand (device copy, loss, backward, "
              "optimiser, RecBole's per-step `loss.item()`); *host batch*: building one batch on the host "
              "(GRU4Rec builds its mini-batches inside its step); the estimate is their sum times the steps "
              "of an epoch.", ""]
    for r in out["runs"]:
        lines += [f"## {r['label']}: top operators by self {out['time_kind']} time", "",
                  "| operator | calls | self ms | share |", "|---|---|---|---|"]
        lines += [f"| `{op['name']}` | {op['calls']} | {op['self_ms']:.2f} | {op['share']:.0%} |"
                  for op in r["top_operators"]]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--models", default=None, help="only these registry names, e.g. narm,recbole:NARM")
    parser.add_argument("--session-data", default="diginetica")
    parser.add_argument("--loo-data", default="beauty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--out", default="step_profile")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"step_profile: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "--device cpu profiles the CPU", file=sys.stderr)
        return 1
    if min(args.steps, args.warmup, args.profile_steps) < 1:
        parser.error("--steps, --warmup and --profile-steps must be at least 1")
    data_root = Path(args.data_root)
    datasets = {"session": args.session_data, "loo": args.loo_data}
    checks = selected(TRAINED, args.models, datasets, data_root)
    runs = []
    for check in checks:
        with tempfile.TemporaryDirectory() as work:
            runs.append(profile_model(check, datasets[check.data], args, data_root, work))
        print(json.dumps({k: runs[-1][k] for k in ("label", "host_batch_ms", "step_ms", "epoch_estimate_s")}),
              flush=True)
    out = {**run_header("bench.benchmarks.step_profile", args.device, argv),
           "time_kind": "CUDA" if args.device == "cuda" else "CPU", "runs": runs}
    print(write_outputs(args.out, "step_profile", out, markdown(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

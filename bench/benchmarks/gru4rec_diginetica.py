"""Real check of our GRU4Rec: the official Diginetica parameters on the full SR-GNN split.

The official PyTorch GRU4Rec, with the same parameters (custom_models/gru4rec.yaml),
reaches Recall@20 54.16 / MRR@20 18.30 (R@10 40.45 / MRR@10 17.35) on this exact
split, training ~125 s per epoch on a 2-core CPU. Two runs:

* ``official``: trained as the official run was, on every training session (our
  train split plus the validation sessions, in time order), 10 epochs, and the final
  model is tested (nothing selected on validation);
* ``protocol``: our session protocol (:func:`bench.runner.run_once`): the train split
  only, the best epoch by validation MRR@20.

Converts Diginetica first if needed. Writes a JSON summary (metrics, wall and CPU
seconds per epoch, evaluation seconds, load average) and prints it.

    python -m bench.benchmarks.gru4rec_diginetica [--mode official|protocol|both]
        [--data-root dataset_atomic] [--epochs 10] [--threads 1] [--workdir /tmp/gru4rec_diginetica]
        [--session-order data|random|longest_first]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

import bench  # noqa: F401
from bench.data import load_splits, make_config, train_and_valid, whole_sequence_rows
from bench.evaluator import metrics_for, rank_cases
from bench.registry import resolve_model
from custom_models.gru4rec_trainer import SESSION_ORDERS, sessions_from_rows

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
PUBLISHED = {"recall@20": 0.5416, "mrr@20": 0.1830, "recall@10": 0.4045, "mrr@10": 0.1735, "seconds_per_epoch": 125}


def timed_epochs(trainer) -> list[float]:
    """Record the process CPU seconds of every training epoch (wall time is in the curve)."""
    cpu: list[float] = []
    train_epoch = trainer.train_epoch

    def wrapped(*args, **kwargs):
        start = time.process_time()
        try:
            return train_epoch(*args, **kwargs)
        finally:
            cpu.append(time.process_time() - start)

    trainer.train_epoch = wrapped
    return cpu


def run_official(name: str, data_root: str, seed: int, workdir: Path, overrides: dict) -> dict:
    """Train on train + validation sessions for all epochs; test the final model."""
    from recbole.data.interaction import cat_interactions
    from recbole.data.utils import create_samplers, get_dataloader
    from recbole.utils import init_seed

    spec = resolve_model("gru4rec")
    settings = {**overrides, "seed": seed, "checkpoint_dir": str(workdir / "checkpoints"),
                "device": "cpu", "use_gpu": False}
    config = make_config(spec, name, settings, data_root)
    init_seed(config["seed"], config["reproducibility"])
    splits = load_splits(config, data_root)
    init_seed(config["seed"], config["reproducibility"])
    model = spec.cls(config, train_and_valid(splits))  # it knows (scores) the items of every training session
    sessions = splits.train.copy(cat_interactions([whole_sequence_rows(splits.train).inter_feat,
                                                    whole_sequence_rows(splits.valid).inter_feat]))
    sampler, _, _ = create_samplers(config, splits.dataset, [sessions, splits.valid, splits.test])
    loader = get_dataloader(config, "train")(config, sessions, sampler, shuffle=False)
    trainer = spec.trainer(config, model)
    cpu = timed_epochs(trainer)
    trainer.fit(loader, None, saved=False, show_progress=True)
    start = time.perf_counter()
    ranks = rank_cases(model, splits.cases("test"), "cpu")
    return {"test": metrics_for(ranks)["full"], "eval_seconds": time.perf_counter() - start,
            "curve": trainer.curve, "cpu_seconds": cpu,
            "training_sessions": len(sessions_from_rows(sessions)[1]) - 1}


def run_protocol(name: str, data_root: str, seed: int, workdir: Path, overrides: dict) -> dict:
    from bench.runner import run_once

    result = run_once("gru4rec", name, seed, workdir, overrides, data_root=data_root)
    return {"test": result.metrics["test"]["full"], "valid": result.metrics["valid"]["full"],
            "eval_seconds": result.eval_seconds, "best_epoch": result.best_epoch, "curve": result.curve}


def summary(run: dict) -> dict:
    epochs = [c["train_seconds"] for c in run["curve"]]
    out = {k: v for k, v in run.items() if k != "curve"}
    out["seconds_per_epoch"] = sum(epochs) / len(epochs)
    out["epoch_seconds"] = epochs
    out["train_loss"] = [c["train_loss"] for c in run["curve"]]
    if "cpu_seconds" in run:
        out["cpu_seconds_per_epoch"] = sum(run["cpu_seconds"]) / len(run["cpu_seconds"])
    if any("valid" in c for c in run["curve"]):
        out["valid_mrr@20"] = [c.get("valid", {}).get("mrr@20") for c in run["curve"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["official", "protocol", "both"], default="both")
    parser.add_argument("--data-root", default="dataset_atomic")
    parser.add_argument("--name", default="diginetica")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the box is shared: 1)")
    parser.add_argument("--workdir", default="/tmp/gru4rec_diginetica")
    parser.add_argument("--out", default=None, help="JSON summary (default: WORKDIR/summary.json)")
    parser.add_argument("--session-order", choices=SESSION_ORDERS, default=None,
                        help="the order sessions enter the lanes (default: gru4rec.yaml's, the stored order)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out or Path(args.workdir) / "summary.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not (Path(args.data_root) / args.name / "manifest.json").is_file():
        from bench.convert import convert

        convert("srgnn", SHARED / "diginetica", args.name, args.data_root)
    overrides = {"epochs": args.epochs, "show_progress": False,
                 **({"session_order": args.session_order} if args.session_order else {})}
    report = {"published_official": PUBLISHED, "threads": args.threads, "epochs": args.epochs,
              "session_order": args.session_order or "default",
              "load_average_start": os.getloadavg()}
    modes = ["official", "protocol"] if args.mode == "both" else [args.mode]
    for mode in modes:
        run = (run_official if mode == "official" else run_protocol)(
            args.name, args.data_root, args.seed, Path(args.workdir) / mode, overrides)
        report[mode] = summary(run)
        report["load_average_end"] = os.getloadavg()
        out.write_text(json.dumps(report, indent=2, default=float))
        print(json.dumps({mode: report[mode]}, indent=2, default=float), flush=True)


if __name__ == "__main__":
    main()

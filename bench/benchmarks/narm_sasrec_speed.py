"""Seconds per epoch and test metrics of our NARM and SASRec, for each of their losses.

Every variant runs through :func:`bench.runner.run_once` on one converted dataset
(default: MovieLens-100k converted from RecBole's embedded copy, leave-one-out),
with early stopping on the validation MRR@20 (the harness default) within
``--epochs`` epochs, then the best epoch's model is tested once. *s/epoch* is the
mean training time of an epoch without validation (``RunResult.seconds_per_epoch``).

    python -m bench.benchmarks.narm_sasrec_speed [--name ml100k] [--epochs 30] [--negatives 256]
        [--variants narm,narm-sampled,sasrec-bce,sasrec-ce,sasrec-sampled] [--out reports/narm_sasrec_speed.md]
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import bench  # noqa: F401  (compat shims before recbole)
from bench.runner import RunResult, run_once

# variant -> (model, overrides); "{negatives}" is filled from --negatives
VARIANTS = {
    "narm": ("narm", {}),
    "narm-sampled": ("narm", {"loss_type": "sampled", "n_negatives": "{negatives}"}),
    "sasrec-bce": ("sasrec", {}),
    "sasrec-ce": ("sasrec", {"loss_type": "CE"}),
    "sasrec-sampled": ("sasrec", {"loss_type": "sampled", "n_negatives": "{negatives}"}),
}
COLUMNS = ("recall@10", "ndcg@10", "recall@20", "mrr@20")


def row(label: str, overrides: dict, result: RunResult) -> str:
    test = result.metrics["test"]
    cells = [label, ", ".join(f"{k}={v}" for k, v in overrides.items()) or "paper defaults",
             f"{result.seconds_per_epoch:.2f}", f"{result.best_epoch} / {result.epochs_trained}",
             f"{result.train_seconds:.0f}", f"{result.eval_seconds:.2f}",
             *(f"{test['full'][k]:.4f}" for k in COLUMNS)]
    sampled = test.get("sampled")
    cells += [f"{sampled['recall@10']:.4f}", f"{sampled['ndcg@10']:.4f}"] if sampled else ["–", "–"]
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="dataset_atomic")
    parser.add_argument("--name", default="ml100k", help="converted dataset (ml100k is converted if missing)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--epochs", type=int, default=30, help="most epochs (early stopping may end sooner)")
    parser.add_argument("--negatives", type=int, default=2048, help="n_negatives of the sampled variants")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=None, help="also write the markdown here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.name == "ml100k" and not (Path(args.data_root) / args.name / "manifest.json").is_file():
        from bench.convert import convert, recbole_ml100k_path

        convert("movielens", recbole_ml100k_path(), args.name, args.data_root)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# NARM and SASRec: seconds per epoch and test metrics on `{args.name}`", "",
             f"Command: `python -m bench.benchmarks.narm_sasrec_speed {shlex.join(argv or sys.argv[1:])}`  ",
             f"Commit: `{commit}`; torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs; "
             f"load at start {os.getloadavg()[0]:.1f}; seed {args.seed}", "",
             "| variant | overrides | s/epoch | best / epochs | train s | test eval s | "
             + " | ".join(COLUMNS) + " | sampled HR@10 | sampled NDCG@10 |",
             "|" + "---|" * (8 + len(COLUMNS))]
    print("\n".join(lines), flush=True)
    with tempfile.TemporaryDirectory() as work:
        for label in args.variants.split(","):
            model, template = VARIANTS[label]
            overrides = {k: (args.negatives if v == "{negatives}" else v) for k, v in template.items()}
            start = time.perf_counter()
            result = run_once(model, args.name, args.seed, Path(work) / label, {**overrides, "epochs": args.epochs},
                              data_root=args.data_root)
            lines.append(row(label, overrides, result))
            print(lines[-1], f"<!-- {time.perf_counter() - start:.0f} s wall -->", flush=True)
    lines += ["", f"Load at end {os.getloadavg()[0]:.1f}. Test metrics: full ranking over all items, and the "
              "100 fixed sampled negatives where the dataset has them; the tie rule of bench.evaluator.", ""]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

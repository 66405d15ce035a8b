"""The GPU check: every model on CUDA for a short time budget, ours beside RecBole's same-name models.

    python -m bench.benchmarks.gpu_check [--budget-seconds 240] [--out DIR]
        [--session-data diginetica] [--loo-data beauty] [--seed 0] [--device cuda]

It converts what it needs, then runs in this process through :func:`bench.runner.run_once`
(the one evaluator; no Ray, which a GPU machine may not have):

* NARM (embedding 50, hidden 100, 512 targets a step) and GRU4Rec (ours: the official
  Diginetica parameters; RecBole's: its defaults) on the session dataset;
* SASRec with full cross-entropy (d 50, 2 blocks, 1 head, 128 a step, dropout 0.5 as on
  the sparse Amazon data) on the leave-one-out dataset;
* POP, S-POP, Item-KNN and BPR-MF on the session dataset.

Each trained run gets a share of ``--budget-seconds`` (:data:`SHARES`, wall seconds from
its start, loading included): it trains, validating after every epoch, until its share
is spent, then its best epoch is tested (``stopping_step`` is lifted, so the budget
ends it). Ours and RecBole's side of a pair get equal shares. Written to ``--out``:
``gpu_check.json`` (every run's curve) and ``gpu_check.md``: seconds per epoch, epochs,
the best validation score, the seconds ours needed to first reach RecBole's best
validation score (training + validation), test metrics, peak GPU memory.

Without CUDA it says so in one line and exits 1; ``--device cpu`` runs the same check
on the CPU (a dry run of the script with a tiny budget; the tests use it).
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import bench  # noqa: F401  (compat shims before recbole)
from bench.benchmarks.learning_per_epoch import NARM_SIZES, SASREC_SIZES
from bench.data import DEFAULT_DATA_ROOT
from bench.runner import run_once
from bench.suite import ensure_converted
from bench.training import StopTraining

SASREC_CHECK = {**SASREC_SIZES, "valid_metric": "NDCG@10"}
SASREC_OURS = {**SASREC_CHECK, "dropout_prob": 0.5}
# RecBole's FFN at the paper's width and activation, its dropouts at ours
SASREC_RECBOLE = {**SASREC_CHECK, "inner_size": 50, "hidden_act": "relu", "attn_dropout_prob": 0.5,
                  "hidden_dropout_prob": 0.5}


@dataclass(frozen=True)
class Check:
    label: str  # the table's row
    model: str  # a registry name
    data: str  # "session" | "loo"
    settings: dict = field(default_factory=dict)
    share: float = 0.0  # of --budget-seconds
    versus: str | None = None  # the label of RecBole's side of the pair


DEFAULT_TF32 = "PyTorch's default (cuDNN on, matrix products off)"

CHECKS = (
    Check("NARM (RecBole)", "recbole:NARM", "session", {**NARM_SIZES, "n_layers": 1}, 0.18),
    Check("NARM", "narm", "session", NARM_SIZES, 0.18, versus="NARM (RecBole)"),
    Check("SASRec CE (RecBole)", "recbole:SASRec", "loo", SASREC_RECBOLE, 0.15),
    Check("SASRec CE", "sasrec", "loo", SASREC_OURS, 0.15, versus="SASRec CE (RecBole)"),
    Check("GRU4Rec (RecBole)", "recbole:GRU4Rec", "session", {}, 0.1),
    Check("GRU4Rec", "gru4rec", "session", {}, 0.1, versus="GRU4Rec (RecBole)"),
    Check("BPR-MF", "bprmf", "session", {}, 0.06),
    Check("POP", "pop", "session"),
    Check("S-POP", "spop", "session"),
    Check("Item-KNN", "itemknn", "session"),
)


def run_check(check: Check, dataset: str, budget: float, seed: int, device: str, data_root: Path,
              extra: dict | None = None) -> dict:
    """One run, ended by its time budget; its curve, test metrics and peak GPU memory."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()

    def within_budget(epoch: int, score: float) -> None:
        if time.perf_counter() - start >= budget:
            raise StopTraining

    settings = {**check.settings, **(extra or {}), "epochs": 10_000, "stopping_step": 10_000}
    if not cuda:
        settings.update(device="cpu", use_gpu=False)
    with tempfile.TemporaryDirectory() as work:
        result = run_once(check.model, dataset, seed, work, settings, data_root=data_root, on_epoch=within_budget)
    wall = time.perf_counter() - start
    metric = str(result.config.get("valid_metric", "MRR@20")).lower()
    curve = [{"train_seconds": c["train_seconds"], "valid_seconds": c.get("valid_seconds", 0.0),
              "valid": c.get("valid", {}).get(metric)} for c in result.curve]
    return {"label": check.label, "model": check.model, "dataset": dataset, "settings": check.settings,
            "budget_seconds": budget, "wall_seconds": wall, "valid_metric": metric, "curve": curve,
            "best_epoch": result.best_epoch, "epochs": result.epochs_trained,
            "seconds_per_epoch": result.seconds_per_epoch, "test": result.metrics["test"],
            "eval_seconds": result.eval_seconds,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}


def seconds_to(run: dict, score: float) -> float | None:
    """Training + validation seconds until ``run`` first validates at ``score`` or above."""
    total = 0.0
    for epoch in run["curve"]:
        total += epoch["train_seconds"] + epoch["valid_seconds"]
        if epoch["valid"] is not None and epoch["valid"] >= score - 1e-12:
            return total
    return None


def compare(runs: list[dict]) -> None:
    """Adds to each of ours its time to RecBole's best validation score, and RecBole's own."""
    by_label = {r["label"]: r for r in runs}
    for check in CHECKS:
        if check.versus is None or check.label not in by_label or check.versus not in by_label:
            continue
        ours, theirs = by_label[check.label], by_label[check.versus]
        scores = [e["valid"] for e in theirs["curve"] if e["valid"] is not None]
        if not scores:
            continue
        target = max(scores)
        theirs["seconds_to_recbole_best"] = seconds_to(theirs, target)
        ours["recbole_best_valid"] = theirs["recbole_best_valid"] = target
        ours["seconds_to_recbole_best"] = seconds_to(ours, target)
        if ours["seconds_to_recbole_best"] and theirs["seconds_to_recbole_best"]:
            ours["speedup"] = theirs["seconds_to_recbole_best"] / ours["seconds_to_recbole_best"]


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(out: dict) -> str:
    lines = [f"# GPU check: ours beside RecBole's on {out['device']}", "",
             f"Command: `{out['command']}`  ", f"Commit: `{out['commit']}`  ",
             f"torch {out['torch']}, CUDA {out['cuda']}, Python {out['python']}; budget {out['budget_seconds']:g} s "
             f"in all, {out['wall_seconds']:.0f} s wall; TF32: {out['tf32']}.", "",
             "| model | dataset | epochs | s/epoch | best valid | s to RecBole's best valid | speed-up "
             "| test MRR@20 / NDCG@10 | test Recall@20 / Recall@10 | peak GPU MB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["runs"]:
        valid = [e["valid"] for e in r["curve"] if e["valid"] is not None]
        full = r["test"].get("full", {})
        key, recall = ("mrr@20", "recall@20") if r["valid_metric"] == "mrr@20" else ("ndcg@10", "recall@10")
        speedup = r.get("speedup")
        lines.append(f"| {r['label']} | {r['dataset']} | {r['epochs']} | {_cell(r['seconds_per_epoch'], 1)} "
                     f"| {_cell(max(valid) if valid else None)} ({r['valid_metric']}) "
                     f"| {_cell(r.get('seconds_to_recbole_best'), 1)} "
                     f"| {'–' if speedup is None else f'{speedup:.1f}x'} | {_cell(full.get(key))} "
                     f"| {_cell(full.get(recall))} | {_cell(r['peak_gpu_mb'], 0)} |")
    lines += ["", "Each run trains until its share of the budget is spent (wall seconds from its start, data "
              "loading included), validating after every epoch; its best epoch is tested. *s to RecBole's best "
              "valid*: training + validation seconds until the first epoch at or above the best validation "
              "score RecBole's side of the pair reached within its equal share; *speed-up*: RecBole's seconds "
              "to its best over ours. Models without training (POP, S-POP, Item-KNN) show no epochs.", ""]
    return "\n".join(lines)


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def selected(checks, models: str | None, datasets: dict[str, str], data_root: Path) -> list[Check]:
    """The checks of ``models`` (comma-separated registry names; None: all), their data converted."""
    wanted = None if models is None else set(models.split(","))
    checks = [c for c in checks if wanted is None or c.model in wanted]
    for kind in dict.fromkeys(c.data for c in checks):
        ensure_converted(datasets[kind], data_root)
    return checks


def run_header(module: str, device: str, argv: list[str] | None) -> dict:
    """The device, the versions, the command and the commit, for a benchmark's JSON."""
    cpu = platform.processor() or platform.machine()
    return {"device": torch.cuda.get_device_name(0) if device == "cuda" else
            f"CPU ({cpu}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "command": " ".join([f"python -m {module}", *(sys.argv[1:] if argv is None else argv)]),
            "commit": _commit()}


def write_outputs(folder: str | Path, stem: str, out: dict, text: str) -> Path:
    """``stem.json`` and ``stem.md`` in ``folder``; returns the markdown's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(out, indent=1))
    (folder / f"{stem}.md").write_text(text)
    return folder / f"{stem}.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget-seconds", type=float, default=240.0)
    parser.add_argument("--out", default="gpu_check")
    parser.add_argument("--session-data", default="diginetica")
    parser.add_argument("--loo-data", default="beauty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--models", default=None, help="only these rows' registry names, e.g. narm,recbole:NARM")
    parser.add_argument("--tf32", choices=("on", "off"), default=None,
                        help="every run's `tf32` (bench/precision.py); default: PyTorch's own")
    args = parser.parse_args(argv)
    extra = {} if args.tf32 is None else {"tf32": args.tf32 == "on"}
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}, CUDA build {torch.version.cuda}); "
              "it checks the GPU path (--device cpu for a dry run on the CPU)", file=sys.stderr)
        return 1
    start = time.perf_counter()
    data_root = Path(args.data_root)
    datasets = {"session": args.session_data, "loo": args.loo_data}
    checks = selected(CHECKS, args.models, datasets, data_root)
    runs = []
    for check in checks:
        budget = max(check.share * args.budget_seconds, 1.0)
        run = run_check(check, datasets[check.data], budget, args.seed, args.device, data_root, extra)
        runs.append(run)
        print(json.dumps({k: run[k] for k in ("label", "epochs", "seconds_per_epoch", "wall_seconds")}), flush=True)
    compare(runs)
    out = {**run_header("bench.benchmarks.gpu_check", args.device, argv), "budget_seconds": args.budget_seconds,
           "seed": args.seed, "tf32": args.tf32 or DEFAULT_TF32, "wall_seconds": time.perf_counter() - start,
           "runs": runs}
    print(write_outputs(args.out, "gpu_check", out, markdown(out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

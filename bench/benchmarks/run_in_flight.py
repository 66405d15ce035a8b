"""Test the best model so far of suite runs still in flight, or cut off, without touching them.

    python -m bench.benchmarks.run_in_flight SUITE [--results results] [--models narm]
        [--data-root dataset_atomic] [--threads 1] [--out FILE.json]

A paper-scale run trains for hours, and a session or a job may end before it does. The
results store keeps its progress after every epoch (``<results>/.partial/...``: the
validation curve and the best-validation checkpoint), and ``bench run`` resumes from
there. This reads that progress for every run of ``SUITE`` that the store has not
finished, and ranks the validation and test cases with the best-validation checkpoint,
through the same evaluator as a finished run: the test score the run would report if it
stopped now (it is selected on validation, never on test). The progress is only read, so
the run can go on. One line a run on stdout, and a JSON with the curves with ``--out``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import bench.compat  # noqa: F401
from bench.data import DEFAULT_DATA_ROOT, load_splits, make_config
from bench.errors import InputError
from bench.evaluator import metrics_for, rank_cases
from bench.registry import resolve_model
from bench.runner import build_model
from bench.training import BEST_MODEL_FILE, PROGRESS_FILE

def evaluate_in_flight(model: str, dataset: str, seed: int, settings: dict, fit_dir: str | Path,
                       data_root: str | Path = DEFAULT_DATA_ROOT) -> dict:
    """The curve so far and the valid / test metrics of the best checkpoint in ``fit_dir``
    (a run's ``.../fit`` progress folder), for ``model`` built with ``settings`` on CPU."""
    fit_dir = Path(fit_dir)
    progress = torch.load(fit_dir / PROGRESS_FILE, map_location="cpu", weights_only=False)
    best = torch.load(fit_dir / BEST_MODEL_FILE, map_location="cpu", weights_only=False)
    spec = resolve_model(model)
    config = make_config(spec, dataset, {**settings, "seed": seed, "device": "cpu", "use_gpu": False}, data_root)
    splits = load_splits(config, data_root)
    net = build_model(spec, config, splits)
    net.load_state_dict(best["state_dict"])
    net.load_other_parameter(best.get("other_parameter"))
    net.eval()
    curve = [{"epoch": c["epoch"], "train_seconds": c.get("train_seconds"), "valid": c.get("valid", {})}
             for c in progress["curve"]]
    # a new best model becomes best.pth just after its epoch's progress is saved: read
    # between the two, the checkpoint is one epoch behind the curve, so its epoch is its own
    return {"model": model, "dataset": dataset, "seed": seed, "epochs_trained": len(curve),
            "best_epoch": best.get("epoch"), "fit_seconds": progress.get("seconds"), "curve": curve,
            "valid": metrics_for(rank_cases(net, splits.cases("valid"), "cpu")),
            "test": metrics_for(rank_cases(net, splits.cases("test"), "cpu"))}


def _line(result: dict) -> str:
    valid, test = result["valid"].get("full", {}), result["test"].get("full", {})
    return (f"{result['dataset']}/{result['model']}/seed-{result['seed']}: {result['epochs_trained']} epochs, "
            f"best {result['best_epoch']}; valid Recall@20 / MRR@20 {valid.get('recall@20', float('nan')):.4f} / "
            f"{valid.get('mrr@20', float('nan')):.4f}; test {test.get('recall@20', float('nan')):.4f} / "
            f"{test.get('mrr@20', float('nan')):.4f}")


def main(argv: list[str] | None = None) -> int:
    from bench.store import ResultStore
    from bench.suite import find_suite, load_suite, plan, prepare_datasets

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("suite", help="a suite YAML file, or a shipped suite's name")
    parser.add_argument("--results", default="results")
    parser.add_argument("--data-root", default=DEFAULT_DATA_ROOT)
    parser.add_argument("--models", help="only these models (comma-separated)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="write the results, curves included, to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        suite = load_suite(find_suite(args.suite), args.data_root)
        prepare_datasets(suite, args.data_root)  # as bench run does: the planner reads the converted manifests
        runs = plan(suite, args.data_root, ResultStore(args.results))
    except InputError as err:
        print(f"run_in_flight: {err}", file=sys.stderr)
        return 2
    wanted = set(args.models.split(",")) if args.models else None
    results = []
    for run in runs:
        if run.state == "finished" or run.progress_dir is None or (wanted and run.key.model not in wanted):
            continue
        fit_dir = Path(run.progress_dir) / "fit"
        if not (fit_dir / PROGRESS_FILE).is_file() or not (fit_dir / BEST_MODEL_FILE).is_file():
            continue
        result = evaluate_in_flight(run.key.model, run.key.dataset, run.key.seed, run.settings, fit_dir,
                                    run.data_root)
        results.append(result)
        print(_line(result), flush=True)
    if not results:
        print(f"run_in_flight: no run of {suite.name} in flight under {args.results}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

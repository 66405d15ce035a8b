"""POP, S-POP and Item-KNN on the full SR-GNN Diginetica split, against SR-GNN's Table 2.

Full ranking over all 43,097 items, every one of the 60,858 published test prefixes,
our tie rule (mean of optimistic and pessimistic rank). Each baseline is fitted twice:

* ``harness``: as ``bench run`` fits it, on the training split without the most recent
  10% of training sessions (held out for validation);
* ``all-train``: on every training session, as the published baselines were.

Converts Diginetica first if needed. Measured (Recall@20 / MRR@20 in %, all-train;
harness in brackets): POP 0.93 / 0.21 (0.85 / 0.20), S-POP 21.09 / 13.67
(21.05 / 13.66), Item-KNN 37.23 / 11.97 (34.63 / 11.11); SR-GNN's table: 0.89 / 0.20,
21.06 / 13.68, 35.75 / 11.57. POP and S-POP agree with a count straight from the
SR-GNN pickles; Item-KNN with a dictionary implementation from them.

    python -m bench.benchmarks.baselines_diginetica [--data-root dataset_atomic] [--reference]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import bench  # noqa: F401
from bench.data import load_splits, make_config
from bench.evaluator import metrics_from_ranks, rank_cases
from bench.registry import resolve_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# SR-GNN (Wu et al., AAAI 2019) Table 2, Diginetica, Recall@20 / MRR@20 in % (as bench/published.py)
PUBLISHED = {"pop": (0.89, 0.20), "spop": (21.06, 13.68), "itemknn": (35.75, 11.57)}


def with_validation_sessions(splits):
    """The training split plus the validation sessions' prefixes: every training session."""
    from recbole.data.interaction import cat_interactions

    return splits.train.copy(cat_interactions([splits.train.inter_feat, splits.valid.inter_feat]))


def evaluate(model_name: str, dataset: str, data_root: str, all_train: bool, cache: dict) -> dict:
    spec = resolve_model(model_name)
    config = make_config(spec, dataset, {"device": "cpu", "use_gpu": False}, data_root)
    if config["MODEL_TYPE"] not in cache:  # the same splits serve every model of one RecBole type
        cache[config["MODEL_TYPE"]] = load_splits(config, data_root)
    splits = cache[config["MODEL_TYPE"]]
    start = time.perf_counter()
    model = spec.cls(config, with_validation_sessions(splits) if all_train else splits.train)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    ranks = rank_cases(model, splits.cases("test"))["full"]
    metrics = metrics_from_ranks(ranks, (10, 20))
    return {**metrics, "fit_seconds": fit, "eval_seconds": time.perf_counter() - start, "cases": len(ranks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="dataset_atomic")
    parser.add_argument("--name", default="diginetica")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reference", action="store_true", help="also RecBole's Pop and ItemKNN reference rows")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (Path(args.data_root) / args.name / "manifest.json").is_file():
        from bench.convert import convert

        convert("srgnn", SHARED / "diginetica", args.name, args.data_root)
    models = ["pop", "spop", "itemknn"] + (["recbole:Pop", "recbole:ItemKNN"] if args.reference else [])
    print("| model | fitted on | R@20 | MRR@20 | R@10 | MRR@10 | published R@20 / MRR@20 | fit s | eval s |")
    print("|---|---|---|---|---|---|---|---|---|")
    cache: dict = {}
    for name in models:
        for all_train in (False, True):
            m = evaluate(name, args.name, args.data_root, all_train, cache)
            published = PUBLISHED.get(name)
            cell = f"{published[0]:.2f} / {published[1]:.2f}" if published else "-"
            print(f"| {name} | {'all-train' if all_train else 'harness'} | {100 * m['recall@20']:.2f} | "
                  f"{100 * m['mrr@20']:.2f} | {100 * m['recall@10']:.2f} | {100 * m['mrr@10']:.2f} | {cell} | "
                  f"{m['fit_seconds']:.1f} | {m['eval_seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()

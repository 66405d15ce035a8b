"""SKNN, V-SKNN, STAN and V-STAN on all 60,858 Diginetica test cases: accuracy and time, with
session-rec's Diginetica parameters (custom_models/sknn.yaml, vsknn.yaml), fitted on all
training sessions (the session protocol's test fit), through the one evaluator.

session-rec's own V-SKNN (plain Python, one case at a time) takes 95 s on one core for
these cases and reaches Recall@20 .5168 / MRR@20 .1832 with these parameters (run on
this split, with session order as time and our tie rule; the issue on session kNN).

    python -m bench.benchmarks.session_knn_diginetica [--models vsknn,sknn,stan,vstan] [--threads 2]

Measured on a quiet 2-core machine: V-SKNN ranks all cases in 16.9 s, SKNN 10.8 s, STAN
19.4 s, V-STAN 29.4 s (README, "Measured here").
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import torch

import bench  # noqa: F401
from bench.data import DEFAULT_DATA_ROOT
from bench.runner import run_once
from bench.suite import ensure_converted

SESSION_REC = {"vsknn": {"recall@20": .5168, "mrr@20": .1832, "seconds": 95}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vsknn,sknn,stan,vstan")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ensure_converted("diginetica", args.data_root)
    out = {}
    for model in args.models.split(","):
        with tempfile.TemporaryDirectory() as work:
            start = time.perf_counter()
            result = run_once(model, "diginetica", 0, work, {}, data_root=args.data_root)
            wall = time.perf_counter() - start
        test = result.metrics["test"]["full"]
        out[model] = {"recall@20": test["recall@20"], "mrr@20": test["mrr@20"], "recall@10": test["recall@10"],
                      "mrr@10": test["mrr@10"], "test_cases": result.num_test_cases,
                      "test_seconds": result.eval_seconds, "wall_seconds": wall,
                      "load_average": os.getloadavg()[0], "session_rec": SESSION_REC.get(model)}
        print(json.dumps({model: out[model]}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

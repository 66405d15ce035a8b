"""Our V-SKNN, STAN or V-STAN against session-rec's own (rn5l/session-rec
``algorithms/knn/vsknn.py``, ``stan.py``, ``vstan.py``) on the same Diginetica cases with the same parameters: top-20 lists and ranks
of the target.

session-rec is not part of this project: pass the folder holding its ``vsknn.py``,
``stan.py`` and ``vstan.py`` (fetch the repository yourself). Its training data is our training sessions
(train + validation, as ours is fitted for the test), with the session's rank as its
time and the current session one step after the last.

    python -m bench.benchmarks.session_knn_vs_session_rec --session-rec DIR [--model vsknn|stan|vstan] [--cases 2000]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import types

import numpy as np
import pandas as pd

import bench  # noqa: F401
from bench.data import load_splits, make_config, sequence_events, train_and_valid
from bench.registry import resolve_model


def load_session_rec(folder: str, module_name: str, class_name: str):
    sys.modules.setdefault("pympler", types.ModuleType("pympler"))  # imported there for memory reports only
    sys.modules["pympler"].asizeof = types.SimpleNamespace(asizeof=lambda *a, **k: 0)
    if not hasattr(np, "in1d"):  # session-rec predates numpy 2
        np.in1d = np.isin
    spec = importlib.util.spec_from_file_location(f"session_rec_{module_name}", f"{folder}/{module_name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session-rec", required=True, help="folder holding session-rec's vsknn.py")
    parser.add_argument("--model", choices=("vsknn", "stan", "vstan"), default="vsknn")
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--data-root", default="dataset_atomic")
    args = parser.parse_args(argv)
    spec = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as work:
        config = make_config(spec, "diginetica", {"device": "cpu", "use_gpu": False, "checkpoint_dir": work},
                             args.data_root)
        splits = load_splits(config, args.data_root)
    training = train_and_valid(splits)
    ours = spec.cls(config, training)
    seq_ids, items = sequence_events(training)
    order = np.argsort(seq_ids, kind="stable")
    rank = np.unique(seq_ids, return_inverse=True)[1][order]  # session s at time s
    frame = pd.DataFrame({"SessionId": seq_ids[order], "ItemId": items[order], "Time": rank})
    now = int(rank.max()) + 1
    if args.model == "vsknn":
        theirs = load_session_rec(args.session_rec, "vsknn", "VMContextKNN")(
            k=config["k"], sample_size=config["sample_size"], weighting=config["weighting"],
            weighting_score=config["weighting_score"], idf_weighting=config["idf_weighting"],
            similarity=config["similarity"])
    elif args.model == "stan":
        theirs = load_session_rec(args.session_rec, "stan", "STAN")(
            k=config["k"], sample_size=config["sample_size"], lambda_spw=config["lambda_spw"],
            lambda_snh=config["lambda_snh"], lambda_inh=config["lambda_inh"])
    else:
        theirs = load_session_rec(args.session_rec, "vstan", "VSKNN_STAN")(
            k=config["k"], sample_size=config["sample_size"], lambda_spw=config["lambda_spw"],
            lambda_snh=config["lambda_snh"], lambda_inh=config["lambda_inh"], lambda_ipw=config["lambda_ipw"],
            lambda_idf=config["lambda_idf"])
    theirs.fit(frame)
    test = splits.test.inter_feat
    seqs, lengths, targets = (test["item_id_list"].numpy(), test["item_length"].numpy(), test["item_id"].numpy())
    n = min(args.cases, len(seqs))
    all_items = np.arange(1, splits.dataset.item_num)
    same_top20 = overlap = 0
    rank_ours, rank_theirs = [], []
    for case in range(n):
        seq = seqs[case, :lengths[case]]
        mine = ours.neighbours.scores(seqs[case:case + 1], lengths[case:case + 1])[0, 1:]
        # session-rec is fed the session click by click, and predicts after every click (its
        # evaluation does; with skip its neighbour candidates would miss the skipped clicks' sessions)
        for item in seq:
            series = theirs.predict_next(-case - 2, int(item), all_items, timestamp=now)
        other = series.to_numpy()
        for scores, ranks in ((mine, rank_ours), (other, rank_theirs)):
            target = scores[targets[case] - 1]
            ranks.append(1 + (scores > target).sum() + ((scores == target).sum() - 1) / 2)
        top_mine = set(np.argsort(-mine, kind="stable")[:20][mine[np.argsort(-mine, kind="stable")[:20]] > 0])
        top_other = set(np.argsort(-other, kind="stable")[:20][other[np.argsort(-other, kind="stable")[:20]] > 0])
        same_top20 += top_mine == top_other
        overlap += len(top_mine & top_other) / max(1, len(top_mine | top_other))
    rank_ours, rank_theirs = np.array(rank_ours), np.array(rank_theirs)
    out = {"cases": n, "same_top20_set": same_top20 / n, "mean_top20_jaccard": overlap / n,
           "same_target_rank": float((rank_ours == rank_theirs).mean()),
           "recall@20": [float((rank_ours <= 20).mean()), float((rank_theirs <= 20).mean())],
           "mrr@20": [float(np.where(rank_ours <= 20, 1 / rank_ours, 0).mean()),
                      float(np.where(rank_theirs <= 20, 1 / rank_theirs, 0).mean())]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

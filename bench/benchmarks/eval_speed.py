"""How fast the one evaluator ranks a real test set.

Ranks every Diginetica test case (60,858 prefixes) over all 43,097 items with a
100-dimensional model (a session is the mean of its item embeddings, scored by a dot
product with every item), exactly as a run does: RecBole test split, our batches,
full ranking with the tie rule. Prints the total and the model's share (computing
the scores), the rest being the evaluator's. Converts Diginetica first if needed.

    python -m bench.benchmarks.eval_speed [--data-root dataset_atomic] [--dim 100] [--threads 2]
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
from custom_models.cpu.ops import linear

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class MeanEmbedding(torch.nn.Module):
    """A stand-in scorer of the right size: session = mean of its item embeddings."""

    def __init__(self, n_items: int, dim: int):
        super().__init__()
        self.emb = torch.nn.Embedding(n_items, dim, padding_idx=0)

        self.scoring_seconds = 0.0  # the model's share of the evaluation time

    def full_sort_predict(self, batch):
        start = time.perf_counter()
        items = batch["item_id_list"]
        session = self.emb(items).sum(1) / (items != 0).sum(1, keepdim=True).clamp(min=1)
        scores = linear(session, self.emb.weight)  # as our models score: oneDNN's matrix product
        self.scoring_seconds += time.perf_counter() - start
        return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="dataset_atomic")
    parser.add_argument("--name", default="diginetica")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (Path(args.data_root) / args.name / "manifest.json").is_file():
        from bench.convert import convert

        convert("srgnn", SHARED / "diginetica", args.name, args.data_root)
    config = make_config(resolve_model("recbole:GRU4Rec"), args.name,
                         {"eval_batch_size": args.batch_size, "device": "cpu", "use_gpu": False}, args.data_root)
    splits = load_splits(config, args.data_root)
    torch.manual_seed(0)
    model = MeanEmbedding(splits.dataset.item_num, args.dim)
    cases = splits.cases("test")
    start = time.perf_counter()
    ranks = rank_cases(model, cases)["full"]
    seconds = time.perf_counter() - start
    m = metrics_from_ranks(ranks)
    print(f"{len(ranks)} cases x {splits.dataset.item_num - 1} items, dim {args.dim}, "
          f"{args.threads} threads, batches of {cases.rows_per_batch}: {seconds:.1f} s ({len(ranks) / seconds:,.0f} cases/s), "
          f"of which scoring (the model) {model.scoring_seconds:.1f} s and ranking {seconds - model.scoring_seconds:.1f} s; "
          f"untrained recall@20 {m['recall@20']:.4f}")


if __name__ == "__main__":
    main()

"""Learning per epoch and time to a validation score: ours against RecBole's same-name model.

For each pair, both sides train the same number of epochs with the same sizes and the
same number of targets per step, without early stopping, through
:func:`bench.runner.run_once` (the one evaluator). Recorded per epoch: the validation
score and the wall seconds of training. The verdict is *time to RecBole's best score*:
the training seconds ours needs to first reach the best validation score RecBole's
model reached within its epochs, against RecBole's seconds to its own best.

Pairs (``--pairs``):

* ``narm``: NARM, embedding 50, hidden 100, 512 targets a step (the NARM paper), on a
  session dataset (default ``diginetica``); ours with each ``--narm-units`` batch unit
  (``iid_targets``, the default, and ``targets``, whole sequences), RecBole's on its
  prefix rows.
* ``sasrec``: SASRec, d 50, 2 blocks, 1 head, 128 a step, on a leave-one-out dataset
  (default ``beauty``); ours CE with each ``--sasrec-units`` batch unit (``sequences``,
  the paper's 128 whole sequences, and ``iid_targets``, 128 prefixes drawn i.i.d.) and
  RecBole's CE on prefix rows.

    python -m bench.benchmarks.learning_per_epoch [--pairs narm,sasrec] [--epochs 5]
        [--recbole-epochs N] [--session-data diginetica] [--loo-data beauty] [--seeds 0,1,2]
        [--out reports/learning_per_epoch.json] [--store results/learning_per_epoch]

``--recbole-epochs`` gives RecBole's side a fixed budget of its own (default: ``--epochs``),
as :mod:`bench.benchmarks.model_speed` does: where ours is cheap per epoch but behind at
every epoch, the question is whether it reaches RecBole's best of that budget sooner in
seconds, and that takes more of our epochs than RecBole can afford. Per-epoch
comparisons then cover RecBole's epochs only.

It writes the JSON (``--out``) and, beside it, a markdown report (the same name with
``.md``): per epoch the mean validation score of each side over the seeds (± the
sample standard deviation), seconds per epoch, the time to RecBole's best, and ours
minus RecBole's paired by seed with its interval and verdict, under the command, the
commit and the device that produced it.

With several seeds each side runs once per seed (the same seeds on both sides), and the
verdict is on the per-epoch means over the seeds: the first epochs are steep, and one
seed's epoch-1 score moves with its initialisation and batch order. Beside it,
``minus_recbole_by_seed`` gives per epoch the difference ours - RecBole's paired by
seed, with its 95% t-interval: ``ahead``, ``behind`` or ``level within noise``.

``--store DIR`` keeps every finished side-run (one model, settings, dataset, seed and
device) as a small JSON there, and each run's per-epoch progress under ``DIR/.partial/``
while it trains. A later call reuses what is stored: a stored run of at least the asked
epochs gives its first epochs (training is the same up to there: no schedule depends on
the epoch budget), and a killed run resumes after its last finished epoch. So seeds can
be added one at a time, on any machine, and the store committed. A stored run records
the commit it ran at; delete it to rerun after a model change.

Converts the datasets first if needed (the shipped suites know how). Runs on the GPU
when there is one. Timing stays here, never in the tests.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

import bench  # noqa: F401  (compat shims before recbole)
from bench.data import DEFAULT_DATA_ROOT
from bench.runner import run_once
from bench.store import canonical_json, environment, model_dirname
from bench.suite import ensure_converted

NARM_SIZES = {"embedding_size": 50, "hidden_size": 100, "train_batch_size": 512}
SASREC_SIZES = {"hidden_size": 50, "n_layers": 2, "n_heads": 1, "train_batch_size": 128, "loss_type": "CE"}


RUN_FIELDS = ("model", "settings", "valid_metric", "valid", "train_seconds", "valid_seconds", "wall_seconds")


def device_name() -> str:
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def one_side(model: str, dataset: str, settings: dict, epochs: int, seed: int, data_root: Path,
             progress_dir: Path | None = None) -> dict:
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        result = run_once(model, dataset, seed, work, {**settings, "epochs": epochs, "stopping_step": epochs + 1},
                          data_root=data_root, evaluate_test=False, progress_dir=progress_dir)
        wall = time.perf_counter() - start
    metric = result.config.get("valid_metric", "MRR@20").lower()
    return {
        "model": model, "settings": settings, "valid_metric": metric,
        "valid": [c["valid"][metric] for c in result.curve],
        "train_seconds": [c["train_seconds"] for c in result.curve],
        "valid_seconds": [c.get("valid_seconds", 0.0) for c in result.curve],
        "wall_seconds": wall,
    }


class SideStore:
    """Finished side-runs as JSON, one per (model, settings, dataset, seed, device), and
    the per-epoch progress of runs in flight under ``.partial/`` (git ignores it)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    @staticmethod
    def digest(model: str, dataset: str, settings: dict, seed: int, device: str) -> str:
        key = {"model": model, "dataset": dataset, "settings": settings, "seed": seed, "device": device}
        return hashlib.sha256(canonical_json(key).encode()).hexdigest()[:16]

    def path(self, model: str, dataset: str, seed: int, digest: str) -> Path:
        return self.root / dataset / model_dirname(model) / f"seed-{seed}" / f"{digest}.json"

    def read(self, model: str, dataset: str, settings: dict, seed: int, device: str, epochs: int) -> dict | None:
        """The stored run cut to its first ``epochs`` epochs, or None if none has that many."""
        path = self.path(model, dataset, seed, self.digest(model, dataset, settings, seed, device))
        if not path.is_file():
            return None
        run = json.loads(path.read_text())
        if len(run["valid"]) < epochs:
            return None
        if len(run["valid"]) > epochs:
            run = {**run, "wall_seconds": None}  # measured over more epochs than asked
        return {**run, **{k: run[k][:epochs] for k in ("valid", "train_seconds", "valid_seconds")}}

    def write(self, run: dict, dataset: str, seed: int, device: str) -> None:
        digest = self.digest(run["model"], dataset, run["settings"], seed, device)
        path = self.path(run["model"], dataset, seed, digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        temp.write_text(json.dumps({**run, "dataset": dataset, "seed": seed, "device": device,
                                    "environment": environment()}, indent=1))
        os.replace(temp, path)  # whole or not at all

    def progress_dir(self, model: str, dataset: str, settings: dict, seed: int, device: str, epochs: int) -> Path:
        digest = self.digest(model, dataset, settings, seed, device)
        return self.root / ".partial" / f"{digest}-{epochs}-epochs"


def stored_side(model: str, dataset: str, settings: dict, epochs: int, seed: int, data_root: Path,
                store: SideStore | None) -> dict:
    """One side-run: from ``store`` when it holds one of at least ``epochs`` epochs, else
    trained (resuming its stored progress) and written there."""
    if store is None:
        return one_side(model, dataset, settings, epochs, seed, data_root)
    device = device_name()
    stored = store.read(model, dataset, settings, seed, device, epochs)
    if stored is not None:
        return {k: stored[k] for k in RUN_FIELDS}  # without the store's own keys
    progress = store.progress_dir(model, dataset, settings, seed, device, epochs)
    run = one_side(model, dataset, settings, epochs, seed, data_root, progress_dir=progress)
    store.write(run, dataset, seed, device)
    shutil.rmtree(progress, ignore_errors=True)  # the stored run replaces its progress
    return run


def side_over_seeds(side: tuple[str, dict], dataset: str, epochs: int, seeds: list[int], data_root: Path,
                    store: SideStore | None = None) -> dict:
    runs = []
    for seed in seeds:
        run = stored_side(side[0], dataset, side[1], epochs, seed, data_root, store)
        runs.append({**run, "seed": seed})
        print(json.dumps({"side": side[0], "seed": seed, "valid": run["valid"]}), flush=True)
    return {"model": side[0], "settings": side[1], "runs": runs, "mean": over_seeds(runs)}


def time_to(side: dict, score: float) -> tuple[int | None, float | None]:
    """(epoch, cumulative training seconds) at which ``side`` first reaches ``score``."""
    total = 0.0
    for epoch, (value, seconds) in enumerate(zip(side["valid"], side["train_seconds"]), 1):
        total += seconds
        if value >= score - 1e-12:
            return epoch, total
    return None, None


def compare(ours: dict, theirs: dict) -> dict:
    best = max(theirs["valid"])
    best_epoch, their_seconds = time_to(theirs, best)
    epoch, our_seconds = time_to(ours, best)
    per_epoch = [o >= t for o, t in zip(ours["valid"], theirs["valid"])]
    return {"recbole_best": best, "recbole_epoch": best_epoch, "recbole_seconds": their_seconds,
            "ours_epoch": epoch, "ours_seconds": our_seconds,
            "speedup": (their_seconds / our_seconds) if our_seconds else None,
            "ours_at_least_recbole_every_epoch": all(per_epoch)}


def over_seeds(runs: list[dict]) -> dict:
    """Per-epoch mean and sample standard deviation of the validation score, and the mean
    training seconds per epoch, over one side's runs (one per seed)."""
    scores = torch.tensor([r["valid"] for r in runs], dtype=torch.float64)
    return {"seeds": [r["seed"] for r in runs], "valid": scores.mean(0).tolist(),
            "valid_std": (scores.std(0) if len(runs) > 1 else torch.zeros(scores.size(1))).tolist(),
            "train_seconds": torch.tensor([r["train_seconds"] for r in runs], dtype=torch.float64).mean(0).tolist()}


def paired_difference(ours: list[dict], theirs: list[dict], level: float = 0.95) -> dict:
    """Per epoch, ours minus RecBole's validation score paired by seed: the mean, its
    two-sided Student-t interval at ``level``, and a verdict: ``ahead`` or ``behind``
    where the interval excludes 0, ``level within noise`` where it holds 0, ``one seed``
    where there is no interval."""
    from scipy import stats

    by_seed = {r["seed"]: r for r in theirs}
    diffs = torch.tensor([[o - t for o, t in zip(run["valid"], by_seed[run["seed"]]["valid"])]
                          for run in ours if run["seed"] in by_seed], dtype=torch.float64)
    n = diffs.size(0)
    mean = diffs.mean(0)
    if n < 2:
        return {"seeds": n, "mean": mean.tolist(), "low": None, "high": None, "verdict": ["one seed"] * diffs.size(1)}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * diffs.std(0) / n ** 0.5
    low, high = (mean - half).tolist(), (mean + half).tolist()
    verdict = ["ahead" if lo > 0 else "behind" if hi < 0 else "level within noise" for lo, hi in zip(low, high)]
    return {"seeds": n, "level": level, "mean": mean.tolist(), "low": low, "high": high, "verdict": verdict}


def _score(values: list[float], spread: list[float] | None, epoch: int) -> str:
    text = f"{values[epoch]:.4f}"
    return text + (f" ± {spread[epoch]:.4f}" if spread and any(spread) else "")


def markdown(out: dict) -> str:
    """The benchmark's JSON as a markdown report (see the module's docstring)."""
    theirs_epochs = out.get("recbole_epochs", out["epochs"])  # older JSON: one budget for both sides
    epochs = max(out["epochs"], theirs_epochs)  # columns: the longer side's epochs
    lines = ["# Learning per epoch: ours against RecBole's same-name model", "",
             f"Command: `{out.get('command', '?')}`  ",
             f"Commit: `{out.get('commit') or '?'}` (a side-run taken from a store names its own "
             f"in its JSON there); device: {out['device']}; seeds: {', '.join(map(str, out['seeds']))}; "
             f"{budget_text(out['epochs'], theirs_epochs)}, no early stopping; mean ± sample standard deviation over the seeds.", ""]
    for pair, block in out["pairs"].items():
        sides = block["sides"]
        theirs = sides["recbole"]
        metric = theirs["runs"][0]["valid_metric"].upper() if theirs["runs"] else "?"
        lines += [f"## {pair}, {block['dataset']}: validation {metric}", "",
                  "| side | " + " | ".join(f"epoch {e}" for e in range(1, epochs + 1)) +
                  " | s / epoch | time to RecBole's best |",
                  "|---|" + "---|" * epochs + "---|---|"]
        for label, side in sides.items():
            mean = side["mean"]
            seconds = sum(mean["train_seconds"]) / len(mean["train_seconds"])
            if label == "recbole":
                name, verdict = f"RecBole's {theirs['model'].split(':')[-1]}", compare(mean, mean)
                to_best = f"{verdict['recbole_seconds']:.0f} s (epoch {verdict['recbole_epoch']})"
            else:
                name, verdict = label, side["vs_recbole"]
                to_best = ("not reached" if verdict["ours_seconds"] is None else
                           f"{verdict['ours_seconds']:.0f} s (epoch {verdict['ours_epoch']}, "
                           f"{verdict['speedup']:.2f}x)")
            lines.append(f"| {name} | " + " | ".join(_score(mean["valid"], mean["valid_std"], e)
                                                    if e < len(mean["valid"]) else "–"
                                                    for e in range(epochs)) + f" | {seconds:.0f} | {to_best} |")
        for label, side in sides.items():
            diff = side.get("minus_recbole_by_seed")
            if not diff:
                continue
            cells = []
            for e in range(len(diff["mean"])):  # RecBole's epochs, where its budget is shorter
                interval = "" if diff["low"] is None else f" [{diff['low'][e]:+.4f}, {diff['high'][e]:+.4f}]"
                cells.append(f"{diff['mean'][e]:+.4f}{interval} {diff['verdict'][e]}")
            cells += [""] * (epochs - len(cells))
            lines.append(f"| {label} − RecBole's, paired by seed ({diff['seeds']}) | " + " | ".join(cells) + " | | |")
        lines.append("")
    return "\n".join(lines)


def budget_text(ours: int, theirs: int) -> str:
    if theirs == ours:
        return f"{ours} epochs a side"
    return f"{ours} epochs ours, a fixed budget of {theirs} RecBole's"


def unit_settings(unit: str) -> dict:
    """``batch_unit`` (and ``train_stride``, ``targets_per_row``) of one of our sides:
    ``sequences``, ``sequences@25`` (windows 25 apart), ``iid_targets:8`` (8 targets a row)."""
    unit, _, stride = unit.partition("@")
    name, _, per_row = unit.partition(":")
    return {"batch_unit": name, **({"train_stride": int(stride)} if stride else {}),
            **({"targets_per_row": int(per_row)} if per_row else {})}


def side_label(settings: dict) -> str:
    """``ours (iid_targets, 8 a row, windows 25 apart)``."""
    parts = [settings.get("batch_unit")]
    if "targets_per_row" in settings:
        parts.append(f"{settings['targets_per_row']} a row")
    if "train_stride" in settings:
        parts.append(f"windows {settings['train_stride']} apart")
    return f"ours ({', '.join(parts)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", default="narm,sasrec")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--recbole-epochs", type=int, default=None,
                        help="RecBole's fixed epoch budget (default: --epochs)")
    parser.add_argument("--session-data", default="diginetica")
    parser.add_argument("--loo-data", default="beauty")
    parser.add_argument("--narm-units", default="iid_targets,targets",
                        help="our sides' batch units; UNIT@S also sets train_stride S (overlapping windows), "
                             "iid_targets:G targets_per_row G")
    parser.add_argument("--sasrec-units", default="sequences,iid_targets", help="as --narm-units, e.g. sequences@25")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="reports/learning_per_epoch.json")
    parser.add_argument("--store", default=None,
                        help="keep finished side-runs here and reuse them (e.g. results/learning_per_epoch)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    data_root = Path(args.data_root)
    device = device_name() + ("" if torch.cuda.is_available() else f" ({torch.get_num_threads()} threads)")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    recbole_epochs = args.recbole_epochs or args.epochs
    out: dict = {"device": device, "epochs": args.epochs, "recbole_epochs": recbole_epochs, "seeds": seeds, "pairs": {},
                 "command": "python -m bench.benchmarks.learning_per_epoch " + " ".join(
                     sys.argv[1:] if argv is None else argv),
                 "commit": environment().get("git_commit")}
    pairs = [p for p in args.pairs.split(",") if p]
    store = SideStore(args.store) if args.store else None
    for pair in pairs:
        if pair == "narm":
            dataset, sizes = args.session_data, NARM_SIZES
            ours = [("narm", {**sizes, **unit_settings(unit)}) for unit in args.narm_units.split(",")]
            theirs = ("recbole:NARM", {**sizes, "n_layers": 1})
        elif pair == "sasrec":
            dataset, sizes = args.loo_data, SASREC_SIZES
            ours = [("sasrec", {**sizes, **unit_settings(unit), "dropout_prob": 0.2})
                    for unit in args.sasrec_units.split(",")]
            # RecBole's FFN at the paper's width (d) and activation, its dropouts at the paper's 0.2
            theirs = ("recbole:SASRec", {**sizes, "inner_size": 50, "hidden_act": "relu", "attn_dropout_prob": 0.2,
                                         "hidden_dropout_prob": 0.2, "valid_metric": "NDCG@10"})
            ours = [(m, {**s, "valid_metric": "NDCG@10"}) for m, s in ours]
        else:
            parser.error(f"unknown pair {pair!r}")
        ensure_converted(dataset, data_root)
        sides = {"recbole": side_over_seeds(theirs, dataset, recbole_epochs, seeds, data_root, store)}
        print(json.dumps({pair: {"recbole": sides["recbole"]["mean"]}}), flush=True)
        for model, settings in ours:
            label = side_label(settings)
            sides[label] = side_over_seeds((model, settings), dataset, args.epochs, seeds, data_root, store)
            sides[label]["vs_recbole"] = compare(sides[label]["mean"], sides["recbole"]["mean"])
            sides[label]["vs_recbole_per_seed"] = [compare(o, t) for o, t in zip(sides[label]["runs"],
                                                                                sides["recbole"]["runs"])]
            sides[label]["minus_recbole_by_seed"] = paired_difference(sides[label]["runs"], sides["recbole"]["runs"])
            print(json.dumps({pair: {label: {"mean": sides[label]["mean"], "vs_recbole": sides[label]["vs_recbole"]}}}),
                  flush=True)  # each run was printed as it ended
        out["pairs"][pair] = {"dataset": dataset, "sides": sides}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    Path(args.out).with_suffix(".md").write_text(markdown(out))
    print(args.out, Path(args.out).with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which difference between our NARM's training and RecBole's costs learning per epoch?

On the newest 20,000 Diginetica training sessions our NARM's validation score after 2
epochs trails RecBole's NARM in most seeds, even when ours trains on RecBole's own
prefix rows (``batch_unit: targets``, ``train_stride: 1``: 512 one-target rows a step).
A step of ours is a step of RecBole's (``tests/test_narm.py``: given RecBole's weights,
the same loss and gradients on real prefix rows), so what is left is *how* the two
train: the initial draw of the weights, the loader that orders the rows, item 0 in
RecBole's softmax, and the dropout masks. This
benchmark crosses them, through the harness's own pieces (config, splits, loader,
:class:`bench.training.HarnessTrainer`, the one evaluator), every arm on the same
slice with the same sizes, 512 targets a step, Adam 1e-3, no early stopping:

* ``recbole``: RecBole's NARM on RecBole's loader (its prefix rows);
* ``recbole-our-loader``: RecBole's NARM on our loader's rows (``batch_unit: targets``,
  ``train_stride: 1``): the same rows, drawn by our :class:`bench.batching.TargetBatchLoader`;
* ``ours``: our NARM on that loader;
* ``ours-recbole-init``: our NARM from RecBole's NARM's initial weights at the same seed
  (mapped parameter by parameter, :func:`recboles_weights_in_ours`), on that loader;
* ``recbole-without-item-0``: RecBole's NARM with its softmax over items 1.. as ours
  (RecBole's also scores item 0, the padding, and trains its embedding as a candidate);
* ``ours-iid``: our NARM as it ships (``batch_unit: iid_targets``).

If ``recbole-our-loader`` follows ``ours``, the loader is the difference; if
``ours-recbole-init`` follows ``recbole``, the initial weights are.

    python -m bench.benchmarks.narm_pipeline_ablation [--sessions 20000] [--epochs 2]
        [--seeds 0,1,2] [--arms recbole,ours,...] [--dropout 0,0] [--out reports/narm_pipeline_ablation.json]
    python -m bench.benchmarks.narm_pipeline_ablation --gradient-draws 400 --seeds 0 [--sessions 3000]

``--gradient-draws K`` trains nothing: it compares the two models' gradients under
dropout on one batch, their mean and variance over K mask draws
(:func:`gradient_moments`).

Prints one JSON line per arm and seed (validation MRR@20 and mean training loss per
epoch) and writes them all to ``--out``. Timing is not its point (the arms differ in
cost per step; see ``learning_per_epoch``).
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F

import bench  # noqa: F401  (compat shims before recbole)
from bench.data import load_splits, make_config
from bench.registry import resolve_model
from bench.runner import build_model, train_loader
from bench.store import environment
from bench.training import HarnessTrainer

SIZES = {"embedding_size": 50, "hidden_size": 100, "train_batch_size": 512}
OUR_ROWS = {"batch_unit": "targets", "train_stride": 1}  # RecBole's prefix rows, one loss each


@dataclass(frozen=True)
class Arm:
    model: str
    settings: dict = field(default_factory=dict)
    on_our_loader: bool = False  # RecBole's model on our loader's rows
    recbole_init: bool = False  # ours from RecBole's NARM's initial weights at the seed
    padding_candidate: bool = True  # RecBole's softmax over item 0 (padding) too, as RecBole's NARM has it


ARMS = {
    "recbole": Arm("recbole:NARM"),
    "recbole-our-loader": Arm("recbole:NARM", OUR_ROWS, on_our_loader=True),
    "recbole-without-item-0": Arm("recbole:NARM", padding_candidate=False),
    "ours": Arm("narm", OUR_ROWS),
    "ours-recbole-init": Arm("narm", OUR_ROWS, recbole_init=True),
    "ours-iid": Arm("narm", {"batch_unit": "iid_targets"}),
}
SHARED_DIGINETICA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "diginetica"


def cut_srgnn(src: Path, dst: Path, train_sessions: int, test_cases: int) -> Path:
    """SR-GNN pickles of the newest ``train_sessions`` training sessions of ``src`` and its
    first ``test_cases`` test cases (more, up to the end of a session), written to ``dst``."""
    with open(src / "all_train_seq.txt", "rb") as f:
        train = pickle.load(f)  # noqa: S301  (trusted: the shared real data)
    with open(src / "test.txt", "rb") as f:
        prefixes, labels = pickle.load(f)  # noqa: S301
    n = test_cases
    while n < len(prefixes) and len(prefixes[n - 1]) != 1:
        n += 1  # end on a whole session: its prefixes are listed longest first
    dst.mkdir(parents=True, exist_ok=True)
    with open(dst / "all_train_seq.txt", "wb") as f:
        pickle.dump(train[-train_sessions:], f)
    with open(dst / "test.txt", "wb") as f:
        pickle.dump((prefixes[:n], labels[:n]), f)
    return dst


def halves_swapped(matrix: torch.Tensor) -> torch.Tensor:
    """RecBole's ``b`` columns ``[c_l; c_g]`` as ours ``[c_g; c_l]`` (and back)."""
    half = matrix.size(1) // 2
    return torch.cat([matrix[:, half:], matrix[:, :half]], dim=1)


def recboles_weights_in_ours(theirs, ours) -> None:
    """Copy RecBole's NARM parameters into ours. RecBole names ``a_2`` the map of
    ``h_t`` (our ``A1``) and ``a_1`` that of ``h_j`` (our ``A2``), and concatenates
    ``[c_l; c_g]`` where we write the paper's ``[c_g; c_l]``: ``b``'s two halves swap."""
    with torch.no_grad():
        ours.item_embedding.weight.copy_(theirs.item_embedding.weight)
        ours.item_embedding.weight[0].zero_()  # our padding row (never a candidate, never an input)
        for name, value in theirs.gru.named_parameters():
            getattr(ours.gru, name).copy_(value)
        ours.A1.weight.copy_(theirs.a_2.weight)
        ours.A2.weight.copy_(theirs.a_1.weight)
        ours.v.weight.copy_(theirs.v_t.weight)
        ours.B.weight.copy_(halves_swapped(theirs.b.weight))


def loss_without_padding_candidate(self, interaction):
    """RecBole's NARM cross-entropy over items 1.. (ours' candidates), not 0.."""
    output = self.forward(interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN])
    return F.cross_entropy(output @ self.item_embedding.weight[1:].t(), interaction[self.POS_ITEM_ID] - 1)


def built(model: str, dataset: str, settings: dict, seed: int, data_root: Path, arm: Arm | None = None):
    """(spec, config, splits, model) as :func:`bench.runner.run_once` builds them."""
    from recbole.utils import init_seed

    spec = resolve_model(model)
    changes = {}
    if arm is not None and arm.on_our_loader:  # the runner gives whole-sequence rows and our loader to such a class
        changes["train_on"] = "sequences"
    if arm is not None and not arm.padding_candidate:
        changes["calculate_loss"] = loss_without_padding_candidate
    if changes:  # the same class name: RecBole loads its own model YAML by it
        spec = replace(spec, cls=type(spec.cls.__name__, (spec.cls,), changes))
    config = make_config(spec, dataset, {**settings, "seed": seed, "device": "cpu", "use_gpu": False}, data_root)
    init_seed(config["seed"], config["reproducibility"])
    splits = load_splits(config, data_root)
    init_seed(config["seed"], config["reproducibility"])
    return spec, config, splits, build_model(spec, config, splits)


def run_arm(arm: str, dataset: str, seed: int, epochs: int, data_root: Path, extra: dict | None = None) -> dict:
    chosen = ARMS[arm]
    with tempfile.TemporaryDirectory() as work:
        settings = {**SIZES, **chosen.settings, **(extra or {}), "epochs": epochs, "stopping_step": epochs + 1,
                    "checkpoint_dir": work}
        spec, config, splits, net = built(chosen.model, dataset, settings, seed, data_root, chosen)
        if chosen.recbole_init:
            theirs = built("recbole:NARM", dataset, settings, seed, data_root)[3]
            recboles_weights_in_ours(theirs, net)
        loader = train_loader(spec, config, splits)
        steps = len(loader)
        trainer = HarnessTrainer(config, net)
        trainer.fit(loader, splits.cases("valid"), saved=False)
    metric = config["valid_metric"].lower()
    return {"arm": arm, "seed": seed, "settings": extra or {}, "valid_metric": metric, "steps_per_epoch": steps,
            "valid": [c["valid"][metric] for c in trainer.curve],
            "train_loss": [c["train_loss"] / steps for c in trainer.curve]}  # mean over the epoch's steps


# ours' parameter, RecBole's NARM's parameter holding the same role
PARAMETER_PAIRS = (("item_embedding.weight", "item_embedding.weight"), ("gru.weight_ih_l0", "gru.weight_ih_l0"),
                   ("gru.weight_hh_l0", "gru.weight_hh_l0"), ("A1.weight", "a_2.weight"),
                   ("A2.weight", "a_1.weight"), ("v.weight", "v_t.weight"), ("B.weight", "b.weight"))


def gradient_moments(dataset: str, seed: int, draws: int, data_root: Path, plain: bool = False) -> dict:
    """Under dropout, the mean and variance of each parameter's gradient over ``draws``
    independent mask draws, ours (its ``calculate_loss``) against RecBole's NARM (its
    forward and the cross-entropy over items 1.., ours' candidates), from the same weights
    on the first batch of our loader's prefix rows. Per parameter: the norm of the
    difference of the means relative to RecBole's mean (noise alone gives ~``1 /
    sqrt(draws)``), the mean and sd of the element-wise z-scores of that difference
    (noise alone: 0 and 1), and the ratio of the summed variances (noise alone: ~1)."""
    from custom_models.cpu import narm as cpu_narm

    settings = {**SIZES, **OUR_ROWS}
    spec, config, splits, ours = built("narm", dataset, settings, seed, data_root)
    theirs = built("recbole:NARM", dataset, settings, seed, data_root)[3]
    recboles_weights_in_ours(theirs, ours)
    batch = next(iter(train_loader(spec, config, splits)))
    ours.train(), theirs.train()
    our_params, their_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    grads = {name: ([], []) for name, _ in PARAMETER_PAIRS}
    applies = cpu_narm.applies
    if plain:
        cpu_narm.applies = lambda item_seq: False
    try:
        for _ in range(draws):
            for side, (loss, params) in enumerate(((lambda: ours.calculate_loss(batch), our_params),
                                                   (lambda: loss_without_padding_candidate(theirs, batch),
                                                    their_params))):
                names = [pair[side] for pair in PARAMETER_PAIRS]
                for (name, _), grad in zip(PARAMETER_PAIRS, torch.autograd.grad(loss(), [params[n] for n in names])):
                    grads[name][side].append((halves_swapped(grad) if name == "B.weight" and side else grad).flatten())
    finally:
        cpu_narm.applies = applies
    moments = {}
    for name, (our_draws, their_draws) in grads.items():
        a, b = torch.stack(our_draws), torch.stack(their_draws)
        diff, noise = a.mean(0) - b.mean(0), (a.var(0) / draws + b.var(0) / draws).sqrt()
        varying = noise > 1e-12  # entries with a gradient on some draw
        z = diff[varying] / noise[varying]
        moments[name] = {"relative_difference_of_means": (diff.norm() / b.mean(0).norm()).item(),
                         "z_mean": z.mean().item(), "z_sd": z.std().item(),
                         "variance_ratio": (a.var(0)[varying].sum() / b.var(0)[varying].sum()).item()}
    return {"seed": seed, "draws": draws, "path": "plain" if plain else "cpu", "rows": len(batch),
            "parameters": moments}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20000, help="newest Diginetica training sessions")
    parser.add_argument("--test-cases", type=int, default=3000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--source", type=Path, default=SHARED_DIGINETICA)
    parser.add_argument("--dropout", help="both dropout probabilities for every arm, e.g. 0,0 "
                        "(default: each model's own, 0.25 and 0.5)")
    parser.add_argument("--gradient-draws", type=int, default=0,
                        help="instead of training: the gradient's mean and variance over this many dropout "
                             "draws on one batch, ours (CPU and plain path) against RecBole's (gradient_moments)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("reports/narm_pipeline_ablation.json"))
    args = parser.parse_args(argv)
    unknown = sorted(set(args.arms.split(",")) - set(ARMS))
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARMS)}")
    torch.set_num_threads(args.threads)

    from bench.convert import convert

    extra = {} if args.dropout is None else {"dropout_probs": [float(p) for p in args.dropout.split(",")]}
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        name = f"digi-newest-{args.sessions}"
        convert("srgnn", cut_srgnn(args.source, scratch / "src", args.sessions, args.test_cases), name,
                scratch / "atomic")
        for seed in [int(s) for s in args.seeds.split(",")]:
            if args.gradient_draws:
                for plain in (False, True):
                    run = gradient_moments(name, seed, args.gradient_draws, scratch / "atomic", plain)
                    print(json.dumps(run), flush=True)
                    runs.append(run)
                continue
            for arm in args.arms.split(","):
                run = run_arm(arm, name, seed, args.epochs, scratch / "atomic", extra)
                print(json.dumps(run), flush=True)
                runs.append(run)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python -m bench.benchmarks.narm_pipeline_ablation", *(argv or sys.argv[1:])])
    args.out.write_text(json.dumps({"command": command,
                                    "sessions": args.sessions, "epochs": args.epochs, "runs": runs,
                                    "environment": environment()}, indent=1))


if __name__ == "__main__":
    main()

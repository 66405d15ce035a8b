"""Full-catalogue softmax loss: ours (:func:`custom_models.cpu.ops.item_cross_entropy`)
against PyTorch's ``F.cross_entropy(F.linear(...))``, forward + backward.

NARM and SASRec (CE) end every training step with this loss over all items, so on a
large catalogue it is most of the step. Each case is (items, targets per step,
representation size); the defaults are MovieLens-100k's 1,683 items at NARM's 512 and
RecBole's default 2048 targets, and Diginetica's 43,098 at 512 targets with a 100-d
representation. Inputs are random: only the shapes matter to the time.

    python -m bench.benchmarks.softmax_loss_speed [--cases 1683x512x50,1683x2048x50,43098x512x100]
        [--threads 2] [--repeats 20]

Prints one line per case: milliseconds per forward + backward, PyTorch's and ours.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch
import torch.nn.functional as F

import bench  # noqa: F401  (compat shims first)
from custom_models.cpu.ops import item_cross_entropy


def pytorch_loss(output: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """What ``item_cross_entropy`` replaced: padding item 0 masked by a -inf bias."""
    padding = torch.zeros(len(weight), dtype=output.dtype)
    padding[0] = -torch.inf
    return F.cross_entropy(F.linear(output, weight, padding), targets)


def milliseconds(loss_fn, output, weight, targets, repeats: int) -> float:
    for _ in range(3):  # warm-up: allocator, oneDNN primitive cache
        torch.autograd.grad(loss_fn(output, weight, targets), [output, weight])
    start = time.perf_counter()
    for _ in range(repeats):
        torch.autograd.grad(loss_fn(output, weight, targets), [output, weight])
    return (time.perf_counter() - start) / repeats * 1e3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="1683x512x50,1683x2048x50,43098x512x100",
                        help="comma-separated ITEMSxTARGETSxSIZE")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s); load average {os.getloadavg()[0]:.2f}")
    gen = torch.Generator().manual_seed(0)
    for case in args.cases.split(","):
        n_items, n_targets, size = (int(x) for x in case.split("x"))
        output = torch.randn(n_targets, size, generator=gen, requires_grad=True)
        weight = (0.1 * torch.randn(n_items, size, generator=gen)).requires_grad_()
        targets = torch.randint(1, n_items, (n_targets,), generator=gen)
        theirs = milliseconds(pytorch_loss, output, weight, targets, args.repeats)
        ours = milliseconds(item_cross_entropy, output, weight, targets, args.repeats)
        print(f"{n_items} items, {n_targets} targets, d = {size}: PyTorch {theirs:.2f} ms, ours {ours:.2f} ms "
              f"({theirs / ours:.2f}x)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

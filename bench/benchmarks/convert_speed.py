"""Seconds each converter takes on the real datasets: ``python -m bench.benchmarks.convert_speed``.

Converts Diginetica (SR-GNN pickles), Amazon Beauty (pairs), Beauty 5-core
(user lines) and the embedded MovieLens-100k into a temporary folder, each
``--repeat`` times, and prints the best wall-clock time per dataset (the design
budget for Diginetica is 30 s).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.convert import convert, recbole_ml100k_path

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

CASES = [  # (dataset name, format, source)
    ("diginetica", "srgnn", lambda: DATA / "diginetica"),
    ("beauty", "pairs", lambda: DATA / "amazon-beauty" / "Beauty.txt"),
    ("beauty-5core", "user-lines", lambda: DATA / "amazon-beauty-5core" / "Beauty.txt"),
    ("ml100k", "movielens", recbole_ml100k_path),
]


def time_conversion(fmt: str, src: Path, name: str, repeat: int) -> float:
    best = float("inf")
    with tempfile.TemporaryDirectory() as out:
        for _ in range(repeat):
            start = time.perf_counter()
            convert(fmt, src, name, out)
            best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="conversions per dataset; the best is shown")
    args = parser.parse_args(argv)
    print(f"{'dataset':<14} {'format':<11} {'seconds':>8}")
    for name, fmt, source in CASES:
        src = source()
        if not src.exists():
            print(f"{name:<14} {fmt:<11} {'skipped':>8}  ({src} is absent)")
            continue
        print(f"{name:<14} {fmt:<11} {time_conversion(fmt, src, name, args.repeat):8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

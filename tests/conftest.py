"""Shared fixtures: small slices of the real datasets, converted once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

import bench  # noqa: F401  (compat shims before recbole)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path}")
    return path


@pytest.fixture(scope="session")
def diginetica_slice(tmp_path_factory) -> tuple[Path, str]:
    """The most recent 4,000 Diginetica training sessions and the first 3,000 published
    test cases, as SR-GNN pickles, converted with the `srgnn` converter.
    Returns (data_root, dataset name)."""
    from bench.benchmarks.narm_pipeline_ablation import cut_srgnn
    from bench.convert import convert

    cut = cut_srgnn(shared("diginetica"), tmp_path_factory.mktemp("diginetica-slice-src"), 4000, 3000)
    root = tmp_path_factory.mktemp("atomic")
    convert("srgnn", cut, "digi-slice", root)
    return root, "digi-slice"


@pytest.fixture(scope="session")
def ml100k(tmp_path_factory) -> tuple[Path, str]:
    """RecBole's embedded MovieLens-100k, converted (leave-one-out)."""
    from bench.convert import convert, recbole_ml100k_path

    root = tmp_path_factory.mktemp("atomic-ml")
    # not "ml-100k": RecBole's Config redirects that name to its own embedded copy
    convert("movielens", recbole_ml100k_path(), "ml100k", root)
    return root, "ml100k"

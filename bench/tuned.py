"""Tuned parameters on disk: where `bench tune` leaves them and `bench run` finds them.

`bench tune MODEL DATASET` writes the best trial's parameters (RecBole config keys) to
``hyper/best/<dataset>/<model>.yaml`` (``$BENCH_BEST_ROOT`` elsewhere); `bench run`
merges that file into the run's config (below the suite's explicit overrides) and
records it in the run's config. The file is the hand-over between the two: `bench`
reads it here and never imports the tuner (:mod:`hyper.best` writes it).
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

BEST_ROOT = Path(os.environ.get("BENCH_BEST_ROOT", Path(__file__).resolve().parent.parent / "hyper" / "best"))


def _file_name(model: str) -> str:
    return model.replace(":", "-") + ".yaml"  # recbole:NARM -> recbole-NARM.yaml


def best_params_path(dataset: str, model: str, root: str | Path | None = None) -> Path:
    return Path(root or BEST_ROOT) / dataset / _file_name(model)


def load_best_params(dataset: str, model: str, root: str | Path | None = None) -> dict:
    """The tuned parameters for (dataset, model), or ``{}`` if it was never tuned."""
    path = best_params_path(dataset, model, root)
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text()) or {}
    return dict(data.get("params", {}))

"""Where tuned parameters live, so that `bench run` picks them up.

`bench tune MODEL DATASET` writes the best trial's parameters (RecBole config keys) to
``hyper/best/<dataset>/<model>.yaml``; `bench run` merges that file into the run's
config (below the suite's explicit overrides) and records it in the run's config.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

BEST_ROOT = Path(os.environ.get("BENCH_BEST_ROOT", Path(__file__).resolve().parent / "best"))


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


def save_best_params(dataset: str, model: str, params: dict, provenance: dict,
                     root: str | Path | None = None) -> Path:
    """Atomically write the best parameters with where they came from (study, trial, value)."""
    path = best_params_path(dataset, model, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump({"params": params, "provenance": provenance}, sort_keys=True))
    os.replace(tmp, path)
    return path

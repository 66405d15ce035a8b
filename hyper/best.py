"""Writing tuned parameters where `bench run` picks them up (the format: :mod:`bench.tuned`)."""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from bench.tuned import best_params_path, load_best_params  # noqa: F401  (the reading side)


def save_best_params(dataset: str, model: str, params: dict, provenance: dict,
                     root: str | Path | None = None) -> Path:
    """Atomically write the best parameters with where they came from (study, trial, value)."""
    path = best_params_path(dataset, model, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump({"params": params, "provenance": provenance}, sort_keys=True))
    os.replace(tmp, path)
    return path

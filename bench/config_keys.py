"""Which config keys a run accepts, so that a typo in a suite is an error, not a default.

RecBole's ``Config`` takes any key without a word: ``learning_rat: 0.1`` would run
with the default learning rate. A key is known when some YAML that the run's config
is built from declares it:

* RecBole's own defaults: ``properties/overall.yaml`` (training, evaluation,
  environment), ``properties/dataset/sample.yaml`` (every dataset key its loaders
  read) and ``properties/quick_start_config/*.yaml``;
* ours: ``bench/harness.yaml`` and the keys the converters write into each
  dataset's YAML;
* the model's: RecBole's ``properties/model/<Class>.yaml`` for ``recbole:<Class>``,
  the YAML beside our module for ours.

Together these cover every key RecBole's loaders, samplers and trainer read (checked
against its sources for 1.2.1); the keys its code reads without a YAML default are
derived ones (``MODEL_TYPE``, ``eval_type``, ``device``, ...) or belong to model
families we do not run (XGBoost, knowledge graphs, pre-training). So a model of ours
that reads a new key declares its default in its YAML, which also documents it.

A few keys are set by ``bench run`` itself for every run and are refused in suites
(:data:`SET_PER_RUN`).
"""
from __future__ import annotations

import difflib
import functools
import importlib.util
from pathlib import Path

import yaml

from bench.registry import ModelSpec

HARNESS_YAML = Path(__file__).with_name("harness.yaml")

# Keys a suite must not set: bench run sets them for every run (seed from `seeds:`,
# checkpoints in the run's own folder, data from --data-root, device from --gpus-per-run).
SET_PER_RUN = {
    "seed": "seeds come from the suite's `seeds:` list",
    "checkpoint_dir": "every run gets its own checkpoint folder",
    "data_path": "datasets are read from --data-root",
    "dataset": "datasets are listed under `datasets:`",
    "model": "models are listed under `models:`",
    "device": "the device follows --gpus-per-run",
    "use_gpu": "the device follows --gpus-per-run",
    "gpu_id": "the device follows --gpus-per-run",
    "benchmark_filename": "the converter fixes the split files",
    "tuned_params": "bench run records the tuned parameters it merged here",
}

# Keys a run reads with no default in any YAML: absent means "PyTorch's own default",
# and a default in bench/harness.yaml would change the stored config (and its hash) of
# every run made before the key existed.
OPTIONAL_KEYS = {
    "tf32": "CUDA float32 products and cuDNN on TF32 (bench/precision.py)",
    "targets_per_row": "batch_unit: iid_targets draws a row's targets this many at a time; absent: 1 "
                       "(bench/batching.py)",
    "gru_bias": "NARM's GRU with biases, as the public PyTorch NARM; absent: none, as the paper's "
                "equations (custom_models/narm.py)",
    "weight_init": "NARM's initialisation: xavier (absent) or pytorch, PyTorch's defaults with item "
                   "embeddings N(0, 1), as the public PyTorch NARM (custom_models/narm.py)",
    "lr_step": "a step schedule: the learning rate is multiplied by lr_gamma every lr_step epochs, as the "
               "public PyTorch NARM (80, 0.1); absent: a constant rate (bench/training.py)",
    "lr_gamma": "the step schedule's factor; absent: 0.1 (bench/training.py)",
}


@functools.lru_cache(maxsize=1)
def recbole_properties() -> Path:
    spec = importlib.util.find_spec("recbole")  # without importing it: that takes seconds
    if spec is None or spec.origin is None:
        raise RuntimeError("RecBole is not installed")
    return Path(spec.origin).parent / "properties"


def yaml_keys(path: str | Path) -> frozenset[str]:
    """Top-level keys of a YAML file (empty if it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return frozenset()
    data = yaml.safe_load(path.read_text()) or {}
    return frozenset(str(k) for k in data) if isinstance(data, dict) else frozenset()


@functools.lru_cache(maxsize=1)
def common_keys() -> frozenset[str]:
    """Keys every run accepts, whatever the model."""
    from bench.convert.protocols import LEAVE_ONE_OUT, SESSION
    from bench.convert.recbole_yaml import config as dataset_yaml

    props = recbole_properties()
    files = [props / "overall.yaml", props / "dataset" / "sample.yaml", HARNESS_YAML,
             *sorted((props / "quick_start_config").glob("*.yaml"))]
    keys = set().union(*(yaml_keys(f) for f in files))
    for protocol in (SESSION, LEAVE_ONE_OUT):
        keys |= set(dataset_yaml(protocol, 50))
    return frozenset(keys | set(OPTIONAL_KEYS))


def model_keys(spec: ModelSpec) -> frozenset[str]:
    """Keys declared by the model's own defaults."""
    files = list(spec.config_files)
    if not spec.ours:  # RecBole loads its model YAML by class name
        files.append(recbole_properties() / "model" / f"{spec.class_name}.yaml")
    return frozenset().union(*(yaml_keys(f) for f in files)) if files else frozenset()


def known_keys(spec: ModelSpec) -> frozenset[str]:
    return common_keys() | model_keys(spec)


def did_you_mean(key: str, candidates: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(candidates), n=3, cutoff=0.7)
    if not close:
        lowered = {c.lower(): c for c in candidates}
        close = [lowered[key.lower()]] if key.lower() in lowered else []
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""

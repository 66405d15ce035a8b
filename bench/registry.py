"""Model names -> classes and default config files, for our models and RecBole's.

* Our models: the keys of ``custom_models.MODELS`` (``narm``, ``sasrec``, ...).
* Variants of ours: the keys of ``custom_models.VARIANTS`` (``sasrec-ce``, ...): the
  same class with a few settings changed.
* RecBole's own models, run as reference rows: ``recbole:<ClassName>``
  (``recbole:NARM``, ``recbole:SASRec``, ``recbole:Pop``, ...).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field, replace
from pathlib import Path

import bench.compat  # noqa: F401
from bench.errors import InputError

RECBOLE_PREFIX = "recbole:"


@dataclass(frozen=True)
class ModelSpec:
    name: str  # as written in suites
    cls: type
    config_files: tuple[str, ...]  # our defaults YAML (RecBole loads its own by class name)
    ours: bool
    settings: dict = field(default_factory=dict)  # a variant's settings, above config_files
    trainer: type | None = None  # the model's own trainer (custom_models.TRAINERS); None: HarnessTrainer

    @property
    def class_name(self) -> str:
        return self.cls.__name__


def known_models() -> list[str]:
    from custom_models import MODELS, VARIANTS

    return sorted(MODELS) + sorted(VARIANTS) + [RECBOLE_PREFIX + n for n in ("Pop", "ItemKNN", "BPR", "NARM", "SASRec", "GRU4Rec")]


def resolve_model(name: str) -> ModelSpec:
    from custom_models import MODELS, TRAINERS, VARIANTS

    if name in VARIANTS:
        base, settings = VARIANTS[name]
        return replace(resolve_model(base), name=name, settings=dict(settings))
    if name in MODELS:
        module_name, class_name = MODELS[name].split(":")
        cls = getattr(importlib.import_module(module_name), class_name)
        trainer = None
        if name in TRAINERS:
            trainer_module, trainer_name = TRAINERS[name].split(":")
            trainer = getattr(importlib.import_module(trainer_module), trainer_name)
        module_file = Path(inspect.getfile(cls))
        # the model's own YAML: named after it (several models may share a module), else the module
        defaults = module_file.with_name(f"{name}.yaml")
        defaults = defaults if defaults.exists() else module_file.with_suffix(".yaml")
        return ModelSpec(name, cls, (str(defaults),) if defaults.exists() else (), True, trainer=trainer)
    if name.startswith(RECBOLE_PREFIX):
        from bench.reference import reference_class, reference_config_files

        try:
            cls = reference_class(name[len(RECBOLE_PREFIX):])  # adapter for our protocols, or RecBole's own
        except (ValueError, ImportError):  # RecBole tries optional model modules (lightgbm, ...)
            raise InputError(f"unknown RecBole model {name!r}") from None
        return ModelSpec(name, cls, reference_config_files(cls.__name__), False)
    raise InputError(f"unknown model {name!r}; known: {', '.join(known_models())}")

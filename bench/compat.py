"""Makes RecBole 1.2.1 run on numpy 2 and torch >= 2.6.

Import this module before ``recbole`` anywhere, Ray workers included
(``bench/__init__.py`` does it, so any ``import bench...`` is enough).

* numpy 2 removed the aliases ``np.float_``, ``np.complex_`` and ``np.unicode_``
  that RecBole's ``Config.compatibility_settings`` dereferences.
* torch >= 2.6 loads checkpoints with ``weights_only=True``. RecBole pickles its
  whole ``Config`` object into every checkpoint, so reloading the best model fails.
  Rather than switch the safety off, checkpoints are written in a weights-only-safe
  form: the config is stored as a plain dict, and the few RecBole enums that remain
  in it are registered as safe globals.
* RecBole's ``sine.py`` calls ``torch.autograd.set_detect_anomaly(True)`` when it is
  imported, and importing any RecBole sequential model imports it (the package's
  ``__init__`` imports every model). From then on every backward pass of every model
  in the process records Python stack traces: training ran 3-5x slower (our SASRec
  on MovieLens-100k: 2.7 s per epoch before, 9.2 s after resolving ``recbole:NARM``).
  An import hook (:class:`_RestoreAnomalyModeAfterSine`) puts the mode back to what it
  was as soon as ``sine.py`` has run, so no caller has to remember; the trainer still
  calls :func:`disable_anomaly_detection` in case the module was imported before this one.
"""
from __future__ import annotations

import enum
import importlib.abc
import importlib.machinery
import os
import sys
import warnings

import numpy as np
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# RecBole 1.2.1 trips pandas/torch deprecation warnings on every load; they say nothing to users.
for _category in (FutureWarning, DeprecationWarning, UserWarning):
    warnings.filterwarnings("ignore", category=_category, module=r"recbole(\.|$)")
warnings.filterwarnings("ignore", message=r".*torch\.cuda\.amp\.GradScaler.*")

for _alias, _target in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
    if not hasattr(np, _alias):
        setattr(np, _alias, _target)


def disable_anomaly_detection() -> None:
    """Undo RecBole's import-time ``set_detect_anomaly(True)`` (see the module docstring)."""
    if torch.is_anomaly_enabled():
        torch.autograd.set_detect_anomaly(False)


class _RestoreAnomalyModeAfterSine(importlib.abc.MetaPathFinder):
    """Finds RecBole's ``sine`` module as Python would, and wraps its loading so that
    autograd's anomaly mode is, after the module ran, what it was before."""

    MODULE = "recbole.model.sequential_recommender.sine"

    def find_spec(self, name, path, target=None):
        if name != self.MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module):
            before = torch.is_anomaly_enabled()
            try:
                run_module(module)
            finally:
                torch.autograd.set_detect_anomaly(before)

        spec.loader.exec_module = exec_module
        return spec


if not any(isinstance(finder, _RestoreAnomalyModeAfterSine) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RestoreAnomalyModeAfterSine())


def _plain(value):
    """A copy of a config value that ``torch.load(weights_only=True)`` accepts."""
    if value is None or isinstance(value, (bool, int, float, str, enum.Enum, torch.device)):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def _install_checkpoint_format() -> None:
    from recbole.trainer import trainer as recbole_trainer
    from recbole.utils import enum_type

    torch.serialization.add_safe_globals(
        [obj for obj in vars(enum_type).values() if isinstance(obj, type) and issubclass(obj, enum.Enum)]
    )
    if getattr(recbole_trainer.Trainer._save_checkpoint, "_weights_only_safe", False):
        return

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        state = {
            "config": _plain(self.config.final_config_dict),
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
        }
        tmp = f"{saved_model_file}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, saved_model_file)  # a killed run never leaves half a checkpoint
        if verbose:
            self.logger.info(f"Saving current: {saved_model_file}")

    _save_checkpoint._weights_only_safe = True
    recbole_trainer.Trainer._save_checkpoint = _save_checkpoint


_install_checkpoint_format()

"""RecBole 1.2.1 works on numpy 2 and torch >= 2.6 through bench.compat."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch

import bench  # noqa: F401  (the shims)


def test_numpy_aliases_recbole_needs_exist():
    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_


def test_recbole_train_save_reload_evaluate_cycle(tmp_path, monkeypatch):
    """RecBole's own cycle: Trainer.fit saves the best checkpoint, evaluate reloads it
    with torch.load's default weights_only=True, and the reloaded model scores the same."""
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import GRU4Rec
    from recbole.trainer import Trainer

    monkeypatch.setattr(sys, "argv", sys.argv[:1])  # RecBole's Config reads sys.argv
    config = Config(
        model="GRU4Rec",
        dataset="ml-100k",
        config_dict={
            "data_path": os.path.join(os.path.dirname(recbole.__file__), "dataset_example"),
            "epochs": 2,
            "checkpoint_dir": str(tmp_path),
            "show_progress": False,
            "state": "ERROR",
            "train_neg_sample_args": None,
            "embedding_size": 16,
            "hidden_size": 16,
            "train_batch_size": 2048,
            "device": "cpu",
            "use_gpu": False,
            # a slice of users keeps the test fast: ~600 users with <= 60 ratings each
            "user_inter_num_interval": "[5,60]",
            "MAX_ITEM_LIST_LENGTH": 20,
        },
    )
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    trainer = Trainer(config, GRU4Rec(config, train.dataset))
    trainer.fit(train, valid, saved=True, show_progress=False)
    assert os.path.isfile(trainer.saved_model_file)

    checkpoint = torch.load(trainer.saved_model_file, weights_only=True)  # the safe default
    assert set(checkpoint["state_dict"]) == set(trainer.model.state_dict())
    assert checkpoint["config"]["model"] == "GRU4Rec"

    best = trainer.evaluate(test, load_best_model=True)
    with torch.no_grad():  # scramble the weights: a reload must restore them
        for p in trainer.model.parameters():
            p.add_(torch.randn_like(p))
    again = trainer.evaluate(test, load_best_model=True)
    assert dict(best) == dict(again)
    assert 0.0 < best["recall@10"] <= 1.0


def test_our_trainer_switches_off_the_anomaly_detection_recbole_switches_on(ml100k, tmp_path):
    """Importing RecBole's sequential models runs ``sine.py``, which calls
    ``torch.autograd.set_detect_anomaly(True)`` for the whole process (3-5x slower
    backward passes); the harness's trainer switches it off before training."""
    import recbole.model.sequential_recommender  # noqa: F401  (sine.py among them)

    from bench.data import load_splits, make_config
    from bench.registry import resolve_model
    from bench.runner import build_model
    from bench.training import HarnessTrainer

    root, name = ml100k
    torch.autograd.set_detect_anomaly(True)  # as RecBole's import leaves it, whatever ran before
    try:
        spec = resolve_model("recbole:NARM")
        config = make_config(spec, name, {"device": "cpu", "use_gpu": False, "checkpoint_dir": str(tmp_path)}, root)
        trainer = HarnessTrainer(config, build_model(spec, config, load_splits(config, root)))
        assert trainer is not None and not torch.is_anomaly_enabled()
    finally:
        torch.autograd.set_detect_anomaly(False)


def test_importing_recboles_sequential_models_leaves_anomaly_mode_as_it_was():
    """RecBole's ``sine.py`` switches anomaly mode on at import; the compat hook puts it
    back, both when it was off and when a user had switched it on. A fresh interpreter:
    this one may have imported RecBole already."""
    script = (
        "import sys, torch, bench\n"
        "torch.autograd.set_detect_anomaly(sys.argv[1] == 'on')\n"
        "from recbole.model.sequential_recommender import NARM, SINE\n"
        "print(torch.is_anomaly_enabled())\n"
    )
    for before, expected in (("off", "False"), ("on", "True")):
        done = subprocess.run([sys.executable, "-c", script, before], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip().splitlines()[-1] == expected

"""The results store: atomic writes, replacement rules, config hashes, round trips."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bench import store as store_module
from bench.runner import RunResult
from bench.store import ResultStore, RunKey, config_hash, environment, record_from_result

KEY = RunKey("smoke", "ml-100k", "recbole:GRU4Rec", 3)


def finished(hash_="h1", mrr=0.25) -> dict:
    return {"status": "finished", "error": None, "config": {"a": 1}, "config_hash": hash_,
            "metrics": {"test": {"full": {"mrr@20": mrr}}}}


def test_layout_and_round_trip(tmp_path):
    store = ResultStore(tmp_path)
    ranks = {"test_full": np.array([1.0, 2.5, 40.0]), "valid_full": np.array([3.0])}
    assert store.write(KEY, finished(), ranks)
    folder = tmp_path / "smoke" / "ml-100k" / "recbole-GRU4Rec" / "seed-3"
    assert sorted(p.name for p in folder.iterdir()) == ["ranks.npz", "record.json"]
    record = store.read(KEY)
    assert (record["model"], record["seed"], record["ranks_file"]) == ("recbole:GRU4Rec", 3, "ranks.npz")
    loaded = store.load_ranks(record)
    assert set(loaded) == {"test_full", "valid_full"}
    np.testing.assert_array_equal(loaded["test_full"], ranks["test_full"])
    assert store.records() == [record] == store.records("smoke")
    assert store.records("other") == []
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())


def test_missing_run_reads_as_none(tmp_path):
    store = ResultStore(tmp_path / "nothing-here")
    assert store.read(KEY) is None and not store.is_finished(KEY)
    assert store.records() == [] and store.load_ranks(KEY) == {}


def test_is_finished_checks_status_and_config_hash(tmp_path):
    store = ResultStore(tmp_path)
    store.write_failure(KEY, {"a": 1}, "RuntimeError: boom", "Traceback ...")
    assert not store.is_finished(KEY)
    store.write(KEY, finished("h1"), {"test_full": np.ones(2)})
    assert store.is_finished(KEY) and store.is_finished(KEY, "h1")
    assert not store.is_finished(KEY, "h2")


def test_failed_record_replaces_failed_but_not_finished_same_config(tmp_path):
    store = ResultStore(tmp_path)
    assert store.write_failure(KEY, {"a": 1}, "first error")
    assert store.write_failure(KEY, {"a": 1}, "second error")
    assert store.read(KEY)["error"] == "second error"
    h = config_hash({"a": 1})
    assert store.write(KEY, finished(h, mrr=0.3), {"test_full": np.ones(2)})
    # a failed rerun of the same config keeps the finished result
    assert not store.write_failure(KEY, {"a": 1}, "flaky rerun")
    assert store.read(KEY)["status"] == "finished"
    # a rerun that finishes replaces it
    assert store.write(KEY, finished(h, mrr=0.4), {"test_full": np.zeros(2)})
    assert store.read(KEY)["metrics"]["test"]["full"]["mrr@20"] == 0.4
    np.testing.assert_array_equal(store.load_ranks(KEY)["test_full"], np.zeros(2))
    # a failure of a changed config replaces the stale finished record
    assert store.write_failure(KEY, {"a": 2}, "new config broke")
    record = store.read(KEY)
    assert record["status"] == "failed" and record["error"] == "new config broke"
    assert record["ranks_file"] is None and store.load_ranks(KEY) == {}


@pytest.mark.parametrize("crash_in", ["savez", "replace"])
def test_crash_mid_write_leaves_old_record_and_no_temp(tmp_path, monkeypatch, crash_in):
    store = ResultStore(tmp_path)
    store.write(KEY, finished(mrr=0.1), {"test_full": np.ones(3)})
    other = RunKey("smoke", "ml-100k", "pop", 0)

    def boom(*args, **kwargs):
        raise OSError("killed mid-write")

    if crash_in == "savez":
        monkeypatch.setattr(np, "savez_compressed", boom)
    else:
        monkeypatch.setattr(store_module.os, "replace", boom)
    with pytest.raises(OSError, match="killed mid-write"):
        store.write(KEY, finished(mrr=0.9), {"test_full": np.zeros(3)})
    with pytest.raises(OSError, match="killed mid-write"):
        store.write(other, finished(), {"test_full": np.zeros(3)})
    monkeypatch.undo()
    assert store.read(KEY)["metrics"]["test"]["full"]["mrr@20"] == 0.1
    np.testing.assert_array_equal(store.load_ranks(KEY)["test_full"], np.ones(3))
    assert store.read(other) is None
    assert [r["model"] for r in store.records()] == ["recbole:GRU4Rec"]
    leftovers = [p for p in tmp_path.rglob(".*")]
    assert leftovers == []


def test_temp_folder_of_a_killed_process_is_ignored_then_swept(tmp_path):
    """A process killed hard (no cleanup) leaves a hidden temp folder: readers skip it."""
    store = ResultStore(tmp_path)
    run_dir = store.run_dir(KEY)
    stale = run_dir.parent / f".{run_dir.name}.tmp-deadbeef"
    stale.mkdir(parents=True)
    (stale / "record.json").write_text(json.dumps({**finished(), "suite": "smoke", "dataset": "ml-100k",
                                                   "model": KEY.model, "seed": 3}))
    assert store.read(KEY) is None and store.records() == []
    store.write(KEY, finished(), None)
    assert not stale.exists() and store.is_finished(KEY)


def test_config_hash_is_canonical_and_ignores_run_local_keys():
    a = {"learning_rate": 0.001, "epochs": 10, "MAX_ITEM_LIST_LENGTH": 50, "metrics": ["MRR"]}
    b = {"metrics": ["MRR"], "MAX_ITEM_LIST_LENGTH": 50, "epochs": 10, "learning_rate": 0.001}
    h = config_hash(a)
    assert h == config_hash(b) and len(h) == 64
    assert h == config_hash({**a, "checkpoint_dir": "/tmp/x", "data_path": "/data", "device": "cuda", "seed": 7})
    assert h != config_hash({**a, "learning_rate": 0.01})
    assert h != config_hash({**a, "metrics": ["MRR", "NDCG"]})
    # stable across processes and releases: a fixed input has a fixed digest
    assert config_hash({"x": 1}) == "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"


def test_bad_names_are_refused():
    for bad in ("", "../etc", "a/b", ".hidden"):
        with pytest.raises(ValueError):
            RunKey("smoke", bad, "pop", 0)


def test_environment_names_versions_and_commit():
    env = environment()
    assert env["python"].count(".") == 2 and env["cpu_count"] >= 1
    assert env["packages"]["numpy"] == np.__version__
    assert {"torch", "recbole", "ray", "optuna", "pandas", "scipy"} <= set(env["packages"])
    assert env["git_commit"] is None or len(env["git_commit"]) == 40
    assert "cuda_device" in env and "git_dirty" in env


def test_record_from_result_has_every_schema_field():
    result = RunResult(
        config={"valid_metric": "MRR@20", "learning_rate": 0.001, "checkpoint_dir": "/tmp/w"},
        metrics={"valid": {"full": {"mrr@20": 0.2}},
                 "test": {"full": {"recall@20": 0.5, "mrr@20": 0.25}, "sampled": {"recall@20": 0.9}}},
        ranks={"test_full": np.array([1.0, 3.5]), "test_sampled": np.array([1.0, 1.5]),
               "valid_full": np.array([2.0])},
        curve=[{"epoch": 0, "train_loss": 3.0, "train_seconds": 2.0, "valid": {"mrr@20": 0.1}, "valid_seconds": 0.5},
               {"epoch": 1, "train_loss": 2.0, "train_seconds": 4.0, "valid": {"mrr@20": 0.2}, "valid_seconds": 0.5}],
        best_epoch=1, epochs_trained=2, train_seconds=7.0, eval_seconds=0.5, num_test_cases=2,
        num_parameters=1234, peak_memory_mb=321.0)
    record, ranks = record_from_result(KEY, result, {"protocol": "leave-one-out"}, "ab" * 32, started_at="t0")
    schema = {"status", "error", "traceback", "suite", "dataset", "model", "seed", "protocol", "config",
              "config_hash", "dataset_manifest_sha256", "valid_metric", "metrics", "curve", "best_epoch",
              "epochs_trained", "fit_protocol", "refit_curve", "validation_from", "resumed", "timings", "num_test_cases",
              "num_parameters", "peak_memory_mb",
              "environment", "started_at", "finished_at", "ranks_file"}
    assert set(record) == schema
    assert record["status"] == "finished" and record["protocol"] == "leave-one-out"
    assert record["valid_metric"] == "mrr@20" and record["config_hash"] == config_hash(result.config)
    assert record["timings"] == {"seconds_per_epoch": 3.0, "train_seconds": 7.0, "refit_seconds": 0.0,
                                 "eval_seconds": 0.5, "eval_cases_per_second": 4.0}
    assert record["fit_protocol"] == "train" and record["refit_curve"] == [] and record["validation_from"] is None
    assert record["resumed"] is None
    assert set(ranks) == {"test_full", "test_sampled", "valid_full"}
    json.dumps(record)  # plain JSON


def test_crash_between_the_two_renames_restores_the_old_record(tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    store.write(KEY, finished(mrr=0.1), {"test_full": np.ones(3)})
    real_replace = os.replace
    calls = []

    def second_call_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:  # old folder moved aside, new one not yet in place
            raise OSError("killed mid-write")
        return real_replace(src, dst)

    monkeypatch.setattr(store_module.os, "replace", second_call_fails)
    with pytest.raises(OSError):
        store.write(KEY, finished(mrr=0.9), {"test_full": np.zeros(3)})
    monkeypatch.undo()
    assert store.read(KEY)["metrics"]["test"]["full"]["mrr@20"] == 0.1
    assert list(tmp_path.rglob(".*")) == []


def test_suite_meta_round_trip_is_not_a_record(tmp_path):
    store = ResultStore(tmp_path)
    assert store.read_suite_meta("smoke") is None
    store.write_suite_meta("smoke", {"command": "bench run", "datasets": {"ml-100k": {}}})
    store.write(KEY, finished(), None)
    assert store.read_suite_meta("smoke")["command"] == "bench run"
    assert len(store.records("smoke")) == 1 and store.suites() == ["smoke"]


def test_a_record_names_the_code_its_run_started_with():
    # a commit made while a run trains must not be credited with its result
    result = RunResult(config={"model": "x"}, metrics={"test": {}}, ranks={})
    start = {"git_commit": "a" * 40, "git_dirty": False}
    record, _ = record_from_result(KEY, result, {"protocol": "session"}, "ab" * 32, environment_at_start=start)
    assert record["environment"] == start
    assert record_from_result(KEY, result, {}, "ab" * 32)[0]["environment"]["python"]  # default: now

"""What the tested model is fitted on: baselines on all training data, ``refit: true``.

Hand-checked on a tiny pairs file (leave-one-out): user 1 has 10 11 12 13 14 15, user 2
has 14 10 11, user 3 has 12 13.
"""
from __future__ import annotations

import pytest

from bench.convert import convert
from bench.data import load_splits, make_config, train_and_valid, whole_sequence_rows
from bench.registry import resolve_model
from bench.runner import run_once

PAIRS = "1 10\n1 11\n1 12\n1 13\n1 14\n1 15\n2 14\n2 10\n2 11\n3 12\n3 13\n"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    src = root / "pairs.txt"
    src.write_text(PAIRS)
    convert("pairs", src, "tiny", root / "atomic")
    return root / "atomic"


def _tokens(dataset, field, ids):
    return dataset.id2token(field, ids).tolist()


def test_train_and_valid_keeps_each_sequence_together_with_its_validation_row_last(tiny):
    config = make_config(resolve_model("narm"), "tiny", {"device": "cpu", "use_gpu": False}, tiny)
    splits = load_splits(config, tiny)
    merged = train_and_valid(splits)
    assert len(merged) == len(splits.train) + len(splits.valid)
    ds = splits.dataset
    users = _tokens(ds, ds.uid_field, merged.inter_feat[ds.uid_field].numpy())
    targets = _tokens(ds, ds.iid_field, merged.inter_feat[ds.iid_field].numpy())
    # train: 1: 10->11, ->12, ->13; 3: 12->13. valid: 1: ->14; 2: 14->10 (user 2 has no
    # training row: its first item is history only). Users in order of first appearance.
    assert users == ["1", "1", "1", "1", "3", "2"]
    assert targets == ["11", "12", "13", "14", "13", "10"]
    # Whole sequences for per-position training: each user's longest row, its validation target included.
    whole = whole_sequence_rows(merged).inter_feat
    lists = [_tokens(ds, ds.iid_field, row[row > 0].numpy()) for row in whole[ds.item_id_list_field]]
    assert lists == [["10", "11", "12", "13"], ["12"], ["14"]]
    assert _tokens(ds, ds.iid_field, whole[ds.iid_field].numpy()) == ["14", "13", "10"]


def test_pop_is_fitted_on_train_and_valid_for_the_test_only(tiny):
    result = run_once("pop", "tiny", 0, tiny.parent / "pop", {"device": "cpu"}, data_root=tiny)
    assert result.fit_protocol == "train+valid"
    # Validation, counts of training events only: 10: 1, 11: 1, 12: 2, 13: 2, 14: 0, 15: 0.
    # User 1's target 14: 4 items higher, 15 tied: 1 + 4 + 1/2. User 2's target 10:
    # 12 and 13 higher, 11 tied: 1 + 2 + 1/2.
    assert result.ranks["valid_full"].tolist() == [5.5, 3.5]
    # Test, validation events counted too (user 2's 14 and 10, user 1's 14):
    # 10: 2, 11: 1, 12: 2, 13: 2, 14: 2, 15: 0. User 1's 15: rank 6; user 2's 11: rank 5.
    assert result.ranks["test_full"].tolist() == [6.0, 5.0]


def test_refit_retrains_on_train_and_valid_for_the_selected_epochs(tiny):
    told = []
    result = run_once("narm", "tiny", 0, tiny.parent / "narm", {"device": "cpu", "epochs": 3, "refit": True},
                      data_root=tiny, on_refit_epoch=lambda epoch, epochs: told.append((epoch, epochs)))
    assert result.fit_protocol == "refit"
    assert result.best_epoch is not None
    assert [c["epoch"] for c in result.refit_curve] == list(range(result.best_epoch + 1))
    epochs = result.best_epoch + 1  # the refit's progress: as it starts, then after each epoch
    assert told == [(None, epochs)] + [(e, epochs) for e in range(epochs)]
    assert all("valid" not in c for c in result.refit_curve)  # no validation: it is training data now
    plain = run_once("narm", "tiny", 0, tiny.parent / "narm-plain", {"device": "cpu", "epochs": 3}, data_root=tiny)
    assert plain.fit_protocol == "train" and not plain.refit_curve
    assert plain.ranks["valid_full"].tolist() == result.ranks["valid_full"].tolist()  # same first pass


def _suite(tmp_path, tiny, settings: dict):
    from bench.suite import load_suite

    path = tmp_path / "fit.yaml"
    path.write_text("name: fit\ndatasets: [tiny]\nmodels: [narm]\nseeds: [0]\n"
                    f"overrides: {{all: {settings!r}}}\n".replace("'", ""))
    return load_suite(path, tiny)


def test_refit_reuses_a_stored_early_stopped_fit_of_the_same_config(tmp_path, tiny):
    from bench.store import ResultStore, record_from_result
    from bench.suite import plan

    store = ResultStore(tmp_path / "results")
    (first,) = plan(_suite(tmp_path, tiny, {"epochs": 3}), tiny, store)
    assert first.state == "missing" and first.validation is None
    trained = run_once("narm", "tiny", 0, tmp_path / "w1", {**first.settings, "device": "cpu"}, data_root=tiny)
    store.write(first.key, *record_from_result(first.key, trained, first.manifest, first.manifest_sha256))

    # The same config but refit: the stored early-stopped fit is handed over, not repeated.
    (refit,) = plan(_suite(tmp_path, tiny, {"epochs": 3, "refit": True}), tiny, store)
    assert refit.state == "changed" and refit.validation is not None
    assert refit.validation.best_epoch == trained.best_epoch
    reused = run_once("narm", "tiny", 0, tmp_path / "w2", {**refit.settings, "device": "cpu"}, data_root=tiny,
                      validated=refit.validation)
    fresh = run_once("narm", "tiny", 0, tmp_path / "w3", {**refit.settings, "device": "cpu"}, data_root=tiny)
    assert reused.fit_protocol == fresh.fit_protocol == "refit"
    assert reused.curve == trained.curve and reused.validation_from["config_hash"] == first.config_hash
    assert reused.ranks["valid_full"].tolist() == fresh.ranks["valid_full"].tolist()
    assert reused.ranks["test_full"].tolist() == fresh.ranks["test_full"].tolist()  # init_seed before the refit
    record, _ = record_from_result(refit.key, reused, refit.manifest, refit.manifest_sha256)
    assert record["validation_from"] == reused.validation_from and record["config_hash"] == refit.config_hash

    # Any other difference (here the learning rate) means a different early-stopped fit: no reuse.
    (other,) = plan(_suite(tmp_path, tiny, {"epochs": 3, "refit": True, "learning_rate": 0.01}), tiny, store)
    assert other.state == "changed" and other.validation is None
    with pytest.raises(ValueError, match="refit: true"):
        run_once("narm", "tiny", 0, tmp_path / "w4", {**first.settings, "device": "cpu"}, data_root=tiny,
                 validated=refit.validation)


def test_fit_only_stores_the_early_stopped_fit_that_the_next_run_refits(tmp_path, tiny):
    from bench.execution import store_outcome
    from bench.report import SuiteReport
    from bench.store import ResultStore, record_from_result
    from bench.suite import plan

    store = ResultStore(tmp_path / "results")
    suite = _suite(tmp_path, tiny, {"epochs": 3, "refit": True})
    (whole,) = plan(suite, tiny, store)
    (fit,) = plan(suite, tiny, store, fit_only=True)
    # The fit stage runs refit: false, and keeps its progress where the whole run keeps its
    # own, so either resumes what the other left.
    assert fit.stage == "fit" and fit.state == "missing" and fit.settings["refit"] is False
    assert fit.config_hash != whole.config_hash and fit.progress_dir == whole.progress_dir
    trained = run_once("narm", "tiny", 0, tmp_path / "w1", {**fit.settings, "device": "cpu"}, data_root=tiny)
    record, ranks = record_from_result(fit.key, trained, fit.manifest, fit.manifest_sha256)
    store_outcome(store, fit, {"status": "finished", "record": record, "ranks": ranks})
    assert store.read(fit.key)["stage"] == "fit"

    (again,) = plan(suite, tiny, store, fit_only=True)
    assert again.stage == "fit" and again.state == "finished"  # nothing left for --fit-only
    (refit,) = plan(suite, tiny, store)
    assert refit.stage == "whole" and refit.state == "changed"
    assert refit.validation is not None and refit.validation.best_epoch == trained.best_epoch

    # Half a run is not a row: the report lists the seed as unfinished, its fit stored.
    report = SuiteReport("fit", store, tmp_path / "reports", {"name": "fit", "models": ["narm"], "seeds": [0],
                                                              "datasets": [{"name": "tiny"}]})
    assert report.finished == [] and len(report.fitted) == 1
    (lacking,) = [line for line in report.provenance() if line.startswith("- Not yet finished")]
    assert lacking.endswith("tiny: NARM (`narm`) seed 0 (its early-stopped fit is stored: the refit remains)")

    done = run_once("narm", "tiny", 0, tmp_path / "w2", {**refit.settings, "device": "cpu"}, data_root=tiny,
                    validated=refit.validation)
    record, ranks = record_from_result(refit.key, done, refit.manifest, refit.manifest_sha256)
    store_outcome(store, refit, {"status": "finished", "record": record, "ranks": ranks})
    assert "stage" not in store.read(refit.key)
    (after,) = plan(suite, tiny, store, fit_only=True)
    assert after.stage == "whole" and after.state == "finished"  # a whole run is never cut back to its fit


def test_the_progress_line_shows_a_refit_and_its_epochs():
    import io

    from bench.execution import Board

    class Queue:  # the Ray queue's two calls that the board uses
        def __init__(self, messages):
            self.messages = messages

        def qsize(self):
            return len(self.messages)

        def get_nowait_batch(self, n):
            taken, self.messages = self.messages[:n], self.messages[n:]
            return taken

    board = Board(runs=[object()], stream=io.StringIO())
    board.drain(Queue([("start", "d/narm/seed-1", 0.0)]))
    assert board.status().endswith("d/narm/seed-1 starting")
    board.drain(Queue([("epoch", "d/narm/seed-1", 24, 0.158)]))
    assert board.status().endswith("d/narm/seed-1 epoch 25")
    board.drain(Queue([("refit", "d/narm/seed-1", None, 21)]))
    assert board.status().endswith("d/narm/seed-1 refit starting (21 epochs)")
    board.drain(Queue([("refit", "d/narm/seed-1", 0, 21), ("refit", "d/narm/seed-1", 1, 21)]))
    assert board.status().endswith("d/narm/seed-1 refit epoch 2/21")

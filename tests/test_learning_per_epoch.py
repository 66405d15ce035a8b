"""The learning-per-epoch benchmark's verdict: time to RecBole's best score and the
per-epoch means over seeds (hand-computed; no training here)."""
import pytest

from bench.benchmarks.learning_per_epoch import (compare, over_seeds, paired_difference, side_label, time_to,
                                                   unit_settings)


def side(valid, seconds, seed=0):
    return {"valid": valid, "train_seconds": seconds, "seed": seed}


def test_time_to_counts_training_seconds_up_to_the_first_epoch_reaching_the_score():
    ours = side([0.10, 0.20, 0.30], [5.0, 6.0, 7.0])
    assert time_to(ours, 0.20) == (2, 11.0)
    assert time_to(ours, 0.25) == (3, 18.0)
    assert time_to(ours, 0.31) == (None, None)


def test_compare_speedup_and_the_every_epoch_verdict():
    theirs = side([0.10, 0.25, 0.24], [10.0, 10.0, 10.0])  # best .25 at epoch 2, after 20 s
    ours = side([0.09, 0.26, 0.30], [4.0, 4.0, 4.0])  # reaches .25 at epoch 2, after 8 s
    verdict = compare(ours, theirs)
    assert verdict["recbole_best"] == 0.25 and verdict["recbole_epoch"] == 2
    assert verdict["recbole_seconds"] == 20.0 and verdict["ours_seconds"] == 8.0
    assert verdict["speedup"] == pytest.approx(2.5)
    assert verdict["ours_at_least_recbole_every_epoch"] is False  # epoch 1: .09 < .10


def test_over_seeds_means_and_sample_std_per_epoch():
    summary = over_seeds([side([0.1, 0.4], [10.0, 12.0], seed=0), side([0.3, 0.6], [14.0, 16.0], seed=1)])
    assert summary["seeds"] == [0, 1]
    assert summary["valid"] == pytest.approx([0.2, 0.5])
    # sample std of {0.1, 0.3}: sqrt(((-.1)^2 + (.1)^2) / 1) = 0.1414
    assert summary["valid_std"] == pytest.approx([0.141421356, 0.141421356])
    assert summary["train_seconds"] == pytest.approx([12.0, 14.0])
    assert over_seeds([side([0.1], [1.0])])["valid_std"] == [0.0]


def test_paired_difference_by_seed_with_a_t_interval():
    theirs = [side([0.10, 0.20], [1.0, 1.0], seed=s) for s in (0, 1, 2)]
    # epoch 1: differences -.02, 0, +.02 (mean 0); epoch 2: +.01, +.02, +.03 (mean .02)
    ours = [side([0.08, 0.21], [1.0, 1.0], seed=2), side([0.10, 0.22], [1.0, 1.0], seed=0),
            side([0.12, 0.23], [1.0, 1.0], seed=1)]
    diff = paired_difference(ours, theirs)
    assert diff["seeds"] == 3
    assert diff["mean"] == pytest.approx([0.0, 0.02])
    # sample std .02 and .01 (n = 3), t(0.975, 2) = 4.3027: half widths .04968 and .02484
    assert diff["low"] == pytest.approx([-0.049683, -0.004842], abs=1e-6)
    assert diff["high"] == pytest.approx([0.049683, 0.044842], abs=1e-6)
    assert diff["verdict"] == ["level within noise", "level within noise"]
    tight = paired_difference([side([0.15], [1.0], seed=s) for s in (0, 1)],
                              [side([0.10 + 0.001 * s], [1.0], seed=s) for s in (0, 1)])
    assert tight["verdict"] == ["ahead"]  # differences .05 and .049
    behind = paired_difference([side([0.05 + 0.001 * s], [1.0], seed=s) for s in (0, 1)],
                               [side([0.10], [1.0], seed=s) for s in (0, 1)])
    assert behind["verdict"] == ["behind"]
    assert paired_difference([side([0.2], [1.0])], [side([0.1], [1.0])])["verdict"] == ["one seed"]


def test_the_store_reuses_a_longer_run_cut_to_the_asked_epochs_and_trains_what_it_lacks(tmp_path, monkeypatch):
    from bench.benchmarks import learning_per_epoch as lpe

    trained = []

    def fake_one_side(model, dataset, settings, epochs, seed, data_root, progress_dir=None):
        trained.append((model, epochs, seed, progress_dir))
        return {"model": model, "settings": settings, "valid_metric": "mrr@20",
                "valid": [0.1 * (e + 1) + seed for e in range(epochs)], "train_seconds": [2.0] * epochs,
                "valid_seconds": [1.0] * epochs, "wall_seconds": 3.0 * epochs}

    monkeypatch.setattr(lpe, "one_side", fake_one_side)
    store = lpe.SideStore(tmp_path)
    settings = {"embedding_size": 50, "batch_unit": "iid_targets"}
    first = lpe.stored_side("narm", "diginetica", settings, 3, 0, tmp_path, store)
    assert len(trained) == 1 and trained[0][3] is not None  # trained with a progress folder in the store
    assert str(trained[0][3]).startswith(str(tmp_path / ".partial"))
    stored = list((tmp_path / "diginetica" / "narm" / "seed-0").glob("*.json"))
    assert len(stored) == 1 and not any(p.name.startswith(".") for p in stored)

    again = lpe.stored_side("narm", "diginetica", settings, 2, 0, tmp_path, store)  # fewer epochs: read, cut
    assert len(trained) == 1
    assert again["valid"] == pytest.approx([0.1, 0.2]) and again["train_seconds"] == [2.0, 2.0]
    assert again["wall_seconds"] is None and first["wall_seconds"] == 9.0
    assert lpe.stored_side("narm", "diginetica", settings, 3, 0, tmp_path, store)["wall_seconds"] == 9.0

    lpe.stored_side("narm", "diginetica", settings, 4, 0, tmp_path, store)  # more epochs than stored: trains
    lpe.stored_side("narm", "diginetica", {**settings, "batch_unit": "targets"}, 2, 0, tmp_path, store)  # other settings
    lpe.stored_side("narm", "diginetica", settings, 2, 1, tmp_path, store)  # other seed
    assert [(m, e, s) for m, e, s, _ in trained[1:]] == [("narm", 4, 0), ("narm", 2, 0), ("narm", 2, 1)]
    assert lpe.stored_side("narm", "diginetica", settings, 4, 0, tmp_path, store)["valid"] == pytest.approx(
        [0.1, 0.2, 0.3, 0.4])
    assert len(trained) == 4


def test_the_markdown_report_shows_means_times_and_the_paired_verdict():
    from bench.benchmarks.learning_per_epoch import markdown

    theirs_runs = [{**side([0.10, 0.20], [10.0, 10.0], seed=s), "valid_metric": "mrr@20"} for s in (0, 1)]
    ours_runs = [side([0.08, 0.22], [2.0, 2.0], seed=0), side([0.10, 0.24], [4.0, 4.0], seed=1)]
    theirs_mean, ours_mean = over_seeds(theirs_runs), over_seeds(ours_runs)
    out = {"device": "cpu (1 threads)", "epochs": 2, "seeds": [0, 1], "command": "python -m x --seeds 0,1",
           "commit": "abc123", "pairs": {"narm": {"dataset": "diginetica", "sides": {
               "recbole": {"model": "recbole:NARM", "runs": theirs_runs, "mean": theirs_mean},
               "ours (iid_targets)": {"model": "narm", "runs": ours_runs, "mean": ours_mean,
                                      "vs_recbole": compare(ours_mean, theirs_mean),
                                      "minus_recbole_by_seed": paired_difference(ours_runs, theirs_runs)}}}}}
    text = markdown(out)
    assert "Command: `python -m x --seeds 0,1`" in text and "Commit: `abc123`" in text
    assert "## narm, diginetica: validation MRR@20" in text
    assert "| side | epoch 1 | epoch 2 | s / epoch | time to RecBole's best |" in text
    # RecBole's: no spread between its seeds; best .20 at epoch 2, after 20 s
    assert "| RecBole's NARM | 0.1000 | 0.2000 | 10 | 20 s (epoch 2) |" in text
    # ours: means .09 and .23, sample std .0141 at both epochs; reaches .20 at epoch 2 after 3 + 3 s
    assert "| ours (iid_targets) | 0.0900 ± 0.0141 | 0.2300 ± 0.0141 | 3 | 6 s (epoch 2, 3.33x) |" in text
    # paired: epoch 1 differences -.02 and 0 (mean -.01, std .0141, t(.975, 1) = 12.706: ± .127)
    assert "| ours (iid_targets) − RecBole's, paired by seed (2) | -0.0100 [-0.1371, +0.1171] level within noise" in text


def test_a_unit_with_a_stride_sets_overlapping_windows():
    assert unit_settings("iid_targets") == {"batch_unit": "iid_targets"}
    assert unit_settings("sequences@25") == {"batch_unit": "sequences", "train_stride": 25}


def test_a_unit_with_a_group_sets_targets_per_row_and_names_it():
    settings = unit_settings("iid_targets:8@25")
    assert settings == {"batch_unit": "iid_targets", "targets_per_row": 8, "train_stride": 25}
    assert side_label(settings) == "ours (iid_targets, 8 a row, windows 25 apart)"
    assert side_label(unit_settings("sequences@10")) == "ours (sequences, windows 10 apart)"
    assert side_label(unit_settings("targets")) == "ours (targets)"


def test_recboles_shorter_budget_leaves_its_later_epochs_blank_and_pairs_only_its_epochs():
    from bench.benchmarks.learning_per_epoch import markdown

    theirs_runs = [{**side([0.20], [30.0], seed=s), "valid_metric": "ndcg@10"} for s in (0, 1)]
    ours_runs = [side([0.10, 0.21, 0.25], [2.0, 2.0, 2.0], seed=0), side([0.12, 0.19, 0.23], [4.0, 4.0, 4.0], seed=1)]
    theirs_mean, ours_mean = over_seeds(theirs_runs), over_seeds(ours_runs)
    verdict = compare(ours_mean, theirs_mean)
    # ours' means .11, .20, .24: RecBole's best .20 reached at epoch 2, after 3 + 3 s
    assert (verdict["ours_epoch"], verdict["ours_seconds"], verdict["speedup"]) == (2, 6.0, 5.0)
    diff = paired_difference(ours_runs, theirs_runs)
    assert len(diff["mean"]) == 1 and diff["mean"][0] == pytest.approx(-0.09)  # epoch 1 only
    out = {"device": "cpu", "epochs": 3, "recbole_epochs": 1, "seeds": [0, 1], "pairs": {"sasrec": {
        "dataset": "ml100k", "sides": {
            "recbole": {"model": "recbole:SASRec", "runs": theirs_runs, "mean": theirs_mean},
            "ours (sequences)": {"model": "sasrec", "runs": ours_runs, "mean": ours_mean, "vs_recbole": verdict,
                                 "minus_recbole_by_seed": diff}}}}}
    text = markdown(out)
    assert "3 epochs ours, a fixed budget of 1 RecBole's" in text
    assert "| RecBole's SASRec | 0.2000 | – | – | 30 | 30 s (epoch 1) |" in text
    assert "| ours (sequences) | 0.1100 ± 0.0141 | 0.2000 ± 0.0141 | 0.2400 ± 0.0141 | 3 | 6 s (epoch 2, 5.00x) |" in text
    assert "| ours (sequences) − RecBole's, paired by seed (2) | -0.0900 [" in text and "|  |  | | |" in text

"""The learning-per-epoch benchmark's verdict: time to RecBole's best score and the
per-epoch means over seeds (hand-computed; no training here)."""
import pytest

from bench.benchmarks.learning_per_epoch import compare, over_seeds, time_to


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

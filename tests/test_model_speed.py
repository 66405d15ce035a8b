"""The speed benchmark's bookkeeping: which settings each pair shares, and how "time to
reach RecBole's best validation score" is read off the per-epoch curves. (Timing itself
stays out of the tests: `python -m bench.benchmarks.model_speed` measures it.)"""
from __future__ import annotations

import pytest

from bench.benchmarks import model_speed
from bench.benchmarks.model_speed import (PAIRS, Row, median_or_unreached, reach_and_speedup, recbole_defaults,
                                          seconds_to_reach, what_the_goal_takes)
from bench.runner import RunResult


def result(scores: list[float], train: list[float], valid: list[float]) -> RunResult:
    curve = [{"epoch": i, "train_seconds": t, "valid_seconds": v, "valid": {"ndcg@10": s}}
             for i, (s, t, v) in enumerate(zip(scores, train, valid))]
    return RunResult(config={}, metrics={}, ranks={}, curve=curve, epochs_trained=len(curve))


def test_recbole_defaults_are_the_installed_packages_own():
    narm, sasrec = recbole_defaults("NARM"), recbole_defaults("SASRec")
    assert (narm["embedding_size"], narm["hidden_size"], narm["train_batch_size"]) == (64, 128, 2048)
    assert (sasrec["hidden_size"], sasrec["n_layers"], sasrec["n_heads"], sasrec["inner_size"]) == (64, 2, 2, 256)


@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: p.name)
def test_both_sides_of_a_pair_share_embedding_hidden_and_batch_size(pair):
    theirs = {**recbole_defaults(pair.recbole.split(":")[1]), **pair.recbole_overrides}
    for label, ours in pair.ours:
        if pair.model == "gru4rec":  # ours: one constrained layer, so embedding = hidden
            assert ours["layers"] == [theirs["hidden_size"]] == [theirs["embedding_size"]]
            assert ours["train_batch_size"] == theirs["train_batch_size"]
            continue
        assert ours["batch_unit"] == "targets", label  # RecBole's rows are one target each
        keys = ["hidden_size", "train_batch_size"] + (["embedding_size"] if pair.model == "narm" else
                                                      ["n_layers", "n_heads"])
        assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}, label


def test_time_to_reach_counts_training_and_validation_until_the_first_epoch_at_the_target():
    ours = result([0.02, 0.05, 0.04, 0.07], train=[1.0, 1.0, 1.0, 1.0], valid=[0.5, 0.5, 0.5, 0.5])
    assert seconds_to_reach(ours, 0.05) == pytest.approx(3.0)
    assert seconds_to_reach(ours, 0.06) == pytest.approx(6.0)
    assert seconds_to_reach(ours, 0.08) is None


def test_speed_up_is_against_recbole_s_best_of_its_budget_with_the_same_seed():
    recbole = result([0.03, 0.06, 0.05], train=[20.0, 20.0, 20.0], valid=[1.0, 1.0, 1.0])  # best .06 at 42 s
    ours = result([0.04, 0.061], train=[2.0, 2.0], valid=[0.1, 0.1])  # reaches .06 at 4.2 s
    other_seed = result([0.09], train=[100.0], valid=[1.0])
    rows = [Row("narm", "RecBole", 0, recbole, 60.0), Row("narm", "ours", 0, ours, 5.0),
            Row("narm", "RecBole", 1, other_seed, 100.0)]
    reach, speedup = reach_and_speedup(rows, rows[1])
    assert reach == pytest.approx(4.2) and speedup == pytest.approx(10.0)
    assert reach_and_speedup(rows, rows[0]) == (pytest.approx(42.0), None)  # RecBole's own row: no ratio
    never = Row("narm", "ours", 1, result([0.05], [2.0], [0.1]), 3.0)
    assert reach_and_speedup(rows + [never], never) == (None, None)


def test_what_the_goal_takes_follows_from_the_epochs_both_sides_need():
    recbole = result([0.03, 0.06, 0.05], train=[20.0, 20.0, 20.0], valid=[1.0, 1.0, 1.0])  # best at epoch 2
    ours = result([0.04, 0.05, 0.061], train=[2.5, 2.5, 2.5], valid=[0.1, 0.1, 0.1])  # reaches it at epoch 3
    never = result([0.05], train=[2.0], valid=[0.1])
    rows = [Row("narm", "RecBole", 0, recbole, 60.0), Row("narm", "ours", 0, ours, 8.0),
            Row("narm", "ours, variant", 0, never, 2.0)]
    theirs, mine, needed, measured = what_the_goal_takes(rows, rows[1])
    assert (theirs, mine) == (2, 3) and needed == pytest.approx(15.0) and measured == pytest.approx(8.0)
    # consistent with the speed-up: 8x cheaper epochs, where 15x were needed, give less than 10x
    assert reach_and_speedup(rows, rows[1])[1] < model_speed.GOAL
    assert what_the_goal_takes(rows, rows[2]) == (2, None, None, pytest.approx(10.0))
    assert what_the_goal_takes(rows, rows[0]) is None  # RecBole's own row
    table = model_speed.goal_table(rows).splitlines()
    cells = [tuple(c.strip() for c in line.strip("|").split("|")) for line in table[2:]]
    assert cells == [("narm", "ours", "0", "2", "3", "15.0x", "8.0x"),
                     ("narm", "ours, variant", "0", "2", "never", "—", "10.0x")]


def test_median_ranks_never_reached_below_every_speed_up():
    assert median_or_unreached([12.0, 3.0, 8.0]) == 8.0
    assert median_or_unreached([12.0, None, 8.0]) == 8.0
    assert median_or_unreached([12.0, None, None]) is None
    assert median_or_unreached([4.0, 10.0]) == 7.0


def test_batch_settings_select_pairs():
    settings = {p.batches for p in PAIRS}
    assert settings == set(model_speed.BATCH_SETTINGS)
    assert len({p.name for p in PAIRS}) == len(PAIRS)  # report rows are keyed by the pair's name


def test_speed_ups_are_written_rounded_down_so_a_miss_never_reads_as_the_goal():
    assert model_speed.speedup_text(9.96) == "9.9x"
    assert model_speed.speedup_text(10.0) == "10.0x"
    assert model_speed.speedup_text(26.848) == "26.8x"


def test_plan_runs_every_seed_of_the_headline_pairs_first_and_the_optional_steps_after():
    steps = model_speed.plan(PAIRS, [0, 1, 2])
    essential = [s for s in steps if s.essential]
    assert steps[:len(essential)] == essential  # nothing optional before an essential step
    for step in steps:
        seed, pair, variant = step.runs[0]
        if variant is pair.ours[0]:
            assert step.runs[1] == (seed, pair, None)  # ours and RecBole's together
    headline = [p for p in PAIRS if p.headline]
    assert {p.batches for p in headline} == {"recbole", "papers"} and any(p.model == "gru4rec" for p in headline)
    assert [(s.runs[0][0], s.runs[0][1].name) for s in essential] == [
        (seed, p.name) for seed in (0, 1, 2) for p in headline]
    optional = steps[len(essential):]
    seed_steps = [s for s in optional if len(s.runs) == 2]
    assert [(s.runs[0][0], s.runs[0][1].name) for s in seed_steps] == [
        (seed, p.name) for seed in (0, 1, 2) for p in PAIRS if not p.headline]
    assert optional[:len(seed_steps)] == seed_steps  # then the variants of ours
    assert len(optional) - len(seed_steps) == 3 * sum(len(p.ours) - 1 for p in PAIRS)
    assert all(variant is not None for s in model_speed.plan(PAIRS, [0], with_recbole=False) for _, _, variant in s.runs)


def test_without_a_headline_pair_every_selected_seed_is_essential():
    papers = [p for p in PAIRS if not p.headline]
    steps = model_speed.plan(papers, [0, 1, 2])
    assert [(s.runs[0][0], s.runs[0][1].name) for s in steps if s.essential] == [
        (seed, p.name) for seed in (0, 1, 2) for p in papers]
    assert all(len(s.runs) == 1 for s in steps if not s.essential)  # only the variants are optional


def test_a_step_is_predicted_from_the_longest_earlier_run_of_its_pair():
    pair = PAIRS[0]
    main, variant = pair.ours[0], pair.ours[1]
    rows = [Row(pair.name, main[0], 0, result([0.1], [1.0], [0.1]), 30.0),
            Row(pair.name, "RecBole", 0, result([0.1], [1.0], [0.1]), 70.0),
            Row(pair.name, main[0], 1, result([0.1], [1.0], [0.1]), 40.0),
            Row(PAIRS[1].name, "RecBole", 0, result([0.1], [1.0], [0.1]), 500.0)]
    seed_step = model_speed.Step([(2, pair, main), (2, pair, None)], essential=False)
    assert model_speed.predicted_seconds(seed_step, rows) == pytest.approx(40.0 + 70.0)
    first_variant = model_speed.Step([(0, pair, variant)], essential=False)
    assert model_speed.predicted_seconds(first_variant, rows) == pytest.approx(model_speed.VARIANT_COST * 40.0)
    rows.append(Row(pair.name, variant[0], 0, result([0.1], [1.0], [0.1]), 55.0))
    assert model_speed.predicted_seconds(first_variant, rows) == pytest.approx(55.0)


def test_a_pairs_first_run_is_predicted_from_its_expected_seconds():
    pair = PAIRS[1]
    ours, recbole = pair.expected_seconds
    assert all(min(p.expected_seconds) > 0 for p in PAIRS)
    first = model_speed.Step([(0, pair, pair.ours[0]), (0, pair, None)], essential=False)
    assert model_speed.predicted_seconds(first, []) == pytest.approx(ours + recbole)
    first_variant = model_speed.Step([(0, pair, pair.ours[1])], essential=False)
    assert model_speed.predicted_seconds(first_variant, []) == pytest.approx(model_speed.VARIANT_COST * ours)

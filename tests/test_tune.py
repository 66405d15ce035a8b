"""`bench tune`: search spaces, bad input, pruning, Ray runs, kills and resumes.

The fault tests use the instrumented objective of ``tests/tune_objectives.py`` (it
sleeps instead of training), so that a driver or a worker can be killed mid-trial;
one test tunes a real model on the real Diginetica slice end to end through Ray.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

import bench.cli
from bench.errors import InputError
from custom_models.gru4rec_trainer import SESSION_ORDERS
from hyper.space import SPACES_DIR, load_space
from hyper.trial import TrialContext, TrialJob

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
TINY = "tune_objectives:tiny"  # tests/ is on sys.path under pytest, and so on the local Ray workers'


def cli(*argv: str) -> int:
    return bench.cli.main(["tune", *argv])


def load(storage: str, name: str) -> optuna.Study:
    from hyper.storage import open_storage

    return optuna.load_study(study_name=name, storage=open_storage(storage))


def states(study: optuna.Study) -> dict[str, int]:
    return {s.name: sum(t.state == s for t in study.trials) for s in TrialState}


# -- search spaces ------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_space_file_is_valid_for_its_model(path):
    model = path.stem.replace("recbole-", "recbole:")
    space = load_space(model)
    assert space.params, path


def test_a_space_exists_for_every_tunable_model():
    for model in ("narm", "sasrec", "gru4rec", "itemknn", "bprmf", "recbole:NARM", "recbole:SASRec",
                  "recbole:GRU4Rec", "recbole:BPR", "recbole:ItemKNN"):
        load_space(model)


def test_sampling_honours_conditions_and_list_elements():
    space = load_space("gru4rec")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    losses, orders = set(), set()
    for _ in range(40):
        config = space.sample(study.ask())
        losses.add(config["loss"])
        orders.add(config["session_order"])
        assert ("bpreg" in config) == ("final_act" in config) == (config["loss"] == "bpr-max")
        assert ("logq" in config) == (config["loss"] == "cross-entropy")
        assert isinstance(config["layers"], list) and len(config["layers"]) == 1
        assert 64 <= config["layers"][0] <= 512 and config["layers"][0] % 32 == 0
    assert losses == {"bpr-max", "cross-entropy"}
    assert orders == set(SESSION_ORDERS)
    narm = load_space("narm").sample(optuna.create_study().ask())
    assert len(narm["dropout_probs"]) == 2 and all(0.0 <= p <= 0.7 for p in narm["dropout_probs"])


@pytest.mark.parametrize("text, line, message", [
    ("learning_rate: {type: float, low: 0.001, high: 0.1}\nlearning_rat: {type: float, low: 0.1, high: 1}\n",
     2, "unknown parameter 'learning_rat'"),
    ("learning_rate: {type: float, low: 0.1, high: 0.001}\n", 1, "empty or inverted"),
    ("embedding_size: {type: int, low: 64, high: 64}\n", 1, "empty or inverted"),
    ("embedding_size: {type: integer, low: 16, high: 64}\n", 1, "type must be one of"),
    ("learning_rate: {type: float, low: 0.0, high: 0.1, log: true}\n", 1, "needs low > 0"),
    ("learning_rate: {type: float, low: 0.001, high: 0.1, step: 0.01, log: true}\n", 1, "cannot be combined"),
    ("embedding_size: {type: int, low: 16.5, high: 64}\n", 1, "must be an integer"),
    ("embedding_size: {type: categorical}\n", 1, "non-empty list"),
    ("embedding_size: {type: categorical, choices: [32, 32]}\n", 1, "duplicates"),
    ("learning_rate: {type: float, low: 0.001, high: 0.1, hi: 2}\n", 1, "unknown field"),
    ("reg_weight: {type: float, low: 0.0, high: 0.1, when: {embedding_size: 64}}\n"
     "embedding_size: {type: categorical, choices: [32, 64]}\n", 1, "not a parameter defined above"),
    ("embedding_size: {type: categorical, choices: [32, 64]}\n"
     "reg_weight: {type: float, low: 0.0, high: 0.1, when: {embedding_size: 128}}\n", 2, "can never hold"),
    ("embedding_size[1]: {type: int, low: 16, high: 64}\n", 1, "not a list"),
    ("learning_rate: 0.01\n", 1, "expected a mapping"),
    ("# nothing\n", None, "empty"),
    ("learning_rate: {type: float, low: 0.001, high: [0.1\n", None, "not valid YAML"),
])
def test_bad_space_files_name_file_line_and_problem(tmp_path, text, line, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_space("bprmf", path)
    assert message in str(err.value)
    assert err.value.path == str(path)
    if line is not None:
        assert err.value.line == line
        assert str(err.value).startswith(f"{path}:{line}: ")


# -- bad input on the command line: one line, exit 2, no trial ------------------------------
@pytest.mark.parametrize("case", ["model", "dataset", "postgres", "sqlite-dir", "space", "metric", "sampled",
                                  "objective", "trials"])
def test_bad_input_is_one_line_and_exit_2_before_any_trial(case, diginetica_slice, tmp_path, capsys):
    root, name = diginetica_slice
    db = tmp_path / "study.db"
    bad_space = tmp_path / "space.yaml"
    bad_space.write_text("learning_rate: {type: float, low: 0.1, high: 0.001}\n")
    argv = {"model": ["nosuchmodel", name], "dataset": ["bprmf", "nosuchdata"],
            "postgres": ["bprmf", name, "--storage", "postgresql://nohost/db"],
            "sqlite-dir": ["bprmf", name, "--storage", f"sqlite:///{tmp_path}/missing/dir/study.db"],
            "space": ["bprmf", name, "--space", str(bad_space)],
            "metric": ["bprmf", name, "--metric", "auc"],
            "sampled": ["bprmf", name, "--metric", "sampled_mrr@10"],
            "objective": ["bprmf", name, "--objective", "nosuchmodule:f"],
            "trials": ["bprmf", name, "--trials", "0"]}[case]
    if case != "sqlite-dir" and case != "postgres":
        argv += ["--storage", f"sqlite:///{db}"]
    started = time.perf_counter()
    code = cli(*argv, "--data-root", str(root), "--report-dir", str(tmp_path / "reports"), "--no-progress")
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("bench tune: error: ")
    if case in ("model", "dataset", "space", "metric", "sampled", "objective", "trials"):
        assert not db.exists()  # checked before the storage was even opened
    assert not (tmp_path / "reports").exists()
    assert time.perf_counter() - started < 60  # no Ray start; generous on a loaded box


def test_a_resumed_study_must_be_the_same_job(diginetica_slice, tmp_path, capsys):
    root, name = diginetica_slice
    storage = f"sqlite:///{tmp_path}/study.db"
    optuna.create_study(study_name="s", storage=storage).set_user_attr("model", "narm")
    code = cli("bprmf", name, "--storage", storage, "--study-name", "s", "--data-root", str(root), "--no-progress")
    assert code == 2
    assert "tunes model 'narm', not 'bprmf'" in capsys.readouterr().err


# -- heartbeats -------------------------------------------------------------------------------
def test_only_trials_without_a_recent_heartbeat_are_reclaimed(tmp_path, monkeypatch):
    """A live trial of another driver keeps beating and is left alone; a silent one (its
    process died, before or after its first beat) is failed and its parameters queued once."""
    from hyper import storage as hs

    study = optuna.create_study(study_name="s", storage=hs.open_storage(f"sqlite:///{tmp_path}/s.db"))
    live, dead, never, mine = (study.ask() for _ in range(4))
    for trial in (live, dead, never, mine):
        trial.suggest_float("x", 0.0, 1.0)
    for trial in (live, dead, mine):
        hs.beat(study._storage, trial._trial_id)
    clock = time.time()
    monkeypatch.setattr(hs.time, "time", lambda: clock + 30)  # 30 s later ...
    hs.beat(study._storage, live._trial_id)  # ... only `live` has beaten again
    failed = hs.reclaim_stale(study, grace=20, skip={mine.number}, max_retry=1)
    assert sorted(failed) == sorted([dead.number, never.number])
    by_number = {t.number: t for t in study.trials}
    assert by_number[live.number].state == by_number[mine.number].state == TrialState.RUNNING
    assert "no heartbeat" in by_number[dead.number].user_attrs["error"]
    queued = [t for t in study.trials if t.state == TrialState.WAITING]
    assert sorted(t.system_attrs["retry_history"][0] for t in queued) == sorted(failed)
    assert {t.params["x"] for t in queued} == {dead.params["x"], never.params["x"]}
    # max_retry: a rerun that dies too is not queued again.
    rerun = study.ask()
    assert rerun.number == queued[0].number and rerun.params == queued[0].params
    monkeypatch.setattr(hs.time, "time", lambda: clock + 120)
    hs.beat(study._storage, live._trial_id)
    assert hs.reclaim_stale(study, grace=20, skip={mine.number}, max_retry=1) == [rerun.number]
    assert len([t for t in study.trials if t.state == TrialState.WAITING]) == 1  # only the other one


# -- pruning ---------------------------------------------------------------------------------
def test_epoch_reports_reach_the_pruner():
    from hyper.trial import make_pruner

    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 3))
    for _ in range(5):
        study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={},
                                                  intermediate_values={0: 0.3, 1: 0.4, 2: 0.5}))
    trial = study.ask()
    job = TrialJob("", study.study_name, trial._trial_id, trial.number, {}, "bprmf", "d", "", 0, "mrr@20", 3,
                   TINY, "median", 1.0)
    ctx = TrialContext(job, study, Path("."))
    ctx.report(0, 0.01)  # the first epoch is never pruned
    with pytest.raises(optuna.TrialPruned):
        ctx.report(1, 0.01)
    assert study.trials[-1].intermediate_values == {0: 0.01, 1: 0.01}
    good = study.ask()
    ctx = TrialContext(TrialJob("", study.study_name, good._trial_id, good.number, {}, "bprmf", "d", "", 0,
                                "mrr@20", 3, TINY, "median", 1.0), study, Path("."))
    ctx.report(1, 0.45)  # above the median: goes on


def test_trial_n_is_sampled_from_the_seed_and_the_finished_trials():
    from hyper.tune import ask

    space = load_space("gru4rec")

    def run(seed: int) -> list[dict]:
        study = optuna.create_study(direction="maximize")
        sampled = []
        for _ in range(14):  # past TPE's 10 random start-up trials
            trial, params = ask(study, space, seed)
            study.tell(trial, params["learning_rate"] * params["layers"][0])
            sampled.append(params)
        return sampled

    first = run(7)
    assert run(7) == first
    assert run(8) != first


# -- through Ray ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the in-process runs of this module; tune() reuses it."""
    import ray

    from bench.execution import ray_session
    from hyper.tune import _workers_see_our_path

    with _workers_see_our_path(), ray_session(2):
        yield ray


def _wait_for(predicate, timeout: float, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _starts(log: Path) -> list[tuple[int, int]]:
    """(trial number, worker pid) of every objective start so far."""
    return [tuple(map(int, p.name.split("-")[1:])) for p in log.glob("start-*")]


def _done(log: Path) -> list[int]:
    path = log / "done.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def test_tune_survives_a_killed_worker_and_resumes_to_n(diginetica_slice, tmp_path, local_ray):
    from hyper.tune import tune

    root, name = diginetica_slice
    log = tmp_path / "log"
    log.mkdir()
    storage = f"sqlite:///{tmp_path}/study.db"
    settings = dict(model="bprmf", dataset=name, data_root=root, storage=storage, objective=TINY, epochs=5,
                    parallel=2, seed=1, report_dir=tmp_path / "reports", best_root=tmp_path / "best",
                    progress=False, heartbeat=1, grace=5)

    killed: list[tuple[int, int]] = []

    def kill_first_worker():
        number, pid = _wait_for(lambda: sorted(_starts(log))[:1], 120, "a trial to start")[0]
        time.sleep(0.8)  # mid-trial: it has reported an epoch or two
        os.kill(pid, signal.SIGKILL)
        killed.append((number, pid))

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    result = tune(trials=4, **settings)
    killer.join()

    study = load(storage, f"{name}__bprmf")
    count = states(study)
    assert count["COMPLETE"] + count["PRUNED"] == 4 and count["RUNNING"] == 0 and count["WAITING"] == 0
    (number, _), = killed
    dead = study.trials[number]
    assert dead.state == TrialState.FAIL and "worker died" in dead.user_attrs["error"]
    rerun = [t for t in study.trials if t.system_attrs.get("retry_history") == [number]]
    assert len(rerun) == 1 and rerun[0].params == dead.params and rerun[0].state == TrialState.COMPLETE
    done = _done(log)
    assert sorted(done) == sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)
    assert len(done) == len(set(done))  # no trial ran twice to completion

    # Outputs: the best parameters where `bench run` reads them, the report and its plots.
    from hyper.best import load_best_params

    best = max((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert result.best_number == best.number
    saved = yaml.safe_load(Path(result.best_path).read_text())
    assert saved["provenance"]["trial"] == best.number and saved["provenance"]["study"] == f"{name}__bprmf"
    assert load_best_params(name, "bprmf", root=tmp_path / "best") == result.best_params
    assert result.best_params["learning_rate"] == pytest.approx(best.params["learning_rate"])
    report = Path(result.report_path).read_text()
    assert report.count("| complete ") == count["COMPLETE"] and "| fail " in report
    for plot in ("history", "importances"):
        assert (tmp_path / "reports" / f"tune-{name}-bprmf-{plot}.png").stat().st_size > 1000
        assert f"tune-{name}-bprmf-{plot}.png)" in report

    # Resume: the same command again does nothing; a larger --trials continues the study.
    again = tune(trials=4, **settings)
    assert again.driver_seconds == {} and states(load(storage, f"{name}__bprmf")) == count
    tune(trials=5, **settings)
    count5 = states(load(storage, f"{name}__bprmf"))
    assert count5["COMPLETE"] + count5["PRUNED"] == 5 and count5["RUNNING"] == 0


def test_an_objective_that_always_fails_stops_the_job(diginetica_slice, tmp_path, local_ray):
    from hyper.tune import TuneFailed, tune

    root, name = diginetica_slice
    with pytest.raises(TuneFailed, match="this objective always fails"):
        tune(model="bprmf", dataset=name, data_root=root, storage=f"sqlite:///{tmp_path}/s.db", trials=3,
             parallel=2, objective="tune_objectives:broken", report_dir=tmp_path, best_root=tmp_path / "best",
             progress=False)
    assert not (tmp_path / "best").exists()


def test_driver_sigkill_then_rerun_finishes_exactly_n(diginetica_slice, tmp_path, local_ray):
    """SIGKILL the driver mid-trial, rerun the same command: orphans are failed once their
    heartbeat is stale and rerun; nothing finished is lost; exactly N finished trials.
    The drivers join this module's Ray with --address (a cluster that outlives its drivers)."""
    root, name = diginetica_slice
    address = local_ray.get_runtime_context().gcs_address
    log = tmp_path / "log"
    log.mkdir()
    storage = f"sqlite:///{tmp_path}/study.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "bench", "tune", "bprmf", name, "--trials", "4", "--parallel", "2",
               "--epochs", "6", "--storage", storage, "--address", address, "--data-root", str(root),
               "--objective", TINY, "--heartbeat", "1", "--grace", "4", "--report-dir", str(tmp_path / "reports"),
               "--no-progress"]
    best_root = {"BENCH_BEST_ROOT": str(tmp_path / "best")}
    first = subprocess.Popen(command, env={**env, **best_root}, cwd=REPO, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill once a trial has finished and two more are mid-way.
        _wait_for(lambda: len(_done(log)) >= 1 and len(_starts(log)) >= 3, 150, "one trial done, two running")
        time.sleep(0.8)
        os.kill(first.pid, signal.SIGKILL)
        # Ray's raylet ends a dead driver's workers, but a short trial may finish first
        # (and tell the study: nothing lost either way); end them now, so that there are orphans.
        for number, pid in _starts(log):
            if number not in _done(log):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        first.wait()
    finally:
        _kill_session(first.pid)
    study = load(storage, f"{name}__bprmf")
    before = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    orphans = [t.number for t in study.trials if t.state == TrialState.RUNNING]
    assert before and orphans  # trials left RUNNING by the dead driver

    second = subprocess.run(command, env={**env, **best_root}, cwd=REPO, capture_output=True, text=True,
                            timeout=150)
    assert second.returncode == 0, second.stderr
    study = load(storage, f"{name}__bprmf")
    count = states(study)
    assert count["COMPLETE"] + count["PRUNED"] == 4 and count["RUNNING"] == 0
    for number, value in before.items():  # nothing finished was lost
        assert study.trials[number].state == TrialState.COMPLETE and study.trials[number].value == value
    for number in orphans:  # failed once their heartbeat went stale, and run again
        assert study.trials[number].state == TrialState.FAIL
        assert "no heartbeat" in study.trials[number].user_attrs["error"]
        rerun = [t for t in study.trials if t.system_attrs.get("retry_history") == [number]]
        assert len(rerun) == 1 and rerun[0].params == study.trials[number].params
    done = _done(log)
    assert len(done) == len(set(done))
    assert sorted(done) == sorted(t.number for t in study.trials if t.state == TrialState.COMPLETE)
    assert (tmp_path / "best" / name / "bprmf.yaml").is_file()


def _kill_session(sid: int) -> None:
    """Ray's helper processes of a SIGKILLed driver outlive it: end those of the session the test started."""
    import psutil

    for pid in psutil.pids():
        try:
            if pid != os.getpid() and os.getsid(pid) == sid:
                os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def test_real_tuning_job_on_the_diginetica_slice(diginetica_slice, tmp_path, local_ray):
    """NARM, 2 trials of 1 epoch, 2 at a time through Ray: valid metrics only, best params saved."""
    from hyper.tune import tune

    root, name = diginetica_slice
    storage = f"sqlite:///{tmp_path}/study.db"
    result = tune(model="narm", dataset=name, data_root=root, storage=storage, trials=2, parallel=2, epochs=1,
                  report_dir=tmp_path / "reports", best_root=tmp_path / "best", progress=False)
    study = load(storage, f"{name}__narm")
    assert states(study)["COMPLETE"] == 2
    for trial in study.trials:
        assert 0.0 < trial.value <= 1.0
        assert trial.value == pytest.approx(trial.user_attrs["valid"]["mrr@20"], abs=1e-6)
        assert set(trial.user_attrs["valid"]) >= {"recall@20", "mrr@20"}
        assert not any("test" in key for key in trial.user_attrs), trial.user_attrs  # selection never sees test
        assert trial.intermediate_values  # the epoch's validation score was reported
    saved = yaml.safe_load(Path(result.best_path).read_text())
    assert set(saved["params"]) == {"learning_rate", "embedding_size", "hidden_size", "dropout_probs",
                                    "train_batch_size", "train_stride"}
    assert saved["params"]["train_stride"] in (1.0, 0.5, 0.25)  # a fraction of max_len: fits any dataset
    assert saved["provenance"]["value"] == pytest.approx(max(t.value for t in study.trials))
    assert Path(result.report_path).is_file()


@pytest.mark.parametrize("fixture,expected", [("diginetica_slice", "mrr@20"), ("ml100k", "ndcg@10")])
def test_the_default_objective_is_the_protocols_main_metric(fixture, expected, request, tmp_path):
    from hyper.tune import TuneSettings, prepare

    root, name = request.getfixturevalue(fixture)
    prepared = prepare(TuneSettings("bprmf", name, storage=f"sqlite:///{tmp_path}/s.db", data_root=root))
    assert prepared.settings.metric == expected
    explicit = prepare(TuneSettings("bprmf", name, storage=f"sqlite:///{tmp_path}/t.db", data_root=root,
                                    metric="recall@10"))
    assert explicit.settings.metric == "recall@10"

"""`bench run`: suite checks, runs on a local Ray, failures, resume after a kill, report."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.errors import InputError
from conftest import shared
from bench.store import ResultStore
from bench.suite import SUITES_DIR, find_suite, load_suite, plan, run_suite

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (2 CPUs), shut down at the end; run_suite reuses it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
             log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def write_suite(folder: Path, text: str, name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(text.lstrip())
    return path


def records(results: Path, suite: str) -> dict[str, dict]:
    return {f"{r['model']}/{r['seed']}": r for r in ResultStore(results).records(suite)}


def table_rows(report: str, dataset: str) -> dict[str, list[str]]:
    """First accuracy table of a dataset's section: model -> cells."""
    lines = report.split(f"\n## {dataset}\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = {}
    for line in lines[start + 2:end]:  # after the header and the rule
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].split(" ")[0]] = cells
    return rows


TINY = """
name: tiny
datasets: [{dataset}]
models: [bprmf, pop]
seeds: [0, 1]
overrides:
  all: {{epochs: 1}}
  model:
    bprmf: {{embedding_size: 16}}
"""


def test_tiny_suite_runs_on_ray_writes_records_and_report_then_skips_finished_runs(
        ray_local, diginetica_slice, tmp_path):
    data_root, name = diginetica_slice
    suite = load_suite(write_suite(tmp_path, TINY.format(dataset=name)), data_root)
    results, reports = tmp_path / "results", tmp_path / "reports"

    outcome = run_suite(suite, data_root=data_root, results=results, reports=reports, use_tuned=False)

    assert sorted(outcome.ran.values()) == ["finished"] * 4
    stored = records(results, "tiny")
    assert sorted(stored) == ["bprmf/0", "bprmf/1", "pop/0", "pop/1"]
    planned = {f"{r.key.model}/{r.key.seed}": r.config_hash for r in outcome.runs}
    for label, record in stored.items():
        assert record["status"] == "finished" and record["protocol"] == "session"
        assert record["config_hash"] == planned[label]  # the driver's plan matches what the worker ran
        assert record["config"]["seed"] == record["seed"]
        assert 0 < record["metrics"]["test"]["full"]["recall@20"] <= 1
        ranks = ResultStore(results).load_ranks(record)
        assert len(ranks["test_full"]) == record["num_test_cases"]
    assert stored["bprmf/0"]["config"]["embedding_size"] == 16 and stored["bprmf/0"]["epochs_trained"] == 1
    assert stored["bprmf/0"]["metrics"] != stored["bprmf/1"]["metrics"]  # the seeds differ

    report = outcome.report.read_text()
    rows = table_rows(report, name)
    assert set(rows) == {"BPR-MF", "POP"} and all(cells[1] == "2" for cells in rows.values())

    # Run again: every run is finished with the same config, so nothing trains.
    stamps = {k: r["finished_at"] for k, r in stored.items()}
    mtimes = sorted(p.stat().st_mtime_ns for p in results.rglob("record.json"))
    again = run_suite(load_suite(suite.path, data_root), data_root=data_root, results=results, reports=reports,
                      use_tuned=False)
    assert again.ran == {} and {r.state for r in again.runs} == {"finished"}
    assert {k: r["finished_at"] for k, r in records(results, "tiny").items()} == stamps
    assert sorted(p.stat().st_mtime_ns for p in results.rglob("record.json")) == mtimes

    # A changed override changes the config hash of that model only.
    changed = load_suite(write_suite(tmp_path, TINY.format(dataset=name).replace("16", "8"), "changed.yaml"),
                         data_root)
    states = {(r.key.model, r.state) for r in plan(changed, data_root, ResultStore(results), use_tuned=False)}
    assert states == {("bprmf", "changed"), ("pop", "finished")}


FAILING = """
name: failing
datasets: [{dataset}]
models: [bprmf, pop]
seeds: [0]
overrides:
  all: {{epochs: 1}}
  dataset_model:
    {dataset}:
      bprmf: {{learning_rate: 1.0e+30}}   # the loss overflows to NaN at once
"""


def test_a_failing_run_is_recorded_with_its_error_and_the_others_finish(ray_local, diginetica_slice, tmp_path):
    data_root, name = diginetica_slice
    suite = load_suite(write_suite(tmp_path, FAILING.format(dataset=name)), data_root)
    results = tmp_path / "results"

    outcome = run_suite(suite, data_root=data_root, results=results, reports=tmp_path / "reports", use_tuned=False)

    assert outcome.ran == {f"{name}/bprmf/seed-0": "failed", f"{name}/pop/seed-0": "finished"}
    stored = records(results, "failing")
    failed = stored["bprmf/0"]
    assert failed["status"] == "failed" and "Training loss is nan" in failed["error"]
    assert "Traceback" in failed["traceback"] and failed["config"]["learning_rate"] == 1e30
    assert stored["pop/0"]["status"] == "finished"
    report = outcome.report.read_text()
    assert "Failed runs" in report and "Training loss is nan" in report

    # Without --rerun-failed the failed run stays as it is; by default it would run again.
    runs = plan(suite, data_root, ResultStore(results), use_tuned=False)
    assert {r.key.model: r.state for r in runs} == {"bprmf": "failed", "pop": "finished"}
    kept = run_suite(suite, data_root=data_root, results=results, reports=None, use_tuned=False, rerun_failed=False)
    assert kept.ran == {}


RESUME = """
name: resume
datasets: [{dataset}]
models: [bprmf]
seeds: [0, 1, 2]
overrides:
  all: {{epochs: 2}}
"""


def start_driver_until(tmp_path: Path, suite_path: Path, data_root: Path, results: Path, pattern: str):
    """`bench run` in its own process group, returned once ``results.glob(pattern)`` finds a file."""
    command = [sys.executable, "-m", "bench", "run", str(suite_path), "--cpus", "1", "--data-root", str(data_root),
               "--results", str(results), "--reports", str(tmp_path / "reports"), "--no-tuned"]
    log = open(tmp_path / "first.log", "w")
    driver = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 150
    try:
        while not list(results.glob(pattern)):
            assert driver.poll() is None, (tmp_path / "first.log").read_text()
            assert time.monotonic() < deadline, f"nothing matched {pattern} in time"
            time.sleep(0.1)
    except BaseException:
        os.killpg(driver.pid, signal.SIGKILL)
        log.close()
        raise
    return driver, log


def test_a_killed_suite_resumes_where_it_stopped(ray_local, diginetica_slice, tmp_path):
    data_root, name = diginetica_slice
    path = write_suite(tmp_path, RESUME.format(dataset=name))
    results = tmp_path / "results"
    driver, log = start_driver_until(tmp_path, path, data_root, results, "resume/*/*/seed-*/record.json")
    try:
        # One run is stored; with one CPU, Ray has already started the next one.
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed_at = time.time()
    finally:
        # Ray's helper processes outlive a killed driver: end the group we started.
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        log.close()
    before = records(results, "resume")
    assert 1 <= len(before) < 3 and all(r["status"] == "finished" for r in before.values())

    suite = load_suite(path, data_root)
    outcome = run_suite(suite, data_root=data_root, results=results, reports=tmp_path / "reports", use_tuned=False)

    after = records(results, "resume")
    assert sorted(after) == ["bprmf/0", "bprmf/1", "bprmf/2"]
    assert all(r["status"] == "finished" for r in after.values())
    for label, record in before.items():  # finished before the kill: skipped, not retrained
        assert after[label]["finished_at"] == record["finished_at"]
        assert f"{name}/{label.replace('/', '/seed-')}" not in outcome.ran
    assert len(outcome.ran) == 3 - len(before)
    for label in set(after) - set(before):
        started = after[label]["started_at"]
        assert started and started >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(killed_at - 1))
    assert not [p for p in results.rglob(".*")]  # no half-written record left anywhere
    for path in results.rglob("record.json"):
        json.loads(path.read_text())


EPOCHS = """
name: epochs
datasets: [{dataset}]
models: [narm]
seeds: [0]
overrides:
  all: {{epochs: 4, stopping_step: 10}}
  model:
    narm: {{embedding_size: 16, hidden_size: 16, train_batch_size: 64}}
"""


def test_a_run_killed_mid_fit_goes_on_from_its_last_epoch(ray_local, diginetica_slice, tmp_path):
    """The driver and its worker die after the run's first epoch: the next `bench run`
    resumes that run at its second epoch, and the finished record says so."""
    data_root, name = diginetica_slice
    path = write_suite(tmp_path, EPOCHS.format(dataset=name))
    results = tmp_path / "results"
    driver, log = start_driver_until(tmp_path, path, data_root, results,
                                     ".partial/epochs/*/narm/seed-0/*/fit/progress.pth")
    os.killpg(driver.pid, signal.SIGKILL)  # the driver, its Ray and the worker: a session's hard end
    driver.wait()
    log.close()
    assert not records(results, "epochs")

    suite = load_suite(path, data_root)
    run_suite(suite, data_root=data_root, results=results, reports=None, use_tuned=False)
    (record,) = records(results, "epochs").values()
    assert record["status"] == "finished" and record["resumed"]["fit"] >= 1
    assert [c["epoch"] for c in record["curve"]] == [0, 1, 2, 3]  # the epochs before the kill are kept
    assert not (results / ".partial").exists()  # a stored run's progress goes


# -- checks before anything trains -------------------------------------------------------------

BAD_SUITES = {
    "unknown model": ("datasets: [{dataset}]\nmodels:\n  - pop\n  - narmm\n", 4, "unknown model 'narmm'",
                      "did you mean 'narm'"),
    "unknown dataset": ("datasets:\n  - {dataset}\n  - no-such-data\nmodels: [pop]\n", 3,
                        "dataset 'no-such-data' is not converted", "bench convert FORMAT SRC --name no-such-data"),
    "typo in a key": ("datasets: [{dataset}]\nmodels: [pop, bprmf]\noverrides:\n  model:\n    bprmf:\n"
                      "      embedding_size: 8\n      learning_rat: 0.1\n", 7, "unknown config key 'learning_rat'",
                      "did you mean 'learning_rate'"),
    "key of another model": ("datasets: [{dataset}]\nmodels: [pop, narm]\noverrides:\n  model:\n"
                             "    pop: {{hidden_size: 8}}\n", 5, "unknown config key 'hidden_size'", "model 'pop'"),
    "key set per run": ("datasets: [{dataset}]\nmodels: [pop]\noverrides:\n  all:\n    seed: 3\n", 5,
                        "'seed' cannot be set in a suite", "seeds"),
    "override of a model not run": ("datasets: [{dataset}]\nmodels: [pop]\noverrides:\n  model:\n"
                                    "    narm: {{epochs: 1}}\n", 5, "which the suite does not run", "narm"),
    "unknown suite key": ("datasets: [{dataset}]\nmodels: [pop]\nseed: [1]\n", 3, "unknown suite key 'seed'",
                          "did you mean 'seeds'"),
    "unknown convert format": ("datasets:\n  - name: other\n    convert:\n      format: srgn\n      src: x\n"
                               "models: [pop]\n", 4, "unknown convert format 'srgn'", "did you mean 'srgnn'"),
    "duplicate key": ("datasets: [{dataset}]\nmodels: [pop]\nmodels: [bprmf]\n", 3, "duplicate key 'models'", ""),
    "broken YAML": ("datasets: [{dataset}]\nmodels: [pop\nseeds: [0]\n", 3, "not valid YAML", ""),
}


@pytest.mark.parametrize("case", sorted(BAD_SUITES))
def test_suite_errors_name_the_file_and_line(case, diginetica_slice, tmp_path):
    data_root, name = diginetica_slice
    text, line, problem, hint = BAD_SUITES[case]
    path = write_suite(tmp_path, text.format(dataset=name))
    with pytest.raises(InputError) as err:
        load_suite(path, data_root)
    message = str(err.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert problem in message and hint in message


def test_the_command_refuses_a_bad_suite_in_one_line_and_trains_nothing(diginetica_slice, tmp_path, capsys):
    from bench.cli import main

    data_root, name = diginetica_slice
    path = write_suite(tmp_path, f"datasets: [{name}]\nmodels: [pop]\noverrides:\n  all: {{epochs: 1, lr: 0.1}}\n")
    code = main(["run", str(path), "--data-root", str(data_root), "--results", str(tmp_path / "results"),
                 "--reports", str(tmp_path / "reports")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"{path}:4: unknown config key 'lr'" in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("auth_mode, address, hinted", [(None, "10.0.0.1:6379", True),
                                                        ("token", "10.0.0.1:6379", False),
                                                        (None, "auto", False)])
def test_a_refused_cluster_is_one_line_that_names_token_authentication(monkeypatch, auth_mode, address, hinted):
    """A `ray start` cluster (Ray 2.60) refuses a driver without its token, and Ray says why
    only in its log lines: the one-line error says what to set, unless it is set already."""
    import ray

    from bench.execution import ray_session

    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    if auth_mode is None:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_MODE", auth_mode)
    with pytest.raises(InputError) as err:
        with ray_session(1, address):
            pass
    message = str(err.value)
    assert message.startswith(f"cannot connect to the Ray cluster at {address}: Failed to connect")
    assert "\n" not in message
    assert ("RAY_AUTH_MODE=token" in message) == hinted


def test_tuned_parameters_sit_below_the_suite_overrides_and_are_recorded(diginetica_slice, tmp_path, monkeypatch):
    import bench.tuned
    import hyper.best

    data_root, name = diginetica_slice
    monkeypatch.setattr(bench.tuned, "BEST_ROOT", tmp_path / "best")
    hyper.best.save_best_params(name, "bprmf", {"embedding_size": 8, "learning_rate": 0.01}, {"study": "t"})
    suite = load_suite(write_suite(tmp_path, TINY.format(dataset=name)), data_root)  # sets embedding_size 16
    runs = {r.key.model: r for r in plan(suite, data_root, ResultStore(tmp_path / "results"))}
    config = runs["bprmf"].config
    assert config["embedding_size"] == 16 and config["learning_rate"] == 0.01
    assert config["tuned_params"] == {"embedding_size": 8, "learning_rate": 0.01}
    assert "tuned_params" not in runs["pop"].config
    untuned = {r.key.model: r for r in plan(suite, data_root, ResultStore(tmp_path / "results"), use_tuned=False)}
    assert untuned["bprmf"].config_hash != runs["bprmf"].config_hash


def test_shipped_suites_are_valid_and_the_default_converts_its_data_on_the_fly(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # shipped suites name their sources relative to the project root
    shipped = sorted(p.stem for p in SUITES_DIR.glob("*.yaml"))
    assert {"default", "diginetica", "beauty", "reference"} <= set(shipped)
    have_data = (REPO.parent / "shared" / "data").is_dir()
    for name in shipped if have_data else ["default"]:
        load_suite(find_suite(name), tmp_path / "atomic")  # every key, model and source checks out
    assert find_suite(None) == SUITES_DIR / "default.yaml"

    default = load_suite(find_suite(None), tmp_path / "atomic")
    outcome = run_suite(default, data_root=tmp_path / "atomic", results=tmp_path / "results", dry_run=True)
    assert (tmp_path / "atomic" / "ml100k" / "manifest.json").is_file()
    assert len(outcome.runs) == 7 * 3 and {r.protocol for r in outcome.runs} == {"leave-one-out"}
    assert not (tmp_path / "results").exists()  # a dry run trains and writes nothing


def test_beautys_like_for_like_bce_row_has_the_references_settings_and_the_papers_row_keeps_its_own(
        tmp_path, monkeypatch):
    from bench.published import published_for
    from bench.registry import resolve_model

    monkeypatch.chdir(REPO)
    shared()  # the beauty suite names the shared data
    beauty = load_suite(find_suite("beauty"), tmp_path / "atomic")
    kv = {**resolve_model("sasrec-kv").settings, **beauty.settings("beauty", "sasrec-kv")}
    assert resolve_model("sasrec-kv").cls is resolve_model("sasrec").cls
    assert (kv["hidden_size"], kv["dropout_prob"], kv["stopping_step"], kv["epochs"]) == (64, 0.1, 10, 100)
    paper = beauty.settings("beauty", "sasrec")
    assert (paper["dropout_prob"], paper["stopping_step"], paper["epochs"]) == (0.5, 5, 200)
    assert published_for("beauty", "unseen", "sasrec-kv")[0] == "SASRec (BCE)"


def test_the_report_names_the_suite_file_relative_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    default = load_suite(find_suite(None), tmp_path / "atomic")
    assert default.meta()["file"] == "bench/suites/default.yaml"  # the same in every checkout
    monkeypatch.chdir(tmp_path)  # a suite outside the working directory keeps its absolute path
    assert default.meta()["file"] == str(SUITES_DIR / "default.yaml")


@pytest.mark.slow
def test_a_run_whose_worker_is_killed_is_retried_and_finishes(ray_local, ml100k, tmp_path):
    """SIGKILL of the worker mid-run (what the OOM killer does) costs a retry, not the run."""
    import threading

    import psutil

    root, name = ml100k
    suite = load_suite(write_suite(tmp_path, f"""
name: retry
datasets: [{name}]
models: [bprmf]
seeds: [0]
overrides:
  all: {{epochs: 20, stopping_step: 20}}
"""), root)
    killed: list[int] = []

    def kill_the_worker():
        deadline = time.time() + 120
        while time.time() < deadline:
            # only this test's own Ray workers: descendants of this process (its local Ray),
            # never another Ray's on the machine
            for proc in psutil.Process().children(recursive=True):
                try:
                    title = " ".join(proc.cmdline())
                except psutil.Error:
                    continue
                if "run_task" in title:
                    time.sleep(3)  # well inside the run: data loaded, training
                    proc.kill()
                    killed.append(proc.pid)
                    return
            time.sleep(0.2)

    killer = threading.Thread(target=kill_the_worker)
    killer.start()
    outcome = run_suite(suite, data_root=root, results=tmp_path / "results", reports=None)
    killer.join()
    assert killed, "no worker was found to kill"
    assert list(outcome.ran.values()) == ["finished"]
    assert records(tmp_path / "results", "retry")["bprmf/0"]["status"] == "finished"


@pytest.mark.slow
def test_bench_clean_ends_what_a_sigkilled_drivers_local_ray_left_and_nothing_else(tmp_path):
    """The agents of a SIGKILLed driver's Ray are found by their session folder and ended;
    a live Ray session beside it is left alone."""
    import psutil

    from bench.ray_cleanup import end_orphans, find_orphans

    script = tmp_path / "driver.py"
    script.write_text("import ray, time\n"
                      "ray.init(address='local', num_cpus=1, include_dashboard=False, logging_level='ERROR')\n"
                      "print('up', flush=True)\ntime.sleep(120)\n")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    live = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    killed = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert live.stdout.readline().strip() == "up" and killed.stdout.readline().strip() == "up"
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        deadline = time.time() + 30
        orphans = []
        while time.time() < deadline and not orphans:
            orphans = [o for o in find_orphans() if o.session.endswith(f"_{killed.pid}")]
            time.sleep(0.5)
        assert orphans, "the killed driver's Ray left nothing behind to find"
        ended = end_orphans()
        assert {o.pid for o in orphans} <= {o.pid for o in ended}
        time.sleep(1)
        survivors = []
        for o in orphans:
            try:
                status = psutil.Process(o.pid).status()
            except psutil.NoSuchProcess:
                continue
            if status != psutil.STATUS_ZOMBIE:
                survivors.append((o, status))
        assert not survivors
        assert not [o for o in ended if o.session.endswith(f"_{live.pid}")]  # the live session kept
        assert live.poll() is None
    finally:
        live.kill()
        killed.kill()
        live.wait()
        time.sleep(1)
        end_orphans()  # the live driver, killed in turn, leaves its agents too

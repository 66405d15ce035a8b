"""Tuning throughput, 1 vs 2 trials at a time: ``python -m bench.benchmarks.tune_speed``.

A real small tuning job: NARM on MovieLens-100k (RecBole's embedded copy, converted
into a temporary folder), ``--trials`` (16) trials of ``--epochs`` (1) epoch each
(4-23 s a trial on one core, by their parameters), no pruning. The same seed gives
both runs the same parameters for TPE's 10 random start-up trials; later trials
depend on which trials had finished, so the two runs' trials differ from there on.
For each ``--parallel`` value it prints:

* seconds and trials per hour of the whole job (Ray's start, the report and its
  plots included) and of its trials alone (first ask to last tell);
* the ratio of throughputs against the first ``--parallel`` value (goal: >= 1.6x
  for 2 against 1 on 2 cores);
* the median objective seconds of a trial (parameters differ, so trials do too) and
  "busy": the objectives' total seconds over ``parallel`` x the trials' seconds,
  the share of the workers' time spent training;
* "work ratio": objective seconds done per second of the trials' phase, against the
  first ``--parallel`` value. Unlike trials per hour it does not depend on which
  parameters each run happened to draw, so it checks the throughput ratio.

The idle share at ``--parallel 2`` is mostly the tail: the last trial runs alone
while the other worker has nothing left. With 8 trials of 4-23 s it cost ~18% of
the workers' time (1.59x, measured); 16 trials halve its weight.
* Ray's overhead per trial: the driver's submit-to-result seconds minus the Ray
  task's own seconds, and minus the objective's seconds (the task's extra time is
  opening the storage and the heartbeat), as a median over the trials and for the
  first (cold) trial, whose worker process starts and imports torch and RecBole.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def run_job(model: str, dataset: str, data_root: Path, trials: int, parallel: int, epochs: int,
            work: Path) -> dict:
    import optuna

    from hyper.storage import open_storage
    from hyper.tune import tune

    start = time.perf_counter()
    result = tune(model=model, dataset=dataset, data_root=data_root, trials=trials, parallel=parallel,
                  epochs=epochs, pruner="none", seed=0, storage=f"sqlite:///{work}/p{parallel}.db",
                  report_dir=work / f"reports-p{parallel}", best_root=work / f"best-p{parallel}", progress=False)
    wall = time.perf_counter() - start
    finished = result.counts["COMPLETE"] + result.counts["PRUNED"]
    trials_done = optuna.load_study(study_name=result.study_name, storage=open_storage(result.storage)).trials
    phase = (max(t.datetime_complete for t in trials_done) - min(t.datetime_start for t in trials_done)).total_seconds()
    numbers = sorted(result.task_seconds)
    ray_overhead = [result.driver_seconds[n] - result.task_seconds[n] for n in numbers]
    task_extra = [result.task_seconds[n] - result.worker_seconds[n] for n in numbers]
    return {"parallel": parallel, "trials": finished, "wall": wall, "per_hour": finished / wall * 3600,
            "phase": phase, "phase_per_hour": finished / phase * 3600,
            "objective": statistics.median(result.worker_seconds.values()),
            "work_rate": sum(result.worker_seconds.values()) / phase,
            "busy": sum(result.worker_seconds.values()) / (parallel * phase),
            "ray_median": statistics.median(ray_overhead), "ray_first": ray_overhead[0],
            "task_extra": statistics.median(task_extra)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="narm")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)

    import bench  # noqa: F401
    from bench.convert import convert, recbole_ml100k_path

    with tempfile.TemporaryDirectory(prefix="tune-speed-") as tmp:
        work = Path(tmp)
        convert("movielens", recbole_ml100k_path(), "ml100k", work / "atomic")
        rows = [run_job(args.model, "ml100k", work / "atomic", args.trials, p, args.epochs, work)
                for p in args.parallel]
    base, base_phase, base_work = rows[0]["per_hour"], rows[0]["phase_per_hour"], rows[0]["work_rate"]
    print(f"{args.model} on ml100k, {args.trials} trials x {args.epochs} epochs, no pruning")
    print("job: the whole tune() call (Ray start, report and plots included); "
          "trials: first trial asked to last trial told")
    print(f"{'parallel':>8} {'job s':>6} {'trials/h':>9} {'ratio':>6} {'trials s':>9} {'trials/h':>9} {'ratio':>6} "
          f"{'objective s':>12} {'busy':>5} {'work ratio':>10} {'Ray overhead s median/first':>28} {'task extra s':>13}")
    for r in rows:
        print(f"{r['parallel']:>8} {r['wall']:6.1f} {r['per_hour']:9.0f} {r['per_hour'] / base:6.2f} "
              f"{r['phase']:9.1f} {r['phase_per_hour']:9.0f} {r['phase_per_hour'] / base_phase:6.2f} "
              f"{r['objective']:12.1f} {r['busy']:5.0%} {r['work_rate'] / base_work:10.2f} {r['ray_median']:19.2f} / {r['ray_first']:5.2f} "
              f"{r['task_extra']:13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

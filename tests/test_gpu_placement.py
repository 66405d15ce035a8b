"""`bench run --gpus-per-run 0.25` on a GPU machine: several runs share one GPU, and each run
gets that GPU in its config. The GPU is a fake Ray resource: the runs themselves train on
the CPU (RecBole falls back to it where CUDA is absent), so the test stays CPU-only."""
from __future__ import annotations

from datetime import datetime

import pytest

from bench.store import ResultStore
from bench.suite import load_suite, run_suite

SUITE = """
name: gpus
datasets: [{dataset}]
models: [pop]
seeds: [0, 1, 2, 3]
"""


@pytest.fixture
def ray_with_one_fake_gpu():
    import ray

    ray.init(address="local", num_cpus=4, num_gpus=1, include_dashboard=False, object_store_memory=100 * 1024**2,
             log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_quarter_gpu_runs_share_the_gpu_and_each_is_configured_for_it(ray_with_one_fake_gpu, diginetica_slice,
                                                                       tmp_path):
    data_root, name = diginetica_slice
    (tmp_path / "gpus.yaml").write_text(SUITE.format(dataset=name))
    suite = load_suite(tmp_path / "gpus.yaml", data_root)
    results = tmp_path / "results"
    outcome = run_suite(suite, data_root=data_root, results=results, reports=None, use_tuned=False,
                        gpus_per_run=0.25, cpus_per_run=1)
    assert sorted(outcome.ran.values()) == ["finished"] * 4
    stored = ResultStore(results).records("gpus")
    for record in stored:
        # Ray's GPU id reaches RecBole's gpu_id (RecBole would otherwise reset CUDA_VISIBLE_DEVICES to "0")
        assert record["config"]["use_gpu"] is True and record["config"]["gpu_id"] == "0"
    spans = sorted((datetime.fromisoformat(r["started_at"]), datetime.fromisoformat(r["finished_at"])) for r in stored)
    # four quarter-GPU runs on one GPU (and four CPUs) run side by side: the suite's wall
    # time is shorter than the runs' times added up, as it could not be one at a time
    wall = max(end for _, end in spans) - min(start for start, _ in spans)
    assert wall < sum((end - start for start, end in spans), start=wall * 0), spans


def test_a_whole_gpu_per_run_runs_them_one_at_a_time(ray_with_one_fake_gpu, diginetica_slice, tmp_path):
    data_root, name = diginetica_slice
    (tmp_path / "gpus.yaml").write_text(SUITE.format(dataset=name).replace("[0, 1, 2, 3]", "[0, 1]"))
    suite = load_suite(tmp_path / "gpus.yaml", data_root)
    results = tmp_path / "results"
    run_suite(suite, data_root=data_root, results=results, reports=None, use_tuned=False, gpus_per_run=1)
    (a_start, a_end), (b_start, b_end) = sorted((datetime.fromisoformat(r["started_at"]),
                                                 datetime.fromisoformat(r["finished_at"]))
                                                for r in ResultStore(results).records("gpus"))
    assert b_start >= a_end  # the second waited for the GPU

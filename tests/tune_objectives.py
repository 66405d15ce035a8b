"""Objectives for the tuner's tests: quick, instrumented, no training.

``tiny`` peaks at learning_rate = 10^-2.5, sleeps 0.4 s per epoch, reports every
epoch (so the pruner and the kills have something to act on), and, when a folder
``log`` lies beside the study's SQLite file, records there each start
(``start-<trial>-<pid>``, so a test can SIGKILL the worker) and each completion (a
line ``<trial>`` in ``done.log``). The folder travels with the study's URL because
Ray workers do not see environment variables set after Ray started.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path


def tiny(ctx) -> float:
    log = Path(ctx.job.storage.removeprefix("sqlite:///")).parent / "log"
    log = log if log.is_dir() else None
    if log:
        Path(log, f"start-{ctx.number}-{os.getpid()}").write_text(str(os.getpid()))
    value = 1.0 - (math.log10(ctx.params["learning_rate"]) + 2.5) ** 2 / 10
    epochs = ctx.job.epochs or 3
    for epoch in range(epochs):
        time.sleep(0.4)
        ctx.report(epoch, value * (epoch + 1) / epochs)
    if log:
        with open(Path(log, "done.log"), "a") as f:
            f.write(f"{ctx.number}\n")
    return value


def broken(ctx) -> float:
    raise ValueError("this objective always fails")

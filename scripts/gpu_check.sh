#!/usr/bin/env bash
# The GPU checks, run once on a lent GPU machine (Python 3.12, torch + CUDA, no RecBole):
#   python -m bench.benchmarks.gpu_check (every model, ours beside RecBole's, $BUDGET seconds),
#   learning per epoch (ours vs RecBole's NARM on Diginetica, 3 seeds; SASRec on Beauty with
#   LEARN_PAIRS=narm,sasrec; 5 epochs),
#   GRU4Rec one epoch on CUDA (official Diginetica parameters); right after gpu_check,
#   python -m bench.benchmarks.step_profile (where each model's training step goes).
# Expects cp312 wheels in .whl/ (recbole, colorlog, texttable, thop, pandas, pytz, tzdata;
# scripts/gpu_prepare.sh fetches them and copies the data)
# and the shared data copied into .gpu_data/ (diginetica/, amazon-beauty/). Writes to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
PY=${PY:-python3}  # a local dry run: PY=.venv/bin/python SKIP_INSTALL=1 DATA=<small copies> DATA_ROOT=/tmp/...
if [ -z "${SKIP_INSTALL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1 OUT
DATA=${DATA:-.gpu_data}
DATA_ROOT=${DATA_ROOT:-dataset_atomic}
EPOCHS=${EPOCHS:-5}
export DATA_ROOT
{
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  $PY -m bench convert srgnn "$DATA/diginetica" --name diginetica --out "$DATA_ROOT"
  $PY -m bench convert pairs "$DATA/amazon-beauty/Beauty.txt" --name beauty --out "$DATA_ROOT"
  $PY -m bench.benchmarks.gpu_check --budget-seconds "${BUDGET:-240}" --data-root "$DATA_ROOT" --out "$OUT"
  # where each trained model's step goes (ours and RecBole's): about a minute
  $PY -m bench.benchmarks.step_profile --data-root "$DATA_ROOT" --out "$OUT"
  [ -n "${ONLY_GPU_CHECK:-}" ] && exit 0
  $PY - <<'PY'
import json, os, time, tempfile
import torch
import bench
from bench.runner import run_once
out = os.environ["OUT"]
# GRU4Rec on CUDA: it crashed at its first step before; one epoch, official parameters
with tempfile.TemporaryDirectory() as work:
    t = time.perf_counter()
    r = run_once("gru4rec", "diginetica", 0, work, {"epochs": int(os.environ.get("GRU_EPOCHS", 1))},
                 data_root=os.environ["DATA_ROOT"])
    res = {"seconds_per_epoch": r.seconds_per_epoch, "valid": r.metrics["valid"], "test": r.metrics["test"],
           "eval_seconds": r.eval_seconds, "wall": time.perf_counter() - t}
print(json.dumps({"gru4rec_cuda": res}), flush=True)
json.dump(res, open(f"{out}/gru4rec_cuda.json", "w"), indent=1)
PY
  # NARM over 3 seeds (epoch 1 moves with the seed; the verdict is paired by seed), SASRec
  # (measured on an H200 before) only when LEARN_PAIRS asks: a session has 15 device minutes.
  # Each finished side-run comes back in $OUT/learning_store: copy it into
  # results/learning_per_epoch/ and commit, so GPU seeds add up across sessions.
  $PY -m bench.benchmarks.learning_per_epoch --pairs "${LEARN_PAIRS:-narm}" --epochs "$EPOCHS" --data-root "$DATA_ROOT" \
      --seeds "${SEEDS:-0,1,2}" --narm-units iid_targets --sasrec-units sequences,iid_targets --out "$OUT/learning_gpu.json" \
      --store "$OUT/learning_store"
} 2>&1 | tee "$OUT/log.txt"

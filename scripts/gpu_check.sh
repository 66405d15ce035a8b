#!/usr/bin/env bash
# The GPU checks, run once on a lent GPU machine (Python 3.12, torch + CUDA, no RecBole):
#   python -m bench.benchmarks.gpu_check (every model, ours beside RecBole's, $BUDGET seconds),
#   learning per epoch (ours vs RecBole's NARM on Diginetica, SASRec on Beauty, 5 epochs),
#   GRU4Rec one epoch on CUDA (official Diginetica parameters), a profile of NARM's steps.
# Expects cp312 wheels in .whl/ (recbole, colorlog, texttable, thop, pandas, pytz, tzdata)
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
  $PY -m bench.benchmarks.learning_per_epoch --pairs narm,sasrec --epochs "$EPOCHS" --data-root "$DATA_ROOT" \
      --narm-units iid_targets --sasrec-units sequences,iid_targets --out "$OUT/learning_gpu.json"
  $PY - <<'PY'
import os, tempfile
import torch
import bench
from torch.profiler import profile, ProfilerActivity
from bench.data import load_splits, make_config
from bench.registry import resolve_model
from bench.runner import build_model, train_loader
spec = resolve_model("narm")
root = os.environ["DATA_ROOT"]
settings = {"embedding_size": 50, "hidden_size": 100, "train_batch_size": 512}
if not torch.cuda.is_available():
    settings |= {"device": "cpu", "use_gpu": False}
config = make_config(spec, "diginetica", settings, root)
splits = load_splits(config, root)
model = build_model(spec, config, splits)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
loader = train_loader(spec, config, splits)
it = iter(loader)
def step():
    batch = next(it).to(config["device"])
    opt.zero_grad(); model.calculate_loss(batch).backward(); opt.step()
sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
for _ in range(10): step()
sync()
with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])) as prof:
    for _ in range(10): step()
    sync()
text = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30)
if torch.cuda.is_available():
    text += "\n\n" + prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=20)
open(os.path.join(os.environ["OUT"], "narm_profile.txt"), "w").write(text)
print(text[:6000])
PY
} 2>&1 | tee "$OUT/log.txt"

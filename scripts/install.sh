#!/usr/bin/env bash
# Installs everything into .venv (created if missing). Safe to rerun.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: the local CPU build (an unpinned torch pulls CUDA wheels).
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# recbole 1.2.1 pins ray<=2.6.3; its real dependencies come from pyproject.toml.
.venv/bin/python -m pip install -q --no-deps "recbole==1.2.1"

#!/usr/bin/env bash
# Prepares what scripts/gpu_check.sh carries to a lent GPU machine (Python 3.12, torch +
# CUDA, no RecBole): cp312 wheels in .whl/ and the shared data in .gpu_data/, both kept
# out of git (.git/info/exclude). Run here, once, from the repository root:
#   bash scripts/gpu_prepare.sh
# then on the GPU machine (carry .whl and .gpu_data): OUT=$OUT bash scripts/gpu_check.sh
set -euo pipefail
for ignored in /.whl/ /.gpu_data/; do
  grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >> .git/info/exclude
done
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p .whl
# recbole and what it imports that the GPU machine lacks; pandas there needs pytz and tzdata
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d .whl recbole==1.2.1 colorlog==4.7.2 texttable thop pandas==2.3.3 pytz tzdata
mkdir -p .gpu_data
cp -r ../shared/data/diginetica .gpu_data/
cp -r ../shared/data/amazon-beauty .gpu_data/
du -sh .whl .gpu_data

#!/usr/bin/env bash
# Creates .venv with torch, Triton and tconv (editable, with its test and perf extras).
# torch is pinned to the 2.13.0 CPU wheel only when the venv has no torch yet: on a CUDA
# machine, install your CUDA build of torch into .venv first and it is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q torch==2.13.0
fi
.venv/bin/pip install -q -e ".[test,perf]"

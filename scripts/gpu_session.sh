#!/usr/bin/env bash
# One lease of a GPU machine, in one command: correctness of the compiled kernels
# (scripts/gpu_check.py), then `tconv bench` timings against cuDNN, one pass at a time so
# that each finished pass is already in the CSV when the time runs out.
#
#   OUT=results SUITE=resnet50 DTYPES=float16 LAYOUTS=channels_last,contiguous \
#     CHECK=1 CHECK_S=200 BUDGET_S=560 bash scripts/gpu_session.sh
#
# Runs from the repository root with whatever python3 holds a CUDA build of torch and
# triton (tconv is installed from this checkout, editable, if it is not already).
set -u
OUT=${OUT:-results}
SUITE=${SUITE:-resnet50}
DTYPES=${DTYPES:-float16}
LAYOUTS=${LAYOUTS:-channels_last,contiguous}
PASSES=${PASSES:-fprop,dgrad,wgrad}
CHECK=${CHECK:-1}
CHECK_S=${CHECK_S:-200}
BUDGET_S=${BUDGET_S:-560}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# tconv.kernels and tconv.perf live in kernels/ and perf/ (pyproject's package-dir): an
# editable install maps them (offline: the machine's own setuptools builds it).
python3 -c "import tconv.perf" 2>/dev/null || python3 -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1
if ! python3 -c "import tconv.perf, tconv.kernels" 2>/dev/null; then
  # No setuptools there: the same mapping by links (in this copy of the tree only).
  ln -sfn ../kernels tconv/kernels && ln -sfn ../perf tconv/perf
  python3 -c "import tconv.perf, tconv.kernels" || { tail -5 "$OUT/install.log"; exit 1; }
fi
left() { echo $((BUDGET_S - SECONDS)); }

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__,
torch.cuda.get_device_name(), torch.backends.cudnn.version())"

if [ "$CHECK" = 1 ]; then
  timeout "$CHECK_S" python3 scripts/gpu_check.py tests "${SPACE_STEP:-25}" >"$OUT/gpu_check.log" 2>&1
  echo "gpu_check exit $? after ${SECONDS}s: $(grep -c FAIL "$OUT/gpu_check.log") failures"
  grep -E "FAIL|done|checked|Error" "$OUT/gpu_check.log" | head -20
fi

IFS=, read -r -a layouts <<<"$LAYOUTS"
IFS=, read -r -a passes <<<"$PASSES"
for layout in "${layouts[@]}"; do
  for pass in "${passes[@]}"; do
    [ "$(left)" -gt 30 ] || { echo "out of time before $layout $pass"; break 2; }
    timeout "$(left)" python3 -c "import sys; from tconv.cli import main; sys.exit(main())" bench \
      --suite "$SUITE" --ops "$pass" --dtypes "$DTYPES" --layouts "$layout" --archs '' --no-host --no-traffic \
      --out "$OUT/timing.csv" >>"$OUT/bench.log" 2>&1
    echo "bench $layout $pass exit $? after ${SECONDS}s"
  done
done
python3 -m perf.timing_table "$OUT/timing.csv" 2>&1 | tail -60

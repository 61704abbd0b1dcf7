#!/usr/bin/env bash
# bash bench/plan_check.sh OUT [EXPERIMENT]   (from the repository root, or a snapshot of it: `git worktree add`)
# compare --plan's estimate against the real run (bench/RESULTS.md): the plan of EXPERIMENT (default
# bench/plan_check.yaml), then the real compare of it, the 1-minute load average sampled every 15 s
# throughout; then, for the default, the plan of the full configs/sql_demo/compare.yaml, timed.
# Everything lands in OUT (plan JSON, logs, loads).
set -u
out=${1:?OUT folder}
experiment=${2:-bench/plan_check.yaml}
mkdir -p "$out"
py=${PY:-.venv/bin/python}
(while true; do echo "$(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 15; done) >"$out/load.txt" &
sampler=$!
trap 'kill $sampler' EXIT
stamp() { echo "$(date -u +%T) $1 load $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/steps.txt"; }
stamp "plan start"
/usr/bin/time -f "%e s wall" -o "$out/plan_time.txt" "$py" -m peftlab compare "$experiment" --plan --json \
  >"$out/plan.json" 2>"$out/plan.log"
stamp "plan end / compare start"
/usr/bin/time -f "%e s wall" -o "$out/compare_time.txt" "$py" -m peftlab compare "$experiment" \
  >"$out/compare.log" 2>&1
stamp "compare end"
[ "$experiment" = bench/plan_check.yaml ] || exit 0
stamp "full plan start"
/usr/bin/time -f "%e s wall" -o "$out/full_plan_time.txt" "$py" -m peftlab compare configs/sql_demo/compare.yaml \
  --plan >"$out/full_plan.txt" 2>"$out/full_plan.log"
stamp "full plan end"

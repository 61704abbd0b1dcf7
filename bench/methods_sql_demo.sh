#!/usr/bin/env bash
# bash bench/methods_sql_demo.sh [OUT_DIR]
# Every method on the bundled SmolLM2, built-in text-to-SQL task, 20 steps x 8, each method's
# default learning rate, one seed; validation on 16, test on the first 32 held-out questions.
# A smoke check that each method learns on the real model, too small to rank methods (~8 min, 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/bench-methods}
for spec in "last_layers|{name: last_layers, num_layers: 4}" "ia3|{name: ia3}" "prompt_tuning|{name: prompt_tuning}" \
            "prefix_tuning|{name: prefix_tuning}" "parallel_adapter|{name: parallel_adapter}" \
            "lora_prompt|{name: hybrid, methods: [{name: lora}, {name: prompt_tuning}]}" \
            "mam|{name: hybrid, methods: [{name: prefix_tuning}, {name: parallel_adapter}]}"; do
  label=${spec%%|*}
  .venv/bin/peftlab train configs/sql_demo/lora.yaml --set "method=${spec#*|}" --set train.lr=null \
    --set name=sql-$label --set output_dir="$out" --set train.max_steps=20 --set train.eval_every=null \
    --set eval.max_test=32 --set eval.max_validation=16 --overwrite
done
.venv/bin/python - "$out" <<'PY'
import json, pathlib, sys
for d in sorted(pathlib.Path(sys.argv[1]).glob("sql-*")):
    s = json.loads((d / "summary.json").read_text())
    print(f"{d.name:22s} exec_acc={s['test']['execution_accuracy']:.3f} trainable={s['trainable_params']:,}")
PY

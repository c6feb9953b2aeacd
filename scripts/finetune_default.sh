#!/usr/bin/env bash
# The main job's fine-tunes: all-MiniLM-L6-v2 on SST-2, MRPC, STS-B, CoLA and RTE with the default
# budgets (FinetuneOptions::default_for), into runs/finetune/<task> (ISOLAB_FINETUNES moves it).
# Resumable: an interrupted task continues from its last checkpoint; a finished one is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=${ISOLAB_FINETUNES:-runs/finetune}
for task in sst2 mrpc stsb cola rte; do
  if [[ -f "$dir/$task/checkpoint/state.json" ]] && python3 - "$dir/$task/checkpoint/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["step"] == s["total_steps"] else 1)
PY
  then
    echo "$task: done ($dir/$task)"
    continue
  fi
  /usr/bin/time -f "$task: %e s wall" ./target/release/isolab finetune --task "$task" --base minilm --out "$dir/$task"
done

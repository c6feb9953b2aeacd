#!/usr/bin/env bash
# The main job's fine-tunes: all-MiniLM-L6-v2 on SST-2, MRPC, STS-B, CoLA and RTE with the default
# budgets (FinetuneOptions::default_for), into runs/finetune/<task> (ISOLAB_FINETUNES moves it).
# Resumable: `isolab finetune` continues an interrupted task from its last checkpoint and only
# reports a finished one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
dir=${ISOLAB_FINETUNES:-runs/finetune}
for task in sst2 mrpc stsb cola rte; do
  /usr/bin/time -f "$task: %e s wall" ./target/release/isolab finetune --task "$task" --base minilm --out "$dir/$task"
done

#!/usr/bin/env bash
# The main job's fine-tunes: all-MiniLM-L6-v2 on SST-2, MRPC, STS-B, CoLA and RTE with the default
# budgets (FinetuneOptions::default_for), into runs/finetune/<task> (ISOLAB_FINETUNES moves it),
# and an STS-B bi-encoder (FinetuneOptions::bi_encoder) into runs/finetune/stsb-cosine.
# ISOLAB_SEEDS=N (default 1) trains N runs per task: run 0 into <task>, run s into
# <task>-seed<s> with seed 10 s (RTE's default trains two restarts per run, seeds 10 s and
# 10 s + 1, so no two runs share a seed); the chapters read run 0, and the last lines print each
# task's dev score over the runs (mean ± sd).
# Resumable: `isolab finetune` continues an interrupted run from its last checkpoint and only
# reports a finished one.
set -euo pipefail
cd "$(dirname "$0")/.."
# The dev-profile binary setup built (its dependencies at opt-level 2): a release build would
# compile every dependency a second time (9-13 minutes on 2 cores) for a step about 1.08x faster
# (docs/timings.md, environment.md "One build"). Run through cargo, which finds Rust's standard
# library the binary links dynamically (.cargo/config.toml).
cargo build --quiet --bin isolab
isolab=(cargo run --quiet --bin isolab --)
dir=${ISOLAB_FINETUNES:-runs/finetune}
seeds=${ISOLAB_SEEDS:-1}
for task in sst2 mrpc stsb cola rte; do
  for ((seed = 0; seed < seeds; seed++)); do
    out="$dir/$task"
    if [ "$seed" -gt 0 ]; then out="$dir/$task-seed$seed"; fi
    /usr/bin/time -f "$task run $seed (seed $((10 * seed))): %e s wall" "${isolab[@]}" finetune --task "$task" --base minilm --seed "$((10 * seed))" --out "$out"
  done
done
# STS-B as a bi-encoder (mean pooling, cosine-similarity loss): the model chapters 05 and 07
# compare with minilm on the cosine score.
/usr/bin/time -f "stsb bi-encoder: %e s wall" "${isolab[@]}" finetune --task stsb --objective cosine --base minilm --out "$dir/stsb-cosine"
python3 - "$dir" "$seeds" <<'PY'
import json, statistics, sys
from pathlib import Path
root, seeds = Path(sys.argv[1]), int(sys.argv[2])
for task in ["sst2", "mrpc", "stsb", "cola", "rte"]:
    runs = [root / (task if s == 0 else f"{task}-seed{s}") / "best.json" for s in range(seeds)]
    scores = [json.loads(p.read_text())["scores"] for p in runs if p.is_file()]
    if not scores:
        continue
    main = scores[0]["main"]
    values = [100 * s["values"][main] for s in scores]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"{task}: dev {main} {statistics.mean(values):.1f} ± {sd:.1f} over {len(values)} seed(s): "
          + ", ".join(f"{v:.1f}" for v in values))
PY

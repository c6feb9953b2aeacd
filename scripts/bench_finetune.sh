#!/usr/bin/env bash
# Fine-tuning step time, isotropy-lab vs PyTorch, in one session on this machine; prints the
# ratio (PyTorch time / ours: above 1 means we are faster), then the step with I-STAR on the last
# layer and its overhead over the plain step (ours only).
# REF_PYTHON: a Python with torch and transformers (default .refvenv/bin/python, which
# scripts/reference_env.sh builds).
# Usage: bash scripts/bench_finetune.sh [MODEL_FOLDER | bert-base]
#   default data/models/minilm; bert-base: a stand-in of bert-base-uncased's exact shape with
#   random weights (scripts/paper_standin.py; speed does not depend on the weights' values).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${REF_PYTHON:-.refvenv/bin/python}
[ -x "$py" ] || { echo "no reference Python at $py: run bash scripts/reference_env.sh" >&2; exit 1; }
model=${1:-data/models/minilm}
if [ "$model" = bert-base ]; then
  "$py" scripts/paper_standin.py target/paper-cost/hf data/models/minilm/tokenizer.json >/dev/null
  model=target/paper-cost/hf/hub/models--google-bert--bert-base-uncased/snapshots/$(cat target/paper-cost/hf/hub/models--google-bert--bert-base-uncased/refs/main)
fi
bench=$(ISOLAB_BENCH_MODEL="$model" cargo bench --quiet --bench finetune_step 2>/dev/null)
ours=$(grep s/step <<<"$bench")
istar=$(grep "I-STAR" <<<"$bench")
theirs=$("$py" scripts/bench_finetune_torch.py --model "$model" --glue data/glue 2>/dev/null | grep s/step)
echo "$ours"
echo "$theirs"
a=$(sed -E 's/.*median ([0-9.]+) s\/step.*/\1/' <<<"$ours")
b=$(sed -E 's/.*median ([0-9.]+) s\/step.*/\1/' <<<"$theirs")
echo "ratio (PyTorch time / isotropy-lab time): $(python3 -c "print(f'{$b / $a:.2f}')")"
echo "$istar"

#!/usr/bin/env bash
# Extraction speed, isotropy-lab vs PyTorch, in one session on this machine; prints the ratio
# (PyTorch's time over ours for the same sentences: above 1 means we are faster).
# REF_PYTHON: a Python with torch and transformers (default .refvenv/bin/python, which
# scripts/reference_env.sh builds).
# Usage: bash scripts/bench_extract.sh [MODEL_FOLDER | bert-base]
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
report=$(ISOLAB_BENCH_MODEL="$model" cargo bench --quiet --profile dev --bench extract_sst2 2>/dev/null)
ours=$(grep tokens/s <<<"$report")
theirs=$("$py" scripts/bench_extract_torch.py --model "$model" --glue data/glue 2>/dev/null | grep tokens/s)
grep -v -e tokens/s -e "^embedding" <<<"$report"
echo "$ours"
echo "$theirs"
# Both run every token through the model; we keep only the real ones (no [CLS] / [SEP]), PyTorch
# copies them too, so the token counts differ: compare the times for the same sentences.
a=$(sed -E 's/.*best of 3 ([0-9.]+) s.*/\1/' <<<"$ours")
b=$(sed -E 's/.*best of 3 ([0-9.]+) s.*/\1/' <<<"$theirs")
limit=$(sed -nE 's/.*at the peak ([0-9.]+) s.*/\1/p' <<<"$report")
echo "ratio (PyTorch time / isotropy-lab time): $(python3 -c "print(f'{$b / $a:.2f}')")"
echo "PyTorch at $(python3 -c "print(f'{$b / $limit:.2f}')")× the limit, isotropy-lab at $(python3 -c "print(f'{$a / $limit:.2f}')")×"

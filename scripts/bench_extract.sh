#!/usr/bin/env bash
# Extraction throughput, isotropy-lab vs PyTorch, in one session on this machine; prints the ratio.
# REF_PYTHON: a Python with torch and transformers (default .refvenv/bin/python, which
# scripts/reference_env.sh builds).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${REF_PYTHON:-.refvenv/bin/python}
[ -x "$py" ] || { echo "no reference Python at $py: run bash scripts/reference_env.sh" >&2; exit 1; }
ours=$(cargo bench --quiet --profile dev --bench extract_sst2 2>/dev/null | grep tokens/s)
theirs=$("$py" scripts/bench_extract_torch.py --model data/models/minilm --glue data/glue 2>/dev/null | grep tokens/s)
echo "$ours"
echo "$theirs"
a=$(sed -E 's/.*= ([0-9]+) tokens\/s.*/\1/' <<<"$ours")
b=$(sed -E 's/.*= ([0-9]+) tokens\/s.*/\1/' <<<"$theirs")
echo "ratio (isotropy-lab / PyTorch): $(python3 -c "print(f'{$a / $b:.2f}')")"

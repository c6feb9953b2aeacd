#!/usr/bin/env bash
# What the paper profile (ISOLAB_PROFILE=paper: bert-base-uncased and TextAttack's fine-tunes, the
# full dev sets, the authors' k and D) costs on this machine, per chapter and per cell, from cold
# caches. Where the hub cannot be reached the models are stand-ins of their exact shape with random
# weights (scripts/paper_standin.py), served from a Hugging Face cache with HF_HUB_OFFLINE=1; their
# numbers mean nothing (the key-number ranges fail, as they should) but their cost is the real
# models' cost. Downloading the real ones (about 440 MB each) is not counted.
#
# Usage: bash scripts/paper_cost.sh [NOTEBOOK ...]   (default: every chapter)
# Needs the reference environment for the stand-ins (bash scripts/reference_env.sh; REF_PYTHON
# names another Python with torch and transformers). Writes target/paper-cost/.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${REF_PYTHON:-.refvenv/bin/python}"
[ -x "$python" ] || { echo "no reference Python at $python: run bash scripts/reference_env.sh" >&2; exit 1; }
out="$(pwd)/target/paper-cost"  # absolute: the kernels run in notebooks/
tokenizer="${ISOLAB_MODELS:-data/models}/minilm/tokenizer.json"
"$python" scripts/paper_standin.py "$out/hf" "$tokenizer"
rm -rf "$out/cache" "$out/notebooks"
if [ "$#" -eq 0 ]; then
  set -- notebooks/[0-9]*.ipynb
fi
start=$(date +%s)
ISOLAB_PROFILE=paper HF_HOME="$out/hf" HF_HUB_OFFLINE=1 ISOLAB_CACHE="$out/cache" \
  .venv/bin/python scripts/run_notebooks.py --out "$out/notebooks" "$@" || true
echo "paper profile, $(nproc) cores: $(( $(date +%s) - start )) s for $*"
python3 scripts/cell_times.py "$out"/notebooks/*.ipynb

#!/usr/bin/env bash
# The main job: install what is missing, fetch models and data, fine-tune minilm on the five
# default GLUE tasks (resumable; skipped when done), execute every notebook with the default
# profile into out/ (ipynb and HTML).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/finetune_default.sh
.venv/bin/python scripts/run_notebooks.py --out out
echo
echo "Executed notebooks: $(pwd)/out/*.html"

#!/usr/bin/env bash
# The main job: install what is missing, fetch models and data, execute every notebook with the
# default profile into out/ (ipynb and HTML).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python scripts/run_notebooks.py --out out
echo
echo "Executed notebooks: $(pwd)/out/*.html"

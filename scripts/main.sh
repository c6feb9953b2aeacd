#!/usr/bin/env bash
# The main job: install what is missing, fetch models and data, fine-tune minilm on the five
# default GLUE tasks and train the isotropy-regularisation experiment (resumable; skipped when
# done), execute every notebook with the default profile into out/ (ipynb and HTML).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/finetune_default.sh
# Chapter 08's experiment: I-STAR on SST-2, MRPC and CoLA × λ ∈ {−5, 0, 5}, ISOLAB_SEEDS seeds
# (default 1; about 40 minutes per seed on two cores), into runs/isotropy-reg (resumable).
cargo run --quiet --bin isolab -- reg-experiment
.venv/bin/python scripts/run_notebooks.py --out out
echo
echo "Executed notebooks: $(pwd)/out/*.html"

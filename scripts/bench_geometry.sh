#!/usr/bin/env bash
# Geometry toolkit speed, isotropy-lab vs numpy / scikit-learn, in one session on this machine;
# prints each time and the ratio. REF_PYTHON: a Python with numpy, scikit-learn, IsoScore and
# safetensors (default .refvenv/bin/python, which scripts/reference_env.sh builds).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${REF_PYTHON:-.refvenv/bin/python}
[ -x "$py" ] || { echo "no reference Python at $py: run bash scripts/reference_env.sh" >&2; exit 1; }
cargo bench --quiet --profile dev --bench geometry
"$py" scripts/bench_geometry.py

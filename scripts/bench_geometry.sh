#!/usr/bin/env bash
# Geometry toolkit speed, isotropy-lab vs numpy / scikit-learn, in one session on this machine;
# prints each time and the ratio. NUMPY_PYTHON: a Python with numpy, scikit-learn, IsoScore and
# safetensors (default /tmp/torchvenv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${NUMPY_PYTHON:-/tmp/torchvenv/bin/python}
cargo bench --quiet --profile dev --bench geometry
"$py" scripts/bench_geometry.py

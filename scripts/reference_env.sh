#!/usr/bin/env bash
# Builds the reference environment the benchmarks and the reference-value scripts run against:
# PyTorch, transformers, numpy, scipy, scikit-learn, IsoScore and safetensors, pinned, in
# .refvenv (ignored by git; about 5.5 GB, a few minutes from PyPI). Idempotent. Not part of setup
# or CI: the tests read the reference values these scripts wrote, committed in tests/data.
# Prints the Python to use; the bench_*.sh scripts use it unless REF_PYTHON names another.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .refvenv/bin/python ]; then
  python3 -m venv .refvenv
fi
.refvenv/bin/pip install --quiet --disable-pip-version-check \
  torch==2.15.0 transformers==5.24.0 numpy==2.4.6 scipy==1.17.1 scikit-learn==1.9.1 \
  IsoScore==2.0.1 safetensors==0.8.0
echo "$(pwd)/.refvenv/bin/python"

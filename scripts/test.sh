#!/usr/bin/env bash
# The test command: install what is missing, then run every test (the notebooks included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --no-fail-fast --lib --bins --tests

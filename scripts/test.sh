#!/usr/bin/env bash
# The test command: install what is missing, then run every test (the notebooks included).
set -euo pipefail
cd "$(dirname "$0")/.."
# The whole run needs about 9 GB of disk beyond the checkout; print what there was and what it took.
echo "disk before: $(df -h --output=avail . | tail -1 | tr -d ' ') free here"
trap 'echo "disk after: target/ holds $(du -sh target 2>/dev/null | cut -f1), $(df -h --output=avail . | tail -1 | tr -d " ") free here"' EXIT
bash scripts/setup.sh
cargo test --no-fail-fast --lib --bins --tests
# The doc examples of the public estimators and measures (cargo runs them apart from the rest).
cargo test --no-fail-fast --doc

#!/usr/bin/env bash
# The test command: install what is missing, then run every test (the notebooks included).
set -euo pipefail
cd "$(dirname "$0")/.."
# The whole run needs about 9 GB of disk beyond the checkout; print what there was and what it took.
echo "disk before: $(df -h --output=avail . | tail -1 | tr -d ' ') free here"
trap 'echo "disk after: target/ holds $(du -sh target 2>/dev/null | cut -f1), $(df -h --output=avail . | tail -1 | tr -d " ") free here"' EXIT
bash scripts/setup.sh
# Every test is built first, so that the two runs below only run them.
cargo test --no-run --quiet --lib --bins --tests
# The browser test (tests/lab.rs) spends 150 s of its 4 minutes waiting on purpose (its kernels
# start late), so it runs beside the others (docs/timings.md: the whole run took about 3 minutes
# less); its output follows theirs. Every other file in tests/ runs in the main run.
lab_log=target/lab-test.log
mkdir -p target
cargo test --no-fail-fast --test lab >"$lab_log" 2>&1 &
lab=$!
others=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  if [ "$name" != lab ]; then others+=(--test "$name"); fi
done
failed=0
cargo test --no-fail-fast --lib --bins "${others[@]}" || failed=1
lab_failed=0
wait "$lab" || lab_failed=1
echo
echo "== tests/lab.rs (run beside the tests above; its output)"
cat "$lab_log"
if [ "$lab_failed" = 1 ]; then
  echo "tests/lab.rs FAILED (its output above)"
  failed=1
fi
# The doc examples of the public estimators and measures (cargo runs them apart from the rest).
cargo test --no-fail-fast --doc || failed=1
exit "$failed"

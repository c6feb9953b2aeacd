#!/usr/bin/env bash
# The test command: install what is missing, then run every test (the notebooks included).
set -euo pipefail
cd "$(dirname "$0")/.."
# The whole run needs about 10 GB of disk beyond the checkout; print what there was and what it took.
echo "disk before: $(df -h --output=avail . | tail -1 | tr -d ' ') free here"
lab=""
lab_log=target/lab-test.log
finish() {
  # A run stopped early (Ctrl-C, a CI timeout) also stops the browser test, its lab, browser and
  # kernels (their own process group), and shows what the browser test had written so far.
  if [ -n "$lab" ] && kill -0 "$lab" 2>/dev/null; then
    kill -- -"$lab" 2>/dev/null || true
    echo "== tests/lab.rs was stopped; its output so far:"
    cat "$lab_log" 2>/dev/null || true
  fi
  echo "disk after: target/ holds $(du -sh target 2>/dev/null | cut -f1), $(df -h --output=avail . | tail -1 | tr -d " ") free here"
}
trap finish EXIT
trap 'exit 130' INT TERM
bash scripts/setup.sh
# Every test is built first, so that the two runs below only run them.
cargo test --no-run --quiet --lib --bins --tests
# The browser test (tests/lab.rs) spends 150 s of its 4 minutes waiting on purpose (its kernels
# start late), so it runs beside the others (docs/timings.md: about 150 s less for the whole run);
# its output follows theirs. Every other test target cargo knows runs in the main run.
mkdir -p target
setsid cargo test --no-fail-fast --test lab >"$lab_log" 2>&1 </dev/null &
lab=$!
others=()
while read -r name; do
  others+=(--test "$name")
done < <(cargo metadata --no-deps --format-version 1 | python3 -c '
import json, sys
for package in json.load(sys.stdin)["packages"]:
    for target in package["targets"]:
        if "test" in target["kind"] and target["name"] != "lab":
            print(target["name"])')
if [ "${#others[@]}" = 0 ]; then
  echo "no test targets found besides tests/lab.rs (cargo metadata)" >&2
  exit 1
fi
failed=0
cargo test --no-fail-fast --lib --bins "${others[@]}" || failed=1
lab_failed=0
wait "$lab" || lab_failed=1
lab=""
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

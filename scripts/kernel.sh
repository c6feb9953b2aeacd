#!/usr/bin/env bash
# The isotropy-lab Jupyter kernel: evcxr_jupyter with a build folder of its own, so any number of
# notebooks can run at once (two kernels in one folder rewrite each other's crate files).
#
# Slot 0 is target/evcxr, the folder setup warms; slot i > 0 is target/evcxr-<i>. A slot 0 that has
# never been built starts from the repository's own build (`cargo build`, the tests), which
# .cargo/config.toml compiles with the kernel's settings: its dependencies are then up to date
# for the kernel as well, and its first start compiles only isotropy-lab and the cells. The kernel takes
# the first free slot and holds it (an flock on target/evcxr-slots/<i>.lock, inherited by
# evcxr_jupyter) for its whole life, so a slot is reused by the next kernel once its kernel exits.
# A new slot starts as a copy of slot 0 that keeps every file's time stamp, made while no build
# runs in slot 0 (cargo's own lock files are held during the copy): cargo then finds every
# compiled dependency up to date instead of rebuilding them.
# Jupyter starts it through the kernelspec setup installs (.venv/share/jupyter/kernels/isotropy-lab).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Variables cargo sets for a test or binary it runs (the kernel inherits them when `cargo test`
# starts it): build scripts such as ring's rerun when they change, which would rebuild ring,
# rustls and ureq whenever the kernel alternates between a test and a reader's lab.
for name in $(compgen -e); do
  case "$name" in
    CARGO_MANIFEST_* | CARGO_PKG_* | CARGO_CRATE_NAME | CARGO_BIN_* | CARGO_PRIMARY_PACKAGE | \
      CARGO_TARGET_TMPDIR | OUT_DIR) unset "$name" ;;
  esac
done
evcxr="${CARGO_HOME:-$HOME/.cargo}/bin/evcxr_jupyter"
slots="$root/target/evcxr-slots"
mkdir -p "$slots"
warm="$root/target/evcxr"
host=$(rustc -vV | sed -n 's/^host: //p')
seed_from_build() { # copy the repository's compiled dependencies into slot 0's target folder
  local tmp="$warm/target.partial" kind part l1 l2
  [ -d "$root/target/$host/debug/deps" ] || return 0 # nothing built yet: the kernel builds it all
  echo "isotropy-lab kernel: seeding $warm/target from the repository's build (once)" >&2
  rm -rf "$tmp"
  mkdir -p "$root/target/debug"
  exec {l1}>"$root/target/$host/debug/.cargo-lock" {l2}>"$root/target/debug/.cargo-lock"
  flock "$l1" # cargo's own locks: no build runs in the repository while this copies
  flock "$l2"
  for kind in "$host/debug" debug; do # target code, then build scripts and proc macros
    mkdir -p "$tmp/$kind"
    for part in .fingerprint build deps; do
      if [ -d "$root/target/$kind/$part" ]; then cp -a "$root/target/$kind/$part" "$tmp/$kind/"; fi
    done
  done
  exec {l1}>&- {l2}>&- # released before evcxr starts, which would otherwise inherit them
  mv "$tmp" "$warm/target"
}
seed() { # seed DIR: copy slot 0 into DIR, atomically, with no build running in slot 0
  local dir=$1 tmp="$1.partial" host_lock="$warm/target/debug/.cargo-lock"
  local triple_lock="$warm/target/$host/debug/.cargo-lock"
  rm -rf "$tmp"
  if [ -e "$host_lock" ] && [ -e "$triple_lock" ]; then
    echo "isotropy-lab kernel: seeding $dir from $warm (once per slot)" >&2
    flock "$host_lock" flock "$triple_lock" cp -a "$warm" "$tmp"
    mv "$tmp" "$dir"
  fi # else slot 0 was never built: this slot builds its dependencies itself
}
for ((i = 0; i < 32; i++)); do
  dir="$warm"
  if [ "$i" -gt 0 ]; then dir="$root/target/evcxr-$i"; fi
  exec {lock}>"$slots/$i.lock"
  if flock -n "$lock"; then
    if [ "$i" = 0 ] && [ ! -d "$dir/target" ]; then mkdir -p "$dir" && seed_from_build; fi
    if [ "$i" -gt 0 ] && [ ! -d "$dir" ]; then seed "$dir"; fi
    export EVCXR_TMPDIR="$dir"
    exec "$evcxr" "$@"
  fi
  exec {lock}>&-
done
echo "isotropy-lab kernel: 32 kernels are running already; close one" >&2
exit 1

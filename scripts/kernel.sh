#!/usr/bin/env bash
# The isotropy-lab Jupyter kernel: evcxr_jupyter with a build folder of its own, so any number of
# notebooks can run at once (two kernels in one folder rewrite each other's crate files).
#
# Slot 0 is target/evcxr, the folder setup warms; slot i > 0 is target/evcxr-<i>. A slot 0 that has
# never been built starts from the repository's own build (`cargo build`, the tests), which
# .cargo/config.toml compiles with the kernel's settings: its dependencies are then up to date
# for the kernel as well, and its first start compiles only isotropy-lab, the kernel's library
# (notebooks/kernel) and the cells. The kernel takes
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
rustc_bin=$(command -v rustc || echo "${CARGO_HOME:-$HOME/.cargo}/bin/rustc")
host=$("$rustc_bin" -vV 2>/dev/null | sed -n 's/^host: //p') || true
copy_build() { # copy_build TMP: the compiled crates (lib*: rlib, rmeta, proc-macro and dylib
  # files), their dep-info and fingerprints, and the build scripts' folders; not the executables
  local tmp=$1 kind part
  for kind in debug "$host/debug"; do # build scripts and proc macros, then target code
    mkdir -p "$tmp/$kind/deps" || return 1
    for part in .fingerprint build; do
      if [ -d "$root/target/$kind/$part" ]; then
        cp -a "$root/target/$kind/$part" "$tmp/$kind/" || return 1
      fi
    done
    if [ -d "$root/target/$kind/deps" ]; then
      find "$root/target/$kind/deps" -maxdepth 1 \( -name 'lib*' -o -name '*.d' \) \
        -exec cp -a -t "$tmp/$kind/deps" {} + || return 1
    fi
  done
}
seed_from_build() { # seed_from_build DIR: DIR/target from the repository's compiled dependencies
  local dir=$1 tmp="$1/target.partial" built l1 l2
  built="$root/target/$host/debug/deps"
  if [ -z "$host" ] || [ ! -d "$built" ]; then return 0; fi # nothing built: the kernel builds it all
  echo "isotropy-lab kernel: seeding $dir/target from the repository's build (once)" >&2
  rm -rf "$tmp"
  mkdir -p "$dir" "$root/target/debug"
  # cargo's own locks, in cargo's order (the host's folder, then the target's): no build runs in
  # the repository while this copies (cargo releases them while tests run)
  exec {l1}>"$root/target/debug/.cargo-lock" {l2}>"$root/target/$host/debug/.cargo-lock"
  flock "$l1"
  flock "$l2"
  if copy_build "$tmp"; then
    mv "$tmp" "$dir/target"
  else
    rm -rf "$tmp"
    echo "isotropy-lab kernel: could not copy the repository's build; building from scratch" >&2
  fi
  exec {l1}>&- {l2}>&- # released before evcxr starts, which would otherwise inherit them
}
seed() { # seed DIR: copy slot 0 into DIR, atomically, with no build running in slot 0
  local dir=$1 tmp="$1.partial" host_lock="$warm/target/debug/.cargo-lock"
  local triple_lock="$warm/target/$host/debug/.cargo-lock"
  rm -rf "$tmp"
  if [ -e "$host_lock" ] && [ -e "$triple_lock" ]; then
    echo "isotropy-lab kernel: seeding $dir from $warm (once per slot)" >&2
    flock "$host_lock" flock "$triple_lock" cp -a "$warm" "$tmp"
    mv "$tmp" "$dir"
  else # slot 0 was never built: start from the repository's build instead
    seed_from_build "$dir"
  fi
}
for ((i = 0; i < 32; i++)); do
  dir="$warm"
  if [ "$i" -gt 0 ]; then dir="$root/target/evcxr-$i"; fi
  exec {lock}>"$slots/$i.lock"
  if flock -n "$lock"; then
    if [ ! -d "$dir/target" ]; then # never built, or a seed copy was cut short
      if [ "$i" = 0 ]; then
        seed_from_build "$dir"
      else
        rm -rf "$dir" # holds no build: nothing to keep
        seed "$dir"
      fi
    fi
    export EVCXR_TMPDIR="$dir"
    exec "$evcxr" "$@"
  fi
  exec {lock}>&-
done
echo "isotropy-lab kernel: 32 kernels are running already; close one" >&2
exit 1

#!/usr/bin/env bash
# Installs everything isotropy-lab needs, idempotently. environment.md explains each step.
set -euo pipefail
cd "$(dirname "$0")/.."
EVCXR_VERSION=0.22.0
step() { printf '\n== %s (%s)\n' "$*" "$(date +%T)"; }

step "Rust toolchain: rust-src (evcxr's analyser needs it)"
rustup component add rust-src >/dev/null 2>&1 || rustup component add rust-src

step "evcxr_jupyter $EVCXR_VERSION"
# Read whole, then searched (a `| grep -q` pipeline can fail under pipefail when grep exits early).
installed=$(cargo install --list)
if grep -q "^evcxr_jupyter v$EVCXR_VERSION:" <<<"$installed"; then
  echo "already installed"
else
  echo "building from source (5–8 minutes on 2 cores, docs/timings.md)"
  build_dir=$(mktemp -d)
  CARGO_TARGET_DIR="$build_dir" cargo install evcxr_jupyter --version "$EVCXR_VERSION" --locked
  rm -rf "$build_dir"
fi

step "Python side of Jupyter in .venv"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r scripts/requirements-notebooks.txt

step "Chromium and its WebDriver (the tests that render the chapters and drive the lab)"
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "already installed"
else
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  # Only the browser tests need it: without root or sudo, say so and go on to the rest.
  if { [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; } &&
    $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
    echo "installed $(chromium --version), $(chromedriver --version | cut -d' ' -f1-2)"
  else
    echo "WARNING: could not install chromium and chromium-driver (needs apt-get as root or through sudo)." >&2
    echo "The lab and the chapters work without them; the tests that render the chapters and drive the lab fail." >&2
  fi
fi

step "Jupyter kernel 'isotropy-lab' (scripts/kernel.sh: evcxr_jupyter, one build folder per running kernel)"
kernel_dir=$(mktemp -d)/isotropy-lab
mkdir -p "$kernel_dir"
cat >"$kernel_dir/kernel.json" <<JSON
{
  "argv": ["bash", "$(pwd)/scripts/kernel.sh", "--control_file", "{connection_file}"],
  "display_name": "Rust (isotropy-lab)",
  "interrupt_mode": "message",
  "language": "rust"
}
JSON
.venv/bin/jupyter kernelspec install --sys-prefix --replace "$kernel_dir" >/dev/null
rm -rf "$(dirname "$kernel_dir")"
echo "kernelspec: $(.venv/bin/jupyter kernelspec list | grep -w isotropy-lab || true)"
# JupyterLab's defaults for this lab: no prompt about news, no update checks (it runs offline).
mkdir -p .venv/share/jupyter/lab/settings
cat >.venv/share/jupyter/lab/settings/overrides.json <<'JSON'
{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}
JSON
# The server waits up to 30 minutes for a kernel to answer (jupyter_server's default: 60 s). evcxr
# answers only once it has run the prelude, which builds the cell crate first (38–41 s for two
# kernels starting at once in the browser test; 13 minutes with a cold dependency build). With the
# default, a start over about two minutes broke the tab's connection and evcxr died on the closed
# socket (tests/lab.rs starts every kernel 150 s late to keep this checked). Any Jupyter server
# started from .venv reads this file (jupyter_server_config.json in sys.prefix/etc/jupyter; the
# files in jupyter_server_config.d only enable extensions), not only scripts/lab.sh.
mkdir -p .venv/etc/jupyter
cat >.venv/etc/jupyter/jupyter_server_config.json <<'JSON'
{"MappingKernelManager": {"kernel_info_timeout": 1800}}
JSON

step "GLUE data"
if [ -e data/glue ] || [ -n "${GLUE_DIR:-}" ]; then
  echo "using ${GLUE_DIR:-data/glue}"
elif [ -d ../shared/data/glue ]; then
  ln -s "$(cd ../shared/data/glue && pwd)" data/glue
  echo "linked data/glue -> ../shared/data/glue"
else
  echo "no GLUE data here: run 'cargo run -- fetch glue' (needs the Hugging Face Hub) or set GLUE_DIR"
fi

step "Models (isolab fetch)"
# This build compiles every dependency, with the kernel's settings (.cargo/config.toml): the
# kernel's first start below copies them instead of compiling them again.
cargo build --quiet --bin isolab
for model in minilm minilm-sre; do
  cargo run --quiet --bin isolab -- fetch "$model"
done

step "The kernel's build (target/evcxr, seeded from the build above: isotropy-lab and the cells)"
.venv/bin/python scripts/warm_kernel.py
step "Done"

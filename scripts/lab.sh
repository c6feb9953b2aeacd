#!/usr/bin/env bash
# Opens the course: JupyterLab (from .venv, pinned in scripts/requirements-notebooks.txt) in
# notebooks/, where every chapter runs on the isotropy-lab kernel. It listens on localhost only,
# port ISOLAB_LAB_PORT (default 8888; Jupyter takes the next free one if it is taken), and prints
# the URL with its token; open that URL in a browser on this machine. ISOLAB_LAB_IP=0.0.0.0 makes
# it listen on every interface, for a machine you reach over the network (anyone who can reach the
# port and has the token can run code as you). Any number of chapters can be open at once: each
# kernel gets its own build folder (scripts/kernel.sh). ISOLAB_LAB_DIR serves another folder of
# notebooks (the browser test serves a copy, since the lab saves what it runs).
set -euo pipefail
cd "$(dirname "$0")/.."
# setup also writes the server's kernel timeout (.venv/etc/jupyter/jupyter_server_config.json): without
# it a kernel that takes over about two minutes to start breaks its tab.
# The kernel list is read whole before it is searched: `jupyter kernelspec list | grep -q` fails
# now and then under pipefail (grep exits at the match, jupyter's next line meets a closed pipe).
kernels=$(.venv/bin/jupyter kernelspec list || true)
if [ ! -x .venv/bin/jupyter-lab ] || ! grep -qw isotropy-lab <<<"$kernels" ||
  [ ! -e .venv/etc/jupyter/jupyter_server_config.json ]; then
  echo "JupyterLab, the isotropy-lab kernel or the lab's server settings are missing: run 'bash scripts/setup.sh' first" >&2
  exit 1
fi
if [ ! -d target/evcxr/target ] && [ ! -d "target/$(rustc -vV | sed -n 's/^host: //p')/debug/deps" ]; then
  echo "note: nothing is built yet; the first kernel start builds every dependency" \
    "(about 13 minutes on 2 cores). 'bash scripts/setup.sh' builds them beforehand." >&2
fi
# Jupyter refuses to run as root without --allow-root (containers and CI machines run as root).
as_root=()
if [ "$(id -u)" = 0 ]; then as_root=(--allow-root); fi
exec .venv/bin/jupyter lab --no-browser "${as_root[@]}" \
  --ServerApp.ip="${ISOLAB_LAB_IP:-127.0.0.1}" \
  --ServerApp.port="${ISOLAB_LAB_PORT:-8888}" \
  --ServerApp.root_dir="${ISOLAB_LAB_DIR:-$(pwd)/notebooks}" \
  "$@"

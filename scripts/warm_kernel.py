#!/usr/bin/env python3
"""Warm the notebook kernel's build: start one isotropy-lab kernel in notebooks/ (slot 0,
target/evcxr, unless a running kernel holds it), let it build the support crate and its
dependencies, run one cell that uses the crate, and stop it. The first time, the kernel starts from
a copy of the repository's compiled dependencies (scripts/kernel.sh, after setup's `cargo build`)
and compiles isotropy-lab, the kernel's library (notebooks/kernel) and the cell crate; with
nothing built it compiles every dependency (about 13 minutes on 2 cores, docs/timings.md).
Afterwards it takes seconds, and so does the first kernel start of a reader who opens a chapter.

Usage: .venv/bin/python scripts/warm_kernel.py
"""
import sys
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parent.parent


def main():
    start = time.monotonic()
    # The kernel builds the dependencies before it answers: allow the whole cold build.
    manager, client = start_new_kernel(kernel_name="isotropy-lab", cwd=str(ROOT / "notebooks"),
                                       startup_timeout=3600)
    try:
        reply = client.execute_interactive("let task = Task::Sst2; task.to_string()", timeout=600,
                                           output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            sys.exit(f"warm kernel: the test cell failed: {reply['content']}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)
    print(f"kernel build warm ({time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The notebook kernel's own costs: how long an isotropy-lab kernel takes to start (to answer
Jupyter's first request, the prelude of notebooks/evcxr.toml included), then the wall time of a few
cells that do almost no work, each sent after the previous one answered. What these cells take is
evcxr's overhead (generate, type, compile, link and load a crate per cell), which every cell of a
chapter pays on top of its own work; docs/timings.md records it. Run it with no other kernel of
the lab open: a kernel that finds slot 0 taken starts in another slot, and the first start in a
new slot copies the warm build folder (1.8 GB), which would count in the start.

Usage: .venv/bin/python scripts/kernel_costs.py [CELL ...]   (default: the cells below)
"""
import sys
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parent.parent

CELLS = [
    "let a: i32 = 1;",
    "let b: i32 = 2;",
    "a + b",
    "let task = Task::Sst2; task.to_string()",
    "Task::Mrpc.to_string()",
]


def main():
    cells = sys.argv[1:] or CELLS
    start = time.monotonic()
    manager, client = start_new_kernel(kernel_name="isotropy-lab", cwd=str(ROOT / "notebooks"),
                                       startup_timeout=3600)
    print(f"{time.monotonic() - start:6.1f} s  kernel start (until it answers)", flush=True)
    try:
        for cell in cells:
            start = time.monotonic()
            reply = client.execute_interactive(cell, timeout=600, output_hook=lambda msg: None)
            status = reply["content"]["status"]
            print(f"{time.monotonic() - start:6.1f} s  {cell}" + ("" if status == "ok" else
                                                                  f"  ({status})"), flush=True)
            if status != "ok":
                sys.exit(f"kernel costs: the cell failed: {reply['content']}")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=False)


if __name__ == "__main__":
    main()

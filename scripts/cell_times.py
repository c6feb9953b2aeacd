#!/usr/bin/env python3
"""Every code cell's wall time in executed notebooks, and the cells above a threshold.

nbclient (scripts/run_notebooks.py) and JupyterLab record when each cell started and when its
reply came (`metadata.execution`: iopub.execute_input and shell.execute_reply); this prints the
difference per cell, each chapter's total, and then the cells above THRESHOLD seconds (3 by
default: what a reader should wait at most for a warm cell), slowest first, with the first line
of their source. Standard library only.

Usage: python3 scripts/cell_times.py [--threshold S] [--all] DIR_OR_NOTEBOOK ...
  --all   print every cell, not only each chapter's total and the slow cells
"""
import argparse
import json
import sys
from datetime import datetime
from pathlib import Path


def stamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def cell_times(path):
    """(cell index, seconds, first source line) of each executed code cell of a notebook."""
    nb = json.loads(Path(path).read_text())
    found = []
    for i, cell in enumerate(nb["cells"]):
        execution = cell.get("metadata", {}).get("execution", {})
        start, end = execution.get("iopub.execute_input"), execution.get("shell.execute_reply")
        if cell["cell_type"] != "code" or not (start and end):
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        first = next((line for line in source.splitlines() if line.strip()), "")
        found.append((i, (stamp(end) - stamp(start)).total_seconds(), first))
    return found


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threshold", type=float, default=3.0)
    ap.add_argument("--all", action="store_true")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()
    notebooks = []
    for p in map(Path, args.paths):
        notebooks += sorted(p.glob("*.ipynb")) if p.is_dir() else [p]
    slow = []
    for nb in notebooks:
        times = cell_times(nb)
        if not times:
            print(f"{nb.name}: no recorded cell times (not executed by nbclient or JupyterLab)")
            continue
        print(f"{nb.name}: {len(times)} cells, {sum(t for _, t, _ in times):.1f} s")
        for i, seconds, first in times:
            if args.all:
                print(f"  cell {i:3d} {seconds:8.2f} s  {first[:70]}")
            if seconds > args.threshold:
                slow.append((seconds, nb.name, i, first))
    print(f"\ncells above {args.threshold:g} s: {len(slow)}")
    for seconds, name, i, first in sorted(slow, reverse=True):
        print(f"  {seconds:7.1f} s  {name} cell {i}: {first[:70]}")
    if not notebooks:
        sys.exit("no notebooks found")


if __name__ == "__main__":
    main()

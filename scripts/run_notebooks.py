#!/usr/bin/env python3
"""Execute the evcxr notebooks headless and check what they show.

Each notebook in notebooks/ (or those named) runs in a fresh `rust` (evcxr_jupyter) kernel whose
working folder is notebooks/, so it picks up notebooks/evcxr.toml (the support crate as a
dependency, its prelude, and a fixed build folder that later kernels reuse). The executed notebook
is written to OUT/NAME.ipynb and OUT/NAME.html.

A notebook fails when a cell raises an error, writes anything to stderr (evcxr reports an error
returned with `?` only there), when it shows no HTML table (text/html) or no SVG figure
(image/svg+xml), or when a key number it prints (`key number NAME = VALUE`, from the crate's
`key_number`) is missing, not finite, or outside its range in notebooks/key_numbers.json (one range
for every profile, or one per profile: quick, default and paper). Exit status 1 if any notebook failed;
the failing cell's source and error are printed.

Usage: run_notebooks.py [--quick] [--out DIR] [NOTEBOOK ...]
  --quick   set ISOLAB_PROFILE=quick (small samples; the tests use it)
"""
import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter

ROOT = Path(__file__).resolve().parent.parent


KEY = re.compile(r"^key number (\S+) = (\S+)$", re.MULTILINE)


def problems(nb, stem):
    """Error outputs, what is missing and key numbers out of range, as readable strings."""
    found, mimes, keys = [], set(), {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error":
                tb = "\n".join(out.get("traceback", [])) or f"{out.get('ename')}: {out.get('evalue')}"
                found.append(f"cell {i} raised an error:\n{cell.source}\n---\n{tb}")
            elif out.output_type == "stream" and out.name == "stderr":
                # evcxr reports an error returned by `?` only on stderr, not as an error output.
                found.append(f"cell {i} wrote to stderr:\n{cell.source}\n---\n{out.text}")
            elif out.output_type == "stream":
                for name, value in KEY.findall(out.text):
                    keys[name] = float(value)
            elif out.output_type in ("display_data", "execute_result"):
                mimes.update(out.get("data", {}).keys())
    for mime, what in (("text/html", "an HTML table"), ("image/svg+xml", "an SVG figure")):
        if mime not in mimes:
            found.append(f"the notebook shows no {what} ({mime})")
    expected = json.loads((ROOT / "notebooks" / "key_numbers.json").read_text()).get(stem, {})
    profile = os.environ.get("ISOLAB_PROFILE", "default")
    for name, spec in expected.items():
        # A range for every profile, or one per profile: {"quick": {"range": [..], ...}, "default": ..., "paper": ...}.
        span = spec.get(profile, spec["default"])["range"] if isinstance(spec, dict) else spec
        if span is None:
            continue  # not checked in this profile (the entry's "why" says why)
        low, high = span
        value = keys.get(name)
        if value is None:
            found.append(f"key number {name} was not printed")
        elif not math.isfinite(value) or not low <= value <= high:
            found.append(f"key number {name} = {value} is outside [{low}, {high}] ({profile} profile)")
    return found


def run(path, out_dir):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        kernel_name="isotropy-lab",
        timeout=3600,
        # The kernel builds the support crate before it answers: minutes on a cold build folder.
        startup_timeout=3600,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.monotonic()
    try:
        client.execute()
    except CellExecutionError:
        pass  # reported from the outputs below
    seconds = time.monotonic() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    nbformat.write(nb, out_dir / f"{stem}.ipynb")
    html, _ = HTMLExporter().from_notebook_node(nb)
    tmp = out_dir / f".{stem}.html.tmp"
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_dir / f"{stem}.html")
    return seconds, problems(nb, stem)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "out"))
    ap.add_argument("notebooks", nargs="*")
    args = ap.parse_args()
    if args.quick:
        os.environ["ISOLAB_PROFILE"] = "quick"
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        sys.exit("no notebooks found")
    failed = 0
    for path in paths:
        print(f"running {path.name} ...", flush=True)
        seconds, found = run(path, Path(args.out))
        if found:
            failed += 1
            print(f"FAILED {path.name} ({seconds:.0f} s):", flush=True)
            for p in found:
                print("  " + p.replace("\n", "\n  "), flush=True)
        else:
            print(f"ok {path.name} ({seconds:.0f} s) -> {Path(args.out) / (path.stem + '.html')}", flush=True)
    print(f"notebooks: {len(paths) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

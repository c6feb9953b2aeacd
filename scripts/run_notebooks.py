#!/usr/bin/env python3
"""Execute the evcxr notebooks headless and check what they show.

Each notebook in notebooks/ (or those named) runs in a fresh `isotropy-lab` kernel
(scripts/kernel.sh: evcxr_jupyter in a build folder of its own, seeded from the warm one) whose
working folder is notebooks/, so it picks up notebooks/evcxr.toml (the support crate as a
dependency and its prelude). The executed notebook is written to OUT/NAME.ipynb and OUT/NAME.html
(its formulas typeset by a copy of MathJax in OUT/mathjax, so the page reads offline).

A notebook fails when a cell raises an error, writes anything to stderr (evcxr reports an error
returned with `?` only there), when it shows no HTML table (text/html) or no SVG figure
(image/svg+xml), or when a key number it records is missing, not finite, or outside its range in
notebooks/key_numbers.json (one range for every profile, or one per profile: quick, default and
paper). Exit status 1 if any notebook failed; the failing cell's source and error are printed.

Key numbers: the kernels run with ISOLAB_KEY_NUMBERS=1, so the crate's `key_number` prints
`key number NAME = VALUE`; those lines are moved from the outputs into the notebook's metadata
(`metadata.isolab.key_numbers`) before the notebook and its page are written, so a reader of either
never sees them (nor does a reader in the lab, where the variable is unset).

Usage: run_notebooks.py [--quick] [--jobs N] [--out DIR] [NOTEBOOK ...]
  --quick   set ISOLAB_PROFILE=quick (small samples; the tests use it)
  --jobs N  run N notebooks at once, each in its own kernel and process (default 1). A kernel's
            cells are mostly one compiler process at a time, so two at once use both cores of a
            2-core machine better (the notebook test runs two); the per-notebook seconds printed
            then include the time the other notebook took from it.
"""
import argparse
import concurrent.futures
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbconvert import HTMLExporter
from notebook_keys import key_numbers, take_key_numbers

ROOT = Path(__file__).resolve().parent.parent


def problems(nb, stem):
    """Error outputs, what is missing and key numbers out of range, as readable strings."""
    found, mimes = [], set()
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
            elif out.output_type in ("display_data", "execute_result"):
                mimes.update(out.get("data", {}).keys())
    for mime, what in (("text/html", "an HTML table"), ("image/svg+xml", "an SVG figure")):
        if mime not in mimes:
            found.append(f"the notebook shows no {what} ({mime})")
    keys = key_numbers(nb)
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
            found.append(f"key number {name} was not recorded")
        elif not math.isfinite(value) or not low <= value <= high:
            found.append(f"key number {name} = {value} is outside [{low}, {high}] ({profile} profile)")
    return found


def mathjax_beside(out_dir):
    """MathJax 2.7 (the jupyter-server-mathjax package) copied into OUT/mathjax once, so the
    exported pages render their formulas offline; the URL the exporter loads it from."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = out_dir / "mathjax"
    if not (target / "MathJax.js").exists():
        tmp = out_dir / ".mathjax.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
        tmp.replace(target)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def run(path, out_dir):
    print(f"running {path.name} ...", flush=True)
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
    take_key_numbers(nb)  # out of the reader's outputs, into the notebook's metadata
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = path.stem
    nbformat.write(nb, out_dir / f"{stem}.ipynb")
    html, _ = HTMLExporter(mathjax_url=mathjax_beside(out_dir)).from_notebook_node(nb)
    tmp = out_dir / f".{stem}.html.tmp"
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out_dir / f"{stem}.html")
    return seconds, problems(nb, stem)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "out"))
    ap.add_argument("notebooks", nargs="*")
    args = ap.parse_args()
    if args.quick:
        os.environ["ISOLAB_PROFILE"] = "quick"
    os.environ["ISOLAB_KEY_NUMBERS"] = "1"  # inherited by the kernels
    paths = [Path(p).resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    if not paths:
        sys.exit("no notebooks found")
    if args.jobs < 1:
        sys.exit(f"--jobs must be at least 1, not {args.jobs}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    mathjax_beside(out_dir)  # once, before notebooks that finish together would both copy it
    failed = 0
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs)
    try:
        runs = {pool.submit(run, path, out_dir): path for path in paths}
        for future in concurrent.futures.as_completed(runs):  # each as it finishes
            path = runs[future]
            try:
                seconds, found = future.result()
            except Exception as error:  # the kernel died or did not start, a cell timed out, ...
                seconds, found = math.nan, [f"the run stopped: {type(error).__name__}: {error}"]
            if found:
                failed += 1
                print(f"FAILED {path.name} ({seconds:.0f} s):", flush=True)
                for p in found:
                    print("  " + p.replace("\n", "\n  "), flush=True)
            else:
                print(f"ok {path.name} ({seconds:.0f} s) -> {out_dir / (path.stem + '.html')}", flush=True)
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)  # the notebooks not started yet
        raise
    pool.shutdown()
    print(f"notebooks: {len(paths) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The README's table of the isotropy-regularisation experiment, from the summary.json that
`isolab reg-experiment` writes: per task and λ, the dev score (mean ± sd over seeds, and each
seed's) and the last layer's IsoScore and I(W) on the dev probe set at the kept model's step.

Usage: python3 scripts/reg_table.py runs/isotropy-reg/summary.json
"""
import json
import statistics as st
import sys


def spread(values, fmt):
    text = fmt % st.mean(values)
    return text if len(values) < 2 else f"{text} ± {fmt % st.stdev(values)}"


def main():
    rows = json.load(open(sys.argv[1]))
    print("| task | penalty | λ | seeds | dev (mean ± sd; each seed) | last-layer IsoScore (dev) | last-layer I(W) |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted({(r["task"], r["penalty"], r["lambda"]) for r in rows},
                  key=lambda k: (["sst2", "mrpc", "cola"].index(k[0]) if k[0] in ("sst2", "mrpc", "cola") else 9, k))
    for task, penalty, lam in keys:
        runs = [r for r in rows if (r["task"], r["penalty"], r["lambda"]) == (task, penalty, lam)]
        dev = [100 * r["dev"] for r in runs]
        each = ", ".join(f"{d:.1f}" for d in dev)
        print(f"| {task} | {penalty} | {lam:g} | {len(runs)} | {runs[0]['metric']} {spread(dev, '%.1f')} ({each}) "
              f"| {spread([r['isoscore'] for r in runs], '%.4f')} | {spread([r['isotropy'] for r in runs], '%.1e')} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Reference values for the clustering-agreement statistics (src/geometry/stats.rs): scikit-learn's
adjusted_rand_score and normalized_mutual_info_score on seeded labellings.

Writes tests/data/stats_reference.json: a list of cases, each {"name", "a", "b", "ari", "nmi"}.

Rerun (needs numpy and scikit-learn only; not part of CI):
  bash scripts/reference_env.sh   # the pinned reference environment in .refvenv
  .refvenv/bin/python scripts/reference_stats.py
"""
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

rng = np.random.default_rng(20261201)
cases = []


def add(name, a, b):
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    cases.append({
        "name": name,
        "a": a.tolist(),
        "b": b.tolist(),
        "ari": float(adjusted_rand_score(a, b)),
        "nmi": float(normalized_mutual_info_score(a, b)),
    })


n = 600
a = rng.integers(0, 7, n)
add("independent", a, rng.integers(0, 5, n))
noisy = a.copy()
flip = rng.random(n) < 0.25
noisy[flip] = rng.integers(0, 7, flip.sum())
add("a quarter relabelled", a, noisy)
perm = rng.permutation(7)
add("same partition, other names", a, perm[a])
add("one cluster against many", np.zeros(n, dtype=np.int64), a)
add("singletons", np.arange(40), np.arange(40)[::-1])
add("ten clusters split in two", rng.integers(0, 10, n) , rng.integers(0, 2, n))

out = Path(__file__).resolve().parent.parent / "tests" / "data" / "stats_reference.json"
out.write_text(json.dumps(cases) + "\n")
for c in cases:
    print(f"{c['name']}: ARI {c['ari']:.6f}, NMI {c['nmi']:.6f}")

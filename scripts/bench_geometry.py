#!/usr/bin/env python3
"""numpy / scikit-learn baseline for benches/geometry.rs: the same measures on the same matrices.

Reads target/bench-geometry/matrices.safetensors (written by `cargo bench --bench geometry`),
converts each to float64 once, and times (median of 3): I(W) (eigh of W^T W, F(u) by log-sum-exp,
both signs), scikit-learn PCA(svd_solver="full"), KMeans(27, n_init=1), IsoScore 2.0.1, and
cluster-based enhancement as the authors define it (KMeans 27, per cluster centre and remove the
top 12 PCA components), and chapter 05's sweep of the global method: for each D in 1, 2, 4, 8,
12, 16, 24, 32, PCA, removal of the top D components, then I(W) and IsoScore of the result, as
a numpy pipeline measures each setting. Prints each time beside isotropy-lab's (target/bench-geometry/rust.json)
and the ratio numpy time / our time (above 1: we are faster), and for the rows made of matrix
products the time the machine's measured f64 peak would take for them (the bench's "limit") and
our time over it.

Needs numpy, scikit-learn, IsoScore, safetensors (not part of CI):
  .refvenv/bin/python scripts/bench_geometry.py
"""
import json
import time

import numpy as np
from IsoScore import IsoScore
from safetensors.numpy import load_file
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA


def logsumexp(z):
    m = z.max(axis=0)
    return m + np.log(np.exp(z - m).sum(axis=0))


def isotropy(w):
    _, u = np.linalg.eigh(w.T @ w)
    z = w @ u
    both = np.concatenate([logsumexp(z), logsumexp(-z)])
    return np.exp(both.min() - both.max())


def cluster_based(x, k=27, d=12):
    labels = KMeans(n_clusters=k, n_init=1, random_state=0).fit(x).labels_
    out = np.zeros_like(x)
    for c in range(k):
        idx = labels == c
        xc = x[idx] - x[idx].mean(axis=0)
        comp = PCA(n_components=min(d, idx.sum() - 1), svd_solver="full").fit(xc).components_
        out[idx] = xc - (xc @ comp.T) @ comp
    return out


def global_sweep(x):
    for d in (1, 2, 4, 8, 12, 16, 24, 32):
        xc = x - x.mean(axis=0)
        comp = PCA(n_components=d, svd_solver="full").fit(xc).components_
        removed = xc - (xc @ comp.T) @ comp
        isotropy(removed)
        IsoScore.IsoScore(removed)


def median_secs(f):
    times = []
    for _ in range(3):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return sorted(times)[1]


def main():
    mats = load_file("target/bench-geometry/matrices.safetensors")
    rust = json.load(open("target/bench-geometry/rust.json"))
    ours, limits = rust["seconds"], rust["limit_seconds"]
    print(f"f64 peak measured by the bench: {rust['peak_gflops']:.1f} GFLOP/s")
    work = {
        "I(W)": isotropy,
        "PCA": lambda x: PCA(svd_solver="full").fit(x),
        "k-means k=27": lambda x: KMeans(n_clusters=27, n_init=1, random_state=0).fit(x),
        "IsoScore": lambda x: IsoScore.IsoScore(x),
        "cluster-based k=27 D=12": cluster_based,
        "global D=1..32": global_sweep,
    }
    print(f"{'work':<36}{'numpy/sklearn s':>16}{'isotropy-lab s':>16}{'ratio':>8}{'limit s':>9}{'ours/limit':>11}")
    for name in sorted(mats):
        x = mats[name].astype(np.float64)
        for what, f in work.items():
            t = median_secs(lambda: f(x))
            key = f"{name} {what}"
            limit = f"{limits[key]:>9.3f}{ours[key] / limits[key]:>11.2f}" if key in limits else ""
            print(f"{key + f' ({x.shape[0]}x{x.shape[1]})':<36}{t:>16.3f}{ours[key]:>16.3f}{t / ours[key]:>8.2f}{limit}")
        km = KMeans(n_clusters=27, n_init=1, random_state=0).fit(x)
        print(f"  scikit-learn k-means: inertia {km.inertia_:.2f}, {km.n_iter_} iterations")


if __name__ == "__main__":
    main()

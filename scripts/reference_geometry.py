#!/usr/bin/env python3
"""Reference values for the geometry toolkit's tests (src/geometry), from numpy, scikit-learn and
the IsoScore package.

Writes tests/data/geometry_reference.safetensors. Input matrices (float32, points x dimensions):
  aniso   seeded Gaussian cloud, geometric scales 4 .. 0.02 over 48 dimensions, mean offset 0.5
  iso     seeded isotropic Gaussian cloud (3000 x 48)
  real    the last-layer rows of the parity probes (tests/data/parity_minilm.safetensors)
  sst2    the last layer of all-MiniLM-L6-v2 through transformers on the first 16 SST-2 dev
          sentences, every token ([CLS]/[SEP] kept); sst2_token_ids, sst2_sentence (int64) describe
          the rows
  blobs   8 seeded Gaussian blobs in 16 dimensions (1600 x 16)
For each case NAME (float64 unless said):
  NAME_variances, NAME_isoscore   scikit-learn PCA(svd_solver="full").explained_variance_; [the
                                  IsoScore package's value, its formula in numpy float64] (the
                                  package computes its constants in float32, ~1e-7 off)
  NAME_iso                        [log min F, log max F, I(W), I(W) both signs]: eigenvectors of
                                  W^T W from numpy, each oriented with its largest-|entry| positive
  NAME_lid                        Levina-Bickel MLE with k = 10 over every row (sklearn
                                  NearestNeighbors), per row
For aniso_head (the first 800 rows of aniso) and sst2:
  NAME_components                 scikit-learn PCA components_ (rows, the first 24), oriented like ours
  NAME_init, NAME_labels (int64), NAME_kmeans
                                  fixed initial centres (seeded rows), KMeans(init=..., n_init=1,
                                  tol=0) labels, [inertia, silhouette_score over all rows]
  NAME_zero_mean, NAME_cluster_zero_mean, NAME_global, NAME_cluster_based
                                  the four enhancement methods as the authors' code defines them,
                                  on the fixed-centre clusters (D below), float64 (for sst2 only
                                  global and cluster-based, to keep the file small)
  NAME_cluster_iso                per cluster: I(W) both signs of the cluster centred on its mean
For sst2: sst2_cosine [mean cosine over all pairs (explicit cosine matrix)], sst2_rogue (each
dimension's mean contribution u_i v_i / (|u||v|) over all pairs), sst2_selfsim [mean over token ids
seen >= 2 times of their mean pairwise cosine, number of such ids], sst2_intra [intra-sentence
similarity].
stats_a, stats_b, stats_expected: two seeded samples with ties and [scipy pearsonr, spearmanr];
nmi_a, nmi_b, nmi_expected: two seeded labellings and scikit-learn's normalized_mutual_info_score.
probe3, probe2 (+ _y labels 3, 13, 23, and _decision): seeded 3-class and binary sets (300 x 12)
and scikit-learn LogisticRegression(C=0.5)'s decision_function on them.
For blobs and sst2: NAME_kmeanspp, the inertias of KMeans(k, n_init=1, random_state=s) for s in
0..20 (k-means++ seeding; k = 8 and 6).

Rerun (needs numpy, scikit-learn, torch, transformers, IsoScore, safetensors; not part of CI):
  bash scripts/reference_env.sh   # the pinned reference environment in .refvenv
  cargo run -- fetch minilm
  .refvenv/bin/python scripts/reference_geometry.py --model data/models/minilm --glue data/glue
"""
import argparse
import csv

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import normalized_mutual_info_score
import torch
from IsoScore import IsoScore
from safetensors.numpy import load_file, save_file
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.neighbors import NearestNeighbors
from transformers import AutoModel, AutoTokenizer

# Per case: k for the fixed-centre clustering, D for global and cluster-based.
CLUSTER_CASES = {"aniso_head": (5, 3, 4), "sst2": (6, 12, 15)}  # name: (k, D cluster-based, D global)
LID_K = 10


def isoscore_f64(x):
    """IsoScore 2.0.1's formula, all in float64."""
    n = x.shape[1]
    pcs = np.linalg.svd(np.cov(x.T), compute_uv=False)
    pcs_norm = pcs * np.sqrt(n) / np.linalg.norm(pcs)
    defect = np.linalg.norm(pcs_norm - 1.0) / np.sqrt(2 * (n - np.sqrt(n)))
    return ((n - defect**2 * (n - np.sqrt(n))) ** 2 - n) / (n * (n - 1))


def orient_rows(c):
    """Flip each row so that its largest-magnitude entry is positive (first on ties)."""
    idx = np.argmax(np.abs(c), axis=1)
    signs = np.sign(c[np.arange(c.shape[0]), idx])
    signs[signs == 0] = 1.0
    return c * signs[:, None]


def logsumexp(z):
    m = z.max(axis=0)
    return m + np.log(np.exp(z - m).sum(axis=0))


def isotropy(w):
    """[log min F, log max F, I(W), I(W) both signs], Mu & Viswanath as Rajaee & Pilehvar."""
    _, u = np.linalg.eigh(w.T @ w)
    u = orient_rows(u.T).T
    z = w @ u
    plus, minus = logsumexp(z), logsumexp(-z)
    both = np.concatenate([plus, minus])
    return np.array([plus.min(), plus.max(), np.exp(plus.min() - plus.max()),
                     np.exp(both.min() - both.max())])


def lid(x, k):
    """Levina-Bickel MLE per row over its k nearest other rows."""
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    t = dist[:, 1:]
    return (k - 1) / np.log(t[:, -1:] / t[:, :-1]).sum(axis=1)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def mean_pairwise_cosine(x):
    c = unit(x) @ unit(x).T
    n = len(x)
    return (c.sum() - np.trace(c)) / (n * (n - 1))


def remove_top(xc, d):
    """The authors' removal: xc minus its projections on the top d principal components."""
    if d == 0:
        return xc
    comp = PCA(n_components=d, svd_solver="full").fit(xc).components_
    return xc - (xc @ comp.T) @ comp


def enhancements(x, labels, d_cluster, d_global):
    zero_mean = x - x.mean(axis=0)
    czm = np.zeros_like(x)
    cb = np.zeros_like(x)
    for c in np.unique(labels):
        idx = labels == c
        xc = x[idx] - x[idx].mean(axis=0)
        czm[idx] = xc
        cb[idx] = remove_top(xc, min(d_cluster, idx.sum() - 1))
    return {"zero_mean": zero_mean, "cluster_zero_mean": czm,
            "global": remove_top(zero_mean, d_global), "cluster_based": cb}


def sst2_case(model_dir, glue_dir):
    with open(f"{glue_dir}/SST-2/dev.tsv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:17]
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    mats, ids, sent = [], [], []
    for i, (sentence, _) in enumerate(rows):
        enc = tok(sentence, return_tensors="pt", truncation=True, max_length=128)
        with torch.no_grad():
            h = model(**enc, output_hidden_states=True).hidden_states[-1][0]
        mats.append(h.numpy())
        ids.extend(enc["input_ids"][0].tolist())
        sent.extend([i] * h.shape[0])
    return np.concatenate(mats).astype(np.float32), np.array(ids), np.array(sent)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="data/models/minilm")
    ap.add_argument("--glue", default="data/glue")
    ap.add_argument("--out", default="tests/data/geometry_reference.safetensors")
    args = ap.parse_args()

    rng = np.random.default_rng(2109)
    cases = {
        "aniso": (rng.standard_normal((3000, 48)) * np.geomspace(4.0, 0.02, 48) + 0.5).astype(np.float32),
        "iso": rng.standard_normal((3000, 48)).astype(np.float32),
    }
    parity = load_file("tests/data/parity_minilm.safetensors")
    k = 0
    rows = []
    while f"s{k}_layer6" in parity:
        rows.append(parity[f"s{k}_layer6"])
        k += 1
    cases["real"] = np.concatenate(rows).astype(np.float32)
    sst2, ids, sent = sst2_case(args.model, args.glue)
    cases["sst2"] = sst2
    centres = rng.standard_normal((8, 16)) * 6.0
    cases["blobs"] = (np.repeat(centres, 200, axis=0) + rng.standard_normal((1600, 16))).astype(np.float32)

    out = {"sst2_token_ids": ids.astype(np.int64), "sst2_sentence": sent.astype(np.int64)}
    for name, m in cases.items():
        x = m.astype(np.float64)
        out[name] = m
        out[f"{name}_variances"] = PCA(svd_solver="full").fit(x).explained_variance_
        out[f"{name}_isoscore"] = np.array([float(IsoScore.IsoScore(x)), isoscore_f64(x)])
        out[f"{name}_iso"] = isotropy(x)
        out[f"{name}_lid"] = lid(x, LID_K)
        print(name, m.shape, "IsoScore", out[f"{name}_isoscore"][0], "I(W)", out[f"{name}_iso"][2:])

    cases["aniso_head"] = cases["aniso"][:800]
    for name, (k, d_cluster, d_global) in CLUSTER_CASES.items():
        x = cases[name].astype(np.float64)
        out[f"{name}_components"] = orient_rows(PCA(svd_solver="full").fit(x).components_[:24])
        init = x[np.random.default_rng(7).choice(len(x), size=k, replace=False)]
        km = KMeans(n_clusters=k, init=init, n_init=1, tol=0.0, max_iter=300, algorithm="lloyd").fit(x)
        labels = km.labels_
        out[f"{name}_init"] = init.astype(np.float32)
        out[f"{name}_labels"] = labels.astype(np.int64)
        out[f"{name}_kmeans"] = np.array([km.inertia_, silhouette_score(x, labels)])
        for method, value in enhancements(x, labels, d_cluster, d_global).items():
            if name != "sst2" or method in ("global", "cluster_based"):
                out[f"{name}_{method}"] = value
        out[f"{name}_cluster_iso"] = np.array(
            [isotropy(x[labels == c] - x[labels == c].mean(axis=0))[3] for c in range(k)])
        print(name, "k-means inertia", km.inertia_, "sizes", np.bincount(labels))

    for name, k in [("blobs", 8), ("sst2", 6)]:
        x = cases[name].astype(np.float64)
        out[f"{name}_kmeanspp"] = np.array(
            [KMeans(n_clusters=k, n_init=1, random_state=s).fit(x).inertia_ for s in range(20)])

    x = sst2.astype(np.float64)
    u = unit(x)
    n = len(x)
    out["sst2_cosine"] = np.array([mean_pairwise_cosine(x)])
    s = u.sum(axis=0)
    out["sst2_rogue"] = np.array([(np.outer(u[:, j], u[:, j]).sum() - (u[:, j] ** 2).sum()) / (n * (n - 1))
                                  for j in range(x.shape[1])])
    sims = [mean_pairwise_cosine(x[ids == t]) for t in np.unique(ids) if (ids == t).sum() >= 2]
    out["sst2_selfsim"] = np.array([np.mean(sims), len(sims)])
    intra = []
    for i in np.unique(sent):
        rows_i = x[sent == i]
        mean = rows_i.mean(axis=0)
        intra.append(np.mean(unit(rows_i) @ (mean / np.linalg.norm(mean))))
    out["sst2_intra"] = np.array([np.mean(intra)])
    print("sst2 mean cosine", out["sst2_cosine"], "self-sim", out["sst2_selfsim"], "intra", out["sst2_intra"],
          "sum of rogue", out["sst2_rogue"].sum(), s.shape)
    # Correlations (STS-B's metrics) and normalised mutual information, on seeded samples with ties.
    a = rng.integers(0, 6, 200).astype(np.float64)
    b = a + rng.standard_normal(200)
    out["stats_a"], out["stats_b"] = a, b
    out["stats_expected"] = np.array([pearsonr(a, b)[0], spearmanr(a, b)[0]])
    la, lb = rng.integers(0, 5, 500), rng.integers(0, 3, 500)
    lb[:250] = la[:250] % 3
    out["nmi_a"], out["nmi_b"] = la.astype(np.int64), lb.astype(np.int64)
    out["nmi_expected"] = np.array([normalized_mutual_info_score(la, lb)])
    print("stats", out["stats_expected"], "nmi", out["nmi_expected"])
    # Linear probes: scikit-learn LogisticRegression(C=0.5) on a seeded 3-class and a binary set.
    for name, k in [("probe3", 3), ("probe2", 2)]:
        means = rng.standard_normal((k, 12)) * 1.5
        y = rng.integers(0, k, 300)
        x = (means[y] + rng.standard_normal((300, 12))).astype(np.float32)
        lr = LogisticRegression(C=0.5, tol=1e-12, max_iter=10000).fit(x.astype(np.float64), y)
        out[name], out[f"{name}_y"] = x, (y * 10 + 3).astype(np.int64)
        out[f"{name}_decision"] = np.atleast_2d(lr.decision_function(x.astype(np.float64)).T).T.copy()
        print(name, "train accuracy", lr.score(x.astype(np.float64), y))
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, args.out)


if __name__ == "__main__":
    main()

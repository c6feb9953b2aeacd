#!/usr/bin/env python3
"""Reference values for the spectrum tests (src/spectrum.rs), from scikit-learn and IsoScore.

Writes tests/data/geometry_reference.safetensors with, for each case NAME:
  NAME                  the input matrix (points x dimensions), float32
  NAME_variances        scikit-learn PCA(svd_solver="full").explained_variance_, float64
  NAME_isoscore         [IsoScore.IsoScore(points) from the IsoScore package (2.0.1),
                         the same formula in numpy float64], float64. The package computes the
                         dimension-dependent constants in float32 (torch.sqrt of an integer
                         tensor), so its value carries ~1e-7 relative rounding; numpy's does not.
Cases: "aniso" (seeded Gaussian cloud, geometric scales, mean offset), "iso" (seeded isotropic
Gaussian cloud), "real" (the last-layer rows of the parity probes from
tests/data/parity_minilm.safetensors, all-MiniLM-L6-v2 through transformers).

Rerun (needs numpy, scikit-learn, torch, IsoScore, safetensors; not part of CI):
  /tmp/torchvenv/bin/pip install numpy scikit-learn torch IsoScore==2.0.1 safetensors
  /tmp/torchvenv/bin/python scripts/reference_geometry.py
"""
import numpy as np
from IsoScore import IsoScore
from safetensors.numpy import load_file, save_file
from sklearn.decomposition import PCA


def isoscore_f64(x):
    """IsoScore 2.0.1's formula, all in float64."""
    n = x.shape[1]
    pcs = np.linalg.svd(np.cov(x.T), compute_uv=False)
    pcs_norm = pcs * np.sqrt(n) / np.linalg.norm(pcs)
    defect = np.linalg.norm(pcs_norm - 1.0) / np.sqrt(2 * (n - np.sqrt(n)))
    return ((n - defect**2 * (n - np.sqrt(n))) ** 2 - n) / (n * (n - 1))


def main():
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
    out = {}
    for name, m in cases.items():
        x = m.astype(np.float64)
        out[name] = m
        out[f"{name}_variances"] = PCA(svd_solver="full").fit(x).explained_variance_.astype(np.float64)
        out[f"{name}_isoscore"] = np.array([float(IsoScore.IsoScore(x)), isoscore_f64(x)])
        print(name, m.shape, "IsoScore", out[f"{name}_isoscore"][0])
    save_file(out, "tests/data/geometry_reference.safetensors")


if __name__ == "__main__":
    main()

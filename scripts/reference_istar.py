#!/usr/bin/env python3
"""Reference values for the isotropy regularisers (src/finetune/isotropy_reg.rs): IsoScore* and
CosReg as Rudman & Eickhoff's I-STAR code defines them (GitHub bcbi-edu/p_eickhoff_isoscore,
I-STAR/regularizers.py: torch.cov, the singular values of the shrunk covariance, IsoScore's
normalisation and rescaling; CosReg (sum of the cosine matrix - N) / N^2), evaluated in float64
with torch, and their gradients by torch's autograd.

Input: real all-MiniLM-L6-v2 last-layer rows from tests/data/geometry_reference.safetensors
(scripts/reference_geometry.py): `real` (93 x 384, the batch) and `sst2` (369 x 384, whose
np.cov is the shrinkage target C0).

Writes tests/data/istar_reference.safetensors:
  c0                        C0 (384 x 384), float32 (what the trainer holds); the values below
                            are computed from it, widened to float64
  istar                     [IsoScore* with zeta 0.2, IsoScore* with zeta 0] of the batch, float64
  istar_grad                d IsoScore*(zeta 0.2) / d points, float32
  cosreg, cosreg_grad       CosReg of the batch (float64) and its gradient (float32)

Rerun (needs torch, numpy, safetensors; not part of CI):
  bash scripts/reference_env.sh
  .refvenv/bin/python scripts/reference_istar.py
"""
import numpy as np
import torch
from safetensors.numpy import load_file, save_file

ZETA = 0.2


def isoscore_star(points, c0, zeta):
    """IsoScore of (1 - zeta) cov(points) + zeta c0, from its singular values."""
    n = points.shape[1]
    cov = (1 - zeta) * torch.cov(points.T) + zeta * c0
    s = torch.linalg.svdvals(cov)
    s = s * np.sqrt(n) / torch.linalg.vector_norm(s)
    defect = torch.linalg.vector_norm(s - 1) / np.sqrt(2 * (n - np.sqrt(n)))
    kept = (n - defect**2 * (n - np.sqrt(n))) ** 2
    return (kept - n) / (n * (n - 1))


def cosreg(points):
    u = points / torch.linalg.norm(points, dim=1, keepdim=True)
    m = u.shape[0]
    return ((u @ u.T).sum() - m) / m**2


def main():
    ref = load_file("tests/data/geometry_reference.safetensors")
    batch = ref["real"].astype(np.float64)
    c0 = np.cov(ref["sst2"].astype(np.float64).T).astype(np.float32)
    c0_t = torch.tensor(c0.astype(np.float64))

    p = torch.tensor(batch, requires_grad=True)
    star = isoscore_star(p, c0_t, ZETA)
    (star_grad,) = torch.autograd.grad(star, p)
    plain = isoscore_star(torch.tensor(batch), c0_t, 0.0)

    p = torch.tensor(batch, requires_grad=True)
    cos = cosreg(p)
    (cos_grad,) = torch.autograd.grad(cos, p)

    save_file(
        {
            "c0": c0,
            "istar": np.array([star.item(), plain.item()]),
            "istar_grad": star_grad.numpy().astype(np.float32),
            "cosreg": np.array([cos.item()]),
            "cosreg_grad": cos_grad.numpy().astype(np.float32),
        },
        "tests/data/istar_reference.safetensors",
    )
    print(f"IsoScore* (zeta {ZETA}) {star.item():.6f}, IsoScore {plain.item():.6f}, CosReg {cos.item():.6f}")


if __name__ == "__main__":
    main()

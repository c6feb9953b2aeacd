//! Local intrinsic dimension: the maximum-likelihood estimator of Levina & Bickel (2004) over k
//! nearest neighbours.

use crate::util::matrix::Matrix;
use crate::util::sample::sorted_sample;
use anyhow::{bail, Result};

/// Query rows per block of distance products (bounds memory to block × rows f64).
const BLOCK: usize = 256;

/// Local intrinsic dimension estimates.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalDimension {
    /// The mean of the per-point estimates.
    pub mean: f64,
    /// (row, estimate) for every query row that has k neighbours at non-zero distinct distances.
    pub per_point: Vec<(usize, f64)>,
}

/// Local intrinsic dimension of the cloud around each query row (Levina & Bickel 2004,
/// "Maximum Likelihood Estimation of Intrinsic Dimension"): with T₁ ≤ … ≤ T_k the Euclidean
/// distances to its k nearest other rows, m̂ = [ (1/(k − 1)) Σ_{j<k} ln(T_k / T_j) ]⁻¹. Rows at
/// distance 0 (duplicates, common among special tokens in the embedding layer) are not neighbours;
/// a query whose k distances are all equal has no estimate and is skipped.
///
/// Queries are all rows, or a seeded sample of `queries` rows; neighbours are searched among all
/// rows, exactly (block products on faer, the k nearest then measured directly). Needs k ≥ 2.
///
/// ```
/// use isotropy_lab::geometry::lid::local_dimension;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Points along a curve in 3-D: locally one-dimensional.
/// let data: Vec<f32> = (0..200)
///     .flat_map(|i| {
///         let t = i as f32 * 0.05;
///         [t, t.sin(), 0.5 * t]
///     })
///     .collect();
/// let lid = local_dimension(&Matrix::new(200, 3, data)?, 10, None, 0)?;
/// assert!((lid.mean - 1.0).abs() < 0.5, "{}", lid.mean);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn local_dimension(
    w: &Matrix,
    k: usize,
    queries: Option<usize>,
    seed: u64,
) -> Result<LocalDimension> {
    w.check_finite("local intrinsic dimension")?;
    if k < 2 {
        bail!("local intrinsic dimension: k must be at least 2, got {k}");
    }
    let n = w.rows();
    if k >= n {
        bail!("local intrinsic dimension: k = {k} needs more than {k} rows, the matrix has {n}");
    }
    let q = sorted_sample(n, queries, seed);
    let x = w.to_faer();
    let norms: Vec<f64> = (0..n)
        .map(|i| w.row(i).iter().map(|&v| f64::from(v).powi(2)).sum())
        .collect();
    let exact = |a: usize, b: usize| -> f64 {
        w.row(a)
            .iter()
            .zip(w.row(b))
            .map(|(&u, &v)| (f64::from(u) - f64::from(v)).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let mut per_point = Vec::new();
    for block in q.chunks(BLOCK) {
        let qx = faer::Mat::from_fn(block.len(), w.cols(), |i, j| x[(block[i], j)]);
        let g = &x * qx.transpose();
        for (b, &row) in block.iter().enumerate() {
            let mut cand: Vec<(f64, usize)> = g
                .col(b)
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != row)
                .map(|(i, &dot)| ((norms[i] + norms[row] - 2.0 * dot).max(0.0), i))
                .filter(|&(d2, i)| d2 > 1e-10 * (norms[i] + norms[row]))
                .collect();
            if cand.len() < k {
                continue;
            }
            // A few spare candidates guard against round-off in the expanded distances.
            let take = (k + 8).min(cand.len());
            cand.select_nth_unstable_by(take - 1, |a, b| a.0.total_cmp(&b.0));
            let mut near: Vec<f64> = cand[..take]
                .iter()
                .map(|&(_, i)| exact(row, i))
                .filter(|&d| d > 0.0)
                .collect();
            if near.len() < k {
                continue;
            }
            near.sort_by(f64::total_cmp);
            let tk = near[k - 1];
            let s: f64 = near[..k - 1].iter().map(|&t| (tk / t).ln()).sum();
            if s > 0.0 {
                per_point.push((row, (k - 1) as f64 / s));
            }
        }
    }
    if per_point.is_empty() {
        bail!("local intrinsic dimension: no query row has {k} neighbours at distinct non-zero distances");
    }
    let mean = per_point.iter().map(|p| p.1).sum::<f64>() / per_point.len() as f64;
    Ok(LocalDimension { mean, per_point })
}

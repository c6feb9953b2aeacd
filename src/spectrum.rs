//! The variance spectrum of a point cloud: principal-component variances, how many components it
//! takes to explain a share of the variance, the participation ratio, and IsoScore.

use crate::display::Fresh;
use crate::extract::Embeddings;
use crate::matrix::Matrix;
use anyhow::{bail, Result};
use faer::{Mat, Side};
use polars::prelude::{Column, DataFrame};

/// Variances along the principal components of a matrix (rows = points), largest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Eigenvalues of the sample covariance (divided by N − 1, as numpy and scikit-learn's
    /// `explained_variance_`), descending; tiny negative round-off is clamped to 0.
    pub variances: Vec<f64>,
}

impl Spectrum {
    /// The spectrum of `w`'s rows, centred (principal component analysis). Needs 2 rows or more.
    pub fn of(w: &Matrix) -> Result<Spectrum> {
        w.check_finite("spectrum")?;
        if w.rows() < 2 {
            bail!(
                "spectrum: needs at least 2 rows, the matrix has {}",
                w.rows()
            );
        }
        let m = w.to_faer();
        let (n, d) = (m.nrows(), m.ncols());
        let means: Vec<f64> = (0..d)
            .map(|j| m.col(j).iter().sum::<f64>() / n as f64)
            .collect();
        let centred = Mat::from_fn(n, d, |i, j| m[(i, j)] - means[j]);
        let cov = (centred.transpose() * &centred) * faer::Scale(1.0 / (n as f64 - 1.0));
        let mut variances = cov.self_adjoint_eigenvalues(Side::Lower).map_err(|e| {
            anyhow::anyhow!("spectrum: eigenvalues of the covariance failed: {e:?}")
        })?;
        variances.reverse();
        for v in &mut variances {
            *v = v.max(0.0);
        }
        Ok(Spectrum { variances })
    }

    /// Each component's share of the total variance (scikit-learn's `explained_variance_ratio_`).
    pub fn ratios(&self) -> Vec<f64> {
        let total: f64 = self.variances.iter().sum();
        self.variances
            .iter()
            .map(|v| if total > 0.0 { v / total } else { 0.0 })
            .collect()
    }

    /// The fewest leading components whose variances reach `fraction` (0..=1) of the total.
    pub fn components_for(&self, fraction: f64) -> usize {
        let mut acc = 0.0;
        for (i, r) in self.ratios().iter().enumerate() {
            acc += r;
            if acc >= fraction - 1e-12 {
                return i + 1;
            }
        }
        self.variances.len()
    }

    /// Participation ratio (Σλ)² / Σλ²: the effective number of dimensions, between 1 and d.
    pub fn participation_ratio(&self) -> f64 {
        let s: f64 = self.variances.iter().sum();
        let s2: f64 = self.variances.iter().map(|v| v * v).sum();
        if s2 > 0.0 {
            s * s / s2
        } else {
            0.0
        }
    }

    /// IsoScore (Rudman et al. 2022, as the `IsoScore` 2.0.1 package computes it): normalise the
    /// variance vector Σ to norm √n, defect δ = ‖Σ̂ − 1‖ / √(2(n − √n)), k = (n − δ²(n − √n))² / n,
    /// score (k − 1)/(n − 1). 1 for an isotropic cloud, 0 when one direction holds all variance.
    /// A cloud with no variance at all has no IsoScore (an error).
    pub fn isoscore(&self) -> Result<f64> {
        let n = self.variances.len() as f64;
        let norm = self.variances.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 || n < 2.0 {
            bail!("IsoScore: the points have no variance (or fewer than 2 dimensions)");
        }
        let defect = self
            .variances
            .iter()
            .map(|v| (v * n.sqrt() / norm - 1.0).powi(2))
            .sum::<f64>()
            .sqrt()
            / (2.0 * (n - n.sqrt())).sqrt();
        let k = (n - defect * defect * (n - n.sqrt())).powi(2) / n;
        Ok((k - 1.0) / (n - 1.0))
    }
}

/// One row per extracted layer: `layer`, `isoscore`, `participation_ratio`, and the number of
/// principal components reaching 50, 80, 90 and 99 % of the variance (`pc50` … `pc99`).
pub fn spectrum_table(emb: &Embeddings) -> Result<DataFrame> {
    let mut cols: [Vec<f64>; 2] = [vec![], vec![]];
    let mut counts: [Vec<u32>; 4] = [vec![], vec![], vec![], vec![]];
    let mut layers = Vec::new();
    for (&l, m) in emb.layers.iter().zip(&emb.matrices) {
        let s = Spectrum::of(m)?;
        layers.push(l as u32);
        cols[0].push(s.isoscore()?);
        cols[1].push(s.participation_ratio());
        for (c, f) in counts.iter_mut().zip([0.5, 0.8, 0.9, 0.99]) {
            c.push(s.components_for(f) as u32);
        }
    }
    let [iso, pr] = cols;
    let [c50, c80, c90, c99] = counts;
    Ok(DataFrame::new_infer_height(vec![
        Column::new("layer".into(), layers),
        Column::new("isoscore".into(), iso),
        Column::new("participation_ratio".into(), pr),
        Column::new("pc50".into(), c50),
        Column::new("pc80".into(), c80),
        Column::new("pc90".into(), c90),
        Column::new("pc99".into(), c99),
    ])?
    .fresh())
}

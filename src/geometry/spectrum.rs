//! The variance spectrum of a point cloud: principal component analysis (components and
//! variances), how many components it takes to explain a share of the variance, the participation
//! ratio, the count of dominant directions, and IsoScore.

use crate::matrix::Matrix;
use anyhow::{bail, Result};
use faer::{Mat, MatRef, Side};

/// The column means of `x` and its centred sample covariance (divided by N − 1).
fn centred_covariance(x: MatRef<'_, f64>, what: &str) -> Result<(Vec<f64>, Mat<f64>)> {
    let (n, d) = (x.nrows(), x.ncols());
    if n < 2 {
        bail!("{what}: needs at least 2 rows, the matrix has {n}");
    }
    let means: Vec<f64> = (0..d)
        .map(|j| x.col(j).iter().sum::<f64>() / n as f64)
        .collect();
    let centred = Mat::from_fn(n, d, |i, j| x[(i, j)] - means[j]);
    let cov = crate::geometry::gram_lower(centred.as_ref()) * faer::Scale(1.0 / (n as f64 - 1.0));
    Ok((means, cov))
}

/// Principal component analysis of a matrix's rows (centred), on faer in f64: what
/// scikit-learn's `PCA(svd_solver="full")` computes, from the eigen-decomposition of the
/// covariance.
#[derive(Debug, Clone)]
pub struct Pca {
    /// The column means that were subtracted.
    pub mean: Vec<f64>,
    /// The principal axes, one unit column per component (d × d), in the order of `variances`.
    /// Each axis is oriented so that its component of largest magnitude is positive.
    pub components: Mat<f64>,
    /// The variances along the axes, descending ([`Spectrum::variances`]).
    pub spectrum: Spectrum,
}

impl Pca {
    /// Fits the principal axes of `w`'s rows. Needs 2 rows or more and finite values.
    pub fn fit(w: &Matrix) -> Result<Pca> {
        w.check_finite("PCA")?;
        Pca::fit_f64(w.to_faer().as_ref())
    }

    /// [`Pca::fit`] on an f64 matrix (rows = points), for pipelines that stay in f64; the values
    /// must be finite.
    pub fn fit_f64(x: MatRef<'_, f64>) -> Result<Pca> {
        let (mean, cov) = centred_covariance(x, "PCA")?;
        let eig = cov.self_adjoint_eigen(Side::Lower).map_err(|e| {
            anyhow::anyhow!("PCA: eigendecomposition of the covariance failed: {e:?}")
        })?;
        let d = cov.nrows();
        let s = eig.S().column_vector();
        let u = eig.U();
        // faer returns ascending eigenvalues: reverse to descending.
        let mut components = Mat::<f64>::zeros(d, d);
        let mut variances = Vec::with_capacity(d);
        for (out, j) in (0..d).rev().enumerate() {
            variances.push(s[j].max(0.0));
            let col = u.col(j);
            let mut best = 0;
            for i in 0..d {
                if col[i].abs() > col[best].abs() {
                    best = i;
                }
            }
            let sign = if col[best] < 0.0 { -1.0 } else { 1.0 };
            for i in 0..d {
                components[(i, out)] = sign * col[i];
            }
        }
        Ok(Pca {
            mean,
            components,
            spectrum: Spectrum { variances },
        })
    }
}

/// The factor over the mean variance above which [`Spectrum::dominant`] counts a direction as
/// dominant in the crate's tables.
pub const DOMINANT_FACTOR: f64 = 5.0;

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
        let (_, cov) = centred_covariance(w.to_faer().as_ref(), "spectrum")?;
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

    /// The number of dominant directions: components whose variance exceeds `c` times the mean
    /// variance (for an isotropic cloud, none for any c > 1). The rule is ours, stated so the count
    /// is reproducible: the paper reads the number of elongated directions off the spectrum, and
    /// the crate's tables use c = [`DOMINANT_FACTOR`].
    pub fn dominant(&self, c: f64) -> usize {
        let mean = self.variances.iter().sum::<f64>() / self.variances.len().max(1) as f64;
        self.variances.iter().filter(|&&v| v > c * mean).count()
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

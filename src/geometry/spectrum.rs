//! The variance spectrum of a point cloud: principal component analysis (components and
//! variances), how many components it takes to explain a share of the variance, the participation
//! ratio, the count of dominant directions, and IsoScore.

use crate::geometry::{gram_lower, orientation, Centred, RowBlocks, BLOCK_ROWS};
use crate::util::matrix::Matrix;
use anyhow::{bail, Result};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;

/// The column means of `x` and `x` with them subtracted.
pub(crate) fn centred(x: MatRef<'_, f64>) -> (Vec<f64>, Mat<f64>) {
    let (n, d) = (x.nrows(), x.ncols());
    let means: Vec<f64> = (0..d)
        .map(|j| x.col(j).iter().sum::<f64>() / n as f64)
        .collect();
    let centred = Mat::from_fn(n, d, |i, j| x[(i, j)] - means[j]);
    (means, centred)
}

/// The sample covariance (divided by N − 1) of rows that are already centred (its lower
/// triangle); fails below 2 rows.
fn covariance_of_centred(centred: &impl RowBlocks, what: &str) -> Result<Mat<f64>> {
    let n = centred.nrows();
    if n < 2 {
        bail!("{what}: needs at least 2 rows, the matrix has {n}");
    }
    Ok(gram_lower(centred) * faer::Scale(1.0 / (n as f64 - 1.0)))
}

/// The sample covariance of `w`'s rows (divided by N − 1, as `np.cov`), both triangles, f64.
pub(crate) fn covariance(w: &Matrix) -> Result<Mat<f64>> {
    let lower = covariance_of_centred(&Centred::new(w), "covariance")?;
    let d = lower.nrows();
    Ok(Mat::from_fn(d, d, |i, j| {
        if i >= j {
            lower[(i, j)]
        } else {
            lower[(j, i)]
        }
    }))
}

/// Principal component analysis of a matrix's rows (centred), on faer in f64: what
/// scikit-learn's `PCA(svd_solver="full")` computes, from the eigen-decomposition of the
/// covariance. Fit, then [`Pca::transform`] or [`Pca::remove_top`].
///
/// ```
/// use isotropy_lab::geometry::spectrum::Pca;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Points spread along the diagonal x = y, a little off it.
/// let w = Matrix::new(4, 2, vec![1.0, 1.1, 2.0, 1.9, 3.0, 3.1, 4.0, 3.9])?;
/// let pca = Pca::fit(&w)?;
/// assert!(pca.spectrum.ratios()[0] > 0.99);
/// let first = pca.transform(w.to_faer().as_ref(), 1)?;
/// assert_eq!((first.nrows(), first.ncols()), (4, 1));
/// // Without its top direction, what is left of each point is small.
/// let rest = pca.remove_top(w.to_faer().as_ref(), 1)?;
/// assert!((0..4).all(|i| rest[(i, 0)].abs() < 0.1 && rest[(i, 1)].abs() < 0.1));
/// # Ok::<(), anyhow::Error>(())
/// ```
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
        let centred = Centred::new(w);
        let cov = covariance_of_centred(&centred, "PCA")?;
        Pca::from_covariance(centred.means, cov)
    }

    /// [`Pca::fit`] on an f64 matrix (rows = points), for pipelines that stay in f64; the values
    /// must be finite.
    pub fn fit_f64(x: MatRef<'_, f64>) -> Result<Pca> {
        if x.ncols() == 0 {
            bail!("PCA: the matrix has no columns");
        }
        let (mean, centred) = centred(x);
        let cov = covariance_of_centred(&centred.as_ref(), "PCA")?;
        Pca::from_covariance(mean, cov)
    }

    /// The fit from the column means and the covariance's lower triangle.
    fn from_covariance(mean: Vec<f64>, cov: Mat<f64>) -> Result<Pca> {
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
            let sign = orientation(col);
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

    /// `x`'s rows with the fitted mean subtracted; fails unless `x` has as many columns as the
    /// fitted data.
    fn centre(&self, x: MatRef<'_, f64>, what: &str) -> Result<Mat<f64>> {
        if x.ncols() != self.mean.len() {
            bail!(
                "PCA {what}: fitted on {} columns, given {}",
                self.mean.len(),
                x.ncols()
            );
        }
        Ok(Mat::from_fn(x.nrows(), x.ncols(), |i, j| {
            x[(i, j)] - self.mean[j]
        }))
    }

    /// The first `k` principal components of `x`'s rows (rows × k): the rows minus the fitted
    /// mean, projected on the top `k` axes, as scikit-learn's `PCA(n_components=k).transform`.
    pub fn transform(&self, x: MatRef<'_, f64>, k: usize) -> Result<Mat<f64>> {
        let k = self.check_k(k, "transform")?;
        let c = self.centre(x, "transform")?;
        Ok(&c * self.components.get(.., ..k))
    }

    /// `x`'s rows minus the fitted mean, with their projections on the top `d` axes removed
    /// (Mu & Viswanath's "all-but-the-top"): what is left of each row outside the `d` dominant
    /// directions.
    pub fn remove_top(&self, x: MatRef<'_, f64>, d: usize) -> Result<Mat<f64>> {
        let d = self.check_k(d, "remove_top")?;
        let c = self.centre(x, "remove_top")?;
        if d == 0 {
            return Ok(c);
        }
        let top = self.components.get(.., ..d);
        let proj = &c * top;
        Ok(&c - &proj * top.transpose())
    }

    /// [`Pca::remove_top`] on f32 rows, f32 out: what the global method returns. The rows are
    /// read a block of [`BLOCK_ROWS`] at a time in f64 (blocks in parallel), so no f64 copy of
    /// the matrix is made.
    pub fn remove_top_rows(&self, w: &Matrix, d: usize) -> Result<Matrix> {
        let d = self.check_k(d, "remove_top_rows")?;
        if w.cols() != self.mean.len() {
            bail!(
                "PCA remove_top_rows: fitted on {} columns, given {}",
                self.mean.len(),
                w.cols()
            );
        }
        remove_directions(w, &self.mean, self.components.get(.., ..d))
    }

    fn check_k(&self, k: usize, what: &str) -> Result<usize> {
        let dim = self.components.ncols();
        if k > dim {
            bail!("PCA {what}: {k} components asked, the data has {dim} dimensions");
        }
        Ok(k)
    }
}

/// The rows of `w` minus `mean`, with their projections on the unit columns of `top` removed
/// (none: the rows centred), in f32: a block of [`BLOCK_ROWS`] rows at a time in f64, blocks in
/// parallel.
pub(crate) fn remove_directions(w: &Matrix, mean: &[f64], top: MatRef<'_, f64>) -> Result<Matrix> {
    let (n, dim, d) = (w.rows(), w.cols(), top.ncols());
    let mut data = vec![0f32; n * dim];
    if data.is_empty() {
        return Matrix::new(n, dim, data);
    }
    data.par_chunks_mut(BLOCK_ROWS * dim)
        .enumerate()
        .for_each_init(
            || {
                (
                    vec![0f64; BLOCK_ROWS.min(n) * dim],
                    Mat::<f64>::zeros(BLOCK_ROWS.min(n), d),
                )
            },
            |(rows, z), (b, out)| {
                let rows = &mut rows[..out.len()];
                w.write_rows_f64(b * BLOCK_ROWS, rows, Some(mean));
                let len = out.len() / dim;
                let mut c = MatMut::from_row_major_slice_mut(rows, len, dim);
                if d > 0 {
                    let mut z = z.as_mut().subrows_mut(0, len);
                    matmul(z.as_mut(), Accum::Replace, c.as_ref(), top, 1.0, Par::Seq);
                    matmul(
                        c.as_mut(),
                        Accum::Add,
                        z.as_ref(),
                        top.transpose(),
                        -1.0,
                        Par::Seq,
                    );
                }
                for (o, &v) in out.iter_mut().zip(rows.iter()) {
                    *o = v as f32;
                }
            },
        );
    Matrix::new(n, dim, data)
}

/// (Σλ)² / Σλ² from Σλ and Σλ²; 0 when there is no variance.
fn participation_ratio(sum: f64, sum_sq: f64) -> f64 {
    if sum_sq > 0.0 {
        sum * sum / sum_sq
    } else {
        0.0
    }
}

/// IsoScore of d variances from their sum and their sum of squares ([`Spectrum::isoscore`]).
fn isoscore_of(sum: f64, sum_sq: f64, d: usize) -> Result<f64> {
    if sum_sq <= 0.0 || d < 2 {
        bail!("IsoScore: the points have no variance (or fewer than 2 dimensions)");
    }
    Ok((participation_ratio(sum, sum_sq) - 1.0) / (d as f64 - 1.0))
}

/// IsoScore of `w`'s rows, what `Spectrum::of(w)?.isoscore()` gives, without the eigenvalues:
/// Σλ and Σλ² of the covariance C are its trace and its squared Frobenius norm, read off C itself
/// ([`Spectrum::isoscore`] says why they are all IsoScore needs). Needs 2 rows or more.
///
/// ```
/// use isotropy_lab::geometry::spectrum::{isoscore, Spectrum};
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(4, 2, vec![1.0, 0.2, -1.0, 0.0, 0.3, 0.5, 0.0, -0.5])?;
/// let from_eigenvalues = Spectrum::of(&w)?.isoscore()?;
/// assert!((isoscore(&w)? - from_eigenvalues).abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn isoscore(w: &Matrix) -> Result<f64> {
    w.check_finite("IsoScore")?;
    let cov = covariance_of_centred(&Centred::new(w), "IsoScore")?;
    let d = cov.nrows();
    let (mut trace, mut frobenius) = (0.0, 0.0);
    for j in 0..d {
        let col = cov.col(j);
        trace += col[j];
        frobenius += col[j] * col[j];
        // The lower triangle, each entry standing for itself and its mirror.
        frobenius += 2.0 * (j + 1..d).map(|i| col[i] * col[i]).sum::<f64>();
    }
    isoscore_of(trace, frobenius, d)
}

/// The factor over the mean variance above which [`Spectrum::dominant`] counts a direction as
/// dominant in the crate's tables.
pub const DOMINANT_FACTOR: f64 = 5.0;

/// Variances along the principal components of a matrix (rows = points), largest first.
///
/// ```
/// use isotropy_lab::geometry::spectrum::Spectrum;
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(4, 2, vec![1.0, 0.0, -1.0, 0.0, 0.0, 0.5, 0.0, -0.5])?;
/// let s = Spectrum::of(&w)?;
/// // Sample variances (N − 1 below): 2/3 along x, 1/6 along y.
/// assert!((s.variances[0] - 2.0 / 3.0).abs() < 1e-12);
/// assert!((s.variances[1] - 1.0 / 6.0).abs() < 1e-12);
/// assert!((s.ratios()[0] - 0.8).abs() < 1e-12);
/// assert_eq!(s.components_for(0.9), 2);
/// assert!((s.participation_ratio() - 25.0 / 17.0).abs() < 1e-12);
/// assert_eq!(s.dominant(1.5), 1);
/// assert!(s.isoscore()? < 1.0);
/// # Ok::<(), anyhow::Error>(())
/// ```
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
        let cov = covariance_of_centred(&Centred::new(w), "spectrum")?;
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
        let (s, s2) = self.sums();
        participation_ratio(s, s2)
    }

    /// Σλ and Σλ² of the variances.
    fn sums(&self) -> (f64, f64) {
        let s = self.variances.iter().sum();
        let s2 = self.variances.iter().map(|v| v * v).sum();
        (s, s2)
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
    ///
    /// Expanding δ² shows that k is the [participation ratio](Spectrum::participation_ratio)
    /// (Σλ)² / Σλ²: IsoScore is (PR − 1)/(n − 1), the effective number of dimensions rescaled to
    /// 0..1, and is computed so. [`isoscore`] gets it from the covariance without its eigenvalues.
    pub fn isoscore(&self) -> Result<f64> {
        let (s, s2) = self.sums();
        isoscore_of(s, s2, self.variances.len())
    }
}

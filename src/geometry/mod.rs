//! The geometry toolkit: isotropy and anisotropy measures, the variance spectrum, clusters and
//! local isotropy, local intrinsic dimension, the isotropy-enhancement methods, logistic
//! regression and the statistics the analyses need. Plain matrices in, numbers and matrices out:
//! linear algebra on faer in f64, matrices in and out as f32 [`crate::util::matrix::Matrix`]; no
//! candle, no polars, so every estimator here runs (and is tested) on any matrix. Two results that
//! tables and notebook cells ask for again, [`cluster::kmeans_labels`] and [`cluster::choose_k`],
//! are cached on disk by their inputs ([`crate::util::memo`]); everything else is computed on
//! every call.
//!
//! - [`isotropy`]: I(W) (Mu & Viswanath 2018): one sign per eigenvector, the range any sign
//!   choice gives, dead coordinates;
//! - [`similarity`]: mean cosine (Ethayarajh 2019), rogue dimensions (Timkey & van Schijndel
//!   2021), self-similarity and intra-sentence similarity (Ethayarajh 2019);
//! - [`spectrum`]: PCA, explained variance, effective dimension, dominant directions, IsoScore
//!   (Rudman et al. 2022);
//! - [`cluster`]: k-means, silhouette, choice of k, per-cluster isotropy (Cai et al. 2021);
//! - [`lid`]: local intrinsic dimension (Levina & Bickel 2004);
//! - [`enhance`]: zero-mean, clustering + zero-mean, global (all-but-the-top) and cluster-based
//!   enhancement (Rajaee & Pilehvar 2021);
//! - [`logistic`]: L2-regularised logistic regression (scikit-learn's), for linear probes;
//! - [`stats`]: Pearson and Spearman correlation, normalised mutual information, adjusted Rand
//!   index, the spread of a repeated measurement.

pub mod cluster;
pub mod enhance;
pub mod isotropy;
pub mod lid;
pub mod logistic;
pub mod similarity;
pub mod spectrum;
pub mod stats;

use crate::util::matrix::Matrix;
use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, ColRef, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// The sign convention for eigenvectors, whose sign is arbitrary: the factor (±1) that makes an
/// eigenvector's component of largest magnitude positive (the first such component on ties).
/// I(W) and PCA both orient by it, and the reference scripts apply the same rule to numpy's
/// eigenvectors, so values agree across libraries.
pub(crate) fn orientation(u: ColRef<'_, f64>) -> f64 {
    let mut best = 0;
    for i in 0..u.nrows() {
        if u[i].abs() > u[best].abs() {
            best = i;
        }
    }
    if u.nrows() > 0 && u[best] < 0.0 {
        -1.0
    } else {
        1.0
    }
}

/// Rows per block when the geometry reads a matrix in one pass ([`RowBlocks`]): a block in f64
/// (at most 1024 × 768 × 8 bytes = 6 MiB) stays in cache while it is multiplied.
pub(crate) const BLOCK_ROWS: usize = 1024;

/// A matrix the geometry reads a block of rows at a time, in f64: the f32 token matrices
/// ([`Matrix`], converted one block at a time in cache, never as a whole), those rows minus their
/// column means ([`Centred`]), and f64 faer matrices.
pub(crate) trait RowBlocks: Sync {
    /// Number of rows.
    fn nrows(&self) -> usize;
    /// Number of columns.
    fn ncols(&self) -> usize;
    /// Writes rows `start..start + out.len() / self.ncols()` into `out`, row-major (for an f32
    /// [`Matrix`], which is row-major too, a straight conversion); [`rows_view`] reads them as a
    /// faer matrix.
    fn fill(&self, start: usize, out: &mut [f64]);
}

/// `rows × d` values written by [`RowBlocks::fill`] as a (row-major) faer matrix.
pub(crate) fn rows_view(values: &[f64], rows: usize, d: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(&values[..rows * d], rows, d)
}

impl RowBlocks for Matrix {
    fn nrows(&self) -> usize {
        self.rows()
    }

    fn ncols(&self) -> usize {
        self.cols()
    }

    fn fill(&self, start: usize, out: &mut [f64]) {
        self.write_rows_f64(start, out, None);
    }
}

impl RowBlocks for MatRef<'_, f64> {
    fn nrows(&self) -> usize {
        MatRef::nrows(self)
    }

    fn ncols(&self) -> usize {
        MatRef::ncols(self)
    }

    fn fill(&self, start: usize, out: &mut [f64]) {
        let d = MatRef::ncols(self);
        if d == 0 {
            return;
        }
        let rows = out.len() / d;
        MatMut::from_row_major_slice_mut(out, rows, d).copy_from(self.subrows(start, rows));
    }
}

/// The rows of an f32 [`Matrix`] minus their column means (in f64), a block at a time: the
/// centred rows PCA, IsoScore and the covariance read, without a centred copy of the matrix.
pub(crate) struct Centred<'a> {
    w: &'a Matrix,
    /// The column means.
    pub means: Vec<f64>,
}

impl<'a> Centred<'a> {
    /// `w`'s column means and its rows minus them. The means are summed in f64, row after row
    /// within each block of [`BLOCK_ROWS`] rows (blocks in parallel), then block after block.
    pub fn new(w: &'a Matrix) -> Centred<'a> {
        let d = w.cols();
        let block_sums: Vec<Vec<f64>> = w
            .data()
            .par_chunks(BLOCK_ROWS * d.max(1))
            .map(|block| {
                let mut sums = vec![0f64; d];
                for row in block.chunks_exact(d.max(1)) {
                    for (s, &v) in sums.iter_mut().zip(row) {
                        *s += f64::from(v);
                    }
                }
                sums
            })
            .collect();
        let mut sums = vec![0f64; d];
        for block in &block_sums {
            for (s, b) in sums.iter_mut().zip(block) {
                *s += b;
            }
        }
        let means = sums.iter().map(|s| s / w.rows() as f64).collect();
        Centred { w, means }
    }
}

impl RowBlocks for Centred<'_> {
    fn nrows(&self) -> usize {
        self.w.rows()
    }

    fn ncols(&self) -> usize {
        self.w.cols()
    }

    fn fill(&self, start: usize, out: &mut [f64]) {
        self.w.write_rows_f64(start, out, Some(&self.means));
    }
}

/// Rows per partial product of [`gram_lower`].
const GRAM_CHUNK_ROWS: usize = 2 * BLOCK_ROWS;

/// Partial products of [`gram_lower`] held at once (d × d each: 8 × 4.7 MB at 768 wide).
const GRAM_WAVE: usize = 8;

/// XᵀX for an n × d matrix X: only the lower triangle (with the diagonal) is computed and filled,
/// which is all a symmetric eigen-solver reading `Side::Lower` needs; half the work of a full
/// product. X is read a block of [`BLOCK_ROWS`] rows at a time, so an f32 matrix is never
/// converted as a whole. Each [`GRAM_CHUNK_ROWS`] rows make one partial product; the partial
/// products run in parallel, [`GRAM_WAVE`] at a time (each converts its own rows), and are added
/// in row order, so the result does not depend on the number of threads. Rows that make a single
/// chunk are multiplied with every core instead.
pub(crate) fn gram_lower(x: &impl RowBlocks) -> Mat<f64> {
    let (n, d) = (x.nrows(), x.ncols());
    let chunks: Vec<usize> = (0..n.div_ceil(GRAM_CHUNK_ROWS)).collect();
    let par = if chunks.len() > 1 {
        Par::Seq
    } else {
        Par::rayon(0)
    };
    let partial = |chunk: usize| {
        let mut out = Mat::<f64>::zeros(d, d);
        let mut block = vec![0f64; BLOCK_ROWS.min(n) * d];
        let end = ((chunk + 1) * GRAM_CHUNK_ROWS).min(n);
        for start in (chunk * GRAM_CHUNK_ROWS..end).step_by(BLOCK_ROWS) {
            let rows = BLOCK_ROWS.min(end - start);
            x.fill(start, &mut block[..rows * d]);
            let b = rows_view(&block, rows, d);
            matmul(
                out.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                b.transpose(),
                BlockStructure::Rectangular,
                b,
                BlockStructure::Rectangular,
                1.0,
                par,
            );
        }
        out
    };
    let mut out = Mat::<f64>::zeros(d, d);
    for wave in chunks.chunks(GRAM_WAVE) {
        let parts: Vec<Mat<f64>> = wave.par_iter().map(|&c| partial(c)).collect();
        // The lower triangles added into `out`, columns in parallel, each in chunk order.
        out.par_col_iter_mut().enumerate().for_each(|(j, col)| {
            let mut col = col.subrows_mut(j, d - j);
            for part in &parts {
                col += part.col(j).subrows(j, d - j);
            }
        });
    }
    out
}

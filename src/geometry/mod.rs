//! The geometry toolkit: isotropy and anisotropy measures, the variance spectrum, clusters and
//! local isotropy, local intrinsic dimension, the isotropy-enhancement methods, logistic
//! regression and the statistics the analyses need. Plain matrices in, numbers and matrices out:
//! linear algebra on faer in f64, matrices in and out as f32 [`crate::util::matrix::Matrix`]; no
//! candle, no polars, so every estimator here runs (and is tested) on any matrix.
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

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, ColRef, Mat, MatRef, Par};

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

/// XᵀX for an n × d matrix X: only the lower triangle (with the diagonal) is computed and filled,
/// which is all a symmetric eigen-solver reading `Side::Lower` needs; half the work of a full
/// product.
pub(crate) fn gram_lower(x: MatRef<'_, f64>) -> Mat<f64> {
    let d = x.ncols();
    let mut out = Mat::<f64>::zeros(d, d);
    matmul(
        out.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        x.transpose(),
        BlockStructure::Rectangular,
        x,
        BlockStructure::Rectangular,
        1.0,
        Par::rayon(0),
    );
    out
}

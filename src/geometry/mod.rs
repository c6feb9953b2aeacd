//! The geometry toolkit: isotropy and anisotropy measures, the variance spectrum, clusters and
//! local isotropy, local intrinsic dimension, and the isotropy-enhancement methods. Linear algebra
//! on faer in f64; matrices come in and go out as f32 [`crate::matrix::Matrix`].
//!
//! - [`isotropy`]: I(W) (Mu & Viswanath 2018), both sign conventions;
//! - [`similarity`]: mean cosine (Ethayarajh 2019), rogue dimensions (Timkey & van Schijndel
//!   2021), self-similarity and intra-sentence similarity (Ethayarajh 2019);
//! - [`spectrum`]: PCA, explained variance, effective dimension, dominant directions, IsoScore
//!   (Rudman et al. 2022);
//! - [`cluster`]: k-means, silhouette, choice of k, per-cluster isotropy (Cai et al. 2021);
//! - [`lid`]: local intrinsic dimension (Levina & Bickel 2004);
//! - [`enhance`]: zero-mean, clustering + zero-mean, global (all-but-the-top) and cluster-based
//!   enhancement (Rajaee & Pilehvar 2021);
//! - [`structure`]: what clusters hold, mutual information with token classes, PCA views;
//! - [`table`]: all of them as one table per extraction, one row per layer.

pub mod cluster;
pub mod enhance;
pub mod isotropy;
pub mod lid;
pub mod similarity;
pub mod spectrum;
pub mod structure;
pub mod table;

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, Mat, MatRef, Par};

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

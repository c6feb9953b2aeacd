//! Isotropy measures: Mu & Viswanath's I(W) and the mean cosine similarity of random token pairs.

use crate::extract::Embeddings;
use crate::matrix::Matrix;
use anyhow::{bail, Result};
use faer::{Mat, Side};
use polars::prelude::{Column, DataFrame};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// I(W) of a matrix, with the pieces it is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Isotropy {
    /// I(W) = min F(u) / max F(u) over the eigenvectors u of WᵀW, each oriented by the sign
    /// convention of [`isotropy`].
    pub value: f64,
    /// The variant that takes both u and −u for every eigenvector (independent of signs).
    pub both_signs: f64,
    /// log min F(u) (same orientation as `value`).
    pub log_min_f: f64,
    /// log max F(u) (same orientation as `value`).
    pub log_max_f: f64,
}

/// log Σ exp(x), stable for any finite input.
fn log_sum_exp(xs: &[f64], sign: f64) -> f64 {
    let max = xs
        .iter()
        .map(|&x| sign * x)
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + xs.iter().map(|&x| (sign * x - max).exp()).sum::<f64>().ln()
}

/// The isotropy measure I(W) of Mu & Viswanath (2018, "All-but-the-Top"), as Rajaee & Pilehvar
/// (2021) compute it: with the eigenvectors u of WᵀW (W not centred, one row per token),
/// F(u) = Σᵢ exp(uᵀwᵢ) and I(W) = min_u F(u) / max_u F(u), between 0 and 1 (1 = isotropic).
///
/// Computed in f64 and in log space (log-sum-exp), so no real input overflows.
///
/// **Sign convention.** An eigenvector's sign is arbitrary, and F(u) ≠ F(−u). Each eigenvector is
/// oriented so that its component of largest magnitude is positive (the first such component on
/// ties), which makes the value reproducible across libraries; the reference script applies the
/// same rule to numpy's eigenvectors. [`Isotropy::both_signs`] takes F over ±u for every
/// eigenvector and does not depend on any convention.
///
/// Directions along which W has no variance at all (all-MiniLM-L6-v2's last layer has three always
/// zero dimensions) give uᵀwᵢ = 0 and F(u) = N: they are handled like any other, with no division.
pub fn isotropy(w: &Matrix) -> Result<Isotropy> {
    w.check_finite("I(W)")?;
    let m = w.to_faer();
    let gram = m.transpose() * &m;
    let eig = gram
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| anyhow::anyhow!("I(W): eigendecomposition of WᵀW failed: {e:?}"))?;
    let mut u: Mat<f64> = eig.U().to_owned();
    let d = u.ncols();
    for j in 0..d {
        let col = u.col(j);
        let mut best = 0;
        for i in 0..col.nrows() {
            if col[i].abs() > col[best].abs() {
                best = i;
            }
        }
        if col[best] < 0.0 {
            for i in 0..u.nrows() {
                u[(i, j)] = -u[(i, j)];
            }
        }
    }
    let z = &m * &u;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut lo2, mut hi2) = (f64::INFINITY, f64::NEG_INFINITY);
    for j in 0..d {
        let col: Vec<f64> = z.col(j).iter().copied().collect();
        let plus = log_sum_exp(&col, 1.0);
        let minus = log_sum_exp(&col, -1.0);
        lo = lo.min(plus);
        hi = hi.max(plus);
        lo2 = lo2.min(plus.min(minus));
        hi2 = hi2.max(plus.max(minus));
    }
    Ok(Isotropy {
        value: (lo - hi).exp(),
        both_signs: (lo2 - hi2).exp(),
        log_min_f: lo,
        log_max_f: hi,
    })
}

/// Mean cosine similarity of `pairs` random pairs of distinct rows, drawn with `seed`
/// (Ethayarajh 2019's anisotropy baseline). Pairs with a zero-norm row are skipped; fails if no
/// pair is left.
pub fn mean_cosine(w: &Matrix, pairs: usize, seed: u64) -> Result<f64> {
    w.check_finite("mean cosine")?;
    if w.rows() < 2 {
        bail!(
            "mean cosine: needs at least 2 rows, the matrix has {}",
            w.rows()
        );
    }
    if pairs == 0 {
        bail!("mean cosine: pairs must be at least 1");
    }
    let norms: Vec<f64> = (0..w.rows())
        .map(|i| {
            w.row(i)
                .iter()
                .map(|&x| f64::from(x) * f64::from(x))
                .sum::<f64>()
                .sqrt()
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut sum, mut used) = (0.0, 0usize);
    for _ in 0..pairs {
        let i = rng.random_range(0..w.rows());
        let mut j = rng.random_range(0..w.rows() - 1);
        if j >= i {
            j += 1;
        }
        if norms[i] == 0.0 || norms[j] == 0.0 {
            continue;
        }
        let dot: f64 = w
            .row(i)
            .iter()
            .zip(w.row(j))
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        sum += dot / (norms[i] * norms[j]);
        used += 1;
    }
    if used == 0 {
        bail!("mean cosine: every sampled pair had a zero vector");
    }
    Ok(sum / used as f64)
}

/// Options of [`layer_table`].
#[derive(Debug, Clone, Copy)]
pub struct MeasureOptions {
    /// Compute I(W) (both sign conventions).
    pub isotropy: bool,
    /// Compute the mean cosine of random pairs.
    pub cosine: bool,
    /// Random pairs for the mean cosine.
    pub pairs: usize,
    /// Seed for the pairs.
    pub seed: u64,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        Self {
            isotropy: true,
            cosine: true,
            pairs: 10_000,
            seed: 0,
        }
    }
}

/// One row per extracted layer: `layer`, `tokens`, and as asked `isotropy` (I(W)),
/// `isotropy_both_signs`, `mean_cosine`.
pub fn layer_table(emb: &Embeddings, opts: &MeasureOptions) -> Result<DataFrame> {
    let mut layer = Vec::new();
    let mut tokens = Vec::new();
    let mut iso = Vec::new();
    let mut iso2 = Vec::new();
    let mut cos = Vec::new();
    for (&l, m) in emb.layers.iter().zip(&emb.matrices) {
        layer.push(l as u32);
        tokens.push(m.rows() as u64);
        if opts.isotropy {
            let i = isotropy(m)?;
            iso.push(i.value);
            iso2.push(i.both_signs);
        }
        if opts.cosine {
            cos.push(mean_cosine(m, opts.pairs, opts.seed)?);
        }
    }
    let mut cols = vec![
        Column::new("layer".into(), layer),
        Column::new("tokens".into(), tokens),
    ];
    if opts.isotropy {
        cols.push(Column::new("isotropy".into(), iso));
        cols.push(Column::new("isotropy_both_signs".into(), iso2));
    }
    if opts.cosine {
        cols.push(Column::new("mean_cosine".into(), cos));
    }
    Ok(DataFrame::new_infer_height(cols)?)
}

/// [`layer_table`] for several models on the same data, stacked by [`crate::display::by_model`].
pub fn compare_layers(models: &[(&str, &Embeddings)], opts: &MeasureOptions) -> Result<DataFrame> {
    let tables = models
        .iter()
        .map(|(name, emb)| Ok((*name, layer_table(emb, opts)?)))
        .collect::<Result<Vec<_>>>()?;
    crate::display::by_model(&tables)
}

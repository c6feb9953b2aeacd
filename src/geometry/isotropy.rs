//! Mu & Viswanath's isotropy measure I(W), as Rajaee & Pilehvar (2021) compute it.

use crate::geometry::{gram_lower, orientation};
use crate::util::matrix::Matrix;
use anyhow::Result;
use faer::{Mat, MatRef, Side};

/// I(W) of a matrix, with the pieces it is made of.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Isotropy {
    /// I(W) = min F(u) / max F(u) over the eigenvectors u of WᵀW, each oriented by the sign
    /// convention of [`isotropy`].
    pub value: f64,
    /// The variant that takes both u and −u for every eigenvector (independent of signs): the
    /// least F over all 2d of them against the largest, a lower bound on any choice of one sign
    /// per eigenvector (it equals `sign_min` unless both extremes belong to one eigenvector).
    pub both_signs: f64,
    /// The lowest value any choice of one sign per eigenvector gives.
    pub sign_min: f64,
    /// The highest value any choice of one sign per eigenvector gives. The authors' code takes
    /// whatever sign its eigensolver returns, so their I(W) of this matrix can be anything in
    /// `sign_min..=sign_max`: the width of that range is how much the arbitrary sign moves it.
    pub sign_max: f64,
    /// log min F(u) (same orientation as `value`).
    pub log_min_f: f64,
    /// log max F(u) (same orientation as `value`).
    pub log_max_f: f64,
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
/// **Dead coordinates.** A coordinate that is zero in every row (all-MiniLM-L6-v2's last layer has
/// three, below 1e-7: its final LayerNorm weights are next to 0 there) is an eigenvector with
/// F(u) = N. When
/// every other F(u) is above N, that pins min F, and I(W) = N / max F says more about the dead
/// coordinates than about the geometry. [`dead_coordinates`] finds them; the I(W) of the matrix
/// without them (`Matrix::without_columns`) is the value the rest of the space has.
///
/// ```
/// use isotropy_lab::geometry::isotropy::isotropy;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Four points spread evenly around the origin: F(u) is nearly the same along every axis.
/// let even = Matrix::new(4, 2, vec![1.0, 0.0, -1.0, 0.0, 0.0, 1.0, 0.0, -1.0])?;
/// assert!(isotropy(&even)?.value > 0.98);
/// // The same cross moved far along x: one direction dominates, I(W) collapses.
/// let shifted = Matrix::new(4, 2, vec![6.0, 0.0, 4.0, 0.0, 5.0, 1.0, 5.0, -1.0])?;
/// let iso = isotropy(&shifted)?;
/// assert!(iso.value < 0.01);
/// assert!(iso.both_signs <= iso.sign_min);
/// assert!(iso.sign_min <= iso.value && iso.value <= iso.sign_max);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn isotropy(w: &Matrix) -> Result<Isotropy> {
    w.check_finite("I(W)")?;
    let rows: Vec<f64> = w.data().iter().map(|&v| f64::from(v)).collect();
    isotropy_f64(MatRef::from_row_major_slice(&rows, w.rows(), w.cols()))
}

/// [`isotropy`] of an f64 matrix with finite values (rows = points).
pub(crate) fn isotropy_f64(m: MatRef<'_, f64>) -> Result<Isotropy> {
    let gram = gram_lower(m);
    let eig = gram
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| anyhow::anyhow!("I(W): eigendecomposition of WᵀW failed: {e:?}"))?;
    let mut u: Mat<f64> = eig.U().to_owned();
    let d = u.ncols();
    for j in 0..d {
        if orientation(u.col(j)) < 0.0 {
            for i in 0..u.nrows() {
                u[(i, j)] = -u[(i, j)];
            }
        }
    }
    // zᵀ = Uᵀ Wᵀ (d × n, one column per row of W): then every pass below reads memory in order.
    let zt = u.transpose() * m.transpose();
    Ok(Isotropy::from_log_f(&log_f_both_signs(zt.as_ref())))
}

/// (log F(u), log F(−u)) of every direction u, from the projections of the rows on them: `zt` has
/// one row per direction and one column per point (zᵀ = Uᵀ Wᵀ). In log space (log-sum-exp).
pub(crate) fn log_f_both_signs(zt: MatRef<'_, f64>) -> Vec<(f64, f64)> {
    let (d, n) = (zt.nrows(), zt.ncols());
    let (mut max, mut min) = (vec![f64::NEG_INFINITY; d], vec![f64::INFINITY; d]);
    for i in 0..n {
        for (j, &v) in zt.col(i).iter().enumerate() {
            max[j] = max[j].max(v);
            min[j] = min[j].min(v);
        }
    }
    // log F(u) = max + log Σ exp(z − max); log F(−u) = −min + log Σ exp(min − z).
    let (mut plus, mut minus) = (vec![0.0f64; d], vec![0.0f64; d]);
    for i in 0..n {
        for (j, &v) in zt.col(i).iter().enumerate() {
            plus[j] += (v - max[j]).exp();
            minus[j] += (min[j] - v).exp();
        }
    }
    (0..d)
        .map(|j| (max[j] + plus[j].ln(), -min[j] + minus[j].ln()))
        .collect()
}

impl Isotropy {
    /// I(W) from (log F(u), log F(−u)) of every eigenvector u of WᵀW, each oriented by the sign
    /// convention of [`isotropy`].
    pub(crate) fn from_log_f(log_f: &[(f64, f64)]) -> Isotropy {
        let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut lo2, mut hi2) = (f64::INFINITY, f64::NEG_INFINITY);
        // Per eigenvector, log F over its two signs, smaller first.
        let mut pairs = Vec::with_capacity(log_f.len());
        for &(p, q) in log_f {
            lo = lo.min(p);
            hi = hi.max(p);
            lo2 = lo2.min(p.min(q));
            hi2 = hi2.max(p.max(q));
            pairs.push((p.min(q), p.max(q)));
        }
        Isotropy {
            value: (lo - hi).exp(),
            both_signs: (lo2 - hi2).exp(),
            sign_min: worst_sign_choice(&pairs).exp(),
            sign_max: best_sign_choice(&pairs).exp(),
            log_min_f: lo,
            log_max_f: hi,
        }
    }
}

/// The least log(min F / max F) over every choice of one value per pair (smaller first): the
/// smallest value of one eigenvector against the largest of another (with one eigenvector, its
/// only choices).
fn worst_sign_choice(pairs: &[(f64, f64)]) -> f64 {
    if pairs.len() < 2 {
        return 0.0;
    }
    let mut worst = f64::INFINITY;
    // The two least smaller values and the two largest larger values, with their eigenvectors.
    let mut low: Vec<(f64, usize)> = pairs.iter().enumerate().map(|(j, p)| (p.0, j)).collect();
    let mut high: Vec<(f64, usize)> = pairs.iter().enumerate().map(|(j, p)| (p.1, j)).collect();
    low.sort_by(|a, b| a.0.total_cmp(&b.0));
    high.sort_by(|a, b| b.0.total_cmp(&a.0));
    for &(a, j) in &low[..2] {
        for &(b, k) in &high[..2] {
            if j != k {
                worst = worst.min(a - b);
            }
        }
    }
    worst
}

/// The largest log(min F / max F) over every choice of one value per pair (one sign per
/// eigenvector). For each candidate floor L (any of the values), each eigenvector takes its
/// smallest value at or above L, which keeps the maximum as low as that floor allows; the best
/// floor wins. Quadratic in the dimension, which is at most a few thousand.
fn best_sign_choice(pairs: &[(f64, f64)]) -> f64 {
    let mut best = f64::NEG_INFINITY;
    for &floor in pairs.iter().flat_map(|(a, b)| [a, b]) {
        let (mut low, mut high) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut feasible = true;
        for &(a, b) in pairs {
            let v = if a >= floor {
                a
            } else if b >= floor {
                b
            } else {
                feasible = false;
                break;
            };
            low = low.min(v);
            high = high.max(v);
        }
        if feasible {
            best = best.max(low - high);
        }
    }
    best
}

/// A coordinate is dead when its largest magnitude is below this share of the matrix's largest
/// magnitude. all-MiniLM-L6-v2's dead coordinates peak at 1e-32 and 1e-7 against values near 1;
/// its weakest live coordinate peaks near 0.8.
pub const DEAD_RELATIVE: f32 = 1e-6;

/// The coordinates (columns) of `w` that are zero, or negligible ([`DEAD_RELATIVE`]), in every
/// row: directions that carry no information and pin F(u) ≈ N in [`isotropy`].
///
/// ```
/// use isotropy_lab::geometry::isotropy::{dead_coordinates, isotropy};
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(3, 3, vec![1.0, 0.0, 2.0, -1.0, 0.0, 0.5, 0.3, 0.0, -2.0])?;
/// assert_eq!(dead_coordinates(&w), vec![1]);
/// // I(W) of the live coordinates is the I(W) of the matrix without the dead one.
/// let live = w.without_columns(&dead_coordinates(&w));
/// assert_eq!(live.cols(), 2);
/// assert!(isotropy(&live)?.value > 0.0);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn dead_coordinates(w: &Matrix) -> Vec<usize> {
    let mut peak = vec![0f32; w.cols()];
    for i in 0..w.rows() {
        for (p, &x) in peak.iter_mut().zip(w.row(i)) {
            *p = p.max(x.abs());
        }
    }
    let floor = DEAD_RELATIVE * peak.iter().copied().fold(0.0, f32::max);
    peak.iter()
        .enumerate()
        .filter_map(|(j, &p)| (p <= floor).then_some(j))
        .collect()
}

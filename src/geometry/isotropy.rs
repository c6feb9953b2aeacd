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
    /// The variant that takes both u and −u for every eigenvector (independent of signs).
    pub both_signs: f64,
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
/// Directions along which W has no variance at all (all-MiniLM-L6-v2's last layer has three always
/// zero dimensions) give uᵀwᵢ = 0 and F(u) = N: they are handled like any other, with no division.
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
/// assert!(iso.both_signs <= iso.value);
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
    let n = zt.ncols();
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
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut lo2, mut hi2) = (f64::INFINITY, f64::NEG_INFINITY);
    for j in 0..d {
        let p = max[j] + plus[j].ln();
        let q = -min[j] + minus[j].ln();
        lo = lo.min(p);
        hi = hi.max(p);
        lo2 = lo2.min(p.min(q));
        hi2 = hi2.max(p.max(q));
    }
    Ok(Isotropy {
        value: (lo - hi).exp(),
        both_signs: (lo2 - hi2).exp(),
        log_min_f: lo,
        log_max_f: hi,
    })
}

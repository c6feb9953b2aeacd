//! Mu & Viswanath's isotropy measure I(W), as Rajaee & Pilehvar (2021) compute it.

use crate::geometry::{gram_lower, orientation, rows_view, RowBlocks, BLOCK_ROWS};
use crate::util::exp::exp_f64_nonpositive;
use crate::util::matrix::Matrix;
use anyhow::Result;
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par, Side};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

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
    isotropy_of(w)
}

/// [`isotropy`] of rows with finite values: two passes over them, one for WᵀW and one for the
/// projections on its eigenvectors.
pub(crate) fn isotropy_of(m: &impl RowBlocks) -> Result<Isotropy> {
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
    Ok(Isotropy::from_log_f(&log_f_both_signs(m, u.as_ref())))
}

/// (log F(u), log F(−u)) of every column u of `u` (d × k) over the rows wᵢ of `x` (n × d), with
/// F(u) = Σᵢ exp(uᵀwᵢ): log-sum-exp of the projections z = x·u.
///
/// One pass over `x`, a block of [`BLOCK_ROWS`] rows at a time, blocks in parallel: a block's
/// projections are one product into a buffer that stays in cache, and each direction's max, min
/// and sums of exponentials are read off it at once ([`crate::util::exp`], vectorised for the widest
/// instruction set the CPU has), so z (n × k) is never written out. The blocks' partial sums are
/// merged in block order, so the result does not depend on the number of threads.
pub(crate) fn log_f_both_signs(x: &impl RowBlocks, u: MatRef<'_, f64>) -> Vec<(f64, f64)> {
    let (n, d, k) = (x.nrows(), x.ncols(), u.ncols());
    let blocks: Vec<Vec<LogSumExp>> = (0..n.div_ceil(BLOCK_ROWS))
        .into_par_iter()
        .map_init(
            || (vec![0f64; BLOCK_ROWS * d], Mat::<f64>::zeros(BLOCK_ROWS, k)),
            |(rows, z), b| {
                let start = b * BLOCK_ROWS;
                let len = BLOCK_ROWS.min(n - start);
                x.fill(start, &mut rows[..len * d]);
                let mut z = z.as_mut().subrows_mut(0, len);
                let rows = rows_view(rows, len, d);
                matmul(z.as_mut(), Accum::Replace, rows, u, 1.0, Par::Seq);
                Arch::new().dispatch(BlockSums { z: z.as_ref() })
            },
        )
        .collect();
    let mut total = vec![LogSumExp::EMPTY; k];
    for block in blocks {
        for (t, b) in total.iter_mut().zip(block) {
            *t = t.merge(b);
        }
    }
    total.iter().map(LogSumExp::logs).collect()
}

/// Log-sum-exp of one direction's projections over some rows, both signs: Σ exp(z − max) and
/// Σ exp(min − z), with the max and min they are taken against.
#[derive(Debug, Clone, Copy)]
struct LogSumExp {
    max: f64,
    plus: f64,
    min: f64,
    minus: f64,
}

impl LogSumExp {
    /// No rows yet.
    const EMPTY: LogSumExp = LogSumExp {
        max: f64::NEG_INFINITY,
        plus: 0.0,
        min: f64::INFINITY,
        minus: 0.0,
    };

    /// The sums over the rows of `self` and `other` together.
    fn merge(self, other: LogSumExp) -> LogSumExp {
        let (max, min) = (self.max.max(other.max), self.min.min(other.min));
        let rescale = |sum: f64, by: f64| if sum == 0.0 { 0.0 } else { sum * by.exp() };
        LogSumExp {
            max,
            plus: rescale(self.plus, self.max - max) + rescale(other.plus, other.max - max),
            min,
            minus: rescale(self.minus, min - self.min) + rescale(other.minus, min - other.min),
        }
    }

    /// (log F(u), log F(−u)) = (max + log Σ exp(z − max), −min + log Σ exp(min − z)).
    fn logs(&self) -> (f64, f64) {
        (self.max + self.plus.ln(), -self.min + self.minus.ln())
    }
}

/// [`LogSumExp`] of every column of a block of projections (rows × directions, column-major).
struct BlockSums<'a> {
    z: MatRef<'a, f64>,
}

impl WithSimd for BlockSums<'_> {
    type Output = Vec<LogSumExp>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> Vec<LogSumExp> {
        // A plain loop: an iterator adapter's `fold` would be compiled outside the dispatch, for
        // the baseline instruction set.
        let mut sums = Vec::with_capacity(self.z.ncols());
        for j in 0..self.z.ncols() {
            let col = self.z.col(j).try_as_col_major();
            sums.push(column_sums(
                col.expect("a block is column-major").as_slice(),
            ));
        }
        sums
    }
}

/// Lanes of the reductions in [`column_sums`]: eight independent accumulators, which the
/// compiler keeps in one AVX-512 register (or two AVX2 ones).
const LANES: usize = 8;

/// [`LogSumExp`] of one column's values, in a fixed order whatever the instruction set. Loops over
/// fixed-size chunks only (no bounds check inside), so that the compiler vectorises them.
#[inline(always)]
fn column_sums(z: &[f64]) -> LogSumExp {
    let (chunks, tail) = z.as_chunks::<LANES>();
    let (mut hi, mut lo) = ([f64::NEG_INFINITY; LANES], [f64::INFINITY; LANES]);
    for c in chunks {
        for l in 0..LANES {
            hi[l] = hi[l].max(c[l]);
            lo[l] = lo[l].min(c[l]);
        }
    }
    let (mut max, mut min) = (f64::NEG_INFINITY, f64::INFINITY);
    for l in 0..LANES {
        max = max.max(hi[l]);
        min = min.min(lo[l]);
    }
    for &v in tail {
        max = max.max(v);
        min = min.min(v);
    }
    let (mut plus, mut minus) = ([0.0f64; LANES], [0.0f64; LANES]);
    for c in chunks {
        for l in 0..LANES {
            plus[l] += exp_f64_nonpositive(c[l] - max);
            minus[l] += exp_f64_nonpositive(min - c[l]);
        }
    }
    let (mut plus_sum, mut minus_sum) = (0.0, 0.0);
    for l in 0..LANES {
        plus_sum += plus[l];
        minus_sum += minus[l];
    }
    for &v in tail {
        plus_sum += exp_f64_nonpositive(v - max);
        minus_sum += exp_f64_nonpositive(min - v);
    }
    LogSumExp {
        max,
        plus: plus_sum,
        min,
        minus: minus_sum,
    }
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

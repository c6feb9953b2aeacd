//! Linear probes: L2-regularised multinomial logistic regression, the classifier the paper's
//! follow-up analyses use to ask what a set of directions encodes. The objective is
//! scikit-learn's `LogisticRegression(C=c)`: C · Σᵢ cross-entropy(xᵢ) + ½‖W‖² (the intercepts are
//! not penalised), minimised with L-BFGS in f64.

use crate::util::matrix::Matrix;
use anyhow::{bail, Result};
use faer::{Mat, MatRef};

/// L-BFGS: the number of (step, gradient change) pairs kept.
const MEMORY: usize = 10;
/// L-BFGS: the sufficient-decrease constant of the Armijo line search (Nocedal & Wright's c₁).
const ARMIJO: f64 = 1e-4;
/// L-BFGS: stop when the objective changes by less than this, relative to its size.
const F_TOLERANCE: f64 = 1e-15;
/// L-BFGS: the smallest step, gradient norm and curvature (sᵀy) treated as nonzero.
const TINY: f64 = 1e-12;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(u, v)| u * v).sum()
}

/// L-BFGS's two-loop recursion: an approximation of H⁻¹g from the kept steps `s` and gradient
/// changes `y` (oldest first); the gradient scaled to unit length when none are kept yet.
fn lbfgs_direction(g: &[f64], s_hist: &[Vec<f64>], y_hist: &[Vec<f64>]) -> Vec<f64> {
    let mut q = g.to_vec();
    let mut alphas = Vec::with_capacity(s_hist.len());
    for (s, yv) in s_hist.iter().zip(y_hist).rev() {
        let a = dot(s, &q) / dot(yv, s);
        q.iter_mut().zip(yv).for_each(|(qi, yi)| *qi -= a * yi);
        alphas.push(a);
    }
    if let (Some(s), Some(yv)) = (s_hist.last(), y_hist.last()) {
        let gamma = dot(s, yv) / dot(yv, yv);
        q.iter_mut().for_each(|qi| *qi *= gamma);
    } else {
        let norm = dot(g, g).sqrt().max(TINY);
        q.iter_mut().for_each(|qi| *qi /= norm);
    }
    for ((s, yv), a) in s_hist.iter().zip(y_hist).zip(alphas.iter().rev()) {
        let b = dot(yv, &q) / dot(yv, s);
        q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
    }
    q
}

/// Options of [`LogisticRegression::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProbeOptions {
    /// Inverse regularisation strength (scikit-learn's `C`).
    pub c: f64,
    /// Most L-BFGS iterations.
    pub max_iter: usize,
    /// Stop when the largest gradient entry falls below `tol`.
    pub tol: f64,
}

impl Default for ProbeOptions {
    /// C = 1, 500 iterations, tol 1e-6.
    fn default() -> Self {
        Self {
            c: 1.0,
            max_iter: 500,
            tol: 1e-6,
        }
    }
}

/// A fitted logistic regression: multinomial (softmax) for three classes or more; for two, the
/// binary model with one weight vector scoring the second class against the first (score 0), as
/// scikit-learn fits it.
///
/// ```
/// use isotropy_lab::geometry::logistic::{LogisticRegression, ProbeOptions};
/// use isotropy_lab::util::matrix::Matrix;
///
/// let x = Matrix::new(6, 1, vec![-3.0, -2.0, -1.0, 1.0, 2.0, 3.0])?;
/// let y = [0, 0, 0, 1, 1, 1];
/// let probe = LogisticRegression::fit(&x, &y, &ProbeOptions::default())?;
/// assert_eq!(probe.predict(&x)?, y.to_vec());
/// assert_eq!(probe.accuracy(&x, &y)?, 1.0);
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LogisticRegression {
    /// The class labels, ascending.
    pub classes: Vec<i64>,
    /// d × m weights, row-major, m = 1 for two classes (scoring `classes[1]`), else one column per
    /// class.
    pub weights: Vec<f64>,
    /// One intercept per weight column.
    pub bias: Vec<f64>,
    /// L-BFGS iterations used.
    pub iterations: usize,
}

/// Weight columns for `k` classes: one for a binary model, else one per class.
fn columns(k: usize) -> usize {
    if k == 2 {
        1
    } else {
        k
    }
}

/// The class scores of one row: with one weight column (binary), [0, w·x + b].
fn scores(row: &[f32], w: &[f64], b: &[f64], k: usize, z: &mut [f64]) {
    let m = columns(k);
    let (fixed, free) = z.split_at_mut(k - m);
    fixed.iter_mut().for_each(|v| *v = 0.0);
    free.copy_from_slice(b);
    for (j, &v) in row.iter().enumerate() {
        let v = f64::from(v);
        for (zc, wc) in free.iter_mut().zip(&w[j * m..(j + 1) * m]) {
            *zc += v * wc;
        }
    }
}

/// Loss and gradient of the objective at parameters `p` (weights d×m row-major, then m biases),
/// for rows `x` (n × d): the scores X·W and the weight gradient Xᵀ·∂Z as two matrix products.
fn loss_grad(x: MatRef<'_, f64>, y: &[usize], k: usize, c: f64, p: &[f64], g: &mut [f64]) -> f64 {
    let (n, d, m) = (x.nrows(), x.ncols(), columns(k));
    let (w, b) = p.split_at(d * m);
    let wm = MatRef::from_row_major_slice(w, d, m);
    let z = x * wm;
    let mut dz = Mat::<f64>::zeros(n, m);
    let mut loss = 0.0;
    let mut row = vec![0.0f64; k];
    for (i, &yi) in y.iter().enumerate() {
        // With one weight column (binary) the first class scores 0.
        row[..k - m].iter_mut().for_each(|v| *v = 0.0);
        for j in 0..m {
            row[k - m + j] = z[(i, j)] + b[j];
        }
        let top = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let s: f64 = row.iter().map(|v| (v - top).exp()).sum();
        loss += c * (top + s.ln() - row[yi]);
        for j in 0..m {
            let class = k - m + j;
            let target = if class == yi { 1.0 } else { 0.0 };
            dz[(i, j)] = c * ((row[class] - top).exp() / s - target);
        }
    }
    let gw = x.transpose() * &dz;
    let (gw_out, gb_out) = g.split_at_mut(d * m);
    for r in 0..d {
        for j in 0..m {
            gw_out[r * m + j] = gw[(r, j)] + wm[(r, j)];
        }
    }
    for (j, gb) in gb_out.iter_mut().enumerate() {
        *gb = (0..n).map(|i| dz[(i, j)]).sum();
    }
    loss + 0.5 * w.iter().map(|v| v * v).sum::<f64>()
}

impl LogisticRegression {
    /// Fits the probe on rows `x` with integer labels `y` (at least two distinct). Fails on
    /// empty, mismatched or non-finite input, or a non-positive C.
    // Long: the L-BFGS loop (direction, line search, history update) keeps its state in locals;
    // the direction is `lbfgs_direction`, the objective `loss_grad`.
    pub fn fit(x: &Matrix, y: &[i64], opts: &ProbeOptions) -> Result<LogisticRegression> {
        x.check_finite("logistic regression")?;
        if y.len() != x.rows() {
            bail!(
                "logistic regression: {} labels for {} rows",
                y.len(),
                x.rows()
            );
        }
        if !(opts.c > 0.0 && opts.c.is_finite()) {
            bail!("logistic regression: C must be positive, got {}", opts.c);
        }
        let mut classes = y.to_vec();
        classes.sort_unstable();
        classes.dedup();
        if classes.len() < 2 {
            bail!(
                "logistic regression: needs at least 2 classes, the labels have {}",
                classes.len()
            );
        }
        let k = classes.len();
        let yi: Vec<usize> = y
            .iter()
            .map(|v| classes.binary_search(v).expect("listed"))
            .collect();
        let n = (x.cols() + 1) * columns(k);
        let mut p = vec![0.0f64; n];
        let mut g = vec![0.0f64; n];
        let xf = x.to_faer();
        let mut f = loss_grad(xf.as_ref(), &yi, k, opts.c, &p, &mut g);
        // L-BFGS (two-loop recursion) with a backtracking Armijo line search.
        let mut s_hist: Vec<Vec<f64>> = Vec::new();
        let mut y_hist: Vec<Vec<f64>> = Vec::new();
        let mut iterations = 0;
        for it in 0..opts.max_iter {
            if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < opts.tol {
                break;
            }
            iterations = it + 1;
            let q = lbfgs_direction(&g, &s_hist, &y_hist);
            // q approximates H⁻¹g: step along −q.
            let slope = -dot(&g, &q);
            if slope >= 0.0 {
                s_hist.clear();
                y_hist.clear();
                continue;
            }
            let mut step = 1.0;
            let mut new_p = vec![0.0; n];
            let mut new_g = vec![0.0; n];
            let mut new_f;
            loop {
                new_p
                    .iter_mut()
                    .zip(&p)
                    .zip(&q)
                    .for_each(|((np, pv), qv)| *np = pv - step * qv);
                new_f = loss_grad(xf.as_ref(), &yi, k, opts.c, &new_p, &mut new_g);
                if new_f <= f + ARMIJO * step * slope || step < TINY {
                    break;
                }
                step *= 0.5;
            }
            let s: Vec<f64> = new_p.iter().zip(&p).map(|(a, b)| a - b).collect();
            let yv: Vec<f64> = new_g.iter().zip(&g).map(|(a, b)| a - b).collect();
            let converged = (f - new_f).abs() <= F_TOLERANCE * f.abs().max(1.0);
            if dot(&s, &yv) > TINY {
                s_hist.push(s);
                y_hist.push(yv);
                if s_hist.len() > MEMORY {
                    s_hist.remove(0);
                    y_hist.remove(0);
                }
            }
            p = new_p;
            g = new_g;
            f = new_f;
            if converged {
                break;
            }
        }
        let dm = x.cols() * columns(k);
        Ok(LogisticRegression {
            classes,
            weights: p[..dm].to_vec(),
            bias: p[dm..].to_vec(),
            iterations,
        })
    }

    /// The class scores of every row (rows × classes, row-major; for a binary model the first
    /// class scores 0).
    pub fn decision(&self, x: &Matrix) -> Result<Vec<f64>> {
        let k = self.classes.len();
        let m = columns(k);
        if x.cols() * m != self.weights.len() {
            bail!(
                "logistic regression: fitted on {} dimensions, given {}",
                self.weights.len() / m,
                x.cols()
            );
        }
        let mut out = vec![0.0; x.rows() * k];
        for (i, z) in out.chunks_exact_mut(k).enumerate() {
            scores(x.row(i), &self.weights, &self.bias, k, z);
        }
        Ok(out)
    }

    /// The predicted class of every row.
    pub fn predict(&self, x: &Matrix) -> Result<Vec<i64>> {
        let k = self.classes.len();
        Ok(self
            .decision(x)?
            .chunks_exact(k)
            .map(|z| {
                let best = (0..k).fold(0, |b, c| if z[c] > z[b] { c } else { b });
                self.classes[best]
            })
            .collect())
    }

    /// The share of rows whose prediction equals `y`.
    pub fn accuracy(&self, x: &Matrix, y: &[i64]) -> Result<f64> {
        if y.len() != x.rows() {
            bail!("accuracy: {} labels for {} rows", y.len(), x.rows());
        }
        let hits = self
            .predict(x)?
            .iter()
            .zip(y)
            .filter(|(a, b)| a == b)
            .count();
        Ok(hits as f64 / y.len().max(1) as f64)
    }
}

/// Standardises the columns of `train` and `dev` with `train`'s means and standard deviations
/// (constant columns are left centred).
///
/// ```
/// use isotropy_lab::geometry::logistic::standardise;
///
/// let (train, dev) = standardise(&[vec![1.0], vec![3.0]], &[vec![5.0]])?;
/// // train's mean 2 and standard deviation 1: train becomes ±1, dev (5 − 2) / 1 = 3.
/// assert_eq!(train.data(), &[-1.0, 1.0]);
/// assert_eq!(dev.data(), &[3.0]);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn standardise(train: &[Vec<f64>], dev: &[Vec<f64>]) -> Result<(Matrix, Matrix)> {
    let d = train.first().map_or(0, Vec::len);
    let n = train.len() as f64;
    let mut mean = vec![0.0; d];
    for r in train {
        mean.iter_mut().zip(r).for_each(|(m, v)| *m += v / n);
    }
    let mut sd = vec![0.0; d];
    for r in train {
        sd.iter_mut()
            .zip(r)
            .zip(&mean)
            .for_each(|((s, v), m)| *s += (v - m).powi(2) / n);
    }
    let sd: Vec<f64> = sd
        .iter()
        .map(|s| if *s > 0.0 { s.sqrt() } else { 1.0 })
        .collect();
    let to = |rows: &[Vec<f64>]| -> Result<Matrix> {
        let data = rows
            .iter()
            .flat_map(|r| {
                r.iter()
                    .zip(&mean)
                    .zip(&sd)
                    .map(|((v, m), s)| ((v - m) / s) as f32)
            })
            .collect();
        Matrix::new(rows.len(), d, data)
    };
    Ok((to(train)?, to(dev)?))
}

//! Clusters of a point cloud and their local isotropy: k-means (k-means++ seeding, Lloyd
//! iterations), the silhouette score, the choice of k by silhouette, and per-cluster I(W) and mean
//! cosine (Cai et al. 2021, "Isotropy in the Contextual Embedding Space: Clusters and Manifolds").
//!
//! Distances use ‖x‖² + ‖c‖² − 2x·c with the products on faer (f64), as scikit-learn does.

use crate::geometry::isotropy::isotropy_of;
use crate::geometry::similarity::mean_cosine;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_json, Key};
use crate::util::sample::sorted_sample;
use anyhow::{bail, Result};
use faer::{Mat, MatRef};
use pulp::{Arch, Simd, WithSimd};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How [`kmeans`] picks its first centres.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KMeansInit {
    /// Greedy k-means++ (scikit-learn's default).
    PlusPlus,
    /// k distinct rows drawn uniformly: scipy's `kmeans2(minit="points")`, which the authors'
    /// code uses (unseeded there, seeded here). The iterations are this crate's: they stop early
    /// once no label changes (or the centres move less than `tol`), and an empty cluster's centre
    /// moves to the row farthest from its own centre, where scipy keeps the old centre.
    Points,
}

/// Options of [`kmeans`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansOptions {
    /// Number of clusters.
    pub k: usize,
    /// How the first centres are picked.
    pub init: KMeansInit,
    /// Independent seedings; the run with the lowest inertia is kept.
    pub n_init: usize,
    /// Most Lloyd iterations per run.
    pub max_iter: usize,
    /// Stop when the centres move less than `tol` × the mean per-dimension variance (squared,
    /// summed over centres), as scikit-learn's `tol`; a run also stops when no label changes.
    pub tol: f64,
    /// Seed of the initial draws.
    pub seed: u64,
}

impl KMeansOptions {
    /// `k` clusters with scikit-learn's defaults (k-means++, 300 iterations, tol 1e-4) and one
    /// seeding, seed 0.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            init: KMeansInit::PlusPlus,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
        }
    }

    /// `k` clusters as the authors' code makes them: scipy's `kmeans2(minit="points")` with its
    /// default 10 iterations (seed 0 here; theirs is unseeded).
    pub fn authors(k: usize) -> Self {
        Self {
            init: KMeansInit::Points,
            max_iter: 10,
            ..Self::new(k)
        }
    }
}

/// The result of k-means.
#[derive(Debug, Clone)]
pub struct Clustering {
    /// The cluster of every row, in 0..k.
    pub labels: Vec<usize>,
    /// The centres, k × d.
    pub centroids: Mat<f64>,
    /// Sum of squared distances of the rows to their centres.
    pub inertia: f64,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
}

impl Clustering {
    /// Number of clusters.
    pub fn k(&self) -> usize {
        self.centroids.nrows()
    }

    /// The number of rows in each cluster.
    pub fn sizes(&self) -> Vec<usize> {
        let mut sizes = vec![0; self.k()];
        for &l in &self.labels {
            sizes[l] += 1;
        }
        sizes
    }

    /// The row indices of each cluster.
    pub fn members(&self) -> Vec<Vec<usize>> {
        members(&self.labels, self.k())
    }
}

/// Row indices per label.
pub(crate) fn members(labels: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        out[l].push(i);
    }
    out
}

/// The rows of a left operand that fill one AVX-512 register of f64 (two AVX2 ones): a left
/// operand with a multiple of this many rows leaves faer's product no uninitialised memory to
/// read ([`Points::sq_distances`]).
const LHS_ROW_MULTIPLE: usize = 8;

/// The data as f64, row-major, with its squared row norms.
struct Points {
    rows: Vec<f64>,
    n: usize,
    d: usize,
    norms: Vec<f64>,
}

impl Points {
    fn new(w: &Matrix) -> Points {
        let rows: Vec<f64> = w.data().iter().map(|&v| f64::from(v)).collect();
        let norms = rows
            .chunks_exact(w.cols().max(1))
            .map(|r| r.iter().map(|v| v * v).sum())
            .collect();
        Points {
            rows,
            n: w.rows(),
            d: w.cols(),
            norms,
        }
    }

    /// The rows as a faer matrix (a view, no copy).
    fn x(&self) -> MatRef<'_, f64> {
        MatRef::from_row_major_slice(&self.rows, self.n, self.d)
    }

    fn row(&self, i: usize) -> &[f64] {
        &self.rows[i * self.d..(i + 1) * self.d]
    }

    fn n(&self) -> usize {
        self.n
    }

    /// Squared distances of each row of `c` to every row (c.nrows() × n: column i holds row i's
    /// distances), clamped at 0. Computed as C·Xᵀ, where Xᵀ is a column-major view of the rows.
    ///
    /// C is copied with zero rows below it up to a multiple of [`LHS_ROW_MULTIPLE`]. With C's own
    /// row count, faer's product, which works on whole SIMD registers of a left operand's rows,
    /// read memory that nothing had written (faer leaves a matrix's padding rows uninitialised,
    /// and its product's scratch buffer too): the extra lanes are discarded, but after an
    /// extraction in the same process those bytes read as subnormal doubles, on which every
    /// multiplication takes a microcode assist. k-means++ (5 rows of C at a time) and the first
    /// assignment (27) then ran 10 to 15 times slower (5 s instead of 0.4 s on 20,000 × 384,
    /// benches/geometry.rs; setting the CPU's denormals-are-zero flag made it fast again). This
    /// was measured, not read off faer's kernels; with the zero rows it is gone.
    fn sq_distances(&self, c: &Mat<f64>) -> Mat<f64> {
        let cn: Vec<f64> = (0..c.nrows())
            .map(|j| c.row(j).iter().map(|v| v * v).sum())
            .collect();
        let k = c.nrows();
        let padded = Mat::from_fn(k.next_multiple_of(LHS_ROW_MULTIPLE), c.ncols(), |i, j| {
            if i < k {
                c[(i, j)]
            } else {
                0.0
            }
        });
        let mut g = &padded * self.x().transpose();
        for i in 0..self.n {
            for (t, v) in g.col_mut(i).iter_mut().take(k).enumerate() {
                *v = (self.norms[i] + cn[t] - 2.0 * *v).max(0.0);
            }
        }
        g.subrows(0, k).to_owned()
    }

    fn select(&self, idx: &[usize]) -> Mat<f64> {
        Mat::from_fn(idx.len(), self.d, |i, j| self.rows[idx[i] * self.d + j])
    }
}

/// Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's 2 + ln k local
/// trials per centre).
fn kmeans_plus_plus(p: &Points, k: usize, rng: &mut StdRng) -> Result<Mat<f64>> {
    let n = p.n();
    let trials = 2 + (k as f64).ln() as usize;
    let mut chosen = vec![rng.random_range(0..n)];
    let first = p.sq_distances(&p.select(&chosen));
    let mut closest: Vec<f64> = (0..n).map(|i| first[(0, i)]).collect();
    let mut potential: f64 = closest.iter().sum();
    while chosen.len() < k {
        if potential <= 0.0 {
            bail!(
                "k-means: the rows have only {} distinct points, fewer than k = {k}",
                chosen.len()
            );
        }
        let mut cumulative = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &c in &closest {
            acc += c;
            cumulative.push(acc);
        }
        let candidates: Vec<usize> = (0..trials)
            .map(|_| {
                let r = rng.random::<f64>() * acc;
                cumulative.partition_point(|&c| c < r).min(n - 1)
            })
            .collect();
        let dist = p.sq_distances(&p.select(&candidates));
        let mut best = (f64::INFINITY, 0);
        for t in 0..candidates.len() {
            let pot: f64 = closest
                .iter()
                .enumerate()
                .map(|(i, a)| a.min(dist[(t, i)]))
                .sum();
            if pot < best.0 {
                best = (pot, t);
            }
        }
        for (i, c) in closest.iter_mut().enumerate() {
            *c = c.min(dist[(best.1, i)]);
        }
        potential = best.0;
        chosen.push(candidates[best.1]);
    }
    Ok(p.select(&chosen))
}

/// Nearest centre of every row and its squared distance.
fn assign(p: &Points, centroids: &Mat<f64>) -> (Vec<usize>, Vec<f64>) {
    let dist = p.sq_distances(centroids);
    let n = p.n();
    let mut labels = vec![0usize; n];
    let mut best = vec![f64::INFINITY; n];
    for i in 0..n {
        for (j, &v) in dist.col(i).iter().enumerate() {
            if v < best[i] {
                best[i] = v;
                labels[i] = j;
            }
        }
    }
    (labels, best)
}

/// Squared Euclidean distance in the SIMD registers of `simd` (two independent accumulators, so
/// that the additions overlap).
#[inline(always)]
fn sq_dist<S: Simd>(simd: S, a: &[f64], b: &[f64]) -> f64 {
    let ((va, ta), (vb, tb)) = (S::as_simd_f64s(a), S::as_simd_f64s(b));
    let (mut even, mut odd) = (simd.splat_f64s(0.0), simd.splat_f64s(0.0));
    let (pa, pb) = (va.chunks_exact(2), vb.chunks_exact(2));
    let (ra, rb) = (pa.remainder(), pb.remainder());
    for (x, y) in pa.zip(pb) {
        let (t, u) = (simd.sub_f64s(x[0], y[0]), simd.sub_f64s(x[1], y[1]));
        even = simd.add_f64s(even, simd.mul_f64s(t, t));
        odd = simd.add_f64s(odd, simd.mul_f64s(u, u));
    }
    for (x, y) in ra.iter().zip(rb) {
        let t = simd.sub_f64s(*x, *y);
        even = simd.add_f64s(even, simd.mul_f64s(t, t));
    }
    let tail: f64 = ta.iter().zip(tb).map(|(x, y)| (x - y) * (x - y)).sum();
    simd.reduce_sum_f64s(simd.add_f64s(even, odd)) + tail
}

/// Lloyd's algorithm from the given centres, with Elkan's (2003) triangle-inequality bounds: each
/// row keeps an upper bound on the distance to its centre and a lower bound on the distance to
/// every other centre, and computes a distance only when the bounds (or half the distance between
/// two centres) cannot rule that centre out. The result is that of plain Lloyd iterations; late
/// iterations compute few distances. Stops when no label changes, when the centres move less than
/// `tol_abs` (squared, summed), or after `max_iter` iterations.
fn lloyd(p: &Points, centroids: Mat<f64>, max_iter: usize, tol_abs: f64) -> Clustering {
    Arch::new().dispatch(Lloyd {
        p,
        centroids,
        max_iter,
        tol_abs,
    })
}

/// [`lloyd`]'s arguments, run with the widest instruction set the CPU has ([`sq_dist`]'s
/// registers).
struct Lloyd<'a> {
    p: &'a Points,
    centroids: Mat<f64>,
    max_iter: usize,
    tol_abs: f64,
}

impl WithSimd for Lloyd<'_> {
    type Output = Clustering;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Clustering {
        lloyd_iterations(simd, self.p, self.centroids, self.max_iter, self.tol_abs)
    }
}

/// The body of [`lloyd`], inlined into [`Lloyd`]'s dispatch.
///
/// One long function on purpose: the bounds, centre sums and counts are updated together in one
/// pass per iteration, and split into helpers they would travel as a dozen mutable vectors.
#[inline(always)]
fn lloyd_iterations<S: Simd>(
    simd: S,
    p: &Points,
    mut centroids: Mat<f64>,
    max_iter: usize,
    tol_abs: f64,
) -> Clustering {
    let (k, d, n) = (centroids.nrows(), p.d, p.n());
    // First assignment by one matrix product; bounds widened by BOUND_SLACK.
    let dist = p.sq_distances(&centroids);
    let mut labels = vec![0usize; n];
    let mut upper = vec![0.0f64; n];
    let mut lower = vec![0.0f64; n * k];
    for i in 0..n {
        let mut arg = 0;
        for c in 0..k {
            let v = dist[(c, i)];
            lower[i * k + c] = v.sqrt() * (1.0 - BOUND_SLACK);
            if v < dist[(arg, i)] {
                arg = c;
            }
        }
        labels[i] = arg;
        upper[i] = dist[(arg, i)].sqrt() * (1.0 + BOUND_SLACK);
    }
    let mut sums = vec![0.0f64; k * d];
    let mut counts = vec![0usize; k];
    for (i, &l) in labels.iter().enumerate() {
        counts[l] += 1;
        for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(p.row(i)) {
            *s += v;
        }
    }
    let mut centres: Vec<f64> = (0..k * d).map(|x| centroids[(x / d, x % d)]).collect();
    let mut iterations = 0;
    let mut half = vec![0.0f64; k * k];
    let mut nearest = vec![0.0f64; k];
    for it in 1..=max_iter {
        iterations = it;
        // Empty clusters take the row farthest from its centre (scikit-learn's repair).
        for c in 0..k {
            if counts[c] > 0 {
                continue;
            }
            let far = (0..n)
                .filter(|&i| counts[labels[i]] > 1)
                .max_by(|&a, &b| upper[a].total_cmp(&upper[b]));
            if let Some(i) = far {
                let old = labels[i];
                counts[old] -= 1;
                counts[c] = 1;
                for (j, &v) in p.row(i).iter().enumerate() {
                    sums[old * d + j] -= v;
                    sums[c * d + j] = v;
                }
                labels[i] = c;
                upper[i] = 0.0;
                lower[i * k..(i + 1) * k].iter_mut().for_each(|l| *l = 0.0);
            }
        }
        // Move the centres to their clusters' means; loosen the bounds by how far they moved.
        let mut moved = vec![0.0f64; k];
        let mut shift = 0.0;
        for c in 0..k {
            if counts[c] == 0 {
                continue;
            }
            let mut m2 = 0.0;
            for j in 0..d {
                let v = sums[c * d + j] / counts[c] as f64;
                m2 += (v - centres[c * d + j]).powi(2);
                centres[c * d + j] = v;
            }
            shift += m2;
            moved[c] = m2.sqrt() * (1.0 + BOUND_SLACK);
        }
        upper
            .iter_mut()
            .zip(lower.chunks_mut(k))
            .zip(labels.iter())
            .for_each(|((u, l), &a)| {
                *u += moved[a];
                for (l, &m) in l.iter_mut().zip(&moved) {
                    *l = (*l - m).max(0.0);
                }
            });
        // Half the distances between centres, and to each centre's nearest other centre.
        nearest.iter_mut().for_each(|v| *v = f64::INFINITY);
        for a in 0..k {
            for b in a + 1..k {
                let g = sq_dist(
                    simd,
                    &centres[a * d..(a + 1) * d],
                    &centres[b * d..(b + 1) * d],
                )
                .sqrt()
                    / 2.0
                    * (1.0 - BOUND_SLACK);
                half[a * k + b] = g;
                half[b * k + a] = g;
                nearest[a] = nearest[a].min(g);
                nearest[b] = nearest[b].min(g);
            }
        }
        // Reassign the rows whose bounds no longer settle their label: blocks of rows in
        // parallel (a row reads the centres and writes only its own label and bounds), then the
        // moves applied to the centre sums in row order, as one pass over the rows would.
        let moves: Vec<(usize, usize)> = labels
            .par_chunks_mut(REASSIGN_ROWS)
            .zip(upper.par_chunks_mut(REASSIGN_ROWS))
            .zip(lower.par_chunks_mut(REASSIGN_ROWS * k))
            .enumerate()
            .flat_map_iter(|(b, ((labels, upper), lower))| {
                simd.vectorize(Reassign {
                    p,
                    first: b * REASSIGN_ROWS,
                    labels,
                    upper,
                    lower,
                    centres: &centres,
                    half: &half,
                    nearest: &nearest,
                })
            })
            .collect();
        for &(i, start) in &moves {
            let a = labels[i];
            counts[start] -= 1;
            counts[a] += 1;
            for (j, &v) in p.row(i).iter().enumerate() {
                sums[start * d + j] -= v;
                sums[a * d + j] += v;
            }
        }
        let changed = moves.len();
        if changed == 0 || shift <= tol_abs {
            break;
        }
    }
    for c in 0..k {
        for j in 0..d {
            centroids[(c, j)] = centres[c * d + j];
        }
    }
    let mut inertia = 0.0;
    for (i, &l) in labels.iter().enumerate() {
        inertia += sq_dist(simd, p.row(i), &centres[l * d..(l + 1) * d]);
    }
    Clustering {
        labels,
        centroids,
        inertia,
        iterations,
    }
}

/// Rows per block of [`lloyd`]'s parallel reassignment.
const REASSIGN_ROWS: usize = 1024;

/// One block of rows of a Lloyd iteration's reassignment (Elkan's bounds): `labels`, `upper` and
/// `lower` are the block's, its first row is `first`; `half` holds half the distances between
/// centres (k × k) and `nearest` half the distance from each centre to its nearest other.
struct Reassign<'a> {
    p: &'a Points,
    first: usize,
    labels: &'a mut [usize],
    upper: &'a mut [f64],
    lower: &'a mut [f64],
    centres: &'a [f64],
    half: &'a [f64],
    nearest: &'a [f64],
}

impl WithSimd for Reassign<'_> {
    /// The rows that changed cluster, each with its former cluster (its new one is in `labels`).
    type Output = Vec<(usize, usize)>;

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) -> Vec<(usize, usize)> {
        let Reassign {
            p,
            first,
            labels,
            upper,
            lower,
            centres,
            half,
            nearest,
        } = self;
        let (k, d) = (nearest.len(), p.d);
        let mut moves = Vec::new();
        for r in 0..labels.len() {
            let start = labels[r];
            if upper[r] <= nearest[start] {
                continue;
            }
            let x = p.row(first + r);
            let l = &mut lower[r * k..(r + 1) * k];
            let mut a = start;
            let mut tight = false;
            for c in 0..k {
                if c == a || upper[r] <= l[c] || upper[r] <= half[a * k + c] {
                    continue;
                }
                if !tight {
                    upper[r] = sq_dist(simd, x, &centres[a * d..(a + 1) * d]).sqrt();
                    l[a] = upper[r];
                    tight = true;
                    if upper[r] <= l[c] || upper[r] <= half[a * k + c] {
                        continue;
                    }
                }
                let dc = sq_dist(simd, x, &centres[c * d..(c + 1) * d]).sqrt();
                l[c] = dc;
                if dc < upper[r] || (dc == upper[r] && c < a) {
                    a = c;
                    upper[r] = dc;
                }
            }
            if a != start {
                labels[r] = a;
                moves.push((first + r, start));
            }
        }
        moves
    }
}

fn check_k(w: &Matrix, k: usize) -> Result<()> {
    w.check_finite("k-means")?;
    if k == 0 {
        bail!("k-means: k must be at least 1");
    }
    if k > w.rows() {
        bail!(
            "k-means: k = {k} is larger than the number of rows ({})",
            w.rows()
        );
    }
    Ok(())
}

/// The relative slack by which [`lloyd`] widens its distance bounds: the expanded squared
/// distances carry ~1e-12 relative round-off, and a bound that is too tight would skip a centre
/// that is in fact nearer. Far more than the round-off, far less than any real gap.
const BOUND_SLACK: f64 = 1e-9;

/// Absolute tolerance: `tol` × the mean per-dimension variance (scikit-learn's rule).
fn tolerance(p: &Points, tol: f64) -> f64 {
    let (n, d) = (p.n() as f64, p.d);
    let mut mean = vec![0.0f64; d];
    for i in 0..p.n() {
        for (m, v) in mean.iter_mut().zip(p.row(i)) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut total = 0.0;
    for i in 0..p.n() {
        total += p
            .row(i)
            .iter()
            .zip(&mean)
            .map(|(v, m)| (v - m).powi(2))
            .sum::<f64>();
    }
    tol * total / n / d as f64
}

/// k-means clustering of `w`'s rows (Lloyd's algorithm from greedy k-means++ seeds or from
/// randomly drawn rows, [`KMeansInit`]), seeded and reproducible; `n_init` seedings, the lowest inertia kept. Empty clusters are repaired by moving
/// their centre to the row farthest from its own centre. Fails if k is 0, larger than the number of
/// rows, or larger than the number of distinct rows.
///
/// ```
/// use isotropy_lab::geometry::cluster::{kmeans, silhouette, KMeansOptions};
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(6, 1, vec![0.0, 0.1, 0.2, 10.0, 10.1, 10.2])?;
/// let c = kmeans(&w, &KMeansOptions::new(2))?;
/// assert_eq!(c.sizes(), vec![3, 3]);
/// assert_eq!(c.labels[0], c.labels[2]);
/// assert_ne!(c.labels[0], c.labels[3]);
/// assert!(silhouette(&w, &c.labels, None, 0)? > 0.9);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn kmeans(w: &Matrix, opts: &KMeansOptions) -> Result<Clustering> {
    check_k(w, opts.k)?;
    let p = Points::new(w);
    let tol_abs = tolerance(&p, opts.tol);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut best: Option<Clustering> = None;
    for _ in 0..opts.n_init.max(1) {
        let init = match opts.init {
            KMeansInit::PlusPlus => kmeans_plus_plus(&p, opts.k, &mut rng)?,
            KMeansInit::Points => {
                let mut rows = rand::seq::index::sample(&mut rng, p.n(), opts.k).into_vec();
                rows.sort_unstable();
                p.select(&rows)
            }
        };
        let run = lloyd(&p, init, opts.max_iter, tol_abs);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    Ok(best.expect("n_init is at least 1"))
}

/// The cluster of every row of `w` under [`kmeans`] with `opts`, cached on disk by the rows'
/// values and the options ([`crate::util::memo`]): the analysis tables, a sweep or a cell run
/// again reuse the clustering instead of running k-means again.
pub fn kmeans_labels(w: &Matrix, opts: &KMeansOptions) -> Result<Vec<usize>> {
    let key = Key::new("kmeans-labels").matrix(w).debug(opts);
    cached_json(
        key,
        |labels: &Vec<usize>| {
            if labels.len() != w.rows() || labels.iter().any(|&l| l >= opts.k) {
                bail!(
                    "{} labels, the largest {:?}, for {} rows and k = {}",
                    labels.len(),
                    labels.iter().max(),
                    w.rows(),
                    opts.k
                );
            }
            Ok(())
        },
        || Ok(kmeans(w, opts)?.labels),
    )
}

/// k-means from given initial centres (`init`, k × d), run to convergence (no label changes or
/// `max_iter`): scikit-learn's `KMeans(init=centres, n_init=1, tol=0)`. The reference tests use
/// it to compare clusterings without depending on random draws.
///
/// ```
/// use isotropy_lab::geometry::cluster::kmeans_from;
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(4, 1, vec![0.0, 1.0, 10.0, 11.0])?;
/// let init = Matrix::new(2, 1, vec![0.0, 5.0])?;
/// let c = kmeans_from(&w, &init, 10)?;
/// assert_eq!(c.labels, vec![0, 0, 1, 1]);
/// assert!((c.centroids[(1, 0)] - 10.5).abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn kmeans_from(w: &Matrix, init: &Matrix, max_iter: usize) -> Result<Clustering> {
    check_k(w, init.rows())?;
    if init.cols() != w.cols() {
        bail!(
            "k-means: initial centres have {} columns, the rows {}",
            init.cols(),
            w.cols()
        );
    }
    init.check_finite("k-means initial centres")?;
    let p = Points::new(w);
    Ok(lloyd(&p, init.to_faer(), max_iter, 0.0))
}

/// Mean silhouette coefficient (Rousseeuw 1987) of a labelling, on Euclidean distances: for each
/// row, a = mean distance to the rest of its cluster, b = least mean distance to another cluster,
/// s = (b − a) / max(a, b) (0 for a row alone in its cluster), averaged. With `sample` below the
/// number of rows, it is computed on a seeded random sample of rows (scikit-learn's
/// `silhouette_score(sample_size=…)`). Needs 2 ≤ clusters ≤ rows − 1 in what is scored.
///
/// ```
/// use isotropy_lab::geometry::cluster::silhouette;
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(4, 1, vec![0.0, 1.0, 10.0, 11.0])?;
/// // Tight, far-apart clusters score near 1; a labelling against the structure scores below 0.
/// assert!(silhouette(&w, &[0, 0, 1, 1], None, 0)? > 0.85);
/// assert!(silhouette(&w, &[0, 1, 0, 1], None, 0)? < 0.0);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn silhouette(w: &Matrix, labels: &[usize], sample: Option<usize>, seed: u64) -> Result<f64> {
    w.check_finite("silhouette")?;
    if labels.len() != w.rows() {
        bail!("silhouette: {} labels for {} rows", labels.len(), w.rows());
    }
    let n = w.rows();
    let idx = sorted_sample(n, sample, seed);
    let mut names: Vec<usize> = idx.iter().map(|&i| labels[i]).collect();
    names.sort_unstable();
    names.dedup();
    let k = names.len();
    if k < 2 || k > idx.len() - 1 {
        bail!(
            "silhouette: needs between 2 and {} clusters among the scored rows, found {k}",
            idx.len() - 1
        );
    }
    let local: Vec<usize> = idx
        .iter()
        .map(|&i| names.binary_search(&labels[i]).expect("label listed"))
        .collect();
    let sub = Matrix::new(
        idx.len(),
        w.cols(),
        idx.iter().flat_map(|&i| w.row(i).iter().copied()).collect(),
    )?;
    let p = Points::new(&sub);
    let dist = p.sq_distances(&p.x().to_owned());
    let s = idx.len();
    let mut sizes = vec![0usize; k];
    for &l in &local {
        sizes[l] += 1;
    }
    let mut total = 0.0;
    let mut per_cluster = vec![0.0f64; k];
    for i in 0..s {
        per_cluster.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..s {
            if j != i {
                per_cluster[local[j]] += dist[(j, i)].sqrt();
            }
        }
        let own = local[i];
        if sizes[own] < 2 {
            continue;
        }
        let a = per_cluster[own] / (sizes[own] - 1) as f64;
        let b = (0..k)
            .filter(|&c| c != own)
            .map(|c| per_cluster[c] / sizes[c] as f64)
            .fold(f64::INFINITY, f64::min);
        let m = a.max(b);
        if m > 0.0 {
            total += (b - a) / m;
        }
    }
    Ok(total / s as f64)
}

/// The number of clusters chosen by [`choose_k`], with the evidence.
#[derive(Debug, Clone)]
pub struct KChoice {
    /// The chosen k (1 when no k in the range reaches the floor).
    pub k: usize,
    /// (k, silhouette) for every k tried.
    pub scores: Vec<(usize, f64)>,
    /// The clustering with the chosen k (for k = 1, every row in cluster 0 around the mean).
    pub clustering: Clustering,
}

/// Chooses k by the silhouette (Cai et al. 2021): k-means for every k in `ks`, the k with the
/// highest (sampled) silhouette, or a single cluster if that silhouette is below `floor` (they
/// use k in 2..=15 and floor 0.1). The choice is cached on disk by the rows' values and the
/// arguments ([`crate::util::memo`]): the same call again reads it back.
///
/// ```
/// use isotropy_lab::geometry::cluster::{choose_k, KMeansOptions};
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Three tight groups on a line.
/// let w = Matrix::new(9, 1, vec![0.0, 0.1, 0.2, 5.0, 5.1, 5.2, 10.0, 10.1, 10.2])?;
/// let choice = choose_k(&w, 2..=5, &KMeansOptions::new(2), 100, 0.1)?;
/// assert_eq!(choice.k, 3);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn choose_k(
    w: &Matrix,
    ks: std::ops::RangeInclusive<usize>,
    opts: &KMeansOptions,
    sample: usize,
    floor: f64,
) -> Result<KChoice> {
    let key = Key::new("choose-k")
        .matrix(w)
        .debug(&(&ks, opts, sample, floor));
    let stored = cached_json(
        key,
        |stored: &StoredChoice| stored.fits(w),
        || {
            Ok(StoredChoice::from(&choose_k_uncached(
                w,
                ks.clone(),
                opts,
                sample,
                floor,
            )?))
        },
    )?;
    Ok(stored.into_choice())
}

/// [`choose_k`]'s work, not cached.
fn choose_k_uncached(
    w: &Matrix,
    ks: std::ops::RangeInclusive<usize>,
    opts: &KMeansOptions,
    sample: usize,
    floor: f64,
) -> Result<KChoice> {
    let mut scores = Vec::new();
    let mut best: Option<(f64, Clustering)> = None;
    for k in ks {
        if k < 2 || k >= w.rows() {
            continue;
        }
        let c = kmeans(w, &KMeansOptions { k, ..*opts })?;
        let s = silhouette(w, &c.labels, Some(sample), opts.seed)?;
        scores.push((k, s));
        if best.as_ref().is_none_or(|b| s > b.0) {
            best = Some((s, c));
        }
    }
    match best {
        Some((s, clustering)) if s >= floor => Ok(KChoice {
            k: clustering.k(),
            scores,
            clustering,
        }),
        _ => {
            let p = Points::new(w);
            let mean = Mat::from_fn(1, w.cols(), |_, j| {
                (0..p.n()).map(|i| p.row(i)[j]).sum::<f64>() / p.n() as f64
            });
            let (labels, dist) = assign(&p, &mean);
            Ok(KChoice {
                k: 1,
                scores,
                clustering: Clustering {
                    labels,
                    centroids: mean,
                    inertia: dist.iter().sum(),
                    iterations: 0,
                },
            })
        }
    }
}

/// A [`KChoice`] as its cache entry keeps it: the centres row-major (`k` × `d`), every f64 as
/// its bits (JSON text does not always parse back to the same f64).
#[derive(Serialize, Deserialize)]
struct StoredChoice {
    k: usize,
    d: usize,
    scores: Vec<(usize, u64)>,
    labels: Vec<usize>,
    centroids: Vec<u64>,
    inertia: u64,
    iterations: usize,
}

impl From<&KChoice> for StoredChoice {
    fn from(choice: &KChoice) -> StoredChoice {
        let c = &choice.clustering;
        StoredChoice {
            k: c.centroids.nrows(),
            d: c.centroids.ncols(),
            scores: choice
                .scores
                .iter()
                .map(|&(k, s)| (k, s.to_bits()))
                .collect(),
            labels: c.labels.clone(),
            centroids: (0..c.centroids.nrows())
                .flat_map(|i| (0..c.centroids.ncols()).map(move |j| c.centroids[(i, j)].to_bits()))
                .collect(),
            inertia: c.inertia.to_bits(),
            iterations: c.iterations,
        }
    }
}

impl StoredChoice {
    /// Fails unless the entry is a choice for `w`'s rows: a label per row, k centres of its
    /// width.
    fn fits(&self, w: &Matrix) -> Result<()> {
        if self.d != w.cols()
            || self.centroids.len() != self.k * self.d
            || self.labels.len() != w.rows()
            || self.labels.iter().any(|&l| l >= self.k)
        {
            bail!(
                "a choice of k for {} rows of width {} does not fit {} rows of width {}",
                self.labels.len(),
                self.d,
                w.rows(),
                w.cols()
            );
        }
        Ok(())
    }

    /// The choice back (checked by [`StoredChoice::fits`] first).
    fn into_choice(self) -> KChoice {
        let (k, d) = (self.k, self.d);
        KChoice {
            k,
            scores: self
                .scores
                .into_iter()
                .map(|(k, s)| (k, f64::from_bits(s)))
                .collect(),
            clustering: Clustering {
                labels: self.labels,
                centroids: Mat::from_fn(k, d, |i, j| f64::from_bits(self.centroids[i * d + j])),
                inertia: f64::from_bits(self.inertia),
                iterations: self.iterations,
            },
        }
    }
}

/// The rows of `w` in `idx` minus their mean, in f64.
fn centred_rows(w: &Matrix, idx: &[usize]) -> Mat<f64> {
    let d = w.cols();
    let mut mean = vec![0.0f64; d];
    for &i in idx {
        for (m, &x) in mean.iter_mut().zip(w.row(i)) {
            *m += f64::from(x);
        }
    }
    let count = idx.len().max(1) as f64;
    mean.iter_mut().for_each(|m| *m /= count);
    Mat::from_fn(idx.len(), d, |i, j| f64::from(w.row(idx[i])[j]) - mean[j])
}

/// One cluster's local isotropy ([`local_isotropy`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalIsotropy {
    /// Rows in the cluster.
    pub size: usize,
    /// I(W) of the centred cluster, one sign per eigenvector; NaN under 2 rows.
    pub isotropy: f64,
    /// I(W) of the centred cluster over both signs; NaN under 2 rows.
    pub isotropy_both_signs: f64,
    /// Mean cosine of the centred cluster's rows; NaN under 2 rows.
    pub mean_cosine: f64,
}

/// Local isotropy (Cai et al. 2021): for each cluster of a labelling of `w`'s rows (labels
/// `0..k`), I(W) and the mean cosine after centring the cluster on its own mean.
///
/// ```
/// use isotropy_lab::geometry::cluster::local_isotropy;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Two clusters of three points around far-apart centres.
/// let w = Matrix::new(6, 2, vec![
///     10.0, 0.0, 11.0, 1.0, 9.0, 0.5,
///     -10.0, 0.0, -11.0, -1.0, -9.0, 0.5,
/// ])?;
/// let local = local_isotropy(&w, &[0, 0, 0, 1, 1, 1])?;
/// assert_eq!(local.len(), 2);
/// assert_eq!(local[0].size, 3);
/// // Centred, each cluster is no longer far from the origin: its mean cosine is far below 1.
/// assert!(local.iter().all(|c| c.mean_cosine < 0.5));
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn local_isotropy(w: &Matrix, labels: &[usize]) -> Result<Vec<LocalIsotropy>> {
    if w.cols() == 0 {
        bail!("local isotropy: the matrix has no columns");
    }
    if labels.len() != w.rows() {
        bail!(
            "local isotropy: {} labels for {} rows",
            labels.len(),
            w.rows()
        );
    }
    let k = labels.iter().max().map_or(0, |m| m + 1);
    members(labels, k)
        .iter()
        .map(|rows| {
            if rows.len() < 2 {
                return Ok(LocalIsotropy {
                    size: rows.len(),
                    isotropy: f64::NAN,
                    isotropy_both_signs: f64::NAN,
                    mean_cosine: f64::NAN,
                });
            }
            let centred = centred_rows(w, rows);
            let i = isotropy_of(&centred.as_ref())?;
            Ok(LocalIsotropy {
                size: rows.len(),
                isotropy: i.value,
                isotropy_both_signs: i.both_signs,
                mean_cosine: mean_cosine(&Matrix::from_faer(centred.as_ref())).unwrap_or(f64::NAN),
            })
        })
        .collect()
}

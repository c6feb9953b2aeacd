//! Isotropy enhancement: the four post-processing methods Rajaee & Pilehvar (2021) apply to
//! pre-trained and fine-tuned representations, as their code defines them.
//!
//! - **zero-mean**: subtract the global mean;
//! - **clustering + zero-mean**: k-means, subtract each cluster's mean;
//! - **global** (Mu & Viswanath 2018, "All-but-the-Top"): subtract the mean, then remove the
//!   projections on the top D principal components of the centred vectors;
//! - **cluster-based** (Rajaee & Pilehvar 2021, "A Cluster-based Approach for Improving Isotropy in
//!   Contextual Embedding Space"): k-means, then in each cluster subtract the cluster mean and
//!   remove the projections on that cluster's top D principal components. Cluster means are not
//!   added back.
//!
//! The parameters, for 768-wide BERT-base: k = 27 and D = 12 for the cluster-based method are
//! set in the authors' code (GitHub Sara-Rajaee/clusterbased_isotropy_enhancement, which has no
//! global method); D = 15 for the global method is the BERT setting of the reproduction
//! Benidzu/isotropy_reproduction. Their code clusters with scipy's `kmeans2(minit="points")`,
//! unseeded; this crate runs the same kind of k-means ([`KMeansOptions::authors`]) with a seed,
//! so a clustering (not the method) differs from any one run of theirs.

use crate::geometry::cluster::{kmeans_labels, members, KMeansOptions};
use crate::geometry::isotropy::{log_f_both_signs, Isotropy};
use crate::geometry::spectrum::{centred, remove_directions, Pca, Spectrum};
use crate::geometry::Centred;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_json, Key};
use anyhow::{anyhow, bail, Result};
use faer::{Mat, MatRef};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

/// The authors' number of clusters for BERT-base (their code's `n_cluster`).
pub const DEFAULT_K: usize = 27;
/// The authors' number of removed directions per cluster for BERT-base (their code's `n_pc`).
pub const DEFAULT_D_CLUSTER: usize = 12;
/// The number of removed directions of the global method for BERT-base, from the reproduction
/// Benidzu/isotropy_reproduction (`n_pc_global`); the authors' code has no global method.
pub const DEFAULT_D_GLOBAL: usize = 15;

/// An isotropy-enhancement method with its parameters.
///
/// ```
/// use isotropy_lab::geometry::enhance::Method;
/// use isotropy_lab::util::matrix::Matrix;
///
/// let w = Matrix::new(3, 2, vec![1.0, 2.0, 3.0, 4.0, 5.0, 9.0])?;
/// // Zero-mean: every column sums to 0 afterwards.
/// let centred = Method::ZeroMean.apply(&w, 0)?;
/// for j in 0..2 {
///     let sum: f32 = (0..3).map(|i| centred.row(i)[j]).sum();
///     assert!(sum.abs() < 1e-5);
/// }
/// // Global with D = 1 also removes the dominant direction: what is left is small.
/// let rest = Method::Global { d: 1 }.apply(&w, 0)?;
/// assert!(rest.data().iter().all(|v| v.abs() < 1.0));
/// assert_eq!("global d=1".parse::<Method>()?, Method::Global { d: 1 });
/// assert_eq!(Method::Global { d: 1 }.to_string(), "global d=1");
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Subtract the global mean.
    ZeroMean,
    /// k-means with `k` clusters, subtract each cluster's mean.
    ClusterZeroMean {
        /// Number of clusters.
        k: usize,
    },
    /// Subtract the mean, remove the top `d` principal components.
    Global {
        /// Number of removed directions.
        d: usize,
    },
    /// k-means with `k` clusters; per cluster subtract its mean and remove its top `d` principal
    /// components. A cluster of s rows has at most s − 1 directions of variance: it loses
    /// min(d, s − 1) (a single row becomes zero).
    ClusterBased {
        /// Number of clusters.
        k: usize,
        /// Number of removed directions per cluster.
        d: usize,
    },
}

impl Method {
    /// The method with `k` clusters and `d` removed directions where it has them and they are
    /// given (a parameter the method does not have is ignored).
    ///
    /// ```
    /// use isotropy_lab::geometry::enhance::Method;
    ///
    /// let m: Method = "cluster-based".parse()?;
    /// assert_eq!(m.with_params(Some(10), None), Method::ClusterBased { k: 10, d: 12 });
    /// assert_eq!(Method::ZeroMean.with_params(Some(10), Some(3)), Method::ZeroMean);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn with_params(self, k: Option<usize>, d: Option<usize>) -> Method {
        match self {
            Method::ZeroMean => self,
            Method::ClusterZeroMean { k: k0 } => Method::ClusterZeroMean { k: k.unwrap_or(k0) },
            Method::Global { d: d0 } => Method::Global { d: d.unwrap_or(d0) },
            Method::ClusterBased { k: k0, d: d0 } => Method::ClusterBased {
                k: k.unwrap_or(k0),
                d: d.unwrap_or(d0),
            },
        }
    }

    /// The four methods with the authors' defaults, in the paper's order.
    pub fn all() -> [Method; 4] {
        [
            Method::ZeroMean,
            Method::ClusterZeroMean { k: DEFAULT_K },
            Method::Global {
                d: DEFAULT_D_GLOBAL,
            },
            Method::ClusterBased {
                k: DEFAULT_K,
                d: DEFAULT_D_CLUSTER,
            },
        ]
    }

    /// A short label with the parameters, such as `cluster-based k=27 d=12`.
    pub fn label(&self) -> String {
        match self {
            Method::ZeroMean => "zero-mean".into(),
            Method::ClusterZeroMean { k } => format!("cluster-zero-mean k={k}"),
            Method::Global { d } => format!("global d={d}"),
            Method::ClusterBased { k, d } => format!("cluster-based k={k} d={d}"),
        }
    }

    /// The k-means a clustered method runs, seeded by `seed` (the authors' kind,
    /// [`KMeansOptions::authors`]); `None` for the methods without clusters.
    pub fn kmeans_options(&self, seed: u64) -> Option<KMeansOptions> {
        match *self {
            Method::ClusterZeroMean { k } | Method::ClusterBased { k, .. } => Some(KMeansOptions {
                seed,
                ..KMeansOptions::authors(k)
            }),
            _ => None,
        }
    }

    /// Applies the method to `w`'s rows (clustering with the authors' k-means,
    /// [`KMeansOptions::authors`], seeded by `seed`; its labels cached on disk,
    /// [`kmeans_labels`]), f32 out. The methods that remove directions keep each group's means
    /// and top axes on disk too ([`crate::util::memo`], keyed by the rows' values, the method
    /// and the clusters, the labels themselves): applied again to the same rows, they only project.
    pub fn apply(&self, w: &Matrix, seed: u64) -> Result<Matrix> {
        self.apply_with(w, None, seed)
    }

    /// [`Method::apply`], with `labels` (one cluster per row, 0..k) in place of the k-means
    /// step of the clustered methods when given. Each group of rows (all of them, or a
    /// cluster) is centred and loses its top directions a block of rows at a time in f64, with
    /// no f64 copy of the matrix; the clusters run in parallel.
    pub fn apply_with(&self, w: &Matrix, labels: Option<&[usize]>, seed: u64) -> Result<Matrix> {
        w.check_finite(&format!("enhancement {}", self.label()))?;
        let remove = self.removed_directions(w.cols())?;
        let clustering = self.clustering(w, labels, seed)?;
        let groups = clustering.as_ref().map(|(labels, k)| members(labels, *k));
        let removals = if remove == 0 {
            None
        } else {
            // Keyed by the clusters the fits are made on, not by the seed that drew them: a
            // clustering read from its own cache entry may change under the same seed.
            let key = Key::new("enhance-removal")
                .matrix(w)
                .debug(self)
                .debug(&clustering);
            Some(cached_removals(key, w, groups.as_deref(), remove)?)
        };
        let Some(groups) = groups else {
            return match &removals {
                Some(r) => r[0].remove_from(w),
                None => centre_rows(w),
            };
        };
        let cleaned = groups
            .par_iter()
            .enumerate()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(g, rows)| {
                let part = w.select_rows(rows)?;
                let cleaned = match &removals {
                    Some(r) => r[g].remove_from(&part)?,
                    None => centre_rows(&part)?,
                };
                Ok((rows, cleaned))
            })
            .collect::<Result<Vec<_>>>()?;
        let dim = w.cols();
        let mut out = vec![0f32; w.rows() * dim];
        for (rows, part) in cleaned {
            for (i, &r) in rows.iter().enumerate() {
                out[r * dim..(r + 1) * dim].copy_from_slice(part.row(i));
            }
        }
        Matrix::new(w.rows(), dim, out)
    }

    /// Whether the method removes directions (global and cluster-based), not only means.
    ///
    /// ```
    /// use isotropy_lab::geometry::enhance::Method;
    ///
    /// let removing: Vec<String> = Method::all()
    ///     .iter()
    ///     .filter(|m| m.removes_directions())
    ///     .map(|m| m.label())
    ///     .collect();
    /// assert_eq!(removing, ["global d=15", "cluster-based k=27 d=12"]);
    /// ```
    pub fn removes_directions(&self) -> bool {
        matches!(self, Method::Global { .. } | Method::ClusterBased { .. })
    }

    /// The number of directions the method removes from each group of rows (checked against
    /// the dimension `dim`).
    fn removed_directions(&self, dim: usize) -> Result<usize> {
        match *self {
            Method::Global { d } | Method::ClusterBased { d, .. } => {
                check_removable(self, d, dim)?;
                Ok(d)
            }
            _ => Ok(0),
        }
    }

    /// The cluster of every row for the clustered methods (`labels`, else the cached k-means
    /// labels seeded by `seed`, [`kmeans_labels`]) with the number of clusters; `None` for the
    /// methods that treat all rows as one group.
    fn clustering(
        &self,
        w: &Matrix,
        labels: Option<&[usize]>,
        seed: u64,
    ) -> Result<Option<(Vec<usize>, usize)>> {
        Ok(match (self.kmeans_options(seed), labels) {
            (None, _) => None,
            (Some(_), Some(labels)) => {
                if labels.len() != w.rows() {
                    bail!(
                        "{}: {} labels for {} rows",
                        self.label(),
                        labels.len(),
                        w.rows()
                    );
                }
                Some((labels.to_vec(), labels.iter().max().map_or(0, |m| m + 1)))
            }
            (Some(opts), None) => Some((kmeans_labels(w, &opts)?, opts.k)),
        })
    }

    /// The row indices of each cluster of [`Method::clustering`]; `None` for the methods that
    /// treat all rows as one group.
    fn groups(
        &self,
        w: &Matrix,
        labels: Option<&[usize]>,
        seed: u64,
    ) -> Result<Option<Vec<Vec<usize>>>> {
        Ok(self
            .clustering(w, labels, seed)?
            .map(|(labels, k)| members(&labels, k)))
    }

    /// Applies the method in f64. For the clustered methods, `labels` (one cluster per row, 0..k)
    /// replaces the k-means step when given; otherwise the k-means labels seeded by `seed`
    /// ([`kmeans_labels`]).
    pub fn apply_f64(&self, w: &Matrix, labels: Option<&[usize]>, seed: u64) -> Result<Mat<f64>> {
        w.check_finite(&format!("enhancement {}", self.label()))?;
        let dim = w.cols();
        let remove = self.removed_directions(dim)?;
        let x = w.to_faer();
        let groups = self
            .groups(w, labels, seed)?
            .unwrap_or_else(|| vec![(0..w.rows()).collect::<Vec<_>>()]);
        if groups.len() == 1 {
            // One group of every row (zero-mean, global): no gathering and scattering.
            return centre_and_remove(x.as_ref(), remove);
        }
        // Clusters are independent: clean them in parallel.
        let cleaned = groups
            .par_iter()
            .filter(|r| !r.is_empty())
            .map(|rows| {
                let part = Mat::from_fn(rows.len(), dim, |i, j| x[(rows[i], j)]);
                Ok((rows, centre_and_remove(part.as_ref(), remove)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut out = Mat::<f64>::zeros(w.rows(), dim);
        for (rows, part) in cleaned {
            for j in 0..dim {
                let (src, mut dst) = (part.col(j), out.col_mut(j));
                for (i, &r) in rows.iter().enumerate() {
                    dst[r] = src[i];
                }
            }
        }
        Ok(out)
    }
}

impl FromStr for Method {
    type Err = anyhow::Error;

    /// A method by its name (`zero-mean`, `cluster-zero-mean`, `global`, `cluster-based`; the
    /// authors' k and D) or by its label (`cluster-based k=10 d=5`, as [`fmt::Display`] writes
    /// it).
    fn from_str(text: &str) -> Result<Method> {
        let mut words = text.split_whitespace();
        let name = words.next().unwrap_or_default();
        let method = match name {
            "zero-mean" => Method::ZeroMean,
            "cluster-zero-mean" => Method::ClusterZeroMean { k: DEFAULT_K },
            "global" => Method::Global {
                d: DEFAULT_D_GLOBAL,
            },
            "cluster-based" => Method::ClusterBased {
                k: DEFAULT_K,
                d: DEFAULT_D_CLUSTER,
            },
            other => bail!(
                "unknown enhancement method '{other}' (zero-mean, cluster-zero-mean, global, cluster-based)"
            ),
        };
        let (mut k, mut d) = (None, None);
        for word in words {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            let value: usize = value
                .parse()
                .map_err(|_| anyhow!("'{text}': '{word}' is not k=N or d=N"))?;
            match key {
                "k" => k = Some(value),
                "d" => d = Some(value),
                _ => bail!("'{text}': '{word}' is not k=N or d=N"),
            }
        }
        Ok(method.with_params(k, d))
    }
}

impl fmt::Display for Method {
    /// The label, such as `cluster-based k=27 d=12` ([`Method::label`]).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// The global method (all-but-the-top) for many D at once, with the I(W) and the spectrum of each
/// result read off one PCA of the input instead of measured again.
///
/// Once the centred rows lose their top D principal components, the covariance (and WᵀW, the
/// rows being centred) keeps the remaining principal axes with their variances λ_{D+1}, …, and
/// gives the D removed axes variance 0; a row's projection on a remaining axis is its PCA score,
/// unchanged, and on a removed axis 0, so F(±u) = N there. One product (the scores) thus gives
/// every D's I(W) and IsoScore, where measuring each result costs two or three products: a sweep
/// over D costs about one measurement. The results are those of [`Method::Global`]`.apply` and
/// of measuring them (the tests compare both on real rows).
///
/// ```
/// use isotropy_lab::geometry::enhance::{GlobalSweep, Method};
/// use isotropy_lab::geometry::isotropy::isotropy;
/// use isotropy_lab::geometry::spectrum::Spectrum;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Eight points of a plane tilted in 3-d, around a mean far from the origin.
/// let w = Matrix::new(8, 3, vec![
///     5.0, 1.0, 0.2, 6.0, 2.0, 0.1, 4.0, 0.5, -0.3, 5.5, 1.5, 0.4,
///     4.5, 0.2, -0.1, 6.5, 2.5, 0.3, 5.2, 0.8, -0.2, 4.8, 1.9, 0.0,
/// ])?;
/// let sweep = GlobalSweep::fit(&w)?;
/// for d in 0..3 {
///     let removed = Method::Global { d }.apply(&w, 0)?;
///     assert_eq!(sweep.apply(d)?, removed);
///     let direct = isotropy(&removed)?.both_signs;
///     assert!((sweep.isotropy(d)?.both_signs - direct).abs() < 1e-5 * direct);
///     let isoscore = Spectrum::of(&removed)?.isoscore()?;
///     assert!((sweep.spectrum(d)?.isoscore()? - isoscore).abs() < 1e-5);
/// }
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct GlobalSweep {
    w: Matrix,
    pca: Pca,
    /// (log F(u), log F(−u)) on each principal axis of the input, in the PCA's order: one pass
    /// over the rows, made the first time an I(W) is asked for.
    log_f: OnceLock<Vec<(f64, f64)>>,
}

impl GlobalSweep {
    /// Fits the principal axes of `w`'s rows (2 rows or more, finite values).
    pub fn fit(w: &Matrix) -> Result<GlobalSweep> {
        w.check_finite("enhancement global")?;
        Ok(GlobalSweep {
            w: w.clone(),
            pca: Pca::fit(w)?,
            log_f: OnceLock::new(),
        })
    }

    /// The centred rows' (log F(u), log F(−u)) on every principal axis.
    fn log_f(&self) -> &[(f64, f64)] {
        self.log_f.get_or_init(|| {
            let centred = Centred {
                w: &self.w,
                means: self.pca.mean.clone(),
            };
            log_f_both_signs(&centred, self.pca.components.as_ref())
        })
    }

    /// The number of directions removed for a requested `d`: at most rows − 1 (the centred rows
    /// span no more); `d` must be below the dimension, as [`Method::Global`] requires.
    fn removed(&self, d: usize) -> Result<usize> {
        check_removable(&Method::Global { d }, d, self.w.cols())?;
        Ok(d.min(self.w.rows() - 1))
    }

    /// The rows with the top `d` directions removed: what [`Method::Global`]`.apply` returns.
    pub fn apply(&self, d: usize) -> Result<Matrix> {
        self.pca.remove_top_rows(&self.w, self.removed(d)?)
    }

    /// I(W) of [`GlobalSweep::apply`]`(d)`, from the scores on the remaining axes.
    pub fn isotropy(&self, d: usize) -> Result<Isotropy> {
        let d = self.removed(d)?;
        let log_n = (self.w.rows() as f64).ln();
        let mut log_f = vec![(log_n, log_n); d];
        log_f.extend_from_slice(&self.log_f()[d..]);
        Ok(Isotropy::from_log_f(&log_f))
    }

    /// The variance spectrum of [`GlobalSweep::apply`]`(d)`: the input's without its top `d`
    /// variances, and `d` zeros.
    pub fn spectrum(&self, d: usize) -> Result<Spectrum> {
        let d = self.removed(d)?;
        let mut variances = self.pca.spectrum.variances[d..].to_vec();
        variances.resize(self.pca.spectrum.variances.len(), 0.0);
        Ok(Spectrum { variances })
    }
}

/// A method may remove `d` directions of `dim`-wide vectors only when `d` is below `dim`.
fn check_removable(method: &Method, d: usize, dim: usize) -> Result<()> {
    if d >= dim {
        bail!(
            "{}: D = {d} directions to remove, but the vectors have only {dim} dimensions",
            method.label()
        );
    }
    Ok(())
}

/// What one group of rows loses under a method that removes directions: its column means and its
/// top principal axes (`dim` × d, column-major), kept as `f64` bits so that a cached fit gives
/// back exactly the result of a fresh one.
#[derive(Serialize, Deserialize)]
struct Removal {
    means: Vec<u64>,
    top: Vec<u64>,
    dim: usize,
}

impl Removal {
    /// The fit for `w`'s rows: at most rows − 1 directions of `d` (a single row keeps none and
    /// becomes zero).
    fn fit(w: &Matrix, d: usize) -> Result<Removal> {
        let d = d.min(w.rows().saturating_sub(1));
        let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<u64>>();
        let (means, top) = if d == 0 {
            (Centred::new(w).means, Vec::new())
        } else {
            let pca = Pca::fit(w)?;
            let top = pca.components.get(.., ..d);
            let columns: Vec<f64> = (0..d).flat_map(|j| top.col(j).iter().copied()).collect();
            (pca.mean, columns)
        };
        Ok(Removal {
            means: bits(means),
            top: bits(top),
            dim: w.cols(),
        })
    }

    /// Checks a fit read back from the cache against the rows it is for.
    fn check(&self, dim: usize) -> Result<()> {
        if self.dim != dim || self.means.len() != dim || !self.top.len().is_multiple_of(dim) {
            bail!(
                "a fit of {} means and {} axis values for {} columns, where {dim} columns were \
                 expected",
                self.means.len(),
                self.top.len(),
                self.dim
            );
        }
        Ok(())
    }

    /// `w`'s rows minus the means, without their projections on the axes, f32 out.
    fn remove_from(&self, w: &Matrix) -> Result<Matrix> {
        let means: Vec<f64> = self.means.iter().map(|&b| f64::from_bits(b)).collect();
        let d = self.top.len() / self.dim;
        let top = Mat::from_fn(self.dim, d, |i, j| {
            f64::from_bits(self.top[j * self.dim + i])
        });
        remove_directions(w, &means, top.as_ref())
    }
}

/// The removal of each group (`groups`, else all rows as one), fitted in parallel, cached on disk
/// by `key` ([`cached_json`]): a method applied again to the same rows skips its PCAs (one
/// dim × dim covariance and eigendecomposition per group, most of what the cluster-based method
/// costs) and only projects. An empty cluster, never applied, gets an empty fit.
fn cached_removals(
    key: Key,
    w: &Matrix,
    groups: Option<&[Vec<usize>]>,
    d: usize,
) -> Result<Vec<Removal>> {
    let count = groups.map_or(1, |g| g.len());
    cached_json(
        key,
        |removals: &Vec<Removal>| {
            if removals.len() != count {
                bail!("{} fits for {count} groups of rows", removals.len());
            }
            removals.iter().try_for_each(|r| r.check(w.cols()))
        },
        || match groups {
            None => Ok(vec![Removal::fit(w, d)?]),
            Some(groups) => groups
                .par_iter()
                .map(|rows| {
                    if rows.is_empty() {
                        Ok(Removal {
                            means: vec![0f64.to_bits(); w.cols()],
                            top: Vec::new(),
                            dim: w.cols(),
                        })
                    } else {
                        Removal::fit(&w.select_rows(rows)?, d)
                    }
                })
                .collect(),
        },
    )
}

/// `w`'s rows minus their column means, f32 out, without an f64 copy of the rows.
fn centre_rows(w: &Matrix) -> Result<Matrix> {
    let means = Centred::new(w).means;
    remove_directions(w, &means, Mat::<f64>::zeros(w.cols(), 0).as_ref())
}

/// Subtracts the column means of `x`, then removes the projections on its top `d` principal
/// components (at most rows − 1 of them).
fn centre_and_remove(x: MatRef<'_, f64>, d: usize) -> Result<Mat<f64>> {
    let d = d.min(x.nrows().saturating_sub(1));
    if d == 0 {
        return Ok(centred(x).1);
    }
    Pca::fit_f64(x)?.remove_top(x, d)
}

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
//! The authors' defaults for BERT-base: k = 27 and D = 12 (cluster-based), D = 15 (global).
//! Their code clusters with scipy's `kmeans2(minit="points")`; this crate uses its own seeded
//! k-means++ [`kmeans`], so clusterings (not the method) differ from run to run of theirs.

use crate::display::Fresh;
use crate::extract::Embeddings;
use crate::geometry::cluster::{kmeans, members, KMeansOptions};
use crate::geometry::isotropy::isotropy;
use crate::geometry::similarity::mean_cosine;
use crate::geometry::spectrum::{Pca, Spectrum};
use crate::matrix::Matrix;
use anyhow::{bail, Result};
use faer::{Mat, MatRef};
use polars::prelude::{Column, DataFrame};
use rayon::prelude::*;

/// The authors' number of clusters for BERT-base.
pub const DEFAULT_K: usize = 27;
/// The authors' number of removed directions per cluster (cluster-based).
pub const DEFAULT_D_CLUSTER: usize = 12;
/// The authors' number of removed directions (global).
pub const DEFAULT_D_GLOBAL: usize = 15;

/// An isotropy-enhancement method with its parameters.
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
    /// The method by its command-line name (`zero-mean`, `cluster-zero-mean`, `global`,
    /// `cluster-based`), with `k` and `d` (the authors' defaults where `None`).
    pub fn parse(name: &str, k: Option<usize>, d: Option<usize>) -> Result<Method> {
        let k = k.unwrap_or(DEFAULT_K);
        Ok(match name {
            "zero-mean" => Method::ZeroMean,
            "cluster-zero-mean" => Method::ClusterZeroMean { k },
            "global" => Method::Global {
                d: d.unwrap_or(DEFAULT_D_GLOBAL),
            },
            "cluster-based" => Method::ClusterBased {
                k,
                d: d.unwrap_or(DEFAULT_D_CLUSTER),
            },
            other => bail!(
                "unknown enhancement method '{other}' (zero-mean, cluster-zero-mean, global, cluster-based)"
            ),
        })
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

    fn clusters(&self) -> Option<usize> {
        match *self {
            Method::ClusterZeroMean { k } | Method::ClusterBased { k, .. } => Some(k),
            _ => None,
        }
    }

    /// Applies the method to `w`'s rows (clustering with [`kmeans`] seeded by `seed`), f32 out.
    pub fn apply(&self, w: &Matrix, seed: u64) -> Result<Matrix> {
        Ok(Matrix::from_faer(self.apply_f64(w, None, seed)?.as_ref()))
    }

    /// Applies the method in f64. For the clustered methods, `labels` (one cluster per row, 0..k)
    /// replaces the k-means step when given; otherwise k-means runs with `seed`.
    pub fn apply_f64(&self, w: &Matrix, labels: Option<&[usize]>, seed: u64) -> Result<Mat<f64>> {
        w.check_finite(&format!("enhancement {}", self.label()))?;
        let dim = w.cols();
        if let Method::Global { d } | Method::ClusterBased { d, .. } = *self {
            if d >= dim {
                bail!(
                    "{}: D = {d} directions to remove, but the vectors have only {dim} dimensions",
                    self.label()
                );
            }
        }
        let x = w.to_faer();
        let groups = match (self.clusters(), labels) {
            (None, _) => vec![(0..w.rows()).collect::<Vec<_>>()],
            (Some(_), Some(labels)) => {
                if labels.len() != w.rows() {
                    bail!(
                        "{}: {} labels for {} rows",
                        self.label(),
                        labels.len(),
                        w.rows()
                    );
                }
                members(labels, labels.iter().max().map_or(0, |m| m + 1))
            }
            (Some(k), None) => {
                let opts = KMeansOptions {
                    seed,
                    ..KMeansOptions::new(k)
                };
                kmeans(w, &opts)?.members()
            }
        };
        let remove = match *self {
            Method::Global { d } | Method::ClusterBased { d, .. } => d,
            _ => 0,
        };
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

/// Subtracts the column means of `x`, then removes the projections on its top `d` principal
/// components (at most rows − 1 of them).
fn centre_and_remove(x: MatRef<'_, f64>, d: usize) -> Result<Mat<f64>> {
    let (n, dim) = (x.nrows(), x.ncols());
    let means: Vec<f64> = (0..dim)
        .map(|j| x.col(j).iter().sum::<f64>() / n as f64)
        .collect();
    let centred = Mat::from_fn(n, dim, |i, j| x[(i, j)] - means[j]);
    let d = d.min(n.saturating_sub(1));
    if d == 0 {
        return Ok(centred);
    }
    let pca = Pca::fit_f64(centred.as_ref())?;
    let top = pca.components.get(.., ..d);
    let proj = &centred * top;
    Ok(&centred - &proj * top.transpose())
}

/// Applies `method` to the listed hidden states of an extraction (`None`: all), seeded. The
/// result has only those layers, the same token table, and `enhancement` in its metadata.
pub fn enhance_embeddings(
    emb: &Embeddings,
    method: Method,
    layers: Option<&[usize]>,
    seed: u64,
) -> Result<Embeddings> {
    let wanted: Vec<usize> = match layers {
        Some(l) => l.to_vec(),
        None => emb.layers.clone(),
    };
    let mut matrices = Vec::new();
    for &l in &wanted {
        let m = emb.layer(l)?;
        matrices.push(
            method
                .apply(m, seed)
                .map_err(|e| e.context(format!("layer {l}")))?,
        );
    }
    let mut meta = emb.meta.clone();
    meta.insert(
        "enhancement".into(),
        format!("{} seed={seed}", method.label()),
    );
    Ok(Embeddings {
        layers: wanted,
        matrices,
        tokens: emb.tokens.clone(),
        truncated: emb.truncated,
        meta,
    })
}

/// A scorer of a transformed layer for [`method_table`]: a column name and a function of the
/// matrix (for example STS-B Spearman of mean-pooled sentence vectors).
pub type Scorer<'a> = (&'a str, &'a dyn Fn(&Matrix) -> Result<f64>);

/// The paper's enhancement table for one layer: one row for the untouched layer (`none`), then
/// one per method, with `method`, `k`, `d` (0 where a method has none), `isotropy_both_signs`,
/// `isoscore`, `mean_cosine`, and a column per scorer.
pub fn method_table(
    emb: &Embeddings,
    layer: usize,
    methods: &[Method],
    seed: u64,
    scorers: &[Scorer<'_>],
) -> Result<DataFrame> {
    let original = emb.layer(layer)?;
    let mut names = vec!["none".to_string()];
    let (mut ks, mut ds) = (vec![0u32], vec![0u32]);
    let mut matrices = vec![original.clone()];
    for m in methods {
        names.push(m.label());
        let (k, d) = match *m {
            Method::ZeroMean => (0, 0),
            Method::ClusterZeroMean { k } => (k, 0),
            Method::Global { d } => (0, d),
            Method::ClusterBased { k, d } => (k, d),
        };
        ks.push(k as u32);
        ds.push(d as u32);
        matrices.push(m.apply(original, seed)?);
    }
    let mut iso = Vec::new();
    let mut score = Vec::new();
    let mut cos = Vec::new();
    let mut extra: Vec<Vec<f64>> = vec![Vec::new(); scorers.len()];
    for m in &matrices {
        iso.push(isotropy(m)?.both_signs);
        score.push(Spectrum::of(m)?.isoscore().unwrap_or(f64::NAN));
        cos.push(mean_cosine(m).unwrap_or(f64::NAN));
        for (col, (_, f)) in extra.iter_mut().zip(scorers) {
            col.push(f(m)?);
        }
    }
    let mut cols = vec![
        Column::new("method".into(), names),
        Column::new("k".into(), ks),
        Column::new("d".into(), ds),
        Column::new("isotropy_both_signs".into(), iso),
        Column::new("isoscore".into(), score),
        Column::new("mean_cosine".into(), cos),
    ];
    for (col, (name, _)) in extra.into_iter().zip(scorers) {
        cols.push(Column::new((*name).into(), col));
    }
    Ok(DataFrame::new_infer_height(cols)?.fresh())
}

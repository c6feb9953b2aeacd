//! The isotropy-enhancement methods ([`Method`]) applied to an extraction, and the paper's
//! enhancement table: each method's effect on isotropy and on a task score, for one layer.

use crate::analysis::extract::Embeddings;
use crate::analysis::structure::kmeans_labels;
use crate::geometry::cluster::KMeansOptions;
use crate::geometry::enhance::{GlobalSweep, Method};
use crate::geometry::isotropy::isotropy;
use crate::geometry::similarity::mean_cosine;
use crate::geometry::spectrum::Spectrum;
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use anyhow::Result;
use polars::prelude::{Column, DataFrame};
use std::collections::hash_map::{Entry, HashMap};

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
/// `isoscore`, `mean_cosine`, and a column per scorer. Every global D is read off one PCA
/// ([`GlobalSweep`]) and the clustered methods with the same k share one k-means (seeded by
/// `seed`, as [`Method::apply`] runs it), so a sweep over D costs about one method.
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
    let (mut iso, mut score) = (Vec::new(), Vec::new());
    let mut matrices = vec![original.clone()];
    iso.push(isotropy(original)?.both_signs);
    score.push(Spectrum::of(original)?.isoscore().unwrap_or(f64::NAN));
    // Work the methods share is done once: one PCA for every global D (whose I(W) and spectrum
    // it also gives), one k-means per k for the clustered methods.
    let sweep = if methods.iter().any(|m| matches!(m, Method::Global { .. })) {
        Some(GlobalSweep::fit(original)?)
    } else {
        None
    };
    let mut clusterings: HashMap<usize, Vec<usize>> = HashMap::new();
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
        let out = match (m, &sweep) {
            (Method::Global { d }, Some(sweep)) => {
                iso.push(sweep.isotropy(*d)?.both_signs);
                score.push(sweep.spectrum(*d)?.isoscore().unwrap_or(f64::NAN));
                sweep.apply(*d)?
            }
            _ => {
                let out = if k > 0 {
                    let labels = match clusterings.entry(k) {
                        Entry::Occupied(known) => known.into_mut(),
                        Entry::Vacant(new) => {
                            let opts = KMeansOptions {
                                seed,
                                ..KMeansOptions::authors(k)
                            };
                            new.insert(kmeans_labels(original, &opts)?)
                        }
                    };
                    Matrix::from_faer(m.apply_f64(original, Some(labels), seed)?.as_ref())
                } else {
                    m.apply(original, seed)?
                };
                iso.push(isotropy(&out)?.both_signs);
                score.push(Spectrum::of(&out)?.isoscore().unwrap_or(f64::NAN));
                out
            }
        };
        matrices.push(out);
    }
    let mut cos = Vec::new();
    let mut extra: Vec<Vec<f64>> = vec![Vec::new(); scorers.len()];
    for m in &matrices {
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

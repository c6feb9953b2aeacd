//! The isotropy-enhancement methods ([`Method`]) applied to an extraction, and the paper's
//! enhancement table: each method's effect on isotropy and on a task score, for one layer.

use crate::analysis::extract::Embeddings;
use crate::geometry::enhance::{GlobalSweep, Method};
use crate::geometry::isotropy::isotropy;
use crate::geometry::similarity::mean_cosine;
use crate::geometry::spectrum::Spectrum;
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_frame, expect_shape, Key};
use anyhow::Result;
use polars::prelude::{Column, DataFrame};

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
/// `seed`: the labels [`Method::apply`] reads from the cache,
/// [`kmeans_labels`](crate::geometry::cluster::kmeans_labels)), so a sweep
/// over D costs about one method.
///
/// What does not depend on the scorers is cached on disk ([`crate::util::memo`]): the k-means
/// labels, and each row's I(W), IsoScore and mean cosine, by the layer's values, the method and
/// the seed. The scorers run every time, on the transformed rows (the code of a closure cannot
/// be part of a key), so a table with scorers still applies every method; one without scorers
/// is read back from the cache whole.
pub fn method_table(
    emb: &Embeddings,
    layer: usize,
    methods: &[Method],
    seed: u64,
    scorers: &[Scorer<'_>],
) -> Result<DataFrame> {
    let original = emb.layer(layer)?;
    let base = Key::new("method-geometry").matrix(original).debug(&seed);
    let mut names = vec!["none".to_string()];
    let (mut ks, mut ds) = (vec![0u32], vec![0u32]);
    // The measures, a row per method, under the untouched layer's.
    let check = |t: &DataFrame| expect_shape(t, 1, &MEASURES);
    let mut table = cached_frame(base.clone().debug(&"none"), check, || {
        measured(original, None)
    })?;
    let mut extra: Vec<Vec<f64>> = vec![Vec::new(); scorers.len()];
    let mut score = |m: &Matrix| -> Result<()> {
        for (col, (_, f)) in extra.iter_mut().zip(scorers) {
            col.push(f(m)?);
        }
        Ok(())
    };
    if !scorers.is_empty() {
        score(original)?;
    }
    // Work the methods share is done once, and only when a row needs it: one PCA for every
    // global D (whose I(W) and spectrum it also gives); the clustered methods share their
    // k-means through the cache.
    let mut sweep: Option<GlobalSweep> = None;
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
        let key = base.clone().debug(m);
        let row = if scorers.is_empty() {
            cached_frame(key, check, || {
                let out = transform(m, original, seed, &mut sweep)?;
                measured(&out, Some((m, &sweep)))
            })?
        } else {
            let out = transform(m, original, seed, &mut sweep)?;
            score(&out)?;
            cached_frame(key, check, || measured(&out, Some((m, &sweep))))?
        };
        table.vstack_mut(&row)?;
    }
    table.insert_column(0, Column::new("method".into(), names))?;
    table.insert_column(1, Column::new("k".into(), ks))?;
    table.insert_column(2, Column::new("d".into(), ds))?;
    for (col, (name, _)) in extra.into_iter().zip(scorers) {
        table.with_column(Column::new((*name).into(), col))?;
    }
    Ok(table.fresh())
}

/// `method` applied to `original`, for [`method_table`]: a global D off the shared PCA (fitted
/// on first use); the other methods as [`Method::apply`] runs them (the clustered ones with the
/// cached k-means labels of their k, which methods of the same k share).
fn transform(
    method: &Method,
    original: &Matrix,
    seed: u64,
    sweep: &mut Option<GlobalSweep>,
) -> Result<Matrix> {
    match (*method, sweep) {
        (Method::Global { d }, Some(s)) => s.apply(d),
        (Method::Global { d }, sweep) => sweep.insert(GlobalSweep::fit(original)?).apply(d),
        _ => method.apply(original, seed),
    }
}

/// A row of [`method_table`]'s measures of `out` (the result of `method`, when it is one):
/// `isotropy_both_signs`, `isoscore` and `mean_cosine`. A global method's I(W) and spectrum are
/// read off the sweep that made it.
fn measured(out: &Matrix, method: Option<(&Method, &Option<GlobalSweep>)>) -> Result<DataFrame> {
    let (iso, spectrum) = match method {
        Some((Method::Global { d }, Some(sweep))) => (sweep.isotropy(*d)?, sweep.spectrum(*d)?),
        _ => (isotropy(out)?, Spectrum::of(out)?),
    };
    let [iso_name, isoscore_name, cosine_name] = MEASURES;
    Ok(DataFrame::new_infer_height(vec![
        Column::new(iso_name.into(), [iso.both_signs]),
        Column::new(
            isoscore_name.into(),
            [spectrum.isoscore().unwrap_or(f64::NAN)],
        ),
        Column::new(cosine_name.into(), [mean_cosine(out).unwrap_or(f64::NAN)]),
    ])?)
}

/// The measures of each row of [`method_table`], in order.
const MEASURES: [&str; 3] = ["isotropy_both_signs", "isoscore", "mean_cosine"];

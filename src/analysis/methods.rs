//! The isotropy-enhancement methods ([`Method`]) applied to an extraction, the paper's
//! enhancement table (each method's effect on isotropy and on a task score, for one layer), and a
//! bi-encoder's STS scores after each method with their bootstrap over the pairs.

use crate::analysis::extract::Embeddings;
use crate::geometry::enhance::{GlobalSweep, Method};
use crate::geometry::isotropy::isotropy;
use crate::geometry::similarity::mean_cosine;
use crate::geometry::spectrum::Spectrum;
use crate::geometry::stats::{pair_cosines, spearman};
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_frame, cached_json, expect_shape, Key};
use crate::util::sample::bootstrap;
use anyhow::{bail, Result};
use polars::prelude::{Column, DataFrame};
use rayon::prelude::*;

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

/// A bi-encoder's STS scores after each enhancement method, and their bootstrap over the pairs:
/// what [`sts_method_scores`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct StsMethodScores {
    /// The methods, in the order of the scores after the first.
    pub methods: Vec<Method>,
    /// Spearman × 100 of the pairs' cosines against the gold scores: the untouched layer, then
    /// each method.
    pub scores: Vec<f64>,
    /// The same scores on each bootstrap resample of the pairs (resample `r` drawn with
    /// `seed + r` by [`bootstrap`](crate::util::sample::bootstrap)).
    pub resampled: Vec<Vec<f64>>,
}

impl StsMethodScores {
    /// The best gain over the untouched score of the methods that remove directions
    /// ([`Method::removes_directions`]), on every pair and on each resample; an error when no
    /// such method was scored or a row of scores does not hold one per method.
    pub fn removal_gain(&self) -> Result<(f64, Vec<f64>)> {
        let removing: Vec<usize> = (0..self.methods.len())
            .filter(|&i| self.methods[i].removes_directions())
            .map(|i| i + 1)
            .collect();
        if removing.is_empty() {
            bail!("STS gain: no method that removes directions was scored");
        }
        let gain = |s: &[f64]| -> Result<f64> {
            if s.len() != 1 + self.methods.len() {
                bail!(
                    "STS gain: {} scores for the untouched layer and {} methods",
                    s.len(),
                    self.methods.len()
                );
            }
            Ok(removing
                .iter()
                .map(|&i| s[i])
                .fold(f64::NEG_INFINITY, f64::max)
                - s[0])
        };
        Ok((
            gain(&self.scores)?,
            self.resampled
                .iter()
                .map(|s| gain(s))
                .collect::<Result<_>>()?,
        ))
    }
}

/// A bi-encoder's STS score on hidden state `layer` of `emb`, untouched and after each of
/// `methods` (seeded by `seed`), with the same scores on `resamples` bootstrap resamples of the
/// pairs: each sentence's token rows mean-pooled
/// ([`Embeddings::sentence_means`]), each pair scored by the cosine of its two sentences, and
/// Spearman × 100 of those cosines against `gold`. The extraction holds both sides of the pairs
/// one sentence at a time: sentence `i` is pair `i`'s first, sentence `n + i` its second, for
/// `n = gold.len()` pairs.
///
/// Cached on disk ([`crate::util::memo`]) by the layer's values, the sentence behind each row,
/// the gold scores, the methods, the seed and the resamples: a cell run again reads the scores
/// back without applying a method.
///
/// ```
/// use isotropy_lab::prelude::*;
///
/// let model = Model::load("minilm")?;
/// let pairs = [
///     ("A man plays a guitar.", "A man plays music.", 4.2),
///     ("A dog runs in a park.", "A cat sleeps on a sofa.", 0.8),
///     ("Stocks fell sharply today.", "Markets dropped today.", 3.9),
///     ("She is cooking dinner.", "The train is late.", 0.2),
/// ];
/// let source = Source::Sentences {
///     name: "four STS pairs".into(),
///     sentences: pairs.iter().map(|p| p.0.to_string())
///         .chain(pairs.iter().map(|p| p.1.to_string()))
///         .collect(),
/// };
/// let options = ExtractOptions { layers: Some(vec![6]), ..ExtractOptions::default() };
/// let emb = Embeddings::extract(&model, &source, &options)?;
/// let gold: Vec<f64> = pairs.iter().map(|p| p.2).collect();
/// let methods = [Method::ZeroMean, Method::Global { d: 1 }];
/// let s = sts_method_scores(&emb, 6, &gold, &methods, 0, 3)?;
/// assert_eq!((s.scores.len(), s.resampled.len()), (3, 3));
/// // Global removes a direction, zero-mean does not: the gain is global's over untouched.
/// let (gain, _) = s.removal_gain()?;
/// assert_eq!(gain, s.scores[2] - s.scores[0]);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn sts_method_scores(
    emb: &Embeddings,
    layer: usize,
    gold: &[f64],
    methods: &[Method],
    seed: u64,
    resamples: usize,
) -> Result<StsMethodScores> {
    let original = emb.layer(layer)?;
    let n = gold.len();
    let key = Key::new("sts-method-scores")
        .matrix(original)
        .debug(&emb.sentence_ids()?)
        .debug(&(gold, methods, seed, resamples));
    let columns = 1 + methods.len();
    // Every score as its bits (exact from the cache): the untouched, then each resample.
    let bits: Vec<Vec<u64>> = cached_json(
        key,
        |rows: &Vec<Vec<u64>>| {
            if rows.len() != 1 + resamples || rows.iter().any(|r| r.len() != columns) {
                bail!("not {} rows of {columns} scores", 1 + resamples);
            }
            Ok(())
        },
        || {
            // Each pair's cosine, untouched and after each method.
            let mut cosines = vec![sentence_pair_cosines(emb, original, n)?];
            for m in methods {
                cosines.push(sentence_pair_cosines(emb, &m.apply(original, seed)?, n)?);
            }
            let draws: Vec<Vec<usize>> = std::iter::once((0..n).collect())
                .chain((0..resamples as u64).map(|r| bootstrap(n, seed + r)))
                .collect();
            draws
                .par_iter()
                .map(|draw| {
                    let y: Vec<f64> = draw.iter().map(|&i| gold[i]).collect();
                    cosines
                        .iter()
                        .map(|c| {
                            let x: Vec<f64> = draw.iter().map(|&i| c[i]).collect();
                            Ok((100.0 * spearman(&x, &y)?).to_bits())
                        })
                        .collect()
                })
                .collect()
        },
    )?;
    let mut rows = bits
        .iter()
        .map(|r| r.iter().map(|&b| f64::from_bits(b)).collect::<Vec<f64>>());
    let scores = rows.next().unwrap_or_default();
    Ok(StsMethodScores {
        methods: methods.to_vec(),
        scores,
        resampled: rows.collect(),
    })
}

/// The cosine of each pair's two sentence vectors, mean-pooled from `m` (rows of `emb`):
/// sentences `i` and `n + i` for pair `i`.
fn sentence_pair_cosines(emb: &Embeddings, m: &Matrix, n: usize) -> Result<Vec<f64>> {
    let (_, s) = emb.sentence_means(m)?;
    if s.rows() != 2 * n {
        bail!(
            "STS scores: {} sentence vectors for {n} pairs (two sentences each)",
            s.rows()
        );
    }
    let rows = |from: usize| s.select_rows(&(from..from + n).collect::<Vec<_>>());
    pair_cosines(&rows(0)?, &rows(n)?)
}

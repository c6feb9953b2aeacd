//! The spread of a measurement: over the seeds of a table (one row per seed, summarised by
//! [`summarise`]) or over bootstrap resamples of the sentences ([`bootstrap_layer`], and
//! [`bootstrap_pair`] for the difference between two models on the same sentences), for the
//! measures no seed controls (I(W), the spectrum). The chapters' own statistics are named
//! ([`Statistic`]), so that their values ([`Statistic::of`]) and their paired bootstrap
//! ([`bootstrap_statistic`]) are cached on disk by their inputs ([`crate::util::memo`]); a
//! closure's code cannot be part of a cache key.

use crate::analysis::extract::Embeddings;
use crate::geometry::isotropy::{dead_coordinates, isotropy};
use crate::geometry::spectrum::{Spectrum, DOMINANT_FACTOR};
use crate::geometry::stats::Spread;
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_json, Key};
use crate::util::sample::bootstrap_groups;
use anyhow::{bail, Result};
use polars::prelude::{Column, DataFrame, DataType, IdxCa, IdxSize};

/// Mean and standard deviation of the numeric `columns` of `frame` within each group of rows
/// that agree on every `by` column (groups in order of first appearance): one row per group,
/// with the `by` columns, `n` and `<column>_mean`, `<column>_sd` for each column.
///
/// ```
/// use isotropy_lab::analysis::spread::summarise;
/// use polars::prelude::*;
///
/// let per_seed = df!("model" => ["a", "a", "b", "b"], "nmi" => [0.2, 0.4, 0.5, 0.5])?;
/// let s = summarise(&per_seed, &["model"], &["nmi"])?;
/// assert!((s.column("nmi_mean")?.f64()?.get(0).unwrap() - 0.3).abs() < 1e-12);
/// assert_eq!(s.column("nmi_sd")?.f64()?.get(1), Some(0.0));
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn summarise(frame: &DataFrame, by: &[&str], columns: &[&str]) -> Result<DataFrame> {
    let f = frame.fresh();
    if by.is_empty() {
        bail!("summarise: no column to group by");
    }
    let key_columns = by
        .iter()
        .map(|&name| -> Result<Vec<String>> {
            Ok(f.column(name)?
                .cast(&DataType::String)?
                .str()?
                .iter()
                .map(|k| k.unwrap_or("").to_string())
                .collect())
        })
        .collect::<Result<Vec<_>>>()?;
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for i in 0..f.height() {
        let key: Vec<String> = key_columns.iter().map(|c| c[i].clone()).collect();
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    // Each group's `by` values, with their types, from its first row.
    let first = IdxCa::from_vec(
        "first".into(),
        groups.iter().map(|g| g.1[0] as IdxSize).collect(),
    );
    let mut out: Vec<Column> = by
        .iter()
        .map(|&name| Ok(f.column(name)?.take(&first)?))
        .collect::<Result<Vec<_>>>()?;
    out.push(Column::new(
        "n".into(),
        groups.iter().map(|g| g.1.len() as u32).collect::<Vec<_>>(),
    ));
    for &name in columns {
        let values: Vec<f64> = f
            .column(name)?
            .cast(&DataType::Float64)?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect();
        let spreads = groups
            .iter()
            .map(|g| {
                Spread::of(&g.1.iter().map(|&i| values[i]).collect::<Vec<_>>())
                    .map_err(|e| e.context(format!("summarising column {name}")))
            })
            .collect::<Result<Vec<_>>>()?;
        out.push(Column::new(
            format!("{name}_mean").into(),
            spreads.iter().map(|s| s.mean).collect::<Vec<_>>(),
        ));
        out.push(Column::new(
            format!("{name}_sd").into(),
            spreads.iter().map(|s| s.sd).collect::<Vec<_>>(),
        ));
    }
    Ok(DataFrame::new_infer_height(out)?.fresh())
}

/// The spread of `measure` on hidden state `layer` over `resamples` bootstrap resamples of the
/// extraction's sentences (each resample draws as many sentences as there are, with
/// replacement, and keeps their tokens whole; resample `r` is drawn with seed `seed + r`).
pub fn bootstrap_layer(
    emb: &Embeddings,
    layer: usize,
    resamples: usize,
    seed: u64,
    measure: impl Fn(&Matrix) -> Result<f64>,
) -> Result<Spread> {
    let values = resampled(emb, layer, resamples, seed, &measure)?;
    Spread::of(&values)
}

/// A paired bootstrap of a difference between two extractions of the same sentences (a base and
/// a fine-tuned model): each resample draws the same sentences for both, as
/// [`bootstrap_layer`] does, and measures each. Returns the spreads of `measure` on `base`, on
/// `other`, and of the difference other − base; the last is the noise of a comparison.
pub fn bootstrap_pair(
    base: &Embeddings,
    other: &Embeddings,
    layer: usize,
    resamples: usize,
    seed: u64,
    measure: impl Fn(&Matrix) -> Result<f64>,
) -> Result<[Spread; 3]> {
    paired_sentences(base, other)?;
    let a = resampled(base, layer, resamples, seed, &measure)?;
    let b = resampled(other, layer, resamples, seed, &measure)?;
    paired_spreads(&a, &b)
}

/// A statistic of a layer's rows that the chapters bootstrap, by name.
///
/// ```
/// use isotropy_lab::analysis::spread::Statistic;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Variances in the ratio 4 : 1 along two axes: participation ratio (4 + 1)² / (4² + 1²).
/// let w = Matrix::new(4, 2, vec![2.0, 0.0, -2.0, 0.0, 0.0, 1.0, 0.0, -1.0])?;
/// let ratio = Statistic::ParticipationRatio.measure(&w)?;
/// assert!((ratio - 25.0 / 17.0).abs() < 1e-9);
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// log10 of I(W) over *both* signs of every eigenvector (the layer table's
    /// `isotropy_both_signs`, not its one-sign `isotropy_live`), without the coordinates that are
    /// zero in every row ([`dead_coordinates`]).
    LogIsotropyLive,
    /// The number of dominant directions: variances above [`DOMINANT_FACTOR`] × their mean.
    Dominant,
    /// The participation ratio of the variances, (Σλ)² / Σλ².
    ParticipationRatio,
}

impl Statistic {
    /// The statistic of the rows of `m`, cached on disk by `m`'s values and the statistic
    /// ([`crate::util::memo`]): a cell run again reads it back.
    pub fn of(&self, m: &Matrix) -> Result<f64> {
        let key = Key::new("statistic").matrix(m).debug(self);
        let bits = cached_json(key, |_: &u64| Ok(()), || Ok(self.measure(m)?.to_bits()))?;
        Ok(f64::from_bits(bits))
    }

    /// The statistic of the rows of `m`, measured (what [`Statistic::of`] caches, and what a
    /// bootstrap measures on each resample, which is not worth a file of its own).
    pub fn measure(&self, m: &Matrix) -> Result<f64> {
        Ok(match self {
            Statistic::LogIsotropyLive => isotropy(&m.without_columns(&dead_coordinates(m)))?
                .both_signs
                .log10(),
            Statistic::Dominant => Spectrum::of(m)?.dominant(DOMINANT_FACTOR) as f64,
            Statistic::ParticipationRatio => Spectrum::of(m)?.participation_ratio(),
        })
    }
}

/// [`bootstrap_pair`] of a named [`Statistic`], cached on disk by the two layers' values, the
/// sentences behind their rows, the resamples, the seed and the statistic: a cell run again
/// reads the resampled values back instead of measuring every resample again.
pub fn bootstrap_statistic(
    base: &Embeddings,
    other: &Embeddings,
    layer: usize,
    resamples: usize,
    seed: u64,
    statistic: Statistic,
) -> Result<[Spread; 3]> {
    let sentence = paired_sentences(base, other)?;
    let key = Key::new("bootstrap-pair")
        .matrix(base.layer(layer)?)
        .matrix(other.layer(layer)?)
        .debug(&sentence)
        .debug(&(resamples, seed, statistic));
    // Each resample's value on the base and on the other, as bits (exact from the cache).
    let values: Vec<[u64; 2]> = cached_json(
        key,
        |values: &Vec<[u64; 2]>| {
            if values.len() != resamples {
                bail!("{} resampled values, {resamples} expected", values.len());
            }
            Ok(())
        },
        || {
            let measure = |m: &Matrix| statistic.measure(m);
            let a = resampled(base, layer, resamples, seed, &measure)?;
            let b = resampled(other, layer, resamples, seed, &measure)?;
            Ok(a.iter()
                .zip(&b)
                .map(|(x, y)| [x.to_bits(), y.to_bits()])
                .collect())
        },
    )?;
    let (a, b): (Vec<f64>, Vec<f64>) = values
        .iter()
        .map(|[x, y]| (f64::from_bits(*x), f64::from_bits(*y)))
        .unzip();
    paired_spreads(&a, &b)
}

/// The sentence behind each token row, the same for both extractions (else an error).
fn paired_sentences(base: &Embeddings, other: &Embeddings) -> Result<Vec<u32>> {
    let sentence = base.sentence_ids()?;
    if sentence != other.sentence_ids()? {
        bail!("paired bootstrap: the two extractions hold different sentences or tokens");
    }
    Ok(sentence)
}

/// The spreads of `a`, of `b` and of the difference b − a.
fn paired_spreads(a: &[f64], b: &[f64]) -> Result<[Spread; 3]> {
    let difference: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    Ok([Spread::of(a)?, Spread::of(b)?, Spread::of(&difference)?])
}

/// `measure` on `resamples` bootstrap resamples of the sentences, resample `r` drawn with
/// `seed + r`.
fn resampled(
    emb: &Embeddings,
    layer: usize,
    resamples: usize,
    seed: u64,
    measure: &dyn Fn(&Matrix) -> Result<f64>,
) -> Result<Vec<f64>> {
    if resamples < 2 {
        bail!("bootstrap: needs at least 2 resamples, got {resamples}");
    }
    let m = emb.layer(layer)?;
    let sentence = emb.sentence_ids()?;
    (0..resamples as u64)
        .map(|r| measure(&m.select_rows(&bootstrap_groups(&sentence, seed + r))?))
        .collect()
}

//! The spread of a measurement: over the seeds of a table (one row per seed, summarised by
//! [`summarise`]) or over bootstrap resamples of the sentences ([`bootstrap_layer`], and
//! [`bootstrap_pair`] for the difference between two models on the same sentences), for the
//! measures no seed controls (I(W), the spectrum).

use crate::analysis::columns;
use crate::analysis::extract::Embeddings;
use crate::geometry::stats::Spread;
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
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
    if sentence_ids(base)? != sentence_ids(other)? {
        bail!("paired bootstrap: the two extractions hold different sentences or tokens");
    }
    let a = resampled(base, layer, resamples, seed, &measure)?;
    let b = resampled(other, layer, resamples, seed, &measure)?;
    let difference: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y - x).collect();
    Ok([Spread::of(&a)?, Spread::of(&b)?, Spread::of(&difference)?])
}

fn sentence_ids(emb: &Embeddings) -> Result<Vec<u32>> {
    Ok(emb
        .tokens
        .fresh()
        .column(columns::SENTENCE_ID)?
        .u32()?
        .iter()
        .map(|s| s.unwrap_or(u32::MAX))
        .collect())
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
    let sentence = sentence_ids(emb)?;
    (0..resamples as u64)
        .map(|r| measure(&m.select_rows(&bootstrap_groups(&sentence, seed + r))?))
        .collect()
}

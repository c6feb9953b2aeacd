//! Every measure of the geometry toolkit as one table per extraction: one row per layer, the
//! columns of the chosen [`Measure`]s. Each layer's row is cached on disk by its inputs
//! ([`crate::util::memo`]), so a chapter's table answers from the cache when its cell runs again.

use crate::analysis::columns;
use crate::analysis::extract::Embeddings;
use crate::geometry::cluster::{choose_k, local_isotropy, KMeansOptions, LocalIsotropy};
use crate::geometry::isotropy::{dead_coordinates, isotropy};
use crate::geometry::lid::local_dimension;
use crate::geometry::similarity::{
    intra_sentence_similarity, self_similarity, CosineContributions,
};
use crate::geometry::spectrum::{Spectrum, DOMINANT_FACTOR};
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_json, Key};
use anyhow::{anyhow, bail, Result};
use clap::ValueEnum;
use polars::prelude::{Column, DataFrame};
use std::fmt;
use std::str::FromStr;

/// A group of columns of [`layer_table`], named on the command line and in [`fmt::Display`] as
/// `isotropy`, `cosine`, `spectrum`, `rogue`, `self-similarity`, `intra-sentence`, `clusters`,
/// `lid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Measure {
    /// I(W) ([`isotropy`]): `isotropy` (one sign per eigenvector, largest component positive),
    /// `isotropy_sign_min` and `isotropy_sign_max` (the lowest and highest value any choice of
    /// one sign per eigenvector gives), `isotropy_both_signs` (F over ±u of every eigenvector),
    /// `dead_dims` (coordinates zero in every row, [`dead_coordinates`]) and `isotropy_live`
    /// (`isotropy` of the matrix without them).
    Isotropy,
    /// `mean_cosine` of all pairs of distinct tokens.
    Cosine,
    /// `isoscore`, `participation_ratio`, `pc50`/`pc80`/`pc90`/`pc99` (components reaching that
    /// share of variance) and `dominant` (variances above [`DOMINANT_FACTOR`] × their mean).
    Spectrum,
    /// `rogue_dim` (the dimension contributing most to the mean cosine), `rogue_share` (its share
    /// of the mean cosine) and `rogue3_share` (the top three's share).
    Rogue,
    /// `self_similarity` (mean over token types seen at least `min_occurrences` times) and
    /// `self_similarity_types`.
    SelfSimilarity,
    /// `intra_sentence` similarity.
    IntraSentence,
    /// `clusters` (k chosen by silhouette), `silhouette`, and the mean over clusters of the
    /// centred clusters' I(W) (`cluster_isotropy`, both signs) and mean cosine
    /// (`cluster_mean_cosine`).
    Clusters,
    /// `local_dimension`: mean Levina–Bickel estimate over sampled tokens.
    #[value(name = "lid")]
    LocalDimension,
}

impl Measure {
    /// Every measure, in table order.
    pub const ALL: [Measure; 8] = [
        Measure::Isotropy,
        Measure::Cosine,
        Measure::Spectrum,
        Measure::Rogue,
        Measure::SelfSimilarity,
        Measure::IntraSentence,
        Measure::Clusters,
        Measure::LocalDimension,
    ];
}

impl FromStr for Measure {
    type Err = anyhow::Error;

    /// The measure by its command-line name.
    fn from_str(name: &str) -> Result<Measure> {
        <Measure as ValueEnum>::from_str(name, false).map_err(|_| {
            anyhow!(
                "unknown measure '{name}' ({})",
                Measure::ALL.map(|m| m.to_string()).join(", ")
            )
        })
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_possible_value() {
            Some(value) => f.write_str(value.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// Options of [`layer_table`].
#[derive(Debug, Clone, PartialEq)]
pub struct MeasureOptions {
    /// The column groups to compute.
    pub measures: Vec<Measure>,
    /// Seed of every sampled or clustered measure.
    pub seed: u64,
    /// Self-similarity: least occurrences of a token type (Ethayarajh uses 5).
    pub min_occurrences: usize,
    /// Clusters: the range of k tried, the silhouette floor below which one cluster is kept, and
    /// the silhouette's sample of rows (Cai et al.: 2..=15, 0.1).
    pub k_range: (usize, usize),
    /// See `k_range`.
    pub silhouette_floor: f64,
    /// See `k_range`.
    pub silhouette_sample: usize,
    /// Local dimension: neighbours and sampled query tokens.
    pub lid_k: usize,
    /// See `lid_k`.
    pub lid_queries: usize,
}

impl Default for MeasureOptions {
    /// I(W), mean cosine and the spectrum (the fast measures); the literature's parameters for the
    /// rest.
    fn default() -> Self {
        Self {
            measures: vec![Measure::Isotropy, Measure::Cosine, Measure::Spectrum],
            seed: 0,
            min_occurrences: 5,
            k_range: (2, 15),
            silhouette_floor: 0.1,
            silhouette_sample: 2_000,
            lid_k: 20,
            lid_queries: 1_000,
        }
    }
}

impl MeasureOptions {
    /// The default options with only `measures`.
    pub fn only(measures: &[Measure]) -> Self {
        Self {
            measures: measures.to_vec(),
            ..Self::default()
        }
    }
}

/// Columns under construction, in insertion order.
#[derive(Default)]
struct Columns(Vec<(String, Vec<f64>)>);

impl Columns {
    fn push(&mut self, name: &str, v: f64) {
        match self.0.iter_mut().find(|c| c.0 == name) {
            Some(c) => c.1.push(v),
            None => self.0.push((name.to_string(), vec![v])),
        }
    }
}

/// Names of columns that hold counts (stored as integers).
const COUNTS: [&str; 11] = [
    "dead_dims",
    "pc50",
    "pc80",
    "pc90",
    "pc99",
    "dominant",
    "rogue_dim",
    "self_similarity_types",
    "clusters",
    "tokens",
    "layer",
];

/// One row per extracted layer: `layer`, `tokens`, then the columns of each chosen [`Measure`].
pub fn layer_table(emb: &Embeddings, opts: &MeasureOptions) -> Result<DataFrame> {
    let tokens = emb.tokens.fresh();
    let has = |m: Measure| opts.measures.contains(&m);
    let token_text: Vec<String> = if has(Measure::SelfSimilarity) {
        tokens
            .column(columns::TOKEN)?
            .str()?
            .iter()
            .map(|t| t.unwrap_or_default().to_string())
            .collect()
    } else {
        vec![]
    };
    let sentence: Vec<u32> = if has(Measure::IntraSentence) {
        emb.sentence_ids()?
    } else {
        vec![]
    };
    let mut cols = Columns::default();
    for (&l, m) in emb.layers.iter().zip(&emb.matrices) {
        cols.push("layer", l as f64);
        cols.push("tokens", m.rows() as f64);
        let row = layer_row(m, opts, &token_text, &sentence)
            .map_err(|e| e.context(format!("layer {l}")))?;
        for (name, bits) in row {
            cols.push(&name, f64::from_bits(bits));
        }
    }
    let columns = cols
        .0
        .into_iter()
        .map(|(name, v)| {
            if COUNTS.contains(&name.as_str()) {
                Column::new(name.into(), v.iter().map(|&x| x as u32).collect::<Vec<_>>())
            } else {
                Column::new(name.into(), v)
            }
        })
        .collect();
    Ok(DataFrame::new_infer_height(columns)?.fresh())
}

/// The columns of every chosen measure for the layer `m`, in table order, each value as its bits
/// (`f64::to_bits`, so it comes back exact from the cache): cached on disk by the rows' values,
/// the options, and the token texts and sentence ids the measures read.
fn layer_row(
    m: &Matrix,
    opts: &MeasureOptions,
    token_text: &[String],
    sentence: &[u32],
) -> Result<Vec<(String, u64)>> {
    let key = Key::new("layer-measures")
        .matrix(m)
        .debug(opts)
        .debug(&token_text)
        .debug(&sentence);
    cached_json(
        key,
        |row: &Vec<(String, u64)>| {
            let mut names: Vec<&str> = row.iter().map(|(name, _)| name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            if row.is_empty() != opts.measures.is_empty() {
                bail!("{} columns for {} measures", row.len(), opts.measures.len());
            }
            if names.len() != row.len() {
                bail!("{} columns, {} distinct names", row.len(), names.len());
            }
            Ok(())
        },
        || {
            let mut cols = Columns::default();
            for &measure in &Measure::ALL {
                if opts.measures.contains(&measure) {
                    measure_layer(m, measure, opts, token_text, sentence, &mut cols)?;
                }
            }
            Ok(cols
                .0
                .into_iter()
                .map(|(name, v)| (name, v[0].to_bits()))
                .collect())
        },
    )
}

/// Adds the columns of `measure` for the layer `m`. One arm per measure, so a
/// reader finds each column's computation in one place; that makes it long.
fn measure_layer(
    m: &Matrix,
    measure: Measure,
    opts: &MeasureOptions,
    token_text: &[String],
    sentence: &[u32],
    cols: &mut Columns,
) -> Result<()> {
    match measure {
        Measure::Isotropy => {
            let i = isotropy(m)?;
            cols.push("isotropy", i.value);
            cols.push("isotropy_sign_min", i.sign_min);
            cols.push("isotropy_sign_max", i.sign_max);
            cols.push("isotropy_both_signs", i.both_signs);
            let dead = dead_coordinates(m);
            let live = if dead.is_empty() {
                i
            } else {
                isotropy(&m.without_columns(&dead))?
            };
            cols.push("dead_dims", dead.len() as f64);
            cols.push("isotropy_live", live.value);
        }
        Measure::Cosine if opts.measures.contains(&Measure::Rogue) => {
            // The mean cosine is the sum of the rogue contributions: computed once, with them.
        }
        Measure::Cosine => {
            cols.push("mean_cosine", CosineContributions::of(m)?.mean_cosine);
        }
        Measure::Spectrum => {
            let s = Spectrum::of(m)?;
            cols.push("isoscore", s.isoscore()?);
            cols.push("participation_ratio", s.participation_ratio());
            for (name, f) in [("pc50", 0.5), ("pc80", 0.8), ("pc90", 0.9), ("pc99", 0.99)] {
                cols.push(name, s.components_for(f) as f64);
            }
            cols.push("dominant", s.dominant(DOMINANT_FACTOR) as f64);
        }
        Measure::Rogue => {
            let c = CosineContributions::of(m)?;
            if opts.measures.contains(&Measure::Cosine) {
                cols.push("mean_cosine", c.mean_cosine);
            }
            cols.push("rogue_dim", c.top(1)[0].0 as f64);
            cols.push("rogue_share", c.top_share(1));
            cols.push("rogue3_share", c.top_share(3));
        }
        Measure::SelfSimilarity => {
            let refs: Vec<&str> = token_text.iter().map(String::as_str).collect();
            let s = self_similarity(m, &refs, opts.min_occurrences)?;
            cols.push("self_similarity", s.mean);
            cols.push("self_similarity_types", s.per_type.len() as f64);
        }
        Measure::IntraSentence => {
            cols.push("intra_sentence", intra_sentence_similarity(m, sentence)?);
        }
        Measure::Clusters => {
            let kopts = KMeansOptions {
                seed: opts.seed,
                ..KMeansOptions::new(2)
            };
            let choice = choose_k(
                m,
                opts.k_range.0..=opts.k_range.1,
                &kopts,
                opts.silhouette_sample,
                opts.silhouette_floor,
            )?;
            let best = choice
                .scores
                .iter()
                .find(|s| s.0 == choice.k)
                .map_or(f64::NAN, |s| s.1);
            let local = local_isotropy(m, &choice.clustering.labels)?;
            // The mean over clusters with a finite value (clusters of one row have none).
            let mean_of = |value: fn(&LocalIsotropy) -> f64| -> f64 {
                let v: Vec<f64> = local.iter().map(value).filter(|x| x.is_finite()).collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            };
            cols.push("clusters", choice.k as f64);
            cols.push("silhouette", best);
            cols.push("cluster_isotropy", mean_of(|c| c.isotropy_both_signs));
            cols.push("cluster_mean_cosine", mean_of(|c| c.mean_cosine));
        }
        Measure::LocalDimension => {
            let lid = local_dimension(m, opts.lid_k, Some(opts.lid_queries), opts.seed)?;
            cols.push("local_dimension", lid.mean);
        }
    }
    Ok(())
}

/// [`layer_table`] for several models on the same data, stacked by [`crate::util::frame::by_model`].
pub fn compare_layers(models: &[(&str, &Embeddings)], opts: &MeasureOptions) -> Result<DataFrame> {
    let tables = models
        .iter()
        .map(|(name, emb)| Ok((*name, layer_table(emb, opts)?)))
        .collect::<Result<Vec<_>>>()?;
    crate::util::frame::by_model(&tables)
}

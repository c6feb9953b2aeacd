//! The geometry trace: while a model trains, a fixed probe set (a seeded sample of dev inputs)
//! is embedded every K steps and each layer's geometry is recorded, so the notebooks can show
//! I(W), mean cosine, IsoScore and the head of the spectrum moving step by step.

use crate::finetune::data::TaskData;
use crate::geometry::isotropy::isotropy;
use crate::geometry::similarity::mean_cosine;
use crate::geometry::spectrum::{Spectrum, DOMINANT_FACTOR};
use crate::nn::model::Model;
use crate::util::sample::sorted_sample;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// How many explained-variance ratios a trace line keeps (the head of the spectrum).
pub const SPECTRUM_HEAD: usize = 8;

/// One layer's geometry at one step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TracePoint {
    /// Optimizer steps taken when it was measured (0 = the base model).
    pub step: usize,
    /// Hidden state (0 = embedding output).
    pub layer: usize,
    /// Token rows measured (every real token of the probe set; `[CLS]` and `[SEP]` left out, as
    /// in the authors' protocol).
    pub tokens: usize,
    /// Mu & Viswanath's I(W).
    pub isotropy: f64,
    /// I(W) over both signs of each eigenvector.
    pub isotropy_both_signs: f64,
    /// Mean cosine similarity over all pairs of distinct rows.
    pub mean_cosine: f64,
    /// IsoScore.
    pub isoscore: f64,
    /// The participation ratio (Σλ)² / Σλ² of the covariance's eigenvalues (logs written before
    /// it was recorded have none).
    #[serde(default)]
    pub participation_ratio: Option<f64>,
    /// Directions with variance above [`DOMINANT_FACTOR`] × the mean variance.
    pub dominant: usize,
    /// The largest explained-variance ratios, in decreasing order.
    pub explained: Vec<f64>,
}

/// The probe set: a seeded sample of `n` examples of `data` (all when it has fewer).
pub fn probe_rows(data: &TaskData, n: usize, seed: u64) -> Vec<usize> {
    sorted_sample(data.len(), Some(n), seed)
}

/// Inputs per batch when the probe set is embedded.
const TRACE_BATCH: usize = 64;

/// Embeds the probe rows with the encoder as it is now (inference mode) and measures every
/// layer. For data held apart (a bi-encoder's), the probe rows' first sentences.
pub fn measure(
    model: &Model,
    data: &TaskData,
    rows: &[usize],
    step: usize,
) -> Result<Vec<TracePoint>> {
    let layers: Vec<usize> = (0..model.encoder.num_hidden_states()).collect();
    // Every token of the probe rows but [CLS] and [SEP] (the authors' protocol).
    let matrices = data.embed_content(model, rows, &layers, TRACE_BATCH)?;
    matrices
        .into_iter()
        .enumerate()
        .map(|(layer, w)| {
            let tokens = w.rows();
            let iso = isotropy(&w)?;
            let spectrum = Spectrum::of(&w)?;
            Ok(TracePoint {
                step,
                layer,
                tokens,
                isotropy: iso.value,
                isotropy_both_signs: iso.both_signs,
                mean_cosine: mean_cosine(&w)?,
                isoscore: spectrum.isoscore()?,
                participation_ratio: Some(spectrum.participation_ratio()),
                dominant: spectrum.dominant(DOMINANT_FACTOR),
                explained: spectrum.ratios().into_iter().take(SPECTRUM_HEAD).collect(),
            })
        })
        .collect()
}

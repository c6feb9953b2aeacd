//! The geometry trace: while a model trains, a fixed probe set (a seeded sample of dev inputs)
//! is embedded every K steps and each layer's geometry is recorded, so the notebooks can show
//! I(W), mean cosine, IsoScore and the head of the spectrum moving step by step.

use crate::encoder::Mode;
use crate::finetune::classifier::SequenceClassifier;
use crate::finetune::data::TaskData;
use crate::geometry::isotropy::isotropy;
use crate::geometry::similarity::mean_cosine;
use crate::geometry::spectrum::{Spectrum, DOMINANT_FACTOR};
use crate::matrix::Matrix;
use anyhow::Result;
use rand::rngs::StdRng;
use rand::SeedableRng;
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
    /// Token rows measured (every real token of the probe set, [CLS] and [SEP] included).
    pub tokens: usize,
    /// Mu & Viswanath's I(W).
    pub isotropy: f64,
    /// I(W) over both signs of each eigenvector.
    pub isotropy_both_signs: f64,
    /// Mean cosine similarity over all pairs of distinct rows.
    pub mean_cosine: f64,
    /// IsoScore.
    pub isoscore: f64,
    /// Directions with variance above [`DOMINANT_FACTOR`] × the mean variance.
    pub dominant: usize,
    /// The largest explained-variance ratios, in decreasing order.
    pub explained: Vec<f64>,
}

/// The probe set: a seeded sample of `n` examples of `data` (all when it has fewer).
pub fn probe_rows(data: &TaskData, n: usize, seed: u64) -> Vec<usize> {
    if n >= data.len() {
        return (0..data.len()).collect();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows = rand::seq::index::sample(&mut rng, data.len(), n).into_vec();
    rows.sort_unstable();
    rows
}

/// Embeds the probe rows with the model as it is now (inference mode) and measures every layer.
pub fn measure(
    model: &SequenceClassifier,
    data: &TaskData,
    rows: &[usize],
    step: usize,
) -> Result<Vec<TracePoint>> {
    let enc = &model.model.encoder;
    let layers = enc.num_hidden_states();
    let hidden = model.model.config().hidden_size;
    let pad = model.model.config().pad_token_id as u32;
    let mut data_by_layer: Vec<Vec<f32>> = vec![Vec::new(); layers];
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|&i| data.encodings[i].len());
    for chunk in sorted.chunks(64) {
        let batch = data.batch(chunk, pad, &model.model.device)?;
        let states = enc.run(
            &batch.ids,
            &batch.types,
            &batch.mask,
            layers - 1,
            &mut Mode::Eval,
        )?;
        let seq = batch.ids.dim(1)?;
        for (l, state) in states.iter().enumerate() {
            let flat: Vec<f32> = state.flatten_all()?.to_vec1()?;
            for (bi, &row) in chunk.iter().enumerate() {
                let n = data.encodings[row].len();
                let start = bi * seq * hidden;
                data_by_layer[l].extend_from_slice(&flat[start..start + n * hidden]);
            }
        }
    }
    data_by_layer
        .into_iter()
        .enumerate()
        .map(|(layer, d)| {
            let tokens = d.len() / hidden;
            let w = Matrix::new(tokens, hidden, d)?;
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
                dominant: spectrum.dominant(DOMINANT_FACTOR),
                explained: spectrum.ratios().into_iter().take(SPECTRUM_HEAD).collect(),
            })
        })
        .collect()
}

//! A bi-encoder: each sentence embedded on its own and mean-pooled, two sentences compared by the
//! cosine of their vectors, trained as sentence-transformers' `CosineSimilarityLoss` trains one
//! (the squared error between the cosine and the gold similarity scaled to [0, 1]).
//!
//! This is how all-MiniLM-L6-v2 itself is used, and how chapter 05 scores STS-B; a
//! [`crate::finetune::classifier::SequenceClassifier`] reads a pair as one input instead (a
//! cross-encoder). The pooling is the one the chapters measure: the mean of the last layer's
//! token vectors with `[CLS]` and `[SEP]` left out (the authors' protocol; sentence-transformers
//! averages them in), so the score a run trains for is the score the chapters report.

use crate::data::fetch;
use crate::finetune::data::TaskData;
use crate::finetune::metrics::{score, Labels, Scores};
use crate::nn::batch::Batch;
use crate::nn::bert::Mode;
use crate::nn::dropout::Dropout;
use crate::nn::model::{read_config, Model};
use crate::nn::weights::{read_checkpoint, trainable};
use crate::util::atomic;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var, D};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::Encoding;

/// The largest gold score of STS-B: targets are the gold score divided by it.
pub const STSB_MAX_SCORE: f64 = 5.0;

/// Cosines below this norm product are computed against it (an input with no token left after
/// `[CLS]` and `[SEP]` pools to the zero vector).
const NORM_FLOOR: f64 = 1e-8;

/// A BERT encoder trained as a sentence encoder, its weights trainable variables.
pub struct SentenceEncoder {
    /// The encoder with its tokenizer (shares its weights with [`SentenceEncoder::params`]).
    pub model: Model,
    params: Vec<(String, Var)>,
    config_json: Value,
}

impl SentenceEncoder {
    /// The encoder of `base` (a registry name, hub id or folder) as trainable variables; a pooler
    /// or classifier in the checkpoint is left out (a sentence encoder does not use them).
    pub fn from_base(base: &str) -> Result<Self> {
        let files = fetch::resolve_model(base)?;
        let (_, raw) = read_config(&files)?;
        let tensors = read_checkpoint(&files.weights)?;
        let device = Device::Cpu;
        let (params, vb) = trainable(
            &tensors,
            |n| n.starts_with("bert.embeddings.") || n.starts_with("bert.encoder."),
            &device,
        )?;
        let model = Model::with_weights(files, vb, &device)?;
        Ok(Self {
            model,
            params,
            config_json: raw,
        })
    }

    /// The trainable tensors under transformers' names, sorted by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// The pooled vectors of `encodings[rows]` (rows × hidden): the mean of each input's
    /// last-layer vectors over its tokens but `[CLS]`, `[SEP]` and padding. Also returns the
    /// batch (for its token counts).
    fn embed(
        &self,
        encodings: &[Encoding],
        rows: &[usize],
        mode: &mut Mode,
    ) -> Result<(Tensor, Batch)> {
        let device = &self.model.device;
        let batch = Batch::pad(
            encodings,
            rows,
            self.model.config().pad_token_id as u32,
            device,
        )?;
        let (b, len) = batch.ids.dims2()?;
        let layers = self.model.encoder.num_hidden_states() - 1;
        let states = self
            .model
            .encoder
            .run(&batch.ids, &batch.types, &batch.mask, layers, mode)?;
        let last = states.last().expect("at least the embedding output");
        let mut weights = vec![0f32; b * len];
        let mut counts = vec![1f32; b];
        for (r, &i) in rows.iter().enumerate() {
            let special = encodings[i].get_special_tokens_mask();
            let kept: Vec<usize> = (0..special.len()).filter(|&p| special[p] == 0).collect();
            kept.iter().for_each(|&p| weights[r * len + p] = 1.0);
            counts[r] = kept.len().max(1) as f32;
        }
        let weights = Tensor::from_vec(weights, (b, len, 1), device)?;
        let counts = Tensor::from_vec(counts, (b, 1), device)?;
        let pooled = last
            .broadcast_mul(&weights)?
            .sum(1)?
            .broadcast_div(&counts)?;
        Ok((pooled, batch))
    }

    /// The cosine of each row of `u` with the same row of `v` (rows).
    fn cosines(u: &Tensor, v: &Tensor) -> Result<Tensor> {
        let dot = (u * v)?.sum(D::Minus1)?;
        let norms = (u.sqr()?.sum(D::Minus1)?.sqrt()? * v.sqr()?.sum(D::Minus1)?.sqrt()?)?;
        Ok(dot.div(&norms.clamp(NORM_FLOOR, f64::MAX)?)?)
    }

    /// The training loss on the pairs `rows` of `data` (which must hold each pair's sentences
    /// apart, [`TaskData::new_apart`]): the mean squared error between each pair's cosine and its
    /// gold score / [`STSB_MAX_SCORE`], with dropout from `dropout`. Returns the loss and the two
    /// batches' real and padded token counts.
    pub fn loss(
        &self,
        data: &TaskData,
        rows: &[usize],
        dropout: &mut Dropout,
    ) -> Result<(Tensor, usize, usize)> {
        let second = data
            .second
            .as_ref()
            .context("bi-encoder: the data holds sentence pairs as one input, not apart")?;
        let targets = match &data.labels {
            Some(Labels::Scores(s)) => {
                let t: Vec<f32> = rows
                    .iter()
                    .map(|&i| (s[i] / STSB_MAX_SCORE) as f32)
                    .collect();
                Tensor::new(t, &self.model.device)?
            }
            _ => bail!(
                "bi-encoder: {} has no similarity scores to train on",
                data.task
            ),
        };
        let mut mode = Mode::Train(dropout);
        let (u, first_batch) = self.embed(&data.encodings, rows, &mut mode)?;
        let (v, second_batch) = self.embed(second, rows, &mut mode)?;
        let loss = Self::cosines(&u, &v)?.sub(&targets)?.sqr()?.mean_all()?;
        Ok((
            loss,
            first_batch.tokens + second_batch.tokens,
            first_batch.ids.elem_count() + second_batch.ids.elem_count(),
        ))
    }

    /// The cosine of every pair of `data` (held apart), in inference mode, in the data's order.
    pub fn pair_cosines(&self, data: &TaskData, batch_size: usize) -> Result<Vec<f64>> {
        if batch_size == 0 {
            bail!("batch size 0: a batch needs at least one example");
        }
        let second = data
            .second
            .as_ref()
            .context("bi-encoder: the data holds sentence pairs as one input, not apart")?;
        let mut out = vec![0f64; data.len()];
        for rows in data.eval_batches(batch_size) {
            let (u, _) = self.embed(&data.encodings, &rows, &mut Mode::Eval)?;
            let (v, _) = self.embed(second, &rows, &mut Mode::Eval)?;
            let c: Vec<f32> = Self::cosines(&u, &v)?.to_vec1()?;
            for (&r, c) in rows.iter().zip(c) {
                out[r] = f64::from(c);
            }
        }
        Ok(out)
    }

    /// Scores the pairs' cosines against the gold similarities (Pearson and Spearman, as GLUE
    /// scores STS-B).
    pub fn evaluate(&self, data: &TaskData, batch_size: usize) -> Result<Scores> {
        let gold = data
            .labels
            .as_ref()
            .with_context(|| format!("{}: this split has no labels to score against", data.task))?;
        score(
            data.task,
            &Labels::Scores(self.pair_cosines(data, batch_size)?),
            gold,
        )
    }

    /// Writes the encoder in the Hugging Face layout into `dir` (which must exist): `config.json`
    /// (the base's, as a `BertModel`), `model.safetensors` (transformers' `BertModel` names, no
    /// `bert.` prefix) and the tokenizer files. Each file is written atomically; the folder loads
    /// with [`Model::load`] and with transformers' `AutoModel`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|(n, v)| {
                let name = n.strip_prefix("bert.").unwrap_or(n).to_string();
                (name, v.as_tensor().clone())
            })
            .collect();
        let bytes = safetensors::serialize(
            tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(HashMap::from([("format".to_string(), "pt".to_string())])),
        )?;
        atomic::write_bytes(&dir.join("model.safetensors"), &bytes)?;
        let mut config = self.config_json.clone();
        if let Some(obj) = config.as_object_mut() {
            obj.insert("architectures".into(), json!(["BertModel"]));
            for key in ["id2label", "label2id", "num_labels", "problem_type"] {
                obj.remove(key);
            }
        }
        atomic::write_bytes(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )?;
        self.model.save_tokenizer(dir)
    }
}

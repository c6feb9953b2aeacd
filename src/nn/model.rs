//! Loading a BERT-family checkpoint: configuration, weights, tokenizer.

use crate::data::fetch::{self, ModelFiles};
use crate::nn::bert::{Config, Encoder};
use crate::nn::weights::read_checkpoint;
use crate::util::atomic;
use crate::util::hash::hex;
use crate::util::memo::sha256_file_cached;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;
use sha2::{Digest, Sha256};
use std::path::Path;
use tokenizers::{Encoding, Tokenizer, TruncationParams, TruncationStrategy};

/// A loaded encoder with its tokenizer.
pub struct Model {
    /// The files it was loaded from.
    pub files: ModelFiles,
    /// The encoder.
    pub encoder: Encoder,
    /// The tokenizer, with its own padding and truncation switched off (batches are padded per
    /// batch, truncation is set per call).
    pub tokenizer: Tokenizer,
    /// sha256 over the configuration, weights and tokenizer: identifies the model in caches.
    pub fingerprint: String,
    /// The device the weights live on.
    pub device: Device,
}

impl Model {
    /// Resolves `spec` (folder, registry name or hub id; see [`crate::data::fetch`]) and loads it on
    /// the default device: the first CUDA GPU when built with the `cuda` feature and one is
    /// present, else the CPU. The weights are read as [`crate::nn::weights::read_checkpoint`]
    /// says: do not load a folder while another program is saving into it.
    pub fn load(spec: &str) -> Result<Model> {
        let files = fetch::resolve_model(spec)?;
        let device = Device::cuda_if_available(0)?;
        Model::load_files(files, &device)
    }

    /// Loads already resolved files on `device`.
    pub fn load_files(files: ModelFiles, device: &Device) -> Result<Model> {
        let tensors = read_checkpoint(&files.weights)?
            .into_iter()
            .map(|(name, t)| Ok((name, t.to_device(device)?)))
            .collect::<Result<_>>()?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Model::with_weights(files, vb, device)
    }

    /// Loads the configuration and tokenizer of `files` and builds the encoder from `vb` (the
    /// checkpoint's tensors under [`crate::nn::weights::canonical_name`]s, or trainable variables
    /// holding them).
    pub(crate) fn with_weights(
        files: ModelFiles,
        vb: VarBuilder<'static>,
        device: &Device,
    ) -> Result<Model> {
        let (config, raw) = read_config(&files)?;
        let mut tokenizer = crate::nn::tokenizer::load(&files.tokenizer)?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| anyhow::anyhow!("{}: {e}", files.tokenizer.display()))?;
        let max_id = tokenizer.get_vocab(true).into_values().max().unwrap_or(0) as usize;
        if max_id >= config.vocab_size {
            bail!(
                "{}: the tokenizer has token ids up to {max_id}, but {} declares vocab_size {} for the embedding matrix: tokenizer and model do not match",
                files.tokenizer.display(),
                files.config.display(),
                config.vocab_size
            );
        }
        let attention_dropout = raw
            .get("attention_probs_dropout_prob")
            .and_then(|v| v.as_f64())
            .unwrap_or(config.hidden_dropout_prob);
        let encoder = Encoder::load(vb, &config, attention_dropout)
            .with_context(|| format!("loading BERT weights from {}", files.weights.display()))?;
        let fingerprint = fingerprint(&files)?;
        Ok(Model {
            files,
            encoder,
            tokenizer,
            fingerprint,
            device: device.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        self.encoder.config()
    }

    /// The last hidden state of this model and `other` (their `num_hidden_layers`), for a
    /// comparison of the two at their last layer; an error naming both when their depths differ
    /// (a fine-tune has its base model's depth, another model may not, and comparing at one index
    /// would then set a middle layer of the deeper model against the last of the other).
    pub fn shared_last_layer(&self, other: &Model) -> Result<usize> {
        let (a, b) = (
            self.config().num_hidden_layers,
            other.config().num_hidden_layers,
        );
        if a != b {
            bail!(
                "'{}' has {a} layers and '{}' has {b}: comparing the two at the last layer \
                 needs models of one depth (a fine-tune of the base model has its depth)",
                self.files.spec,
                other.files.spec
            );
        }
        Ok(a)
    }

    /// Tokenizes sentences or sentence pairs with special tokens, truncating each input to
    /// `max_len` tokens (longest-first for pairs). Returns the encodings and how many inputs were
    /// truncated.
    pub fn tokenize(
        &self,
        inputs: &[(String, Option<String>)],
        max_len: usize,
    ) -> Result<(Vec<Encoding>, usize)> {
        if max_len < 3 {
            bail!("max_len {max_len} is too small: [CLS] and [SEP] alone take 2 tokens");
        }
        let limit = self.config().max_position_embeddings;
        if max_len > limit {
            bail!("max_len {max_len} exceeds the model's max_position_embeddings {limit}");
        }
        let mut tok = self.tokenizer.clone();
        tok.with_truncation(Some(TruncationParams {
            max_length: max_len,
            strategy: TruncationStrategy::LongestFirst,
            ..Default::default()
        }))
        .map_err(|e| anyhow::anyhow!("setting truncation: {e}"))?;
        let batch: Vec<tokenizers::EncodeInput> = inputs
            .iter()
            .map(|(a, b)| match b {
                Some(b) => (a.as_str(), b.as_str()).into(),
                None => a.as_str().into(),
            })
            .collect();
        let encodings = tok
            .encode_batch(batch, true)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        let truncated = encodings
            .iter()
            .filter(|e| !e.get_overflowing().is_empty())
            .count();
        Ok((encodings, truncated))
    }

    /// Writes the tokenizer files into `dir` (which must exist), atomically: `tokenizer.json`
    /// (copied, or built from `vocab.txt` when the model has only that) and whichever of
    /// `vocab.txt`, `tokenizer_config.json` and `special_tokens_map.json` sit beside it.
    pub(crate) fn save_tokenizer(&self, dir: &Path) -> Result<()> {
        let tok = &self.files.tokenizer;
        if tok.file_name().is_some_and(|n| n == "tokenizer.json") {
            let bytes = std::fs::read(tok).with_context(|| format!("reading {}", tok.display()))?;
            atomic::write_bytes(&dir.join("tokenizer.json"), &bytes)?;
        } else {
            let text = self
                .tokenizer
                .to_string(false)
                .map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
            atomic::write_bytes(&dir.join("tokenizer.json"), text.as_bytes())?;
        }
        if let Some(src) = tok.parent() {
            for extra in [
                "vocab.txt",
                "tokenizer_config.json",
                "special_tokens_map.json",
            ] {
                let p = src.join(extra);
                if p.is_file() {
                    atomic::write_bytes(&dir.join(extra), &std::fs::read(&p)?)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads `config.json`, refusing configurations that are not BERT; returns the parsed
/// configuration and the JSON it came from.
pub(crate) fn read_config(files: &ModelFiles) -> Result<(Config, serde_json::Value)> {
    let path = &files.config;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let model_type = value
        .get("model_type")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    if model_type != "bert" {
        bail!(
            "{}: model_type is '{model_type}', but isotropy-lab loads BERT encoders (model_type \"bert\")",
            path.display()
        );
    }
    let config = serde_json::from_value(value.clone())
        .with_context(|| format!("{}: not a BERT configuration", path.display()))?;
    Ok((config, value))
}

/// sha256 over the sha256 of the config, weights and tokenizer files ([`sha256_file_cached`]: the
/// weights are read again only when they changed).
fn fingerprint(files: &ModelFiles) -> Result<String> {
    let mut h = Sha256::new();
    for p in [&files.config, &files.weights, &files.tokenizer] {
        h.update(sha256_file_cached(p)?.as_bytes());
    }
    Ok(hex(&h.finalize()))
}

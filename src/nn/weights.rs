//! The one weight loader: a checkpoint's tensors under transformers' `BertForSequenceClassification`
//! names, whatever layout the checkpoint was saved in.
//!
//! Checkpoints name the same tensor in several ways: task models prefix the encoder with `bert.`,
//! bare encoders (sentence-transformers' all-MiniLM-L6-v2) do not, and old checkpoints such as
//! `bert-base-uncased` call LayerNorm's weight and bias `gamma` and `beta`. [`read_checkpoint`]
//! maps every one of them to `bert.…` with `weight` / `bias`, so the encoder, the pooler and the
//! classifier each read one spelling.

use anyhow::{Context, Result};
use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;

/// Renames a checkpoint tensor to transformers' `BertForSequenceClassification` name, or `None`
/// for tensors no model here uses (an MLM head, the position-id buffer).
///
/// ```
/// use isotropy_lab::nn::weights::canonical_name;
///
/// assert_eq!(
///     canonical_name("embeddings.LayerNorm.gamma").as_deref(),
///     Some("bert.embeddings.LayerNorm.weight")
/// );
/// assert_eq!(
///     canonical_name("bert.pooler.dense.bias").as_deref(),
///     Some("bert.pooler.dense.bias")
/// );
/// assert_eq!(canonical_name("classifier.weight").as_deref(), Some("classifier.weight"));
/// assert_eq!(canonical_name("cls.predictions.bias"), None);
/// assert_eq!(canonical_name("embeddings.position_ids"), None);
/// ```
pub fn canonical_name(name: &str) -> Option<String> {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    let name = if name.contains("LayerNorm.") {
        name.replace("LayerNorm.gamma", "LayerNorm.weight")
            .replace("LayerNorm.beta", "LayerNorm.bias")
    } else {
        name.to_string()
    };
    if name.ends_with("position_ids") {
        return None;
    }
    if name.starts_with("embeddings.")
        || name.starts_with("encoder.")
        || name.starts_with("pooler.")
    {
        Some(format!("bert.{name}"))
    } else if name.starts_with("classifier.") {
        Some(name)
    } else {
        None
    }
}

/// Every float tensor of a checkpoint file (`model.safetensors`, or a PyTorch `pytorch_model.bin`
/// read by candle's restricted pickle reader, which runs no code) in f32 on the CPU, under
/// [`canonical_name`]s. An unreadable file is an error that names it. A safetensors file is
/// mapped into memory while it is copied: nothing may rewrite it in place meanwhile (replacing it
/// by renaming a new file over it is safe; a program saving into the same folder is not).
pub fn read_checkpoint(path: &Path) -> Result<HashMap<String, Tensor>> {
    let raw: Vec<(String, Tensor)> = if path.extension().is_some_and(|e| e == "bin") {
        candle_core::pickle::read_all(path)
    } else {
        read_safetensors(path)
    }
    .with_context(|| {
        format!(
            "{}: cannot read the weights (corrupt or not a checkpoint?)",
            path.display()
        )
    })?;
    let mut out = HashMap::new();
    for (name, t) in raw {
        if let Some(c) = canonical_name(&name) {
            if t.dtype().is_float() {
                let t = t
                    .to_dtype(DType::F32)
                    .with_context(|| format!("{}: tensor '{name}'", path.display()))?;
                out.insert(c, t);
            }
        }
    }
    Ok(out)
}

/// Every tensor of a safetensors file, mapped into memory and copied once into tensors, the
/// tensors in parallel (reading the file into a buffer first copied each weight twice).
fn read_safetensors(path: &Path) -> candle_core::Result<Vec<(String, Tensor)>> {
    // SAFETY: the map is read only while this function copies it (milliseconds). The checkpoints
    // this crate writes or fetches are replaced by renaming new files over them (util::atomic,
    // the wheel unpacking, hf-hub's downloads), never rewritten in place; a program that rewrites
    // a checkpoint in place must not run while it loads (as for `Embeddings::load`).
    let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
    file.tensors()
        .into_par_iter()
        .map(|(name, view)| Ok((name, view.load(&Device::Cpu)?)))
        .collect()
}

/// Trainable variables for the tensors of `tensors` whose names `keep` accepts, sorted by name,
/// and a builder that reads exactly those variables: a model built from it trains them in place.
pub fn trainable(
    tensors: &HashMap<String, Tensor>,
    keep: impl Fn(&str) -> bool,
    device: &Device,
) -> Result<(Vec<(String, Var)>, VarBuilder<'static>)> {
    let mut names: Vec<&String> = tensors.keys().filter(|n| keep(n)).collect();
    names.sort();
    let mut params = Vec::with_capacity(names.len());
    let mut view = HashMap::new();
    for name in names {
        let var = Var::from_tensor(&tensors[name])?;
        view.insert(name.clone(), var.as_tensor().clone());
        params.push((name.clone(), var));
    }
    Ok((params, VarBuilder::from_tensors(view, DType::F32, device)))
}

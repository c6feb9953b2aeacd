//! Padded batches, and every token's hidden states gathered from them: what extraction and the
//! training trace share.

use crate::nn::cpu::contiguous;
use crate::nn::model::Model;
use crate::util::matrix::Matrix;
use anyhow::{bail, Result};
use candle_core::{Device, Storage, Tensor};
use tokenizers::Encoding;

/// A padded batch on the model's device.
pub struct Batch {
    /// Token ids, (batch, seq) u32.
    pub ids: Tensor,
    /// Token type ids (0 for the first sentence, 1 for the second).
    pub types: Tensor,
    /// 1 for real tokens, 0 for padding.
    pub mask: Tensor,
    /// Real tokens in the batch (without padding).
    pub tokens: usize,
}

impl Batch {
    /// Pads `encodings[rows]` to the longest of them: ids with `pad_id`, type ids with 0, mask 0.
    pub fn pad(
        encodings: &[Encoding],
        rows: &[usize],
        pad_id: u32,
        device: &Device,
    ) -> Result<Batch> {
        let len = rows.iter().map(|&i| encodings[i].len()).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(rows.len() * len);
        let mut types = Vec::with_capacity(rows.len() * len);
        let mut mask = Vec::with_capacity(rows.len() * len);
        let mut tokens = 0;
        for &i in rows {
            let e = &encodings[i];
            let n = e.len();
            tokens += n;
            ids.extend_from_slice(e.get_ids());
            ids.extend(std::iter::repeat_n(pad_id, len - n));
            types.extend_from_slice(e.get_type_ids());
            types.extend(std::iter::repeat_n(0, len - n));
            mask.extend(std::iter::repeat_n(1u32, n));
            mask.extend(std::iter::repeat_n(0u32, len - n));
        }
        let shape = (rows.len(), len);
        Ok(Batch {
            ids: Tensor::from_vec(ids, shape, device)?,
            types: Tensor::from_vec(types, shape, device)?,
            mask: Tensor::from_vec(mask, shape, device)?,
            tokens,
        })
    }
}

/// Which token rows of each input a gathered matrix keeps, and where they go.
#[derive(Debug, Clone)]
pub(crate) struct TokenRows {
    /// Per input (index into the encodings), the positions kept, ascending.
    kept: Vec<Vec<usize>>,
    /// Per input, the matrix row of its first kept position.
    offsets: Vec<usize>,
    /// Rows in all.
    total: usize,
}

impl TokenRows {
    /// Keeps `kept[i]` positions of input `i`; the inputs' rows follow each other in `placement`
    /// order (each input at most once; inputs not in it keep nothing).
    pub(crate) fn new(kept: Vec<Vec<usize>>, placement: &[usize]) -> Result<TokenRows> {
        let mut offsets = vec![usize::MAX; kept.len()];
        let mut total = 0;
        for &i in placement {
            if i >= kept.len() || offsets[i] != usize::MAX {
                bail!("token rows: input {i} is out of range or placed twice");
            }
            offsets[i] = total;
            total += kept[i].len();
        }
        Ok(TokenRows {
            kept,
            offsets,
            total,
        })
    }

    /// The number of rows of a gathered matrix.
    pub(crate) fn total(&self) -> usize {
        self.total
    }

    /// The positions kept of input `i`.
    pub(crate) fn kept(&self, i: usize) -> &[usize] {
        &self.kept[i]
    }
}

/// Runs `model`'s encoder (inference mode) over the inputs `order` (indices into `encodings`),
/// padded in batches of `batch_size` in that order, and gathers the kept token rows of each hidden
/// state in `layers` (ascending) into one matrix per layer, laid out as `rows` says. `done(n)` is
/// called after each batch of `n` inputs (for progress).
pub(crate) fn embed_tokens(
    model: &Model,
    encodings: &[Encoding],
    order: &[usize],
    batch_size: usize,
    layers: &[usize],
    rows: &TokenRows,
    mut done: impl FnMut(usize),
) -> Result<Vec<Matrix>> {
    if batch_size == 0 {
        bail!("batch_size must be at least 1");
    }
    let Some(&up_to) = layers.last() else {
        bail!("no layers requested");
    };
    let states = model.encoder.num_hidden_states();
    if !layers.windows(2).all(|w| w[0] < w[1]) || up_to >= states {
        bail!("layers {layers:?}: expected ascending hidden states below {states}");
    }
    if rows.kept.len() != encodings.len() {
        bail!(
            "token rows for {} inputs, {} encodings",
            rows.kept.len(),
            encodings.len()
        );
    }
    for &i in order {
        let placed = rows.offsets.get(i).is_some_and(|&o| o != usize::MAX);
        let len = encodings.get(i).map_or(0, Encoding::len);
        if !placed || rows.kept[i].iter().any(|&p| p >= len) {
            bail!("input {i}: not placed in the token rows, or a kept position past its end");
        }
    }
    let (encoder, device) = (&model.encoder, &model.device);
    let pad_id = model.config().pad_token_id as u32;
    let hidden = model.config().hidden_size;
    let mut data: Vec<Vec<f32>> = layers
        .iter()
        .map(|_| vec![0f32; rows.total * hidden])
        .collect();
    for batch in order.chunks(batch_size) {
        let b = Batch::pad(encodings, batch, pad_id, device)?;
        let states = encoder.forward_all(&b.ids, &b.types, &b.mask, up_to)?;
        for (li, &layer) in layers.iter().enumerate() {
            let state = states[layer].to_device(&Device::Cpu)?.contiguous()?;
            let seq = state.dim(1)?;
            let (storage, layout) = state.storage_and_layout();
            let Storage::Cpu(storage) = &*storage else {
                bail!("hidden state {layer}: not on the CPU after copying it there");
            };
            // The rows are read in place, not copied out of the tensor first.
            let flat = contiguous(storage, layout, "gathering hidden states")?;
            for (bi, &s) in batch.iter().enumerate() {
                for (r, &pos) in rows.kept[s].iter().enumerate() {
                    let src = (bi * seq + pos) * hidden;
                    let dst = (rows.offsets[s] + r) * hidden;
                    data[li][dst..dst + hidden].copy_from_slice(&flat[src..src + hidden]);
                }
            }
        }
        done(batch.len());
    }
    data.into_iter()
        .map(|d| Matrix::new(rows.total, hidden, d))
        .collect()
}

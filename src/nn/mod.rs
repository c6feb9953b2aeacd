//! Neural networks on candle: the BERT encoder, its kernels, and loading a checkpoint with its
//! tokenizer. Below the geometry and the analyses, as candle's kernels (`candle-nn`) sit below
//! its models.
//!
//! - [`model`]: a checkpoint loaded (configuration, weights, tokenizer) and tokenizing;
//! - [`weights`]: a checkpoint's tensors under transformers' names (the one weight loader);
//! - [`tokenizer`]: `tokenizer.json`, or BERT's tokenizer built from `vocab.txt`;
//! - [`bert`]: the encoder, returning every hidden state, in inference or training mode;
//! - [`kernels`]: the fused CPU kernels of inference and training (Linear, attention, LayerNorm,
//!   GELU), each with a backward pass;
//! - [`dropout`]: seeded, counter-based dropout masks;
//! - [`batch`]: padded batches, and every token's hidden states gathered from them.

pub mod batch;
pub mod bert;
mod cpu;
pub mod dropout;
pub mod kernels;
pub mod model;
pub mod tokenizer;
pub mod weights;

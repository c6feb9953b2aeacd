//! # isotropy-lab
//!
//! Support crate for reproducing *How Does Fine-tuning Affect the Geometry of Embedding Space: A
//! Case Study on Isotropy* (Rajaee & Pilehvar, Findings of EMNLP 2021) in Rust notebooks.
//!
//! - [`fetch`] and [`model`]: BERT-family checkpoints by name, hub id or folder, on candle;
//! - [`glue`]: GLUE tasks as polars DataFrames;
//! - [`encoder`]: a BERT encoder that returns every hidden state;
//! - [`extract`]: token embeddings of every layer with a token table, cached on disk;
//! - [`geometry`]: isotropy measures, spectra, clusters, enhancement methods (faer, f64);
//! - [`finetune`]: fine-tuning on GLUE (sequence classification), resumable, with a geometry
//!   trace;
//! - [`probe`]: linear probes (logistic regression) on chosen directions;
//! - [`stats`]: correlations (STS-B's metrics) and mutual information;
//! - [`display`] and [`plot`]: HTML tables and SVG figures inline in Jupyter (evcxr).
//!
//! Notebooks start with `use isotropy_lab::prelude::*;`.

pub mod atomic;
pub mod display;
pub mod encoder;
pub mod extract;
pub mod fetch;
pub mod finetune;
pub mod geometry;
pub mod glue;
pub mod matrix;
pub mod model;
pub mod paths;
pub mod plot;
pub mod probe;
pub mod profile;
pub mod progress;
pub mod registry;
pub mod stats;
pub mod tokenizer;
pub mod tokens;

pub use candle_core;
pub use faer;
pub use polars;

/// Everything a notebook needs, in one `use`.
pub mod prelude {
    pub use crate::display::{by_model, html_table, key_number, EvcxrDisplay, Fresh};
    pub use crate::extract::{Embeddings, ExtractOptions, Source};
    pub use crate::finetune::classifier::SequenceClassifier;
    pub use crate::finetune::log::TrainingLog;
    pub use crate::finetune::metrics::{score, Labels, Scores};
    pub use crate::finetune::train::{finetune, read_best, Budget, FinetuneOptions};
    pub use crate::geometry::cluster::{
        choose_k, cluster_table, kmeans, silhouette, Clustering, KMeansOptions,
    };
    pub use crate::geometry::enhance::{enhance_embeddings, method_table, Method, Scorer};
    pub use crate::geometry::isotropy::{isotropy, Isotropy};
    pub use crate::geometry::lid::local_dimension;
    pub use crate::geometry::similarity::{
        intra_sentence_similarity, mean_cosine, self_similarity, CosineContributions,
    };
    pub use crate::geometry::spectrum::{Pca, Spectrum};
    pub use crate::geometry::structure::{
        cluster_composition, cluster_structure, pca_points, sentence_pca_points, structure_scores,
    };
    pub use crate::geometry::table::{compare_layers, layer_table, Measure, MeasureOptions};
    pub use crate::glue::{Split, Task};
    pub use crate::matrix::Matrix;
    pub use crate::model::Model;
    pub use crate::plot::{Figure, LineChart, ScatterChart};
    pub use crate::probe::{
        direction_probes, split_half_accuracy, LogisticRegression, ProbeOptions,
    };
    pub use crate::profile::{env_or, finetuned_for, quick};
    pub use crate::stats::{normalized_mutual_info, pearson, spearman, sts_spearman};
    pub use crate::tokens::TokenClass;
    pub use anyhow::Result;
    pub use polars::prelude::{Column, DataFrame, Float64Chunked, NamedFrom, Series};
}

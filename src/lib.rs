//! # isotropy-lab
//!
//! Support crate for reproducing *How Does Fine-tuning Affect the Geometry of Embedding Space: A
//! Case Study on Isotropy* (Rajaee & Pilehvar, Findings of EMNLP 2021) in Rust notebooks.
//!
//! The crate is cut into layers that depend one way: a module imports only from its own layer and
//! the layers listed before it (`tests/layers.rs` checks this).
//!
//! | layer | holds | needs |
//! |---|---|---|
//! | [`util`] | atomic writes, paths, progress, hashing, seeded samples, [`util::matrix::Matrix`], DataFrame helpers | — |
//! | [`data`] | GLUE tasks as DataFrames, model files by name / hub id / folder, token classes | util |
//! | [`nn`] | the BERT encoder on candle, its kernels, batching, checkpoint and tokenizer loading | util, data |
//! | [`geometry`] | isotropy, similarity, spectrum, clusters, LID, enhancement methods, logistic regression, statistics: plain matrices in, numbers out (faer; no candle, no polars) | util |
//! | [`analysis`] | extraction with a token table, layer tables, local structure, method tables, probes | all of the above |
//! | [`finetune`] | sequence classification on GLUE: classifier, data, optimiser, metrics, resumable training with a geometry trace | all of the above |
//! | [`notebook`] | HTML tables, SVG figures, run profiles | all of the above |
//!
//! Notebooks start with `use isotropy_lab::prelude::*;`.

pub mod analysis;
pub mod data;
pub mod finetune;
pub mod geometry;
pub mod nn;
pub mod notebook;
pub mod util;

pub use candle_core;
pub use faer;
pub use polars;

/// Everything a notebook needs, in one `use`.
pub mod prelude {
    pub use crate::analysis::claims::{noise_margin, Verdict};
    pub use crate::analysis::extract::{Embeddings, ExtractOptions, Source};
    pub use crate::analysis::layers::{compare_layers, layer_table, Measure, MeasureOptions};
    pub use crate::analysis::methods::{
        enhance_embeddings, method_table, sts_method_scores, Scorer, StsMethodScores,
    };
    pub use crate::analysis::probes::{
        split_half_accuracy, token_direction_probes, TokenProbeOptions, TokenTarget,
    };
    pub use crate::analysis::protocol::Protocol;
    pub use crate::analysis::spread::{
        bootstrap_layer, bootstrap_pair, bootstrap_statistic, summarise, Statistic,
    };
    pub use crate::analysis::structure::{
        cluster_composition, cluster_table, clustering_agreement, pca_points, sentence_pca_points,
        structure_over_seeds, structure_scores,
    };
    pub use crate::data::glue::{Split, Task};
    pub use crate::data::tokens::TokenClass;
    pub use crate::finetune::classifier::SequenceClassifier;
    pub use crate::finetune::experiment::{
        layers_frame, runs_frame, spread_over_seeds, verdicts, RegExperiment,
    };
    pub use crate::finetune::isotropy_reg::{
        isoscore_star, IsotropyReg, Penalty, Reference, RegLayer, DEFAULT_ZETA,
    };
    pub use crate::finetune::log::TrainingLog;
    pub use crate::finetune::metrics::{score, Labels, Scores};
    pub use crate::finetune::train::{finetune, read_best, Budget, FinetuneOptions};
    pub use crate::geometry::cluster::{
        choose_k, kmeans, local_isotropy, silhouette, Clustering, KMeansInit, KMeansOptions,
    };
    pub use crate::geometry::enhance::Method;
    pub use crate::geometry::isotropy::{dead_coordinates, isotropy, Isotropy};
    pub use crate::geometry::lid::local_dimension;
    pub use crate::geometry::logistic::{LogisticRegression, ProbeOptions};
    pub use crate::geometry::similarity::{
        intra_sentence_similarity, mean_cosine, self_similarity, CosineContributions,
    };
    pub use crate::geometry::spectrum::{Pca, Spectrum};
    pub use crate::geometry::stats::{
        adjusted_rand_index, cosine, normalized_mutual_info, pearson, spearman, sts_spearman,
        Spread,
    };
    pub use crate::nn::model::Model;
    pub use crate::notebook::display::{html_table, key_number, Captioned, EvcxrDisplay};
    pub use crate::notebook::plot::{Figure, LineChart, ScatterChart};
    pub use crate::notebook::profile::{
        base_model, describe_models, env_or, finetuned_bi_encoder, finetuned_for, finetuned_runs,
        quick, Profile,
    };
    pub use crate::util::frame::{by_model, column_numbers, column_texts, value_at, Fresh};
    pub use crate::util::matrix::Matrix;
    pub use crate::util::paths::model_display_name;
    pub use anyhow::{anyhow, Context, Result};
    pub use polars::prelude::{Column, DataFrame, DataType, Float64Chunked, NamedFrom, Series};
}

//! Analyses of extracted embeddings: the geometry toolkit applied to real token vectors with
//! their token table, as polars DataFrames.
//!
//! - [`extract`]: token vectors of every layer with a token table, cached on disk;
//! - [`protocol`]: which rows are measured, which I(W), how clusters and spreads are drawn;
//! - [`columns`]: the token table's column names;
//! - [`layers`]: every measure as one table per extraction, one row per layer;
//! - [`structure`]: what clusters hold, mutual information with token classes, PCA views;
//! - [`methods`]: the enhancement methods applied to an extraction, and their table;
//! - [`probes`]: linear probes on sentence vectors and on dominant directions;
//! - [`spread`]: a measurement's spread over seeds or bootstrap resamples;
//! - [`claims`]: the paper's claims as three-way verdicts with a noise margin.

pub mod claims;
pub mod columns;
pub mod extract;
pub mod layers;
pub mod methods;
pub mod probes;
pub mod protocol;
pub mod spread;
pub mod structure;

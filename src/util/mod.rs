//! The bottom layer: what every other layer uses and that knows nothing of models, data or
//! geometry.
//!
//! - [`atomic`]: files and folders written atomically;
//! - [`paths`]: where models, data and caches live;
//! - [`progress`]: a bar on a terminal, periodic lines in a notebook;
//! - [`hash`]: sha256 of files, as hex;
//! - [`sample`]: the seeded, sorted sample of row indices every layer draws;
//! - [`matrix`]: the row-major f32 matrix that carries token vectors between layers;
//! - [`exp`]: e^x without a branch or a library call, for loops that vectorise;
//! - [`memo`]: results cached on disk by their inputs and the crate's build;
//! - [`frame`]: polars DataFrames that stay usable from notebook cell to cell;
//! - [`process`]: process-wide tuning for long training runs (allocator, candle's threads).

pub mod atomic;
pub mod exp;
pub mod frame;
pub mod hash;
pub mod matrix;
pub mod memo;
pub mod paths;
pub mod process;
pub mod progress;
pub mod sample;

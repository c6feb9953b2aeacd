//! The top layer: what a notebook needs beyond the analyses.
//!
//! - [`display`]: DataFrames as HTML tables inline in Jupyter, and key numbers;
//! - [`plot`]: SVG figures (plotters);
//! - [`profile`]: the quick and default run profiles and notebook parameters.

pub mod display;
pub mod plot;
pub mod profile;

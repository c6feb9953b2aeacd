//! isotropy-lab, and every crate it depends on, linked into one Rust dynamic library for the
//! notebook kernel. A cell that names this crate (`use isotropy_lab_kernel as _;`, in the prelude
//! of `notebooks/evcxr.toml`) takes `isotropy_lab`, polars, candle and the rest from this library
//! instead of linking their archives into the cell's own library.

pub use isotropy_lab;

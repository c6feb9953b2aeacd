//! CPU storage access shared by the custom candle operations (the kernels and dropout).

use candle_core::{CpuStorage, Layout};

/// The f32 values of a contiguous CPU storage; an error names the operation otherwise.
pub(crate) fn contiguous<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: training kernels take f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

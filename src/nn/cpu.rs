//! What the custom candle operations (the kernels and dropout) share: CPU storage access, and
//! running a loop for the CPU's widest instruction set.

use candle_core::{CpuStorage, Layout};

/// The f32 values of a contiguous CPU storage; an error names the operation otherwise.
pub(crate) fn contiguous<'a>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: the fused kernels take f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// Runs `f` compiled for the widest instruction set the CPU has (AVX-512 or AVX2 where present,
/// chosen at run time by pulp), so that its loops vectorise for that set rather than for the
/// baseline SSE2. `f` must be an `#[inline(always)]` closure (otherwise it is compiled on its own,
/// for the baseline), and its loops index loops or loops over fixed-size chunks (an iterator
/// adapter's `fold` may also be compiled on its own).
#[inline(always)]
pub(crate) fn widest<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

//! Training kernels with a backward pass, and seeded dropout.
//!
//! candle's fused `layer_norm` and `softmax_last_dim` have no backward pass, so training uses
//! these CPU kernels instead: [`normalize`] (LayerNorm without its affine part, which the caller
//! applies as tensor operations so that autograd sees the weight and bias),
//! [`softmax_last_dim`] and [`gelu_erf`] (candle's own backward composes eight element-wise
//! passes). Each is one parallel pass forward and one backward.
//! Inference keeps candle's kernels (see `encoder::Mode`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

fn contiguous<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(d) => d,
        _ => candle_core::bail!("{what}: training kernels take f32"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: input must be contiguous"),
    }
}

/// Mean and 1/σ of one row.
fn row_stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

struct Normalize {
    eps: f64,
}

impl CustomOp1 for Normalize {
    fn name(&self) -> &'static str {
        "isolab-normalize"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "normalize")?;
        let h = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        x.par_chunks(h)
            .zip(out.par_chunks_mut(h))
            .for_each(|(row, o)| {
                let (mean, inv) = row_stats(row, self.eps);
                for (v, o) in row.iter().zip(o.iter_mut()) {
                    *o = (v - mean) * inv;
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let g = g.contiguous()?;
        Ok(Some(x.apply_op3_no_bwd(
            y,
            &g,
            &NormalizeGrad { eps: self.eps },
        )?))
    }
}

/// dx = (g − mean(g) − x̂ · mean(g x̂)) / σ, row by row.
struct NormalizeGrad {
    eps: f64,
}

impl CustomOp3 for NormalizeGrad {
    fn name(&self) -> &'static str {
        "isolab-normalize-grad"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sy: &CpuStorage,
        ly: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(sx, lx, "normalize backward")?;
        let y = contiguous(sy, ly, "normalize backward")?;
        let g = contiguous(sg, lg, "normalize backward")?;
        let h = lx.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        x.par_chunks(h)
            .zip(y.par_chunks(h))
            .zip(g.par_chunks(h))
            .zip(out.par_chunks_mut(h))
            .for_each(|(((xr, yr), gr), o)| {
                let (_, inv) = row_stats(xr, self.eps);
                let mean_g = gr.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
                let mean_gy = gr
                    .iter()
                    .zip(yr)
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum::<f64>()
                    / h as f64;
                for ((o, &gi), &yi) in o.iter_mut().zip(gr).zip(yr) {
                    *o = inv * (gi - mean_g as f32 - yi * mean_gy as f32);
                }
            });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }
}

/// (x − mean) / sqrt(var + eps) over the last dimension, with a backward pass.
pub fn normalize(x: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Normalize { eps })
}

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "isolab-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "softmax")?;
        let h = l.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; x.len()];
        x.par_chunks(h)
            .zip(out.par_chunks_mut(h))
            .for_each(|(row, o)| {
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f32;
                for (v, o) in row.iter().zip(o.iter_mut()) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                for o in o.iter_mut() {
                    *o /= sum;
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&g.contiguous()?, &SoftmaxGrad)?))
    }
}

/// dx = y ⊙ (g − Σ g ⊙ y), row by row.
struct SoftmaxGrad;

impl CustomOp2 for SoftmaxGrad {
    fn name(&self) -> &'static str {
        "isolab-softmax-grad"
    }

    fn cpu_fwd(
        &self,
        sy: &CpuStorage,
        ly: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = contiguous(sy, ly, "softmax backward")?;
        let g = contiguous(sg, lg, "softmax backward")?;
        let h = ly.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; y.len()];
        y.par_chunks(h)
            .zip(g.par_chunks(h))
            .zip(out.par_chunks_mut(h))
            .for_each(|((yr, gr), o)| {
                let s: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
                for ((o, &yi), &gi) in o.iter_mut().zip(yr).zip(gr) {
                    *o = yi * (gi - s);
                }
            });
        Ok((CpuStorage::F32(out), ly.shape().clone()))
    }
}

/// GELU with the exact error function, x Φ(x), forward and backward in one pass each.
struct Gelu;

/// (Φ(x), φ(x)): the normal distribution function and density. Φ uses Abramowitz & Stegun's
/// 7.1.26 for erf (absolute error below 1.5e-7, under f32's resolution near 1), which shares
/// its exponential with φ.
fn phi(x: f32) -> (f32, f32) {
    let e = (-0.5 * x * x).exp();
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_7 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf = 1.0 - poly * e;
    let erf = if x < 0.0 { -erf } else { erf };
    (0.5 * (1.0 + erf), e * 0.398_942_3)
}

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "isolab-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "gelu")?;
        let mut out = vec![0f32; x.len()];
        x.par_chunks(4096)
            .zip(out.par_chunks_mut(4096))
            .for_each(|(x, o)| {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = v * phi(v).0;
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluGrad)?))
    }
}

/// d/dx x Φ(x) = Φ(x) + x φ(x).
struct GeluGrad;

impl CustomOp2 for GeluGrad {
    fn name(&self) -> &'static str {
        "isolab-gelu-grad"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sg: &CpuStorage,
        lg: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(sx, lx, "gelu backward")?;
        let g = contiguous(sg, lg, "gelu backward")?;
        let mut out = vec![0f32; x.len()];
        x.par_chunks(4096)
            .zip(g.par_chunks(4096))
            .zip(out.par_chunks_mut(4096))
            .for_each(|((x, g), o)| {
                for ((o, &v), &gi) in o.iter_mut().zip(x).zip(g) {
                    let (cdf, pdf) = phi(v);
                    *o = gi * (cdf + v * pdf);
                }
            });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }
}

/// GELU (exact, with erf), with a backward pass.
pub fn gelu_erf(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Gelu)
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(Softmax)
}

/// Asks glibc's allocator to keep freed memory instead of returning it to the kernel at once.
///
/// A training step allocates and frees hundreds of buffers of a few megabytes; with glibc's
/// defaults each comes from a fresh `mmap`, and zeroing new pages took a third of a step's time
/// here. With the mmap threshold at its maximum (32 MiB) and trimming at 1 GiB they are reused.
/// Process-wide; a no-op off glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters; any value is valid to pass.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
    }
}

/// Rows per block of the parallel reductions: fixed, so that sums are added in the same order
/// on every run (rayon's adaptive splitting would otherwise change the rounding).
const REDUCE_ROWS: usize = 64;

/// Column sums of a contiguous (rows × cols) f32 matrix: blocks of rows in parallel, the block
/// sums added in order (deterministic).
fn column_sums(x: &[f32], cols: usize) -> Vec<f32> {
    let partial: Vec<Vec<f32>> = x
        .par_chunks(REDUCE_ROWS * cols.max(1))
        .map(|chunk| {
            let mut acc = vec![0f32; cols];
            for row in chunk.chunks(cols) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a += v;
                }
            }
            acc
        })
        .collect();
    let mut total = vec![0f32; cols];
    for p in partial {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

/// Σ x² in f64: chunks in parallel, the chunk sums added in order (deterministic).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(16 * 1024)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .collect::<Vec<f64>>()
        .into_iter()
        .sum()
}

/// y = x ⊙ w + b over the last dimension (w, b: one value per column); backward gives
/// g ⊙ w, Σ_rows g ⊙ x and Σ_rows g in one pass each.
struct Affine;

impl CustomOp3 for Affine {
    fn name(&self) -> &'static str {
        "isolab-affine"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(sx, lx, "affine")?;
        let w = contiguous(sw, lw, "affine")?;
        let b = contiguous(sb, lb, "affine")?;
        let h = w.len();
        let mut out = vec![0f32; x.len()];
        x.par_chunks(h)
            .zip(out.par_chunks_mut(h))
            .for_each(|(r, o)| {
                for i in 0..h {
                    o[i] = r[i] * w[i] + b[i];
                }
            });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let zero = w.zeros_like()?;
        let dx = g.apply_op3_no_bwd(w, &zero, &Affine)?;
        let h = w.elem_count();
        let gx = (&g * x)?.flatten_all()?.to_vec1::<f32>()?;
        let dw = Tensor::from_vec(column_sums(&gx, h), w.shape(), w.device())?;
        let gv = g.flatten_all()?.to_vec1::<f32>()?;
        let db = Tensor::from_vec(column_sums(&gv, h), w.shape(), w.device())?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// x ⊙ w + b with w and b broadcast over the rows (LayerNorm's affine part), with a backward
/// pass whose weight and bias gradients are parallel column sums.
pub fn affine(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op3(w, b, Affine)
}

/// x + b with b broadcast over the rows (a Linear layer's bias), with a backward pass whose bias
/// gradient is a parallel column sum.
pub fn add_bias(x: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(b, AddBias)
}

struct AddBias;

impl CustomOp2 for AddBias {
    fn name(&self) -> &'static str {
        "isolab-add-bias"
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(sx, lx, "add bias")?;
        let b = contiguous(sb, lb, "add bias")?;
        let h = b.len();
        let mut out = vec![0f32; x.len()];
        x.par_chunks(h)
            .zip(out.par_chunks_mut(h))
            .for_each(|(r, o)| {
                for i in 0..h {
                    o[i] = r[i] + b[i];
                }
            });
        Ok((CpuStorage::F32(out), lx.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let gv = g.flatten_all()?.to_vec1::<f32>()?;
        let db = Tensor::from_vec(column_sums(&gv, b.elem_count()), b.shape(), b.device())?;
        Ok((Some(g.clone()), Some(db)))
    }
}

/// Dropout masks drawn from a seeded generator, so a training step is reproducible (and a
/// resumed run draws the same masks as an uninterrupted one).
pub struct Dropout {
    rng: StdRng,
}

impl Dropout {
    /// Masks for one training step, from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Zeroes each element with probability `p` and scales the rest by 1 / (1 − p).
    pub fn apply(&mut self, x: &Tensor, p: f32) -> candle_core::Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                if self.rng.random::<f32>() < p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
    }
}

//! Training kernels with a backward pass, and seeded dropout.
//!
//! candle's fused `layer_norm` and `softmax_last_dim` have no backward pass, so training uses
//! these CPU kernels instead: [`normalize`] and [`affine`] (LayerNorm), [`attention`] (softmax
//! attention with dropout, heads in parallel), [`gelu_erf`] (candle's own backward composes eight
//! element-wise passes) and [`add_bias`] (a Linear layer's bias, whose gradient candle would sum
//! with a strided reduction). Each is one parallel pass forward and one backward.
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

/// C (m × n, row-major) = scale · A · B, single-threaded (the caller parallelises over heads).
/// A and B are given by their row and column strides.
#[allow(clippy::too_many_arguments)]
fn matmul_into(
    c: &mut [f32],
    a: &[f32],
    (a_rs, a_cs): (usize, usize),
    b: &[f32],
    (b_rs, b_cs): (usize, usize),
    (m, n, k): (usize, usize, usize),
    scale: f32,
) {
    assert!(c.len() >= m * n && a.len() > (m - 1) * a_rs + (k - 1) * a_cs);
    assert!(b.len() > (k - 1) * b_rs + (n - 1) * b_cs);
    // SAFETY: the asserts above keep every index gemm touches inside the three slices; the
    // destination does not alias the sources (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            0.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Scaled dot-product attention over (batch, heads, seq, head_dim) tensors in one kernel, with
/// padding masked and dropout on the attention probabilities: softmax(Q Kᵀ / √d + mask) ⊙ drop · V.
/// Heads run in parallel, each with single-threaded matrix products: candle would dispatch every
/// head's small product to the thread pool on its own, forward and backward.
struct Attention {
    /// Additive mask per (batch, key position): 0 for tokens, a large negative value for padding.
    mask: Vec<f32>,
    /// Dropout factors per (batch, head, query, key): 0 or 1 / (1 − p); empty for none.
    drop: Vec<f32>,
    scale: f32,
}

impl Attention {
    /// The probabilities of one head (seq × seq), before dropout.
    fn probs(&self, q: &[f32], k: &[f32], batch: usize, t: usize, d: usize) -> Vec<f32> {
        let mut s = vec![0f32; t * t];
        matmul_into(&mut s, q, (d, 1), k, (1, d), (t, t, d), self.scale);
        let mask = &self.mask[batch * t..(batch + 1) * t];
        for row in s.chunks_mut(t) {
            let mut max = f32::NEG_INFINITY;
            for (v, m) in row.iter_mut().zip(mask) {
                *v += m;
                max = max.max(*v);
            }
            let mut sum = 0f32;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
        s
    }

    fn dropped(&self, p: &[f32], head: usize, t: usize) -> Vec<f32> {
        if self.drop.is_empty() {
            return p.to_vec();
        }
        let drop = &self.drop[head * t * t..(head + 1) * t * t];
        p.iter().zip(drop).map(|(a, b)| a * b).collect()
    }
}

fn dims4(l: &Layout) -> candle_core::Result<(usize, usize, usize, usize)> {
    match *l.dims() {
        [b, h, t, d] => Ok((b, h, t, d)),
        _ => candle_core::bail!("attention: expected (batch, heads, seq, head_dim)"),
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "isolab-attention"
    }

    fn cpu_fwd(
        &self,
        sq: &CpuStorage,
        lq: &Layout,
        sk: &CpuStorage,
        lk: &Layout,
        sv: &CpuStorage,
        lv: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            contiguous(sq, lq, "attention")?,
            contiguous(sk, lk, "attention")?,
            contiguous(sv, lv, "attention")?,
        );
        let (_, h, t, d) = dims4(lq)?;
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(t * d).enumerate().for_each(|(head, o)| {
            let r = head * t * d..(head + 1) * t * d;
            let p = self.probs(&q[r.clone()], &k[r.clone()], head / h, t, d);
            let p = self.dropped(&p, head, t);
            matmul_into(o, &p, (t, 1), &v[r], (d, 1), (t, d, t), 1.0);
        });
        Ok((CpuStorage::F32(out), lq.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, h, t, d) = q.dims4()?;
        let g = g.contiguous()?;
        let read = |x: &Tensor| -> candle_core::Result<Vec<f32>> { x.flatten_all()?.to_vec1() };
        let (q, k, v, g) = (read(q)?, read(k)?, read(v)?, read(&g)?);
        let n = q.len();
        let mut dq = vec![0f32; n];
        let mut dk = vec![0f32; n];
        let mut dv = vec![0f32; n];
        dq.par_chunks_mut(t * d)
            .zip(dk.par_chunks_mut(t * d))
            .zip(dv.par_chunks_mut(t * d))
            .enumerate()
            .for_each(|(head, ((dq, dk), dv))| {
                let r = head * t * d..(head + 1) * t * d;
                let (qh, kh, vh, gh) = (&q[r.clone()], &k[r.clone()], &v[r.clone()], &g[r]);
                let p = self.probs(qh, kh, head / h, t, d);
                let pd = self.dropped(&p, head, t);
                // dV = P'ᵀ G
                matmul_into(dv, &pd, (1, t), gh, (d, 1), (t, d, t), 1.0);
                // dP' = G Vᵀ, then through dropout: dP = dP' ⊙ drop
                let mut dp = vec![0f32; t * t];
                matmul_into(&mut dp, gh, (d, 1), vh, (1, d), (t, t, d), 1.0);
                if !self.drop.is_empty() {
                    let drop = &self.drop[head * t * t..(head + 1) * t * t];
                    dp.iter_mut().zip(drop).for_each(|(a, b)| *a *= b);
                }
                // dS = P ⊙ (dP − Σ_j dP ⊙ P), row by row
                for (dpr, pr) in dp.chunks_mut(t).zip(p.chunks(t)) {
                    let s: f32 = dpr.iter().zip(pr).map(|(a, b)| a * b).sum();
                    dpr.iter_mut().zip(pr).for_each(|(a, b)| *a = b * (*a - s));
                }
                // dQ = scale · dS K, dK = scale · dSᵀ Q
                matmul_into(dq, &dp, (t, 1), kh, (d, 1), (t, d, t), self.scale);
                matmul_into(dk, &dp, (1, t), qh, (d, 1), (t, d, t), self.scale);
            });
        let dev = candle_core::Device::Cpu;
        let shape = (b, h, t, d);
        Ok((
            Some(Tensor::from_vec(dq, shape, &dev)?),
            Some(Tensor::from_vec(dk, shape, &dev)?),
            Some(Tensor::from_vec(dv, shape, &dev)?),
        ))
    }
}

/// Attention in training: softmax(Q Kᵀ / √d + mask) with dropout p on the probabilities, times
/// V, for (batch, heads, seq, head_dim) tensors; `mask` is the additive (batch, 1, 1, seq) mask.
/// One fused kernel with a backward pass (see `Attention`).
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    dropout: &mut Dropout,
    p: f32,
) -> candle_core::Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
    if mask.len() != b * t {
        candle_core::bail!(
            "attention: the mask has {} values for {b} × {t}",
            mask.len()
        );
    }
    let drop = if p > 0.0 {
        let keep = 1.0 / (1.0 - p);
        (0..b * h * t * t)
            .map(|_| {
                if dropout.rng.random::<f32>() < p {
                    0.0
                } else {
                    keep
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let op = Attention {
        mask,
        drop,
        scale: 1.0 / (d as f32).sqrt(),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

//! The encoder's CPU kernels, with a backward pass for training.
//!
//! candle's fused `layer_norm` and `softmax_last_dim` have no backward pass, and a graph of its
//! small operations costs more than the matrix products around it on a CPU (each node's gradient
//! is also zero-filled and added into), so the encoder runs each part of a BERT layer as one node:
//! [`linear`] (x Wᵀ + b; backward straight into W's layout; the query, key and value layers as
//! one product), [`attention`] (softmax attention with dropout on that fused query-key-value
//! layout, heads split in place, its probabilities kept for the backward pass), [`add_norm`]
//! (dropout, residual sum and LayerNorm at a sub-layer's end), [`layer_norm`] and [`gelu_erf`]
//! (dropout itself is [`crate::nn::dropout`]). Each is one parallel pass forward and one backward, with loops written so
//! that the compiler vectorises them. Inference runs the same forward passes with
//! [`Pass::Infer`]: no node in candle's graph, nothing kept for a backward pass.

use crate::nn::cpu::{contiguous, widest};
use crate::nn::dropout::{Mask, Masked};
use crate::util::exp::exp_f32;
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;
use std::sync::Mutex;

/// The additive attention-mask value of a padded key position: transformers' extended mask is
/// (1 − mask) · `f32::MIN`, and [`crate::nn::bert`] builds it the same way.
pub const MASKED: f32 = f32::MIN;

/// [`attention`] treats a key position whose additive mask is below this as padding (any value
/// near [`MASKED`]; a real position's is 0).
const MASKED_BELOW: f32 = -1e30;

/// Whether a kernel's result takes part in a backward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pass {
    /// Training: the result is a node of candle's graph, and keeps what its backward pass needs.
    Train,
    /// Inference: the forward pass alone; nothing is kept once the result is returned.
    Infer,
}

impl Pass {
    fn apply1(
        self,
        x: &Tensor,
        op: impl CustomOp1 + Send + Sync + 'static,
    ) -> candle_core::Result<Tensor> {
        match self {
            Pass::Train => x.apply_op1(op),
            Pass::Infer => x.apply_op1_no_bwd(&op),
        }
    }

    fn apply3(
        self,
        x: &Tensor,
        (a, b): (&Tensor, &Tensor),
        op: impl CustomOp3 + Send + Sync + 'static,
    ) -> candle_core::Result<Tensor> {
        match self {
            Pass::Train => x.apply_op3(a, b, op),
            Pass::Infer => x.apply_op3_no_bwd(a, b, &op),
        }
    }
}

/// Runs `f` on the values of a contiguous f32 CPU tensor, without copying them.
fn with_values<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(contiguous(s, layout, what)?)),
        _ => candle_core::bail!("{what}: the fused kernels run on the CPU"),
    }
}

fn cpu_tensor(data: Vec<f32>, shape: &Shape) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, shape.clone(), &candle_core::Device::Cpu)
}

/// Elements per parallel task of the element-wise loops.
const CHUNK: usize = 16 * 1024;

/// Rows per block of the parallel reductions: fixed, so that sums are added in the same order
/// on every run (rayon's adaptive splitting would otherwise change the rounding).
const REDUCE_ROWS: usize = 64;

/// Adds the blocks' column sums in order.
fn add_in_order(partial: Vec<Vec<f32>>, cols: usize) -> Vec<f32> {
    let mut total = vec![0f32; cols];
    for p in partial {
        for (t, v) in total.iter_mut().zip(p) {
            *t += v;
        }
    }
    total
}

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
    add_in_order(partial, cols)
}

/// Σ x² in f64: chunks in parallel, the chunk sums added in order (deterministic).
pub fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(16 * 1024)
        .map(|c| c.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>())
        .collect::<Vec<f64>>()
        .into_iter()
        .sum()
}

/// A matrix operand of [`gemm_into`]: values with a row and a column stride.
#[derive(Clone, Copy)]
struct Strided<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Strided<'a> {
    fn rows(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            rs: row_stride,
            cs: 1,
        }
    }

    /// The transpose of a row-major matrix with rows `row_stride` apart.
    fn transposed(data: &'a [f32], row_stride: usize) -> Self {
        Self {
            data,
            rs: 1,
            cs: row_stride,
        }
    }
}

/// C (m × n, rows `c_rs` apart) = scale · A B, or C + scale · A B with `accumulate`.
fn gemm_into(
    c: &mut [f32],
    c_rs: usize,
    a: Strided,
    b: Strided,
    (m, n, k): (usize, usize, usize),
    (scale, accumulate): (f32, bool),
    parallelism: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.chunks_mut(c_rs).take(m).for_each(|r| r[..n].fill(0.0));
        }
        return;
    }
    assert!(c.len() >= (m - 1) * c_rs + n && c_rs >= n);
    assert!(a.data.len() > (m - 1) * a.rs + (k - 1) * a.cs);
    assert!(b.data.len() > (k - 1) * b.rs + (n - 1) * b.cs);
    // SAFETY: the asserts above keep every index gemm touches inside the three slices, and the
    // destination does not alias the sources (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// All of rayon's threads.
const PARALLEL: gemm::Parallelism = gemm::Parallelism::Rayon(0);

/// y = x Wᵀ + b over the last dimension of x (W: out × in, as transformers stores it).
struct Linear {
    /// GELU (exact) applied to the result in place: inference only (the backward pass would need
    /// the values before it).
    gelu: bool,
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "isolab-linear"
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
        let x = contiguous(sx, lx, "linear")?;
        let w = contiguous(sw, lw, "linear")?;
        let b = contiguous(sb, lb, "linear")?;
        let (n, k) = lw.shape().dims2()?;
        let last = lx.dims().last().copied().unwrap_or(0);
        if last != k || b.len() != n {
            candle_core::bail!(
                "linear: input width {last}, weight {n} × {k}, bias {}",
                b.len()
            );
        }
        let rows = x.len() / k.max(1);
        let mut out = Vec::with_capacity(rows * n);
        for _ in 0..rows {
            out.extend_from_slice(b);
        }
        gemm_into(
            &mut out,
            n,
            Strided::rows(x, k),
            Strided::transposed(w, k),
            (rows, n, k),
            (1.0, true),
            PARALLEL,
        );
        if self.gelu {
            gelu_in_place(&mut out);
        }
        let mut dims = lx.dims().to_vec();
        if let Some(d) = dims.last_mut() {
            *d = n;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let (n, k) = w.dims2()?;
        let rows = x.elem_count() / k.max(1);
        let (dx, dw, db) = with_values(&g, "linear backward", |g| {
            with_values(x, "linear backward", |x| {
                with_values(w, "linear backward", |w| {
                    // dx = g W, dW = gᵀ x, db = Σ_rows g
                    let mut dx = vec![0f32; rows * k];
                    gemm_into(
                        &mut dx,
                        k,
                        Strided::rows(g, n),
                        Strided::rows(w, k),
                        (rows, k, n),
                        (1.0, false),
                        PARALLEL,
                    );
                    let mut dw = vec![0f32; n * k];
                    gemm_into(
                        &mut dw,
                        k,
                        Strided::transposed(g, n),
                        Strided::rows(x, k),
                        (n, k, rows),
                        (1.0, false),
                        PARALLEL,
                    );
                    (dx, dw, column_sums(g, n))
                })
            })
        })???;
        Ok((
            Some(cpu_tensor(dx, x.shape())?),
            Some(cpu_tensor(dw, w.shape())?),
            Some(cpu_tensor(db, b.shape())?),
        ))
    }
}

/// A Linear layer: x Wᵀ + b as one node, whose backward writes dW in W's own layout.
pub(crate) fn linear(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    pass: Pass,
) -> candle_core::Result<Tensor> {
    pass.apply3(&x.contiguous()?, (w, b), Linear { gelu: false })
}

/// GELU(x Wᵀ + b) in inference, the activation applied to the product's result in place (one
/// pass over it and no second buffer, where [`linear`] then [`gelu_erf`] take two).
pub(crate) fn linear_gelu_infer(x: &Tensor, w: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    Pass::Infer.apply3(&x.contiguous()?, (w, b), Linear { gelu: true })
}

/// Lanes of the row sums in [`row_stats`] and [`norm_rows_backward`]: eight independent
/// accumulators, added in the same order whatever the instruction set.
const LANES: usize = 8;

/// Σ f(v) over a row in f64, in [`LANES`] accumulators (so that it vectorises) added in a
/// fixed order.
#[inline(always)]
fn sum_f64(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let (chunks, tail) = x.as_chunks::<LANES>();
    let mut acc = [0f64; LANES];
    for c in chunks {
        for l in 0..LANES {
            acc[l] += f(c[l] as f64);
        }
    }
    let mut sum = 0.0;
    for a in acc {
        sum += a;
    }
    for &v in tail {
        sum += f(v as f64);
    }
    sum
}

/// Mean and 1/σ of one row.
#[inline(always)]
fn row_stats(x: &[f32], eps: f64) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = sum_f64(x, |v| v) / n;
    let var = sum_f64(x, |v| (v - mean) * (v - mean)) / n;
    (mean as f32, (1.0 / (var + eps).sqrt()) as f32)
}

/// LayerNorm's forward over rows of width `w.len()`: (x − mean) / sqrt(var + eps) ⊙ w + b.
fn norm_rows(x: &[f32], w: &[f32], b: &[f32], eps: f64) -> Vec<f32> {
    let h = w.len();
    let block = REDUCE_ROWS * h.max(1);
    let mut out = vec![0f32; x.len()];
    x.par_chunks(block)
        .zip(out.par_chunks_mut(block))
        .for_each(|(x, out)| {
            widest(
                #[inline(always)]
                || {
                    let (w, b) = (&w[..h], &b[..h]);
                    for (row, o) in x.chunks_exact(h).zip(out.chunks_exact_mut(h)) {
                        let (mean, inv) = row_stats(row, eps);
                        let (row, o) = (&row[..h], &mut o[..h]);
                        for i in 0..h {
                            o[i] = (row[i] - mean) * inv * w[i] + b[i];
                        }
                    }
                },
            )
        });
    out
}

/// LayerNorm's backward over rows of width `w.len()`. With x̂ the normalised input and
/// d = g ⊙ w: dx = (d − mean(d) − x̂ · mean(d x̂)) / σ, dw = Σ_rows g x̂, db = Σ_rows g.
fn norm_rows_backward(x: &[f32], g: &[f32], w: &[f32], eps: f64) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let h = w.len();
    let block = REDUCE_ROWS * h.max(1);
    let mut dx = vec![0f32; x.len()];
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .zip(g.par_chunks(block))
        .map(|((dx, x), g)| {
            widest(
                #[inline(always)]
                || {
                    let mut dw = vec![0f32; h];
                    let mut db = vec![0f32; h];
                    let mut xhat = vec![0f32; h];
                    let mut d = vec![0f32; h];
                    let mut dxhat = vec![0f32; h];
                    let rows = dx.chunks_exact_mut(h).zip(x.chunks_exact(h));
                    let w = &w[..h];
                    for ((dx, x), g) in rows.zip(g.chunks_exact(h)) {
                        let (mean, inv) = row_stats(x, eps);
                        let (dx, x, g) = (&mut dx[..h], &x[..h], &g[..h]);
                        for i in 0..h {
                            xhat[i] = (x[i] - mean) * inv;
                            d[i] = g[i] * w[i];
                            dxhat[i] = d[i] * xhat[i];
                            dw[i] += g[i] * xhat[i];
                            db[i] += g[i];
                        }
                        let mean_d = (sum_f64(&d, |v| v) / h as f64) as f32;
                        let mean_dx = (sum_f64(&dxhat, |v| v) / h as f64) as f32;
                        for i in 0..h {
                            dx[i] = inv * (d[i] - mean_d - xhat[i] * mean_dx);
                        }
                    }
                    (dw, db)
                },
            )
        })
        .collect();
    let (dw, db): (Vec<_>, Vec<_>) = partial.into_iter().unzip();
    (dx, add_in_order(dw, h), add_in_order(db, h))
}

/// LayerNorm over the last dimension: y = (x − mean) / sqrt(var + eps) ⊙ w + b.
struct LayerNorm {
    eps: f64,
}

impl CustomOp3 for LayerNorm {
    fn name(&self) -> &'static str {
        "isolab-layer-norm"
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
        let x = contiguous(sx, lx, "layer norm")?;
        let w = contiguous(sw, lw, "layer norm")?;
        let b = contiguous(sb, lb, "layer norm")?;
        let h = w.len();
        if lx.dims().last() != Some(&h) || b.len() != h {
            candle_core::bail!("layer norm: input {:?}, weight {h}", lx.dims());
        }
        Ok((
            CpuStorage::F32(norm_rows(x, w, b, self.eps)),
            lx.shape().clone(),
        ))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let (dx, dw, db) = with_values(&g, "layer norm backward", |g| {
            with_values(x, "layer norm backward", |x| {
                with_values(w, "layer norm backward", |w| {
                    norm_rows_backward(x, g, w, self.eps)
                })
            })
        })???;
        Ok((
            Some(cpu_tensor(dx, x.shape())?),
            Some(cpu_tensor(dw, w.shape())?),
            Some(cpu_tensor(db, b.shape())?),
        ))
    }
}

/// LayerNorm over the last dimension with weight `w` and bias `b`, as one node.
pub(crate) fn layer_norm(
    x: &Tensor,
    (w, b): (&Tensor, &Tensor),
    eps: f64,
    pass: Pass,
) -> candle_core::Result<Tensor> {
    pass.apply3(&x.contiguous()?, (w, b), LayerNorm { eps })
}

/// The end of a BERT sub-layer: LayerNorm(dropout(y) + r), with LayerNorm's weight and bias
/// stacked as one (2, hidden) tensor. The forward pass keeps the sum for the backward pass.
struct AddNorm {
    drop: Option<Mask>,
    eps: f64,
    /// dropout(y) + r, written by the forward pass.
    sum: Mutex<Option<Vec<f32>>>,
}

impl CustomOp3 for AddNorm {
    fn name(&self) -> &'static str {
        "isolab-add-norm"
    }

    fn cpu_fwd(
        &self,
        sy: &CpuStorage,
        ly: &Layout,
        sr: &CpuStorage,
        lr: &Layout,
        swb: &CpuStorage,
        lwb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = contiguous(sy, ly, "add & norm")?;
        let r = contiguous(sr, lr, "add & norm")?;
        let wb = contiguous(swb, lwb, "add & norm")?;
        let h = wb.len() / 2;
        if ly.dims() != lr.dims() || ly.dims().last() != Some(&h) || wb.len() != 2 * h {
            candle_core::bail!(
                "add & norm: input {:?}, residual {:?}, {} LayerNorm parameters",
                ly.dims(),
                lr.dims(),
                wb.len()
            );
        }
        let mut sum = vec![0f32; y.len()];
        sum.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK).zip(r.par_chunks(CHUNK)))
            .enumerate()
            .for_each(|(c, (s, (y, r)))| {
                widest(
                    #[inline(always)]
                    || {
                        let (s, r) = (&mut s[..y.len()], &r[..y.len()]);
                        match self.drop {
                            None => {
                                for j in 0..y.len() {
                                    s[j] = y[j] + r[j];
                                }
                            }
                            Some(m) => {
                                for j in 0..y.len() {
                                    s[j] = y[j] * m.factor(c * CHUNK + j) + r[j];
                                }
                            }
                        }
                    },
                )
            });
        let out = norm_rows(&sum, &wb[..h], &wb[h..], self.eps);
        *self.sum.lock().map_err(|_| poisoned("add & norm"))? = Some(sum);
        Ok((CpuStorage::F32(out), ly.shape().clone()))
    }

    /// d(sum) from LayerNorm's backward; dr = d(sum), dy = d(sum) ⊙ mask.
    fn bwd(
        &self,
        y: &Tensor,
        _r: &Tensor,
        wb: &Tensor,
        _out: &Tensor,
        g: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = g.contiguous()?;
        let guard = self.sum.lock().map_err(|_| poisoned("add & norm"))?;
        let Some(sum) = guard.as_ref() else {
            candle_core::bail!("add & norm backward: the forward pass kept no sum")
        };
        let (ds, dw, db) = with_values(&g, "add & norm backward", |g| {
            with_values(wb, "add & norm backward", |wb| {
                norm_rows_backward(sum, g, &wb[..wb.len() / 2], self.eps)
            })
        })??;
        let ds = cpu_tensor(ds, y.shape())?;
        let dy = match self.drop {
            None => ds.clone(),
            Some(m) => ds.apply_op1_no_bwd(&Masked(m))?,
        };
        let dwb = cpu_tensor([dw, db].concat(), wb.shape())?;
        Ok((Some(dy), Some(ds), Some(dwb)))
    }
}

/// The end of a BERT sub-layer, as one node: LayerNorm(dropout(y) + residual) with weight `w`
/// and bias `b`, dropout from `drop` (none in inference).
pub(crate) fn add_norm(
    y: &Tensor,
    residual: &Tensor,
    (w, b): (&Tensor, &Tensor),
    eps: f64,
    (drop, pass): (Option<Mask>, Pass),
) -> candle_core::Result<Tensor> {
    let op = AddNorm {
        drop,
        eps,
        sum: Mutex::new(None),
    };
    let wb = Tensor::stack(&[w, b], 0)?;
    pass.apply3(&y.contiguous()?, (&residual.contiguous()?, &wb), op)
}

/// The error for a lock whose holder panicked.
fn poisoned(op: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!(
        "{op}: a thread panicked holding the op's saved values"
    ))
}

/// (Φ(x), φ(x)): the normal distribution function and density. Φ uses Abramowitz & Stegun's
/// 7.1.26 for erf (absolute error below 1.5e-7, under f32's resolution near 1), which shares
/// its exponential with φ.
#[inline(always)]
fn phi(x: f32) -> (f32, f32) {
    let e = exp_f32(-0.5 * x * x);
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_7 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let erf = (1.0 - poly * e).copysign(x);
    (0.5 * (1.0 + erf), e * 0.398_942_3)
}

/// x Φ(x) for every value, in place.
fn gelu_in_place(x: &mut [f32]) {
    x.par_chunks_mut(CHUNK).for_each(|x| {
        widest(
            #[inline(always)]
            || {
                for v in x.iter_mut() {
                    *v *= phi(*v).0;
                }
            },
        )
    });
}

/// GELU with the exact error function, x Φ(x), forward and backward in one pass each.
struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "isolab-gelu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous(s, l, "gelu")?;
        let mut out = x.to_vec();
        gelu_in_place(&mut out);
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let g = g.contiguous()?;
        let dx = with_values(&g, "gelu backward", |g| {
            with_values(x, "gelu backward", |x| {
                // d/dx x Φ(x) = Φ(x) + x φ(x)
                let mut dx = vec![0f32; x.len()];
                dx.par_chunks_mut(CHUNK)
                    .zip(x.par_chunks(CHUNK))
                    .zip(g.par_chunks(CHUNK))
                    .for_each(|((o, x), g)| {
                        widest(
                            #[inline(always)]
                            || {
                                let (o, g) = (&mut o[..x.len()], &g[..x.len()]);
                                for i in 0..x.len() {
                                    let (cdf, pdf) = phi(x[i]);
                                    o[i] = g[i] * (cdf + x[i] * pdf);
                                }
                            },
                        )
                    });
                dx
            })
        })??;
        Ok(Some(cpu_tensor(dx, x.shape())?))
    }
}

/// GELU (exact, with erf), with a backward pass.
pub(crate) fn gelu_erf(x: &Tensor, pass: Pass) -> candle_core::Result<Tensor> {
    pass.apply1(&x.contiguous()?, Gelu)
}

/// A row of attention scores to probabilities in place: softmax over the positions that are not
/// `padding`, 0 at those that are. Reductions in [`LANES`] accumulators, added in a fixed order.
#[inline(always)]
fn softmax_unpadded(row: &mut [f32], padding: &[bool]) {
    let padding = &padding[..row.len()];
    let (chunks, tail) = row.as_chunks::<LANES>();
    let (pads, pad_tail) = padding.as_chunks::<LANES>();
    let mut lanes = [f32::NEG_INFINITY; LANES];
    for (c, pad) in chunks.iter().zip(pads) {
        for l in 0..LANES {
            lanes[l] = lanes[l].max(if pad[l] { f32::NEG_INFINITY } else { c[l] });
        }
    }
    let mut max = f32::NEG_INFINITY;
    for (&v, &pad) in tail.iter().zip(pad_tail) {
        max = max.max(if pad { f32::NEG_INFINITY } else { v });
    }
    for m in lanes {
        max = max.max(m);
    }
    for j in 0..row.len() {
        let e = exp_f32(row[j] - max);
        row[j] = if padding[j] { 0.0 } else { e };
    }
    let (chunks, tail) = row.as_chunks::<LANES>();
    let mut lanes = [0f32; LANES];
    for c in chunks {
        for l in 0..LANES {
            lanes[l] += c[l];
        }
    }
    let mut sum = 0f32;
    for v in lanes.into_iter().chain(tail.iter().copied()) {
        sum += v;
    }
    let inv = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Softmax attention on the fused (seq, 3 · hidden) layout of one batch item: head `i` is
/// columns i·d .. (i+1)·d of the query block (columns 0 .. hidden), the key block (hidden ..
/// 2 · hidden) and the value block (2 · hidden .. 3 · hidden). Attention dropout comes from
/// `drop`; padded key positions get probability 0. The forward pass keeps every head's
/// probabilities, before and after dropout, for the backward pass.
struct Attention {
    /// Per batch item and key position: whether the position is padding.
    padding: Vec<bool>,
    heads: usize,
    drop: Option<Mask>,
    scale: f32,
    /// Per batch item, P of every head (heads · seq · seq) followed, when there is dropout, by
    /// P after dropout (as many again), written by the forward pass.
    probs: Mutex<Option<Vec<f32>>>,
}

/// One batch item's rows of the fused layout: the query, key and value blocks of width `hidden`,
/// `3 · hidden` apart.
#[derive(Clone, Copy)]
struct Qkv<'a> {
    rows: &'a [f32],
    hidden: usize,
}

impl<'a> Qkv<'a> {
    /// Head `head` of block `block` (0 query, 1 key, 2 value), rows 3 · hidden apart.
    fn head(&self, block: usize, head: usize, d: usize) -> Strided<'a> {
        Strided::rows(
            &self.rows[block * self.hidden + head * d..],
            3 * self.hidden,
        )
    }

    fn head_t(&self, block: usize, head: usize, d: usize) -> Strided<'a> {
        Strided::transposed(
            &self.rows[block * self.hidden + head * d..],
            3 * self.hidden,
        )
    }
}

impl Attention {
    /// Writes P (t × t) of head `head` of batch item `item` into `p`, and P after dropout into
    /// `dropped` (given when there is dropout).
    fn probs(
        &self,
        qkv: Qkv,
        (item, head): (usize, usize),
        t: usize,
        (p, dropped): (&mut [f32], Option<&mut [f32]>),
    ) {
        let d = qkv.hidden / self.heads;
        gemm_into(
            p,
            t,
            qkv.head(0, head, d),
            qkv.head_t(1, head, d),
            (t, t, d),
            (self.scale, false),
            gemm::Parallelism::None,
        );
        let padding = &self.padding[item * t..(item + 1) * t];
        widest(
            #[inline(always)]
            || {
                for row in p.chunks_exact_mut(t) {
                    softmax_unpadded(&mut row[..t], padding);
                }
                if let (Some(m), Some(dropped)) = (self.drop, dropped) {
                    let base = (item * self.heads + head) * t * t;
                    let dropped = &mut dropped[..p.len()];
                    for i in 0..p.len() {
                        dropped[i] = p[i] * m.factor(base + i);
                    }
                }
            },
        )
    }

    /// Per batch item: how many values its probabilities take (P, and P after dropout when
    /// there is dropout).
    fn kept_per_item(&self, t: usize) -> usize {
        let square = self.heads * t * t;
        if self.drop.is_some() {
            2 * square
        } else {
            square
        }
    }
}

impl CustomOp1 for Attention {
    fn name(&self) -> &'static str {
        "isolab-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = contiguous(s, l, "attention")?;
        let (b, t, width) = match *l.dims() {
            [b, t, w] if w % 3 == 0 => (b, t, w),
            _ => candle_core::bail!(
                "attention: expected (batch, seq, 3 × hidden), got {:?}",
                l.dims()
            ),
        };
        let hidden = width / 3;
        let d = hidden / self.heads;
        let square = self.heads * t * t;
        let kept = self.kept_per_item(t);
        let mut out = vec![0f32; b * t * hidden];
        let mut probs = vec![0f32; b * kept];
        out.par_chunks_mut(t * hidden)
            .zip(qkv.par_chunks(t * width))
            .zip(probs.par_chunks_mut(kept))
            .enumerate()
            .for_each(|(i, ((o, rows), item))| {
                let rows = Qkv { rows, hidden };
                let (p, pd) = item.split_at_mut(square);
                let mut pd = pd.chunks_mut(t * t);
                for (head, p) in p.chunks_mut(t * t).enumerate() {
                    let mut pd = pd.next();
                    self.probs(rows, (i, head), t, (p, pd.as_deref_mut()));
                    let used = match pd {
                        Some(pd) => &*pd,
                        None => &*p,
                    };
                    gemm_into(
                        &mut o[head * d..],
                        hidden,
                        Strided::rows(used, t),
                        rows.head(2, head, d),
                        (t, d, t),
                        (1.0, false),
                        gemm::Parallelism::None,
                    );
                }
            });
        *self.probs.lock().map_err(|_| poisoned("attention"))? = Some(probs);
        Ok((CpuStorage::F32(out), Shape::from((b, t, hidden))))
    }

    // The whole backward pass of softmax attention per (batch item, head), in one parallel loop
    // that reuses its scratch buffers; split up, each piece would need the same dozen views.
    fn bwd(&self, qkv: &Tensor, _out: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, t, width) = qkv.dims3()?;
        let hidden = width / 3;
        let d = hidden / self.heads;
        let square = self.heads * t * t;
        let g = g.contiguous()?;
        let mut dqkv = vec![0f32; qkv.elem_count()];
        let guard = self.probs.lock().map_err(|_| poisoned("attention"))?;
        let Some(probs) = guard.as_ref() else {
            candle_core::bail!("attention backward: the forward pass kept no probabilities")
        };
        let scale = self.drop.map_or(1.0, |m| m.scale);
        with_values(qkv, "attention backward", |qkv| {
            with_values(&g, "attention backward", |g| {
                dqkv.par_chunks_mut(t * width)
                    .zip(qkv.par_chunks(t * width))
                    .zip(g.par_chunks(t * hidden))
                    .zip(probs.par_chunks(self.kept_per_item(t)))
                    .for_each(|(((dst, rows), g), item)| {
                        let rows = Qkv { rows, hidden };
                        let (p, pd) = item.split_at(square);
                        // Without dropout, P after dropout is P.
                        let pd = if pd.is_empty() { p } else { pd };
                        let mut dp = vec![0f32; t * t];
                        for (head, (p, pd)) in p.chunks(t * t).zip(pd.chunks(t * t)).enumerate() {
                            let c = head * d;
                            // dV = P'ᵀ G
                            gemm_into(
                                &mut dst[2 * hidden + c..],
                                width,
                                Strided::transposed(pd, t),
                                Strided::rows(&g[c..], hidden),
                                (t, d, t),
                                (1.0, false),
                                gemm::Parallelism::None,
                            );
                            // dP' = G Vᵀ, then through dropout: dP = dP' ⊙ mask, where the mask
                            // is 1 / (1 − p) wherever P' ≠ 0 (where P = 0 the product below
                            // is 0 whatever the mask).
                            gemm_into(
                                &mut dp,
                                t,
                                Strided::rows(&g[c..], hidden),
                                rows.head_t(2, head, d),
                                (t, t, d),
                                (1.0, false),
                                gemm::Parallelism::None,
                            );
                            if self.drop.is_some() {
                                dp.iter_mut().zip(pd).for_each(|(a, &kept)| {
                                    *a = if kept == 0.0 { 0.0 } else { *a * scale }
                                });
                            }
                            // dS = P ⊙ (dP − Σ_j dP ⊙ P), row by row
                            for (dpr, pr) in dp.chunks_mut(t).zip(p.chunks(t)) {
                                let s: f32 = dpr.iter().zip(pr).map(|(a, b)| a * b).sum();
                                dpr.iter_mut().zip(pr).for_each(|(a, b)| *a = b * (*a - s));
                            }
                            // dQ = scale · dS K, dK = scale · dSᵀ Q
                            gemm_into(
                                &mut dst[c..],
                                width,
                                Strided::rows(&dp, t),
                                rows.head(1, head, d),
                                (t, d, t),
                                (self.scale, false),
                                gemm::Parallelism::None,
                            );
                            gemm_into(
                                &mut dst[hidden + c..],
                                width,
                                Strided::transposed(&dp, t),
                                rows.head(0, head, d),
                                (t, d, t),
                                (self.scale, false),
                                gemm::Parallelism::None,
                            );
                        }
                    })
            })
        })??;
        Ok(Some(cpu_tensor(dqkv, qkv.shape())?))
    }
}

/// Multi-head softmax attention, with dropout from `drop` on the probabilities. `qkv` is
/// (batch, seq, 3 · hidden): the query, key and value layers' outputs side by side, as one
/// Linear layer with the three weights stacked gives them, each with the heads side by side;
/// `mask` is the additive attention mask (batch · seq values, 0 for tokens, a large negative
/// number for padding). Returns the context, (batch, seq, hidden).
pub(crate) fn attention(
    qkv: &Tensor,
    mask: &Tensor,
    heads: usize,
    (drop, pass): (Option<Mask>, Pass),
) -> candle_core::Result<Tensor> {
    let (b, t, width) = qkv.dims3()?;
    let hidden = width / 3;
    if heads == 0 || width % 3 != 0 || !hidden.is_multiple_of(heads) {
        candle_core::bail!(
            "attention: width {width} is not 3 × a hidden size that is a multiple of {heads} heads"
        );
    }
    let mask: Vec<f32> = mask.flatten_all()?.to_vec1()?;
    if mask.len() != b * t {
        candle_core::bail!(
            "attention: the mask has {} values for {b} × {t}",
            mask.len()
        );
    }
    let op = Attention {
        padding: mask.iter().map(|&m| m < MASKED_BELOW).collect(),
        heads,
        drop,
        scale: 1.0 / ((hidden / heads) as f32).sqrt(),
        probs: Mutex::new(None),
    };
    pass.apply1(&qkv.contiguous()?, op)
}

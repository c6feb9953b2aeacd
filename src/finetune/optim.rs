//! AdamW as PyTorch's `torch.optim.AdamW` computes it, with transformers' fine-tuning
//! conventions: no weight decay on biases and LayerNorm weights, a linear warmup then linear
//! decay of the learning rate (`get_linear_schedule_with_warmup`), and clipping of the global
//! gradient norm (`clip_grad_norm_`). The update runs over plain f32 buffers, in parallel.

use anyhow::{bail, Context, Result};
use candle_core::{
    backprop::GradStore, CpuStorage, DType, Device, InplaceOp1, Layout, Storage, Tensor, Var,
};
use rayon::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

/// AdamW's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWOptions {
    /// Peak learning rate.
    pub lr: f64,
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay (not applied to biases and LayerNorm weights).
    pub weight_decay: f64,
    /// The global gradient norm is clipped to this.
    pub max_grad_norm: f64,
    /// Fraction of the steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
}

impl Default for AdamWOptions {
    /// transformers' Trainer defaults (β = 0.9, 0.999, ε = 1e-8, clip 1.0) with lr 5e-5, weight
    /// decay 0.01 and 10 % warmup.
    fn default() -> Self {
        Self {
            lr: 5e-5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            warmup_ratio: 0.1,
        }
    }
}

impl AdamWOptions {
    /// The learning rate of step `step` (0-based) of `total`: linear warmup from 0, then linear
    /// decay to 0, as transformers' `get_linear_schedule_with_warmup`.
    pub fn lr_at(&self, step: usize, total: usize) -> f64 {
        let warmup = (self.warmup_ratio * total as f64).ceil() as usize;
        let factor = if step < warmup {
            step as f64 / warmup.max(1) as f64
        } else {
            (total.saturating_sub(step)) as f64 / (total - warmup).max(1) as f64
        };
        self.lr * factor.max(0.0)
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
    decay: bool,
}

/// What one optimizer step saw.
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// The learning rate used.
    pub lr: f64,
}

/// AdamW over a model's named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    step: u64,
    opts: AdamWOptions,
}

/// transformers' rule: no decay for biases and LayerNorm weights.
fn decays(name: &str) -> bool {
    !(name.ends_with("bias") || name.contains("LayerNorm."))
}

impl AdamW {
    /// An optimizer for `params` (name, variable) with zero moments.
    pub fn new(params: &[(String, Var)], opts: AdamWOptions) -> Result<Self> {
        let slots = params
            .iter()
            .map(|(name, var)| {
                if var.dtype() != DType::F32 || !var.device().is_cpu() {
                    bail!("{name}: AdamW here updates f32 weights on the CPU");
                }
                let n = var.elem_count();
                Ok(Slot {
                    name: name.clone(),
                    var: var.clone(),
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    decay: decays(name),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            step: 0,
            opts,
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// One update with learning rate `lr` from the gradients in `grads`, written into the
    /// variables' storage in place. Refuses (and changes nothing) when the gradient norm is not
    /// finite.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepReport> {
        let grads: Vec<Option<Tensor>> = self
            .slots
            .iter()
            .map(|s| {
                grads
                    .get(s.var.as_tensor())
                    .map(|g| g.contiguous())
                    .transpose()
            })
            .collect::<candle_core::Result<_>>()?;
        let mut sq = 0f64;
        for g in grads.iter().flatten() {
            sq += with_f32(g, crate::nn::kernels::sum_squares)?;
        }
        let grad_norm = sq.sqrt();
        if !grad_norm.is_finite() {
            bail!("the gradient norm is {grad_norm}");
        }
        let clip = if grad_norm > self.opts.max_grad_norm {
            (self.opts.max_grad_norm / (grad_norm + 1e-6)) as f32
        } else {
            1.0
        };
        self.step += 1;
        let o = self.opts;
        let t = self.step as i32;
        for (s, g) in self.slots.iter_mut().zip(grads) {
            let Some(g) = g else { continue };
            let decay = if s.decay { o.weight_decay } else { 0.0 };
            with_f32(&g, |g| {
                let update = Update {
                    grad: g,
                    moments: RefCell::new((&mut s.m, &mut s.v)),
                    clip,
                    lr: lr as f32,
                    decay: (1.0 - lr * decay) as f32,
                    beta1: o.beta1 as f32,
                    beta2: o.beta2 as f32,
                    eps: o.eps as f32,
                    bias1: (1.0 - o.beta1.powi(t)) as f32,
                    bias2_sqrt: (1.0 - o.beta2.powi(t)).sqrt() as f32,
                };
                s.var.as_tensor().inplace_op1(&update)
            })?
            .with_context(|| format!("updating {}", s.name))?;
        }
        Ok(StepReport { grad_norm, lr })
    }

    /// Writes the moments and the step count to a safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            let shape = s.var.as_tensor().shape().clone();
            tensors.push((
                format!("m.{}", s.name),
                Tensor::from_slice(&s.m, shape.clone(), &Device::Cpu)?,
            ));
            tensors.push((
                format!("v.{}", s.name),
                Tensor::from_slice(&s.v, shape, &Device::Cpu)?,
            ));
        }
        // One metadata entry: a HashMap of several would be written in a random order.
        let meta = HashMap::from([(
            "adamw".to_string(),
            serde_json::json!({"step": self.step, "options": self.opts}).to_string(),
        )]);
        let bytes =
            safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(meta))?;
        crate::util::atomic::write_bytes(path, &bytes)
    }

    /// Restores the moments and step count written by [`AdamW::save`].
    pub fn restore(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{}: not a safetensors file", path.display()))?;
        let step: u64 = header
            .metadata()
            .as_ref()
            .and_then(|m| m.get("adamw"))
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
            .and_then(|v| v["step"].as_u64())
            .with_context(|| format!("{}: no step count in the metadata", path.display()))?;
        let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        for s in &mut self.slots {
            let n = s.m.len();
            let get = |k: String| -> Result<Vec<f32>> {
                let t = tensors
                    .get(&k)
                    .with_context(|| format!("{}: no tensor '{k}'", path.display()))?;
                if t.elem_count() != n {
                    bail!(
                        "{}: '{k}' has {} values, the model {n}",
                        path.display(),
                        t.elem_count()
                    );
                }
                Ok(t.flatten_all()?.to_vec1()?)
            };
            s.m = get(format!("m.{}", s.name))?;
            s.v = get(format!("v.{}", s.name))?;
        }
        self.step = step;
        Ok(())
    }
}

/// Runs `f` on the f32 values of a contiguous CPU tensor, without copying them.
fn with_f32<T>(t: &Tensor, f: impl FnOnce(&[f32]) -> T) -> Result<T> {
    let (storage, layout) = t.storage_and_layout();
    let (a, b) = layout
        .contiguous_offsets()
        .context("AdamW: a gradient is not contiguous")?;
    match &*storage {
        Storage::Cpu(CpuStorage::F32(v)) => Ok(f(&v[a..b])),
        _ => bail!("AdamW: gradients must be f32 on the CPU"),
    }
}

/// PyTorch's AdamW update of one parameter, in place:
/// p ← p (1 − lr λ) − lr / (1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε).
struct Update<'a> {
    grad: &'a [f32],
    moments: RefCell<(&'a mut Vec<f32>, &'a mut Vec<f32>)>,
    clip: f32,
    lr: f32,
    decay: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias1: f32,
    bias2_sqrt: f32,
}

impl InplaceOp1 for Update<'_> {
    fn name(&self) -> &'static str {
        "isolab-adamw"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let Some((a, b)) = layout.contiguous_offsets() else {
            candle_core::bail!("AdamW: a weight is not contiguous")
        };
        let CpuStorage::F32(p) = storage else {
            candle_core::bail!("AdamW: weights must be f32")
        };
        let p = &mut p[a..b];
        let grad = self.grad;
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if p.len() != self.grad.len() || m.len() != p.len() {
            candle_core::bail!("AdamW: weight, gradient and moments differ in size");
        }
        let (clip, decay, eps) = (self.clip, self.decay, self.eps);
        let (beta1, beta2, bias2_sqrt) = (self.beta1, self.beta2, self.bias2_sqrt);
        let step_size = self.lr / self.bias1;
        const CHUNK: usize = 16 * 1024;
        p.par_chunks_mut(CHUNK)
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .zip(grad.par_chunks(CHUNK))
            .for_each(|(((p, m), v), g)| {
                for i in 0..p.len() {
                    let gi = g[i] * clip;
                    m[i] = beta1 * m[i] + (1.0 - beta1) * gi;
                    v[i] = beta2 * v[i] + (1.0 - beta2) * gi * gi;
                    let denom = v[i].sqrt() / bias2_sqrt + eps;
                    p[i] = p[i] * decay - step_size * m[i] / denom;
                }
            });
        Ok(())
    }
}

//! Seeded dropout whose masks are a function of (key, element index), so a mask can be computed
//! again in the backward pass, in parallel, with the same result on any number of threads.

use crate::nn::cpu::contiguous;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// A dropout mask that is a function of (key, element index): Chris Wellons' `lowbias32`
/// integer hash applied twice, so that any part of a mask can be computed on its own, in
/// parallel, in the forward and again in the backward pass, with the same result on any number
/// of threads.
#[derive(Clone, Copy)]
pub(crate) struct Mask {
    key: u64,
    /// An element is dropped when the hash's top 24 bits fall below this.
    threshold: u32,
    /// 1 / (1 − p) for the elements kept.
    pub(crate) scale: f32,
}

impl Mask {
    fn new(key: u64, p: f32) -> Self {
        Self {
            key,
            threshold: (p.clamp(0.0, 1.0) as f64 * 16_777_216.0) as u32,
            scale: 1.0 / (1.0 - p),
        }
    }

    /// The factor of element `i`: 0 or 1 / (1 − p).
    #[inline(always)]
    pub(crate) fn factor(&self, i: usize) -> f32 {
        fn lowbias32(mut x: u32) -> u32 {
            x ^= x >> 16;
            x = x.wrapping_mul(0x7feb_352d);
            x ^= x >> 15;
            x = x.wrapping_mul(0x846c_a68b);
            x ^ (x >> 16)
        }
        let h =
            lowbias32(lowbias32(i as u32 ^ self.key as u32).wrapping_add((self.key >> 32) as u32));
        if h >> 8 < self.threshold {
            0.0
        } else {
            self.scale
        }
    }
}

/// x ⊙ mask; its own backward (g ⊙ mask).
pub(crate) struct Masked(pub(crate) Mask);

impl CustomOp1 for Masked {
    fn name(&self) -> &'static str {
        "isolab-dropout"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        const CHUNK: usize = 16 * 1024;
        let x = contiguous(s, l, "dropout")?;
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .enumerate()
            .for_each(|(c, (o, x))| {
                for (j, (o, &v)) in o.iter_mut().zip(x).enumerate() {
                    *o = v * self.0.factor(c * CHUNK + j);
                }
            });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, g: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(g.contiguous()?.apply_op1_no_bwd(&Masked(self.0))?))
    }
}

/// Seeded dropout masks for one training step: each call draws a fresh key from the step's
/// generator, so masks differ between calls and are the same on every run with the same seed.
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

    pub(crate) fn mask(&mut self, p: f32) -> Mask {
        Mask::new(self.rng.random::<u64>(), p)
    }

    /// Zeroes each element with probability `p` and scales the rest by 1 / (1 − p).
    pub fn apply(&mut self, x: &Tensor, p: f32) -> candle_core::Result<Tensor> {
        if p <= 0.0 {
            return Ok(x.clone());
        }
        let mask = self.mask(p);
        x.contiguous()?.apply_op1(Masked(mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dropout drops a fraction p, scales the rest by 1 / (1 − p), gives the same mask for the
    /// same seed and a different one for the next call.
    #[test]
    fn dropout_masks_have_the_rate_and_are_seeded() {
        let x = Tensor::ones(
            1_000_000,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let masks = |seed| {
            let mut d = Dropout::new(seed);
            let a: Vec<f32> = d.apply(&x, 0.1).unwrap().to_vec1().unwrap();
            let b: Vec<f32> = d.apply(&x, 0.1).unwrap().to_vec1().unwrap();
            (a, b)
        };
        let (a, b) = masks(7);
        let dropped = a.iter().filter(|&&v| v == 0.0).count() as f64 / a.len() as f64;
        // 5 standard deviations of a binomial rate over 10⁶ draws: 0.0015.
        assert!((dropped - 0.1).abs() < 0.0015, "dropped {dropped}");
        assert!(a.iter().all(|&v| v == 0.0 || v == 1.0 / 0.9));
        assert_eq!(masks(7).0, a);
        let same = a.iter().zip(&b).filter(|(p, q)| p == q).count() as f64 / a.len() as f64;
        // Independent masks agree on 0.9² + 0.1² = 82% of the elements.
        assert!((same - 0.82).abs() < 0.003, "two calls agree on {same}");
    }
}

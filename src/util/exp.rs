//! e^x without a branch or a library call, so that a loop over a slice vectorises: Cody–Waite
//! reduction to r ∈ [−ln 2/2, ln 2/2], a polynomial for e^r, and the scale 2ⁿ written straight
//! into the exponent bits. Plain multiplications and additions (no fused multiply-add), so every
//! instruction set gives the same bits: a result does not depend on the CPU it ran on.

/// e^x in f32 with Cephes' degree-6 polynomial for `expf` (about 1 ulp). Arguments are clamped to
/// [−87.3, 88.3] (results from about 1.2e-38 to 2.0e38: above 88.38 the scale 2ⁿ would overflow
/// the exponent bits); NaN stays NaN. The encoder kernels'
/// softmax and GELU use it.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    let x = x.clamp(-87.3, 88.3);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32).wrapping_add(127) as u32) << 23)
}

/// e^x in f64 for x ≤ 0 (log-sum-exp's terms e^(z − max)), to within about 2 ulp: the Taylor
/// series of e^r to degree 12 (its remainder is below 2e-16 for |r| ≤ ln 2/2). Arguments are
/// clamped to [−708, 0] (results from about 3.3e-308 to 1); NaN stays NaN.
///
/// The exponent n is read from the bits of x·log₂e + 1.5·2⁵², whose low bits hold n once the
/// addition has rounded it to an integer: no float-to-integer conversion, which the widest
/// instruction sets without AVX-512 lack for f64.
#[inline(always)]
pub(crate) fn exp_f64_nonpositive(x: f64) -> f64 {
    const ROUND: f64 = 6_755_399_441_055_744.0; // 1.5 · 2⁵²
                                                // ln 2 to 32 significant bits, so that n · LN2_HI is exact for every n here.
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10; // ln 2 − LN2_HI
    let x = x.clamp(-708.0, 0.0);
    let t = x * std::f64::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Σ rᵏ/k! for k ≤ 12, by Horner's rule.
    let mut p = INVERSE_FACTORIALS[0];
    for c in &INVERSE_FACTORIALS[1..] {
        p = p * r + c;
    }
    // 2ⁿ: t's low 12 bits (n in two's complement) shifted into bits 52–63, plus the bias;
    // n ∈ [−1022, 0] keeps the sum a normal exponent.
    let scale = f64::from_bits((t.to_bits() << 52).wrapping_add(1023 << 52));
    p * scale
}

/// 1/k! for k = 12, 11, …, 0: the coefficients of [`exp_f64_nonpositive`]'s polynomial, highest
/// first.
const INVERSE_FACTORIALS: [f64; 13] = [
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    1.0 / 2.0,
    1.0,
    1.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The f32 exponential against the standard library's, over the range softmax and GELU use it
    /// on.
    #[test]
    fn exp_f32_matches_the_standard_library() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let (ours, std) = (exp_f32(x) as f64, (x as f64).exp());
            worst = worst.max((ours - std).abs() / std);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(0.0), 1.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert!(exp_f32(-1e30) < 2e-38);
        assert!(exp_f32(1e30).is_finite() && exp_f32(1e30) > 1.9e38);
    }

    /// The f64 exponential against the standard library's over its whole range, the points where
    /// the reduction switches n included.
    #[test]
    fn exp_f64_matches_the_standard_library() {
        let mut worst = 0f64;
        for i in 0..=1_000_000 {
            let x = -708.0 * i as f64 / 1_000_000.0;
            for x in [x, x + 1e-13, x - 1e-13] {
                let x = x.clamp(-708.0, 0.0);
                let (ours, std) = (exp_f64_nonpositive(x), x.exp());
                worst = worst.max((ours - std).abs() / std);
            }
        }
        for k in 0..1021 {
            let x = -(k as f64 + 0.5) * std::f64::consts::LN_2;
            let std = x.exp();
            worst = worst.max((exp_f64_nonpositive(x) - std).abs() / std);
        }
        assert!(worst < 5e-16, "worst relative error {worst:e}");
        assert_eq!(exp_f64_nonpositive(0.0), 1.0);
        assert!(exp_f64_nonpositive(f64::NAN).is_nan());
        assert!(exp_f64_nonpositive(-1e300) > 0.0 && exp_f64_nonpositive(-1e300) < 4e-308);
    }
}

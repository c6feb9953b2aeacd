//! The paper's claims as verdicts. A measurement is compared with its noise — the spread the same
//! measurement shows over seeds or bootstrap resamples — and called *consistent* with a claim,
//! *inconsistent* with it, or *within noise* when the data cannot tell.

use anyhow::{bail, Result};
use std::fmt;

/// The three-way verdict of one measurement on one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The effect goes the way the claim says, by more than the noise margin.
    Consistent,
    /// The effect is smaller than the noise margin either way.
    WithinNoise,
    /// The effect goes against the claim, by more than the noise margin.
    Inconsistent,
}

impl Verdict {
    /// The verdict on `effect`, the measured difference signed so that a positive value is what
    /// the claim predicts, given the noise `margin` (≥ 0, see [`noise_margin`]).
    ///
    /// ```
    /// use isotropy_lab::analysis::claims::Verdict;
    ///
    /// assert_eq!(Verdict::judge(0.5, 0.2)?, Verdict::Consistent);
    /// assert_eq!(Verdict::judge(-0.1, 0.2)?, Verdict::WithinNoise);
    /// assert_eq!(Verdict::judge(-0.5, 0.2)?, Verdict::Inconsistent);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn judge(effect: f64, margin: f64) -> Result<Verdict> {
        if !effect.is_finite() || !margin.is_finite() || margin < 0.0 {
            bail!("verdict: effect {effect} and margin {margin} must be finite, the margin ≥ 0");
        }
        Ok(if effect > margin {
            Verdict::Consistent
        } else if effect < -margin {
            Verdict::Inconsistent
        } else {
            Verdict::WithinNoise
        })
    }

    /// The verdict on a claim that needs every one of `parts` (claim 4: the top directions carry
    /// the task *and* enhancement helps the fine-tuned model less): consistent when every part is,
    /// inconsistent when any part is, within noise otherwise. `None` when `parts` is empty.
    ///
    /// ```
    /// use isotropy_lab::analysis::claims::Verdict::{self, *};
    ///
    /// assert_eq!(Verdict::all_of(&[Consistent, Consistent]), Some(Consistent));
    /// assert_eq!(Verdict::all_of(&[Consistent, WithinNoise]), Some(WithinNoise));
    /// assert_eq!(Verdict::all_of(&[WithinNoise, Inconsistent]), Some(Inconsistent));
    /// assert_eq!(Verdict::all_of(&[]), None);
    /// ```
    pub fn all_of(parts: &[Verdict]) -> Option<Verdict> {
        if parts.is_empty() {
            None
        } else if parts.contains(&Verdict::Inconsistent) {
            Some(Verdict::Inconsistent)
        } else if parts.iter().all(|&v| v == Verdict::Consistent) {
            Some(Verdict::Consistent)
        } else {
            Some(Verdict::WithinNoise)
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Consistent => "consistent",
            Verdict::WithinNoise => "within noise",
            Verdict::Inconsistent => "inconsistent",
        })
    }
}

/// The noise margin of a difference between two independent estimates with standard deviations
/// `sd_a` and `sd_b`: twice the standard deviation of the difference, 2 √(sd_a² + sd_b²) (about a
/// 95 % band when the estimates are roughly normal).
///
/// ```
/// use isotropy_lab::analysis::claims::noise_margin;
///
/// assert!((noise_margin(3.0, 4.0) - 10.0).abs() < 1e-12);
/// ```
pub fn noise_margin(sd_a: f64, sd_b: f64) -> f64 {
    2.0 * sd_a.hypot(sd_b)
}

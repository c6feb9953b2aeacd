//! Isotropy as a training signal: a penalty on one hidden state's token vectors, added to the
//! task loss with a weight λ, that pushes the space toward isotropy (λ > 0) or away from it
//! (λ < 0).
//!
//! - **I-STAR** (Rudman & Eickhoff, "Stable Anisotropic Regularization", ICLR 2024; their code,
//!   GitHub bcbi-edu/p_eickhoff_isoscore, `I-STAR/`): `loss = task + λ (1 − IsoScore⋆)`, where
//!   IsoScore⋆ is IsoScore of the mini-batch covariance shrunk toward a covariance `C0` estimated
//!   on a larger sample of training tokens: `Σ = (1 − ζ) C + ζ C0`.
//! - **CosReg** (Gao et al. 2019, the baseline I-STAR compares with): `loss = task + λ · c`, `c`
//!   the cosines of all ordered pairs of distinct rows summed and divided by N² (not N(N − 1)),
//!   `(Σᵢⱼ cos(xᵢ, xⱼ) − N) / N²`, as I-STAR's code normalises it.
//!
//! IsoScore needs no eigenvalues: with `λ̂ = √n λ / ‖λ‖` the eigenvalues normalised to length
//! √n, `‖λ̂ − 1‖² = 2n − 2√n Σλ/‖λ‖`, and IsoScore's rescaling of that distance simplifies to
//! `((tr Σ)² / ‖Σ‖²_F − 1) / (n − 1)` (Σλ = tr Σ, ‖λ‖ = ‖Σ‖_F for a covariance). The
//! traces are matrix products, and so is the gradient, which [`isoscore_star`] writes out.
//!
//! What we take from their code and what we change:
//! - ζ = 0.2 (their training default; `--reg-zeta`), `C0` recomputed at the start of every epoch
//!   with the model in inference mode, as their `get_ci` does;
//! - the point cloud is one hidden state's real tokens, `[CLS]`/`[SEP]` and padding left out
//!   (their code flattens every position of all hidden states but the embeddings, padding
//!   included); `--reg-layer` chooses the hidden state;
//! - `C0` comes from [`REFERENCE_TOKENS`] token vectors of a seeded sample of the training split
//!   (their code stops after 250,000 rows: with the penalty on all 12 layers, as their paper
//!   trains, about 21,000 tokens; on one layer, 250,000 tokens).
//!
//! IsoScore is a function of the participation ratio PR = (tr Σ)² / ‖Σ‖²_F alone:
//! IsoScore = (PR − 1) / (n − 1).

use crate::finetune::data::TaskData;
use crate::geometry::spectrum::covariance;
use crate::nn::model::Model;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// I-STAR's shrinkage toward the reference covariance in training (their `--zeta` default).
pub const DEFAULT_ZETA: f64 = 0.2;

/// Token vectors of the training split behind the reference covariance `C0`.
pub const REFERENCE_TOKENS: usize = 25_000;

/// Which penalty, with its weight λ.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Penalty {
    /// I-STAR: `λ (1 − IsoScore⋆)` with shrinkage ζ toward the reference covariance.
    IsoscoreStar {
        /// The weight (λ > 0: toward isotropy).
        lambda: f64,
        /// The shrinkage toward `C0` (0: the mini-batch covariance alone, plain IsoScore).
        zeta: f64,
    },
    /// CosReg: `λ` times the summed cosines of distinct pairs over N².
    Cosine {
        /// The weight (λ > 0: lower mean cosine).
        lambda: f64,
    },
}

impl Penalty {
    /// The weight λ.
    pub fn lambda(&self) -> f64 {
        match *self {
            Penalty::IsoscoreStar { lambda, .. } | Penalty::Cosine { lambda } => lambda,
        }
    }

    /// The same penalty with weight `lambda`.
    pub fn with_lambda(self, lambda: f64) -> Penalty {
        match self {
            Penalty::IsoscoreStar { zeta, .. } => Penalty::IsoscoreStar { lambda, zeta },
            Penalty::Cosine { .. } => Penalty::Cosine { lambda },
        }
    }

    /// `isoscore-star` or `cosine`, as `--isotropy-reg` names it.
    pub fn name(&self) -> &'static str {
        match self {
            Penalty::IsoscoreStar { .. } => "isoscore-star",
            Penalty::Cosine { .. } => "cosine",
        }
    }
}

impl std::fmt::Display for Penalty {
    /// As `--isotropy-reg` takes it (`isoscore-star:-5`), with a ζ other than 0.2 after it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name(), self.lambda())?;
        match *self {
            Penalty::IsoscoreStar { zeta, .. } if zeta != DEFAULT_ZETA => {
                write!(f, " (ζ = {zeta})")
            }
            _ => Ok(()),
        }
    }
}

impl std::str::FromStr for Penalty {
    type Err = anyhow::Error;

    /// `isoscore-star:λ` (ζ = [`DEFAULT_ZETA`]) or `cosine:λ`.
    fn from_str(s: &str) -> Result<Self> {
        let (kind, weight) = s.split_once(':').with_context(|| {
            format!("--isotropy-reg '{s}': expected isoscore-star:λ or cosine:λ (for example isoscore-star:-5)")
        })?;
        let lambda: f64 = weight
            .trim()
            .parse()
            .ok()
            .filter(|l: &f64| l.is_finite())
            .with_context(|| {
                format!("--isotropy-reg '{s}': λ '{weight}' is not a finite number")
            })?;
        match kind.trim() {
            "isoscore-star" => Ok(Penalty::IsoscoreStar {
                lambda,
                zeta: DEFAULT_ZETA,
            }),
            "cosine" => Ok(Penalty::Cosine { lambda }),
            other => bail!(
                "--isotropy-reg '{s}': unknown regulariser '{other}' (isoscore-star or cosine)"
            ),
        }
    }
}

/// The hidden state a penalty is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegLayer {
    /// The last layer's output.
    Last,
    /// Hidden state `N` (0 = the embedding output).
    Index(usize),
}

impl RegLayer {
    /// The hidden state's index in a model with `states` hidden states (layers + 1).
    pub fn resolve(self, states: usize) -> Result<usize> {
        match self {
            RegLayer::Last => Ok(states - 1),
            RegLayer::Index(n) if n < states => Ok(n),
            RegLayer::Index(n) => bail!(
                "--reg-layer {n}: the model has hidden states 0..={} (0 is the embedding output)",
                states - 1
            ),
        }
    }
}

impl std::str::FromStr for RegLayer {
    type Err = anyhow::Error;

    /// `last` or a hidden-state index.
    fn from_str(s: &str) -> Result<Self> {
        if s == "last" {
            return Ok(RegLayer::Last);
        }
        s.parse().map(RegLayer::Index).map_err(|_| {
            anyhow::anyhow!("--reg-layer '{s}': expected 'last' or a hidden-state index")
        })
    }
}

/// A fine-tune's isotropy regulariser: the penalty and the hidden state it is on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IsotropyReg {
    /// The penalty and its weight.
    pub penalty: Penalty,
    /// The regularised hidden state.
    pub layer: RegLayer,
}

/// The shrinkage target of IsoScore⋆: a reference covariance `C0` (n × n) with its trace.
#[derive(Debug, Clone)]
pub struct Reference {
    /// `C0`, f32 on the model's device.
    pub cov: Tensor,
    trace: f64,
}

impl Reference {
    /// The reference `cov` (square, f32).
    pub fn new(cov: Tensor) -> Result<Reference> {
        let (n, m) = cov.dims2().context("reference covariance")?;
        if n != m {
            bail!("reference covariance: {n} × {m} is not square");
        }
        let values: Vec<f32> = cov.flatten_all()?.to_vec1()?;
        let trace = (0..n).map(|i| f64::from(values[i * n + i])).sum();
        Ok(Reference { cov, trace })
    }

    /// Writes `C0` to `path` (safetensors, tensor `cov`).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let cov = self.cov.to_device(&Device::Cpu)?;
        let bytes = safetensors::serialize([("cov", &cov)], None)?;
        crate::util::atomic::write_bytes(path, &bytes)
    }

    /// Reads a `C0` written by [`Reference::save`] onto `device`.
    pub(crate) fn load(path: &Path, device: &Device) -> Result<Reference> {
        let mut saved = candle_core::safetensors::load(path, device)
            .with_context(|| format!("reading {}", path.display()))?;
        let cov = saved
            .remove("cov")
            .with_context(|| format!("{}: no tensor 'cov'", path.display()))?;
        Reference::new(cov).with_context(|| path.display().to_string())
    }
}

/// IsoScore⋆ of the rows of `points` (N × n, N ≥ 2): IsoScore of the covariance
/// `(1 − ζ) C + ζ C0`, C the rows' sample covariance (divided by N − 1), `C0` from `reference`
/// (needed when ζ > 0; ζ = 0 is plain IsoScore). A scalar tensor, differentiable in `points`: its
/// gradient is written out (two matrix products in all, where candle's backward through the
/// same formula took five and as many element-wise passes).
///
/// ```
/// use candle_core::{Device, Tensor};
/// use isotropy_lab::finetune::isotropy_reg::isoscore_star;
///
/// // Points spread along one axis only: IsoScore 0; on the 4 corners of a square: 1.
/// let line = Tensor::new(&[[1f64, 0.0], [2.0, 0.0], [3.0, 0.0]], &Device::Cpu)?;
/// assert!(isoscore_star(&line, None, 0.0)?.to_scalar::<f64>()?.abs() < 1e-12);
/// let square = Tensor::new(&[[1f64, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], &Device::Cpu)?;
/// assert!((isoscore_star(&square, None, 0.0)?.to_scalar::<f64>()? - 1.0).abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn isoscore_star(points: &Tensor, reference: Option<&Reference>, zeta: f64) -> Result<Tensor> {
    let (rows, n) = points.dims2().context("IsoScore⋆ points")?;
    if rows < 2 || n < 2 {
        bail!("IsoScore⋆ needs at least 2 points of at least 2 dimensions, got {rows} × {n}");
    }
    if !(0.0..=1.0).contains(&zeta) {
        bail!("IsoScore⋆: the shrinkage weight ζ = {zeta} is not in [0, 1]");
    }
    let shrink = match reference {
        _ if zeta == 0.0 => None,
        Some(r) => Some(r),
        None => bail!("IsoScore⋆ with ζ = {zeta} needs a reference covariance"),
    };
    let host = |t: &Tensor| -> Result<f64> { Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?) };
    let x = points.detach();
    let centred = x.broadcast_sub(&x.mean_keepdim(0)?)?;
    let scale = 1.0 / (rows as f64 - 1.0);
    let (z, keep) = (zeta, 1.0 - zeta);
    // s = tr Σ, q = ‖Σ‖²_F, and the centred rows times Σ (for the gradient), from one Gram
    // matrix: XᵀX (n × n) = (N − 1) C, or without shrinkage XXᵀ (N × N) when it is smaller
    // (‖XᵀX‖_F = ‖XXᵀ‖_F, X Xᵀ X = X (XᵀX)).
    let trace_c = host(&centred.sqr()?.sum_all()?)? * scale;
    let (s, q, times_sigma) = if shrink.is_some() || rows > n {
        let mut sigma = (centred.t()?.matmul(&centred)? * (keep * scale))?;
        let mut s = keep * trace_c;
        if let Some(r) = shrink {
            sigma = (sigma + (r.cov.to_dtype(x.dtype())? * z)?)?;
            s += z * r.trace;
        }
        let q = host(&sigma.sqr()?.sum_all()?)?;
        (s, q, centred.matmul(&sigma)?)
    } else {
        let inner = centred.matmul(&centred.t()?)?;
        let q = host(&inner.sqr()?.sum_all()?)? * scale * scale;
        (trace_c, q, (inner.matmul(&centred)? * scale)?)
    };
    if q.is_nan() || q <= 0.0 {
        bail!("IsoScore⋆: the points have no variance");
    }
    let value = (s * s / q - 1.0) / (n as f64 - 1.0);
    // ∂/∂X of (s²/q − 1)/(n − 1), with ∂s/∂X = 2(1 − ζ)X/(N − 1) and
    // ∂q/∂X = 4(1 − ζ)XΣ/(N − 1) on the centred rows (centring passes it through unchanged: its
    // columns already sum to 0).
    let c = 4.0 * keep * s / ((n as f64 - 1.0) * (rows as f64 - 1.0) * q);
    let grad = ((centred * c)? - (times_sigma * (c * s / q))?)?;
    // The value, with the gradient attached: Σ X ⊙ G minus itself is 0, its derivative G.
    let linear = points.mul(&grad)?.sum_all()?;
    let attached = (&linear - linear.detach())?;
    Ok(attached.affine(1.0, value)?)
}

/// CosReg's mean cosine of `points` (N × n): `(Σᵢⱼ cos(xᵢ, xⱼ) − N) / N²` over all ordered
/// pairs, computed as `(‖Σᵢ xᵢ/‖xᵢ‖‖² − N) / N²`. A scalar tensor, differentiable in `points`.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use isotropy_lab::finetune::isotropy_reg::mean_cosine_penalty;
///
/// // Two orthogonal rows and one opposite the first: pair cosines 0, −1, 0 (each twice).
/// let x = Tensor::new(&[[2f64, 0.0], [0.0, 3.0], [-1.0, 0.0]], &Device::Cpu)?;
/// let c = mean_cosine_penalty(&x)?.to_scalar::<f64>()?;
/// assert!((c - (-2.0 / 9.0)).abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn mean_cosine_penalty(points: &Tensor) -> Result<Tensor> {
    let (rows, _) = points.dims2().context("mean cosine points")?;
    if rows < 2 {
        bail!("the mean cosine needs at least 2 points, got {rows}");
    }
    let norms = points.sqr()?.sum_keepdim(1)?.sqrt()?;
    let summed = points.broadcast_div(&norms)?.sum(0)?;
    let n = rows as f64;
    Ok(summed.sqr()?.sum_all()?.affine(1.0 / (n * n), -1.0 / n)?)
}

impl IsotropyReg {
    /// The regularised quantity of `points` (IsoScore⋆ or the mean cosine) and the term added to
    /// the loss (`λ (1 − IsoScore⋆)` or `λ · mean cosine`).
    pub fn term(&self, points: &Tensor, reference: Option<&Reference>) -> Result<(Tensor, Tensor)> {
        Ok(match self.penalty {
            Penalty::IsoscoreStar { lambda, zeta } => {
                let score = isoscore_star(points, reference, zeta)?;
                let term = score.affine(-lambda, lambda)?;
                (score, term)
            }
            Penalty::Cosine { lambda } => {
                let c = mean_cosine_penalty(points)?;
                let term = (&c * lambda)?;
                (c, term)
            }
        })
    }

    /// Whether the penalty needs a reference covariance (I-STAR with ζ > 0).
    pub fn needs_reference(&self) -> bool {
        matches!(self.penalty, Penalty::IsoscoreStar { zeta, .. } if zeta > 0.0)
    }
}

/// A regulariser as one training step applies it: on the hidden state `layer` of a batch, the
/// token rows `indices` (flat, example × padded length + position; see
/// [`TaskData::content_indices`]), with I-STAR's reference covariance.
pub struct BatchPenalty<'a> {
    /// The regulariser.
    pub reg: &'a IsotropyReg,
    /// The hidden state it is on (resolved: 0 = the embedding output).
    pub layer: usize,
    /// The batch's token rows it measures.
    pub indices: &'a [u32],
    /// `C0` and ζ (I-STAR with ζ > 0).
    pub reference: Option<&'a Reference>,
}

impl BatchPenalty<'_> {
    /// The regularised quantity and the loss term ([`IsotropyReg::term`]) on the batch's
    /// `states` (every hidden state, batch × seq × hidden).
    pub fn apply(&self, states: &[Tensor]) -> Result<(Tensor, Tensor)> {
        let state = states.get(self.layer).with_context(|| {
            format!(
                "regularised hidden state {} of {}",
                self.layer,
                states.len()
            )
        })?;
        let (b, s, h) = state.dims3()?;
        let idx = Tensor::from_slice(self.indices, self.indices.len(), state.device())?;
        let points = state.reshape((b * s, h))?.index_select(&idx, 0)?;
        self.reg.term(&points, self.reference)
    }
}

/// The reference sample's shuffle is seeded by `seed ^ epoch · REFERENCE_EPOCH_SALT` (an odd
/// constant that spreads consecutive epochs over the seed range; in epoch 0 the sample follows
/// the order the training batches are drawn from).
const REFERENCE_EPOCH_SALT: u64 = 0xD1B5_4A32_D192_ED03;

/// Inputs per batch when the reference covariance's sample is embedded.
const REFERENCE_BATCH: usize = 64;

/// I-STAR's reference covariance for one epoch: the covariance (f32, on the model's device) of
/// hidden state `layer`'s token vectors (`[CLS]`/`[SEP]` left out) over training examples of
/// `data` in a shuffled order seeded by `seed` and `epoch`, taken until they hold at least
/// `max_tokens` tokens (or all of them), the model in inference mode.
pub fn reference_covariance(
    model: &Model,
    data: &TaskData,
    layer: usize,
    max_tokens: usize,
    seed: u64,
    epoch: u64,
) -> Result<Reference> {
    let mut order: Vec<usize> = (0..data.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        seed ^ epoch.wrapping_mul(REFERENCE_EPOCH_SALT),
    ));
    let (mut taken, mut tokens) = (Vec::new(), 0);
    for i in order {
        if tokens >= max_tokens {
            break;
        }
        tokens += data.content_positions(i).len();
        taken.push(i);
    }
    if tokens < 2 {
        bail!("reference covariance: the training split has {tokens} tokens besides [CLS]/[SEP]");
    }
    let w = data
        .embed_content(model, &taken, &[layer], REFERENCE_BATCH)?
        .remove(0);
    let cov = covariance(&w)?;
    let n = cov.nrows();
    let values: Vec<f32> = (0..n * n).map(|k| cov[(k / n, k % n)] as f32).collect();
    let cov = Tensor::from_vec(values, (n, n), &model.device)?;
    Reference::new(cov)
}

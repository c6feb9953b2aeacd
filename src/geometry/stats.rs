//! Scores for representations: Pearson and Spearman correlation (STS-B's metrics), the
//! normalised mutual information and adjusted Rand index between two labellings (how well
//! clusters follow token classes, or each other), and the spread of a repeated measurement.

use crate::util::matrix::Matrix;
use anyhow::{bail, Result};
use std::collections::HashMap;

/// Pearson's correlation coefficient of two equally long samples. Fails when either is constant
/// or shorter than 2.
///
/// ```
/// use isotropy_lab::geometry::stats::pearson;
///
/// assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 7.0])? - 0.9934).abs() < 1e-4);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn pearson(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.len() != b.len() {
        bail!(
            "correlation: samples of different lengths ({} and {})",
            a.len(),
            b.len()
        );
    }
    if a.len() < 2 {
        bail!("correlation: needs at least 2 pairs, got {}", a.len());
    }
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        bail!("correlation: the samples hold a value that is not finite");
    }
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    if saa == 0.0 || sbb == 0.0 {
        bail!("correlation: a sample is constant");
    }
    Ok(sab / (saa.sqrt() * sbb.sqrt()))
}

/// Ranks 1..=n, ties sharing their average rank (scipy's `rankdata(method="average")`).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut out = vec![0.0; v.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && v[idx[end]] == v[idx[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &idx[start..end] {
            out[i] = rank;
        }
        start = end;
    }
    out
}

/// Spearman's rank correlation: Pearson's on the average ranks (scipy's `spearmanr`).
///
/// ```
/// use isotropy_lab::geometry::stats::spearman;
///
/// // Any increasing relation has Spearman 1.
/// assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0])? - 1.0).abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn spearman(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.iter().chain(b).any(|v| !v.is_finite()) {
        bail!("correlation: the samples hold a value that is not finite");
    }
    pearson(&ranks(a), &ranks(b))
}

/// The counts of two labellings of the same items: per label of each, and per pair of labels.
struct Contingency<'a, A, B> {
    ca: HashMap<&'a A, f64>,
    cb: HashMap<&'a B, f64>,
    joint: HashMap<(&'a A, &'a B), f64>,
}

impl<'a, A: std::hash::Hash + Eq, B: std::hash::Hash + Eq> Contingency<'a, A, B> {
    /// Counts `a` against `b`; fails (naming `what`) on different lengths or no items.
    fn of(a: &'a [A], b: &'a [B], what: &str) -> Result<Self> {
        if a.len() != b.len() {
            bail!(
                "{what}: labellings of different lengths ({} and {})",
                a.len(),
                b.len()
            );
        }
        if a.is_empty() {
            bail!("{what}: no items");
        }
        let mut c = Contingency {
            ca: HashMap::new(),
            cb: HashMap::new(),
            joint: HashMap::new(),
        };
        for (x, y) in a.iter().zip(b) {
            *c.ca.entry(x).or_default() += 1.0;
            *c.cb.entry(y).or_default() += 1.0;
            *c.joint.entry((x, y)).or_default() += 1.0;
        }
        Ok(c)
    }
}

/// Normalised mutual information of two labellings of the same items, I(A; B) / ((H(A) + H(B)) / 2)
/// (scikit-learn's `normalized_mutual_info_score` with its default arithmetic mean): 1 when one
/// labelling determines the other, 0 when they are independent. Two single-class labellings
/// score 1, as in scikit-learn.
///
/// ```
/// use isotropy_lab::geometry::stats::normalized_mutual_info;
///
/// // The same partition under other names: NMI 1. Independent labellings: 0.
/// assert!((normalized_mutual_info(&[0, 0, 1, 1], &["a", "a", "b", "b"])? - 1.0).abs() < 1e-12);
/// assert!(normalized_mutual_info(&[0, 0, 1, 1], &[0, 1, 0, 1])?.abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn normalized_mutual_info<A, B>(a: &[A], b: &[B]) -> Result<f64>
where
    A: std::hash::Hash + Eq,
    B: std::hash::Hash + Eq,
{
    let Contingency { ca, cb, joint } = Contingency::of(a, b, "mutual information")?;
    let n = a.len() as f64;
    let entropy = |counts: &mut dyn Iterator<Item = &f64>| -> f64 {
        counts.map(|&c| -(c / n) * (c / n).ln()).sum()
    };
    let (ha, hb) = (entropy(&mut ca.values()), entropy(&mut cb.values()));
    if ca.len() == 1 && cb.len() == 1 {
        return Ok(1.0);
    }
    let mi: f64 = joint
        .iter()
        .map(|((x, y), &c)| (c / n) * ((c * n) / (ca[x] * cb[y])).ln())
        .sum();
    let denom = (ha + hb) / 2.0;
    Ok(if denom > 0.0 {
        (mi / denom).clamp(0.0, 1.0)
    } else {
        0.0
    })
}

/// The adjusted Rand index of two labellings of the same items (scikit-learn's
/// `adjusted_rand_score`): the share of item pairs on which they agree (together in both, or apart
/// in both), corrected for chance, so 1 when they are the same partition and about 0 for
/// unrelated ones (it can be negative). Two labellings that both put every item in one cluster, or
/// both in its own, score 1, as in scikit-learn.
///
/// ```
/// use isotropy_lab::geometry::stats::adjusted_rand_index;
///
/// assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7])? - 1.0).abs() < 1e-12);
/// assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1])? < 0.0);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn adjusted_rand_index<A, B>(a: &[A], b: &[B]) -> Result<f64>
where
    A: std::hash::Hash + Eq,
    B: std::hash::Hash + Eq,
{
    let Contingency { ca, cb, joint } = Contingency::of(a, b, "adjusted Rand index")?;
    let pairs = |c: f64| c * (c - 1.0) / 2.0;
    let sum_pairs = |m: &mut dyn Iterator<Item = &f64>| -> f64 { m.map(|&c| pairs(c)).sum() };
    let index = sum_pairs(&mut joint.values());
    let (sa, sb) = (sum_pairs(&mut ca.values()), sum_pairs(&mut cb.values()));
    let expected = sa * sb / pairs(a.len() as f64).max(1.0);
    let max_index = (sa + sb) / 2.0;
    if max_index == expected {
        return Ok(1.0);
    }
    Ok((index - expected) / (max_index - expected))
}

/// The spread of a measurement repeated over seeds or resamples: mean, sample standard deviation
/// (n − 1 in the denominator; 0 for one value), least and largest value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Number of values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Their sample standard deviation.
    pub sd: f64,
    /// The least value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; fails when there are none or one is not finite.
    ///
    /// ```
    /// use isotropy_lab::geometry::stats::Spread;
    ///
    /// let s = Spread::of(&[1.0, 2.0, 3.0])?;
    /// assert_eq!((s.mean, s.sd, s.min, s.max), (2.0, 1.0, 1.0, 3.0));
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn of(values: &[f64]) -> Result<Spread> {
        if values.is_empty() {
            bail!("spread of no values");
        }
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            bail!("spread: value {v} is not finite");
        }
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Ok(Spread {
            n,
            mean,
            sd,
            min,
            max,
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.4} ± {:.4} (n = {})", self.mean, self.sd, self.n)
    }
}

/// The STS-B score of sentence vectors: Spearman's correlation × 100 between the cosine of each
/// pair's vectors (row i of `first` with row i of `second`) and the gold similarity `gold[i]`.
///
/// ```
/// use isotropy_lab::geometry::stats::sts_spearman;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Cosines 1, 0.71 and 0 against gold scores 5, 3 and 1: the same order.
/// let first = Matrix::new(3, 2, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0])?;
/// let second = Matrix::new(3, 2, vec![1.0, 0.0, 1.0, 1.0, 0.0, 1.0])?;
/// assert!((sts_spearman(&first, &second, &[5.0, 3.0, 1.0])? - 100.0).abs() < 1e-9);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn sts_spearman(first: &Matrix, second: &Matrix, gold: &[f64]) -> Result<f64> {
    if first.rows() != gold.len() || second.rows() != gold.len() || first.cols() != second.cols() {
        bail!(
            "STS score: {} and {} sentence vectors for {} gold scores",
            first.rows(),
            second.rows(),
            gold.len()
        );
    }
    Ok(100.0 * spearman(&pair_cosines(first, second)?, gold)?)
}

/// The cosine of each pair of rows, row i of `first` with row i of `second` ([`cosine`]); fails
/// unless the two have the same shape.
///
/// ```
/// use isotropy_lab::geometry::stats::pair_cosines;
/// use isotropy_lab::util::matrix::Matrix;
///
/// let first = Matrix::new(2, 2, vec![1.0, 0.0, 0.0, 2.0])?;
/// let second = Matrix::new(2, 2, vec![3.0, 0.0, 1.0, 0.0])?;
/// assert_eq!(pair_cosines(&first, &second)?, [1.0, 0.0]);
/// assert!(pair_cosines(&first, &Matrix::new(1, 2, vec![1.0, 0.0])?).is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn pair_cosines(first: &Matrix, second: &Matrix) -> Result<Vec<f64>> {
    if (first.rows(), first.cols()) != (second.rows(), second.cols()) {
        bail!(
            "pair cosines: {} × {} and {} × {} vectors",
            first.rows(),
            first.cols(),
            second.rows(),
            second.cols()
        );
    }
    Ok((0..first.rows())
        .map(|i| cosine(first.row(i), second.row(i)))
        .collect())
}

/// The cosine of two vectors of equal length (the longer one's extra values would be left out of
/// the product but not the norm: a caller's bug, checked in debug builds), summed in f64; 0 when
/// either is zero.
///
/// ```
/// use isotropy_lab::geometry::stats::cosine;
///
/// assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - 0.5f64.sqrt()).abs() < 1e-12);
/// assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
/// ```
pub fn cosine(a: &[f32], b: &[f32]) -> f64 {
    debug_assert_eq!(a.len(), b.len(), "cosine of vectors of different lengths");
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        0.0
    } else {
        dot / (na * nb)
    }
}

//! Cosine-based anisotropy measures: the mean cosine of random token pairs (Ethayarajh 2019), each
//! dimension's share of it (rogue dimensions, Timkey & van Schijndel 2021), self-similarity of a
//! token across contexts and intra-sentence similarity (Ethayarajh 2019).
//!
//! Every expectation over "random pairs" is computed exactly, over all pairs of distinct rows, from
//! sums of unit vectors: with x̂ = x / ‖x‖, Σ_{i≠j} x̂ᵢ·x̂ⱼ = ‖Σ x̂‖² − n. This is what the sampled
//! estimates converge to, costs one pass over the matrix, and needs no seed. Rows of norm zero have
//! no direction and are left out of every cosine.

use crate::util::matrix::Matrix;
use anyhow::{bail, Result};
use rayon::prelude::*;
use std::collections::HashMap;

/// The Euclidean norm of a row, summed in f64.
fn norm(row: &[f32]) -> f64 {
    row.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt()
}

/// Rows of `w` scaled to unit norm, in f64 (row-major), with a flag per row: false for a zero row.
fn unit_rows(w: &Matrix) -> (Vec<f64>, Vec<bool>) {
    let d = w.cols();
    let mut out = vec![0.0; w.rows() * d];
    let mut nonzero = vec![false; w.rows()];
    for i in 0..w.rows() {
        let row = w.row(i);
        let norm = norm(row);
        if norm > 0.0 {
            nonzero[i] = true;
            for (o, &x) in out[i * d..(i + 1) * d].iter_mut().zip(row) {
                *o = f64::from(x) / norm;
            }
        }
    }
    (out, nonzero)
}

/// Per column, the sum and the sum of squares of `w`'s rows scaled to unit norm, and the number of
/// non-zero rows (zero rows are left out). One pass, blocks of rows in parallel, their sums added
/// in block order (the result does not depend on the number of threads); no copy of the rows.
fn unit_sums(w: &Matrix) -> (Vec<f64>, Vec<f64>, usize) {
    const BLOCK: usize = 1024;
    let d = w.cols();
    let blocks: Vec<(Vec<f64>, Vec<f64>, usize)> = (0..w.rows().div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let (mut sum, mut sq, mut n) = (vec![0.0; d], vec![0.0; d], 0);
            for i in b * BLOCK..((b + 1) * BLOCK).min(w.rows()) {
                let row = w.row(i);
                let norm = norm(row);
                if norm > 0.0 {
                    n += 1;
                    for ((s, q), &x) in sum.iter_mut().zip(sq.iter_mut()).zip(row) {
                        let u = f64::from(x) / norm;
                        *s += u;
                        *q += u * u;
                    }
                }
            }
            (sum, sq, n)
        })
        .collect();
    let (mut sum, mut sq, mut n) = (vec![0.0; d], vec![0.0; d], 0);
    for (bs, bq, bn) in blocks {
        sum.iter_mut().zip(bs).for_each(|(s, b)| *s += b);
        sq.iter_mut().zip(bq).for_each(|(q, b)| *q += b);
        n += bn;
    }
    (sum, sq, n)
}

/// Each dimension's contribution to the mean cosine of all pairs of distinct rows of `w`, and the
/// mean cosine itself (their sum).
///
/// Timkey & van Schijndel (2021, "All Bark and No Bite: Rogue Dimensions in Transformer Language
/// Models Obscure Representational Quality") define the contribution of dimension i to the cosine
/// of u and v as uᵢvᵢ / (‖u‖‖v‖); averaged over random pairs it tells which few dimensions
/// ("rogue dimensions") make the space look anisotropic. Here the average is over all pairs:
/// cᵢ = ((Σ x̂ᵢ)² − Σ x̂ᵢ²) / (n(n − 1)) over the n non-zero rows.
///
/// ```
/// use isotropy_lab::geometry::similarity::CosineContributions;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Two vectors alike in dimension 0 and opposite in dimension 1.
/// let w = Matrix::new(2, 2, vec![1.0, 0.1, 1.0, -0.1])?;
/// let c = CosineContributions::of(&w)?;
/// assert_eq!(c.top(1)[0].0, 0);
/// assert!(c.per_dimension[1] < 0.0);
/// assert!((c.per_dimension.iter().sum::<f64>() - c.mean_cosine).abs() < 1e-12);
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CosineContributions {
    /// cᵢ for every dimension i.
    pub per_dimension: Vec<f64>,
    /// Σ cᵢ: the mean cosine similarity of all pairs of distinct non-zero rows.
    pub mean_cosine: f64,
}

impl CosineContributions {
    /// Computes the contributions; needs 2 non-zero rows.
    pub fn of(w: &Matrix) -> Result<CosineContributions> {
        w.check_finite("cosine contributions")?;
        let (sum, sq, n) = unit_sums(w);
        if n < 2 {
            bail!("mean cosine: needs at least 2 non-zero rows, the matrix has {n}");
        }
        let d = w.cols();
        let pairs = (n * (n - 1)) as f64;
        let per_dimension: Vec<f64> = (0..d).map(|j| (sum[j] * sum[j] - sq[j]) / pairs).collect();
        let mean_cosine = per_dimension.iter().sum();
        Ok(CosineContributions {
            per_dimension,
            mean_cosine,
        })
    }

    /// The `n` dimensions that contribute most, largest first, as (dimension, contribution).
    pub fn top(&self, n: usize) -> Vec<(usize, f64)> {
        let mut all: Vec<(usize, f64)> = self.per_dimension.iter().copied().enumerate().collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        all.truncate(n);
        all
    }

    /// The share of the mean cosine carried by the `n` top dimensions (Σ top cᵢ / Σ cᵢ); NaN when
    /// the mean cosine is 0.
    pub fn top_share(&self, n: usize) -> f64 {
        let top: f64 = self.top(n).iter().map(|t| t.1).sum();
        if self.mean_cosine == 0.0 {
            f64::NAN
        } else {
            top / self.mean_cosine
        }
    }
}

/// Mean cosine similarity of all pairs of distinct non-zero rows (Ethayarajh 2019's anisotropy
/// baseline: the expected cosine of two random tokens; 0 for an isotropic cloud, 1 when every
/// vector points the same way). Exact, from the sum of unit rows.
///
/// ```
/// use isotropy_lab::geometry::similarity::mean_cosine;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Pairs: a and b point the same way (cosine 1), c is orthogonal to both (0, 0).
/// let w = Matrix::new(3, 2, vec![1.0, 0.0, 2.0, 0.0, 0.0, 1.0])?;
/// assert!((mean_cosine(&w)? - 1.0 / 3.0).abs() < 1e-9);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn mean_cosine(w: &Matrix) -> Result<f64> {
    Ok(CosineContributions::of(w)?.mean_cosine)
}

/// Self-similarity of tokens across contexts (Ethayarajh 2019, "How Contextual are Contextualized
/// Word Representations?"): for a token type t seen in m ≥ `min_occurrences` contexts, the mean
/// cosine of all pairs of its occurrences; 1 means the model gives it the same vector everywhere.
#[derive(Debug, Clone, PartialEq)]
pub struct SelfSimilarity {
    /// The mean over token types of their self-similarity.
    pub mean: f64,
    /// Per type: (token, occurrences, self-similarity), most frequent first.
    pub per_type: Vec<(String, usize, f64)>,
}

/// [`SelfSimilarity`] of the rows of `w`, grouped by `token` (one entry per row; for an
/// extraction, its token table's `token` column). Fails if no type reaches `min_occurrences`
/// (at least 2).
///
/// ```
/// use isotropy_lab::geometry::similarity::self_similarity;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // "bank" gets the same vector in both contexts, "run" two orthogonal ones.
/// let w = Matrix::new(4, 2, vec![1.0, 0.0, 2.0, 0.0, 0.0, 1.0, 1.0, 0.0])?;
/// let s = self_similarity(&w, &["bank", "bank", "run", "run"], 2)?;
/// assert_eq!(s.per_type.len(), 2);
/// assert!((s.mean - 0.5).abs() < 1e-9);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn self_similarity(
    w: &Matrix,
    token: &[&str],
    min_occurrences: usize,
) -> Result<SelfSimilarity> {
    w.check_finite("self-similarity")?;
    if token.len() != w.rows() {
        bail!(
            "self-similarity: {} tokens for a matrix of {} rows",
            token.len(),
            w.rows()
        );
    }
    let min = min_occurrences.max(2);
    let (unit, nonzero) = unit_rows(w);
    let d = w.cols();
    let mut groups: HashMap<&str, (usize, Vec<f64>)> = HashMap::new();
    for (i, &t) in token.iter().enumerate() {
        if !nonzero[i] {
            continue;
        }
        let entry = groups.entry(t).or_insert_with(|| (0, vec![0.0; d]));
        entry.0 += 1;
        for (s, &x) in entry.1.iter_mut().zip(&unit[i * d..(i + 1) * d]) {
            *s += x;
        }
    }
    let mut per_type: Vec<(String, usize, f64)> = groups
        .into_iter()
        .filter(|(_, (m, _))| *m >= min)
        .map(|(t, (m, sum))| {
            let norm2: f64 = sum.iter().map(|x| x * x).sum();
            let m_f = m as f64;
            (t.to_string(), m, (norm2 - m_f) / (m_f * (m_f - 1.0)))
        })
        .collect();
    if per_type.is_empty() {
        bail!("self-similarity: no token occurs {min} times or more");
    }
    per_type.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mean = per_type.iter().map(|t| t.2).sum::<f64>() / per_type.len() as f64;
    Ok(SelfSimilarity { mean, per_type })
}

/// Intra-sentence similarity (Ethayarajh 2019): for each sentence, the mean cosine between its
/// tokens and the sentence's mean vector, averaged over sentences. `sentence` gives each row's
/// sentence (for an extraction, the token table's `sentence_id`). Zero rows and sentences whose
/// mean vector is zero are left out.
///
/// ```
/// use isotropy_lab::geometry::similarity::intra_sentence_similarity;
/// use isotropy_lab::util::matrix::Matrix;
///
/// // Sentence 0's two tokens point the same way: each has cosine 1 with their mean.
/// let w = Matrix::new(2, 2, vec![1.0, 0.0, 3.0, 0.0])?;
/// assert!((intra_sentence_similarity(&w, &[0, 0])? - 1.0).abs() < 1e-9);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn intra_sentence_similarity(w: &Matrix, sentence: &[u32]) -> Result<f64> {
    w.check_finite("intra-sentence similarity")?;
    if sentence.len() != w.rows() {
        bail!(
            "intra-sentence similarity: {} sentence ids for a matrix of {} rows",
            sentence.len(),
            w.rows()
        );
    }
    let d = w.cols();
    let mut rows_of: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &s) in sentence.iter().enumerate() {
        rows_of.entry(s).or_default().push(i);
    }
    let (unit, nonzero) = unit_rows(w);
    let (mut total, mut counted) = (0.0, 0usize);
    for rows in rows_of.values() {
        let mut mean = vec![0.0f64; d];
        for &i in rows {
            for (m, &x) in mean.iter_mut().zip(w.row(i)) {
                *m += f64::from(x);
            }
        }
        let norm = mean.iter().map(|x| x * x).sum::<f64>().sqrt();
        let used: Vec<usize> = rows.iter().copied().filter(|&i| nonzero[i]).collect();
        if norm == 0.0 || used.is_empty() {
            continue;
        }
        let sum: f64 = used
            .iter()
            .map(|&i| {
                unit[i * d..(i + 1) * d]
                    .iter()
                    .zip(&mean)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
                    / norm
            })
            .sum();
        total += sum / used.len() as f64;
        counted += 1;
    }
    if counted == 0 {
        bail!("intra-sentence similarity: no sentence has a non-zero token");
    }
    Ok(total / counted as f64)
}

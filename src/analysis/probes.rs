//! Linear probes on extracted embeddings: what a layer's sentence vectors tell about the task's
//! labels, and what its dominant token directions encode (the paper's claim 4, first half).

use crate::analysis::columns;
use crate::analysis::extract::Embeddings;
use crate::analysis::protocol::Protocol;
use crate::analysis::structure::frequency_bucket;
use crate::geometry::logistic::{standardise, LogisticRegression, ProbeOptions};
use crate::geometry::spectrum::Pca;
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use crate::util::memo::{cached_frame, expect_shape, Key};
use crate::util::sample::sorted_sample;
use anyhow::{bail, Result};
use faer::Mat;
use polars::prelude::{Column, DataFrame, DataType};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// A probe's accuracy on the sentence vectors of `m` (a layer of `emb`, or a transformed copy
/// with the same rows): each sentence's tokens mean-pooled (`[CLS]` and `[SEP]` left out), the
/// sentences split in two halves by a seeded shuffle, a logistic regression fitted on one half
/// (standardised features) and scored on the other. Needs labelled sentences (a classification
/// task's train or dev split). Used to score the enhancement methods on classification tasks.
pub fn split_half_accuracy(
    emb: &Embeddings,
    m: &Matrix,
    opts: &ProbeOptions,
    seed: u64,
) -> Result<f64> {
    let (ids, x) = emb.sentence_means(m)?;
    let y = emb.sentence_classes(&ids)?;
    if ids.len() < 4 {
        bail!(
            "split-half probe: {} sentences are too few (at least 4)",
            ids.len()
        );
    }
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let half = order.len() / 2;
    let rows = |idx: &[usize]| -> Vec<Vec<f64>> {
        idx.iter()
            .map(|&i| x.row(i).iter().map(|&v| f64::from(v)).collect())
            .collect()
    };
    let labels = |idx: &[usize]| -> Vec<i64> { idx.iter().map(|&i| y[i]).collect() };
    let (a, b) = standardise(&rows(&order[..half]), &rows(&order[half..]))?;
    LogisticRegression::fit(&a, &labels(&order[..half]), opts)?
        .accuracy(&b, &labels(&order[half..]))
}

/// What a token-level probe predicts from a token's vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenTarget {
    /// The token's [`crate::data::tokens::TokenClass`] (punctuation, number, stop word, word).
    Class,
    /// The bucket of the token's count in the task's training split ([`frequency_bucket`]).
    Frequency,
    /// The label of the token's sentence (classification tasks only).
    Label,
}

impl TokenTarget {
    /// Every target, in the order tables list them.
    pub const ALL: [TokenTarget; 3] = [
        TokenTarget::Class,
        TokenTarget::Frequency,
        TokenTarget::Label,
    ];

    /// The name used in tables.
    pub const fn name(self) -> &'static str {
        match self {
            TokenTarget::Class => "token class",
            TokenTarget::Frequency => "frequency bucket",
            TokenTarget::Label => "task label",
        }
    }

    /// Each token's value of this target in `emb`'s token table, as a string.
    fn values(self, emb: &Embeddings) -> Result<Vec<String>> {
        let t = emb.tokens.fresh();
        let strings = |c: &Column| -> Result<Vec<String>> {
            Ok(c.cast(&DataType::String)?
                .str()?
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect())
        };
        match self {
            TokenTarget::Class => strings(t.column(columns::TOKEN_CLASS)?),
            TokenTarget::Frequency => Ok(t
                .column(columns::FREQUENCY)?
                .cast(&DataType::UInt64)?
                .u64()?
                .iter()
                .map(|f| frequency_bucket(f).to_string())
                .collect()),
            TokenTarget::Label => {
                let label = t.column(columns::LABEL)?;
                if !label.dtype().is_integer() {
                    bail!(
                        "task-label probe: the labels are {} (a score, not a class: STS-B?)",
                        label.dtype()
                    );
                }
                if label.null_count() > 0 {
                    bail!(
                        "task-label probe: {} tokens have no label (a test split?)",
                        label.null_count()
                    );
                }
                strings(label)
            }
        }
    }
}

impl fmt::Display for TokenTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Options of [`token_direction_probes`].
#[derive(Debug, Clone, PartialEq)]
pub struct TokenProbeOptions {
    /// The numbers of top directions probed, each between 1 and the width − 1.
    pub ks: Vec<usize>,
    /// Training tokens drawn for each seed (all of them when there are fewer).
    pub train_tokens: usize,
    /// The logistic regression's options.
    pub probe: ProbeOptions,
}

impl Default for TokenProbeOptions {
    /// k = 1, 2, 4, 8, 16, 32; 4,000 training tokens per seed; the probe with scikit-learn's
    /// defaults for `LogisticRegression` (C = 1, at most 100 L-BFGS iterations, tolerance 1e-4):
    /// without standardisation the vectors left after removing the top directions are badly
    /// conditioned, and a fit to 1e-6 takes 500 iterations for the same accuracy.
    fn default() -> Self {
        Self {
            ks: vec![1, 2, 4, 8, 16, 32],
            train_tokens: 4000,
            probe: ProbeOptions {
                c: 1.0,
                max_iter: 100,
                tol: 1e-4,
            },
        }
    }
}

/// What the dominant directions of a layer's token space encode (the paper's claim 4, first
/// half), token by token: for each seed of `protocol`, `opts.train_tokens` token rows of hidden
/// state `layer` are drawn from `train`; their principal directions are fitted (the directions
/// chapter 03 counts, estimated on the training draw), and for each k in `opts.ks` a
/// [`LogisticRegression`] predicting `target` is trained on the draw and scored on every token of
/// `dev`, seeing either only the coordinates on the top k directions (`top_k_accuracy`) or
/// everything but them (`removed_accuracy`). A first row per seed with k = 0 scores the full
/// vectors (`removed_accuracy`) and the majority class of the draw (`top_k_accuracy`).
///
/// The features are the centred coordinates in the principal basis divided by one number, the
/// draw's root-mean-square coordinate: no per-feature standardisation, so removing directions
/// does not inflate what is left (the L2-penalised probe is unchanged by the rotation, so this is
/// the probe on the vectors with those directions projected out). Columns: `target`, `seed`, `k`,
/// `top_k_accuracy`, `removed_accuracy`; [`crate::analysis::spread::summarise`] gives the spread
/// over seeds. The fits run in parallel; the table is cached on disk by the rows, the target's
/// values and the options ([`crate::util::memo`]), so the same call again reads it back.
///
/// ```no_run
/// use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
/// use isotropy_lab::analysis::probes::{token_direction_probes, TokenProbeOptions, TokenTarget};
/// use isotropy_lab::analysis::protocol::Protocol;
/// use isotropy_lab::data::glue::{Split, Task};
/// use isotropy_lab::nn::model::Model;
///
/// let model = Model::load("minilm")?;
/// let options = ExtractOptions { limit: Some(200), layers: Some(vec![6]), ..ExtractOptions::default() };
/// let train = Embeddings::extract(&model, &Source::glue(Task::Sst2, Split::Train), &options)?;
/// let dev = Embeddings::extract(&model, &Source::glue(Task::Sst2, Split::Dev), &options)?;
/// let opts = TokenProbeOptions { ks: vec![4], ..TokenProbeOptions::default() };
/// let probes = token_direction_probes(&train, &dev, 6, TokenTarget::Class, &opts, &Protocol::default())?;
/// assert_eq!(probes.height(), 5 * 2); // per seed: k = 0 and k = 4
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn token_direction_probes(
    train: &Embeddings,
    dev: &Embeddings,
    layer: usize,
    target: TokenTarget,
    opts: &TokenProbeOptions,
    protocol: &Protocol,
) -> Result<DataFrame> {
    let (xt, xd) = (train.layer(layer)?, dev.layer(layer)?);
    let d = xt.cols();
    if xd.cols() != d {
        bail!("probe: train has {d} columns, dev {}", xd.cols());
    }
    if let Some(&k) = opts.ks.iter().find(|&&k| k == 0 || k >= d) {
        bail!("probe: k = {k} must be between 1 and {}", d - 1);
    }
    let (vt, vd) = (target.values(train)?, target.values(dev)?);
    // Cached by everything the probes read: a cell run again answers from disk.
    let key = Key::new("token-probes")
        .matrix(xt)
        .matrix(xd)
        .debug(&(target, &vt, &vd, opts, protocol));
    let rows = protocol.seeds * (1 + opts.ks.len());
    cached_frame(
        key,
        |t| expect_shape(t, rows, &PROBE_COLUMNS),
        || fit_token_probes(xt, xd, (&vt, &vd), target, opts, protocol),
    )
}

/// The work of [`token_direction_probes`], on the layer's train and dev rows and their target
/// values.
fn fit_token_probes(
    xt: &Matrix,
    xd: &Matrix,
    (vt, vd): (&[String], &[String]),
    target: TokenTarget,
    opts: &TokenProbeOptions,
    protocol: &Protocol,
) -> Result<DataFrame> {
    let d = xt.cols();
    // One class index per token, shared by train and dev.
    let names: BTreeSet<&str> = vt.iter().chain(vd).map(String::as_str).collect();
    let index = |v: &[String]| -> Vec<i64> {
        v.iter()
            .map(|s| names.iter().position(|n| *n == s.as_str()).unwrap_or(0) as i64)
            .collect()
    };
    let (yt_all, yd) = (index(vt), index(vd));
    let dev_faer = xd.to_faer();
    // Each seed's draw: its labels, and the draw's and dev's principal coordinates over one scale.
    let draws = protocol
        .seeds()
        .into_par_iter()
        .map(|seed| -> Result<Draw> {
            let rows = sorted_sample(xt.rows(), Some(opts.train_tokens), seed);
            let labels: Vec<i64> = rows.iter().map(|&i| yt_all[i]).collect();
            if labels.iter().collect::<BTreeSet<_>>().len() < 2 {
                bail!(
                    "probe ({target}): the {} training tokens drawn with seed {seed} hold one class",
                    rows.len()
                );
            }
            let draw = xt.select_rows(&rows)?.to_faer();
            let pca = Pca::fit_f64(draw.as_ref())?;
            let (train, dev) = (
                pca.transform(draw.as_ref(), d)?,
                pca.transform(dev_faer.as_ref(), d)?,
            );
            let rms = (train.as_ref().squared_norm_l2() / (train.nrows() * d) as f64)
                .sqrt()
                .max(f64::MIN_POSITIVE);
            Ok(Draw {
                seed,
                labels,
                train,
                dev,
                rms,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    // Every probe: (draw, first coordinate, end), the full vectors (k = 0) first, then per k the
    // top k and the rest; fitted in parallel.
    let mut jobs = Vec::new();
    for i in 0..draws.len() {
        jobs.push((i, 0, d));
        for &k in &opts.ks {
            jobs.extend([(i, 0, k), (i, k, d)]);
        }
    }
    let accuracy = jobs
        .par_iter()
        .map(|&(i, from, to)| {
            let draw = &draws[i];
            let features = |c: &Mat<f64>| {
                let data = (0..c.nrows())
                    .flat_map(|r| (from..to).map(move |j| (c[(r, j)] / draw.rms) as f32))
                    .collect();
                Matrix::new(c.nrows(), to - from, data)
            };
            LogisticRegression::fit(&features(&draw.train)?, &draw.labels, &opts.probe)?
                .accuracy(&features(&draw.dev)?, &yd)
        })
        .collect::<Result<Vec<f64>>>()?;
    let (mut seed_col, mut k_col, mut top_col, mut removed_col) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut next = accuracy.into_iter();
    for draw in &draws {
        seed_col.push(draw.seed as u32);
        k_col.push(0u32);
        top_col.push(majority_rate(&draw.labels, &yd));
        removed_col.push(next.next().unwrap_or(f64::NAN));
        for &k in &opts.ks {
            seed_col.push(draw.seed as u32);
            k_col.push(k as u32);
            top_col.push(next.next().unwrap_or(f64::NAN));
            removed_col.push(next.next().unwrap_or(f64::NAN));
        }
    }
    let [target_name, seed_name, k_name, top_name, removed_name] = PROBE_COLUMNS;
    Ok(DataFrame::new_infer_height(vec![
        Column::new(target_name.into(), vec![target.name(); seed_col.len()]),
        Column::new(seed_name.into(), seed_col),
        Column::new(k_name.into(), k_col),
        Column::new(top_name.into(), top_col),
        Column::new(removed_name.into(), removed_col),
    ])?
    .fresh())
}

/// The columns of [`token_direction_probes`]' table, in order.
const PROBE_COLUMNS: [&str; 5] = ["target", "seed", "k", "top_k_accuracy", "removed_accuracy"];

/// One seed's draw of training tokens for [`token_direction_probes`]: its labels, its principal
/// coordinates and dev's (in the draw's basis), and the one scale both are divided by.
struct Draw {
    seed: u64,
    labels: Vec<i64>,
    train: Mat<f64>,
    dev: Mat<f64>,
    rms: f64,
}

/// The accuracy on `dev` of always answering the most common class of `train` (ties: the smaller
/// class).
fn majority_rate(train: &[i64], dev: &[i64]) -> f64 {
    let mut counts: HashMap<i64, usize> = HashMap::new();
    train
        .iter()
        .for_each(|y| *counts.entry(*y).or_default() += 1);
    let top = counts
        .iter()
        .max_by_key(|(c, n)| (**n, -**c))
        .map(|(c, _)| *c)
        .unwrap_or(0);
    dev.iter().filter(|&&y| y == top).count() as f64 / dev.len().max(1) as f64
}

//! Linear probes on extracted embeddings: what a layer's sentence vectors, or its dominant
//! directions, tell about the task's labels (the paper's claim 4, first half).

use crate::analysis::columns;
use crate::analysis::extract::Embeddings;
use crate::geometry::logistic::{standardise, LogisticRegression, ProbeOptions};
use crate::geometry::spectrum::Pca;
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use anyhow::{bail, Result};
use faer::{Mat, MatRef};
use polars::prelude::{Column, DataFrame, DataType};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashMap;

/// Each sentence's label from an extraction's token table, in `sentence_id` order (the order of
/// [`Embeddings::sentence_means`]); fails if a sentence has no label.
pub fn sentence_labels(emb: &Embeddings, ids: &[u32]) -> Result<Vec<i64>> {
    let t = emb.tokens.fresh();
    let sid = t.column(columns::SENTENCE_ID)?.u32()?;
    let label = t.column(columns::LABEL)?.cast(&DataType::Int64)?;
    let label = label.i64()?;
    let mut of = HashMap::new();
    for (s, l) in sid.iter().zip(label.iter()) {
        if let (Some(s), Some(l)) = (s, l) {
            of.entry(s).or_insert(l);
        }
    }
    ids.iter()
        .map(|id| {
            of.get(id)
                .copied()
                .ok_or_else(|| anyhow::anyhow!("probe: sentence {id} has no label (a test split, or not a classification task?)"))
        })
        .collect()
}

/// A probe's accuracy on the sentence vectors of `m` (a layer of `emb`, or a transformed copy
/// with the same rows): each sentence's tokens mean-pooled ([CLS] and [SEP] left out), the
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
    let y = sentence_labels(emb, &ids)?;
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

/// What the dominant directions of a layer encode (the paper's claim 4, first half): sentence
/// vectors (mean-pooled, [`Embeddings::sentence_means`]) of hidden state `layer`, principal
/// components fitted on `train`; for each k in `ks`, a probe ([`LogisticRegression`], features
/// standardised on `train`) trained on `train` and scored on `dev` using only the projections on
/// the top k components (`top_k_accuracy`) and using the vectors with those k directions removed
/// (`removed_accuracy`). A first row with k = 0 scores the full vectors (`removed_accuracy`;
/// `top_k_accuracy` is the majority-class rate).
pub fn direction_probes(
    train: &Embeddings,
    dev: &Embeddings,
    layer: usize,
    ks: &[usize],
    opts: &ProbeOptions,
) -> Result<DataFrame> {
    let (train_ids, xt) = train.sentence_means(train.layer(layer)?)?;
    let (dev_ids, xd) = dev.sentence_means(dev.layer(layer)?)?;
    let (yt, yd) = (
        sentence_labels(train, &train_ids)?,
        sentence_labels(dev, &dev_ids)?,
    );
    let pca = Pca::fit(&xt)?;
    let d = xt.cols();
    let (ft, fd) = (xt.to_faer(), xd.to_faer());
    let rows = |m: Mat<f64>| -> Vec<Vec<f64>> {
        (0..m.nrows())
            .map(|i| (0..m.ncols()).map(|j| m[(i, j)]).collect())
            .collect()
    };
    // A probe trained on `features` of the train vectors, scored on the same features of dev:
    // the centred vectors projected on the top k components, or what is left without them.
    let score = |features: &dyn Fn(MatRef<'_, f64>) -> Result<Mat<f64>>| -> Result<f64> {
        let (a, b) = standardise(&rows(features(ft.as_ref())?), &rows(features(fd.as_ref())?))?;
        LogisticRegression::fit(&a, &yt, opts)?.accuracy(&b, &yd)
    };
    let majority = {
        let mut counts: HashMap<i64, usize> = HashMap::new();
        yt.iter().for_each(|y| *counts.entry(*y).or_default() += 1);
        let top = counts
            .iter()
            .max_by_key(|(c, n)| (**n, -**c))
            .map(|(c, _)| *c)
            .unwrap_or(0);
        yd.iter().filter(|&&y| y == top).count() as f64 / yd.len().max(1) as f64
    };
    let mut k_col = vec![0u32];
    let mut top_col = vec![majority];
    let mut removed_col = vec![score(&|x| pca.remove_top(x, 0))?];
    for &k in ks {
        if k == 0 || k >= d {
            bail!("probe: k = {k} must be between 1 and {}", d - 1);
        }
        k_col.push(k as u32);
        top_col.push(score(&|x| pca.transform(x, k))?);
        removed_col.push(score(&|x| pca.remove_top(x, k))?);
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("k".into(), k_col),
        Column::new("top_k_accuracy".into(), top_col),
        Column::new("removed_accuracy".into(), removed_col),
    ])?
    .fresh())
}

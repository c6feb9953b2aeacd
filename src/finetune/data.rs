//! A GLUE split tokenized for training, and its batches: length-bucketed and shuffled for
//! training (so a batch is padded to little more than its own length), sorted by length for
//! evaluation.

use crate::data::glue::Task;
use crate::finetune::metrics::Labels;
use crate::nn::batch::{embed_tokens, Batch, TokenRows};
use crate::nn::model::Model;
use crate::util::matrix::Matrix;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use polars::prelude::{DataFrame, DataType};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokenizers::Encoding;

/// Batches per pool of [`TaskData::training_batches`]: examples are sorted by length within a
/// pool, so larger pools pad less and shuffle less.
const POOL_BATCHES: usize = 50;

/// Each epoch's shuffle is seeded by `seed ^ epoch · EPOCH_SEED_SALT` (2⁶⁴ / φ, which spreads
/// consecutive epochs over the whole seed range).
const EPOCH_SEED_SALT: u64 = 0x9E37_79B9_7F4A_7C15;

/// One split of a task, tokenized.
pub struct TaskData {
    /// The task.
    pub task: Task,
    /// The encodings (special tokens added, truncated to the maximum length): each example's
    /// input, or, for data held apart ([`TaskData::new_apart`]), its first sentence.
    pub encodings: Vec<Encoding>,
    /// For data held apart, each example's second sentence, tokenized on its own; `None` when
    /// a pair is one input.
    pub second: Option<Vec<Encoding>>,
    /// The gold labels; `None` for splits without labels (GLUE's test splits).
    pub labels: Option<Labels>,
    /// How many inputs were truncated.
    pub truncated: usize,
}

impl TaskData {
    /// Tokenizes a GLUE DataFrame (the uniform columns of [`crate::data::glue`]) for `model`, truncating
    /// each input to `max_len` tokens. Labels are checked against the task's classes; `source`
    /// names the data in errors.
    pub fn new(
        model: &Model,
        task: Task,
        df: &DataFrame,
        max_len: usize,
        source: &str,
    ) -> Result<Self> {
        let Columns {
            first,
            second,
            labels,
        } = columns(task, df, source)?;
        let inputs: Vec<(String, Option<String>)> = first.into_iter().zip(second).collect();
        let (encodings, truncated) = model
            .tokenize(&inputs, max_len)
            .with_context(|| format!("tokenizing {source}"))?;
        Ok(Self {
            task,
            encodings,
            second: None,
            labels,
            truncated,
        })
    }

    /// As [`TaskData::new`], for a bi-encoder: each sentence of a pair tokenized on its own
    /// (`encodings` the first, `second` the second), each truncated to `max_len` tokens. Fails on
    /// single-sentence tasks.
    pub fn new_apart(
        model: &Model,
        task: Task,
        df: &DataFrame,
        max_len: usize,
        source: &str,
    ) -> Result<Self> {
        let Columns {
            first,
            second,
            labels,
        } = columns(task, df, source)?;
        let second = second
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.with_context(|| {
                    format!(
                        "{source}: example {i} has no second sentence (a single-sentence task?)"
                    )
                })
            })
            .collect::<Result<Vec<String>>>()?;
        let alone = |text: Vec<String>| -> Result<(Vec<Encoding>, usize)> {
            let inputs: Vec<(String, Option<String>)> =
                text.into_iter().map(|t| (t, None)).collect();
            model
                .tokenize(&inputs, max_len)
                .with_context(|| format!("tokenizing {source}"))
        };
        let (encodings, t1) = alone(first)?;
        let (second, t2) = alone(second)?;
        Ok(Self {
            task,
            encodings,
            second: Some(second),
            labels,
            truncated: t1 + t2,
        })
    }

    /// How many examples.
    pub fn len(&self) -> usize {
        self.encodings.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.encodings.is_empty()
    }

    /// The positions of example `i`'s tokens other than `[CLS]` and `[SEP]` (the authors'
    /// protocol measures these), ascending.
    pub fn content_positions(&self, i: usize) -> Vec<usize> {
        let special = self.encodings[i].get_special_tokens_mask();
        (0..special.len()).filter(|&p| special[p] == 0).collect()
    }

    /// The flat indices (example's place in `rows` × `len` + position) of the tokens other than
    /// `[CLS]` and `[SEP]` of the examples `rows` padded to `len` tokens, in order: the rows of a
    /// batch's hidden state (flattened to tokens) that hold its content.
    pub fn content_indices(&self, rows: &[usize], len: usize) -> Vec<u32> {
        rows.iter()
            .enumerate()
            .flat_map(|(b, &i)| {
                self.content_positions(i)
                    .into_iter()
                    .map(move |p| (b * len + p) as u32)
            })
            .collect()
    }

    /// The hidden states `layers` (ascending) of every token of the examples `rows` but `[CLS]`
    /// and `[SEP]`, embedded by `model` in inference mode in batches of `batch_size`: one matrix
    /// per layer, the examples in order of length. What the training trace and I-STAR's
    /// reference covariance measure.
    pub(crate) fn embed_content(
        &self,
        model: &Model,
        rows: &[usize],
        layers: &[usize],
        batch_size: usize,
    ) -> Result<Vec<Matrix>> {
        let mut sorted = rows.to_vec();
        sorted.sort_by_key(|&i| self.encodings[i].len());
        let mut kept = vec![Vec::new(); self.len()];
        for &i in rows {
            kept[i] = self.content_positions(i);
        }
        let token_rows = TokenRows::new(kept, &sorted)?;
        embed_tokens(
            model,
            &self.encodings,
            &sorted,
            batch_size,
            layers,
            &token_rows,
            |_| {},
        )
    }

    /// Pads the examples `rows` into a batch.
    pub fn batch(&self, rows: &[usize], pad_id: u32, device: &Device) -> Result<Batch> {
        Batch::pad(&self.encodings, rows, pad_id, device)
    }

    /// The targets of `rows` as the loss takes them: class indices (u32) or scores (f32).
    pub fn targets(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        Ok(match &self.labels {
            Some(Labels::Classes(c)) => {
                let t: Vec<u32> = rows.iter().map(|&i| c[i] as u32).collect();
                Tensor::new(t, device)?
            }
            Some(Labels::Scores(s)) => {
                let t: Vec<f32> = rows.iter().map(|&i| s[i] as f32).collect();
                Tensor::new(t, device)?
            }
            None => bail!("{}: this split has no labels to train on", self.task),
        })
    }

    /// One epoch of training batches: the examples shuffled (seeded by `seed` and `epoch`), cut
    /// into pools of `POOL_BATCHES` (50) batches, each pool sorted by length and cut into
    /// batches, and the batches shuffled again. Similar lengths share a batch, so little of it is
    /// padding.
    pub fn training_batches(&self, batch_size: usize, seed: u64, epoch: u64) -> Vec<Vec<usize>> {
        let mut rng = StdRng::seed_from_u64(seed ^ epoch.wrapping_mul(EPOCH_SEED_SALT));
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(&mut rng);
        let mut batches = Vec::new();
        for pool in order.chunks(batch_size * POOL_BATCHES) {
            let mut pool = pool.to_vec();
            pool.sort_by_key(|&i| self.encodings[i].len());
            batches.extend(pool.chunks(batch_size).map(|c| c.to_vec()));
        }
        batches.shuffle(&mut rng);
        batches
    }

    /// Evaluation batches: every example once, sorted by length.
    pub fn eval_batches(&self, batch_size: usize) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| (self.encodings[i].len(), i));
        order.chunks(batch_size).map(|c| c.to_vec()).collect()
    }
}

/// The columns of a GLUE DataFrame a fine-tune reads.
struct Columns {
    first: Vec<String>,
    second: Vec<Option<String>>,
    labels: Option<Labels>,
}

/// The first and second sentences of a GLUE DataFrame and its labels, checked against the task's
/// classes (`source` names the data in errors).
fn columns(task: Task, df: &DataFrame, source: &str) -> Result<Columns> {
    if df.height() == 0 {
        bail!("{source}: no examples");
    }
    let s1 = df.column("sentence1")?.str()?.clone();
    let s2 = df.column("sentence2")?.cast(&DataType::String)?;
    let s2 = s2.str()?.clone();
    let first = (0..df.height())
        .map(|i| s1.get(i).unwrap_or("").to_string())
        .collect();
    let second = (0..df.height())
        .map(|i| s2.get(i).map(String::from))
        .collect();
    let label = df.column("label")?;
    let labels = if label.null_count() == df.height() {
        None
    } else if label.null_count() > 0 {
        bail!(
            "{source}: {} of {} examples have no label",
            label.null_count(),
            df.height()
        );
    } else if task.is_regression() {
        let s: Vec<f64> = label.f64()?.into_no_null_iter().collect();
        if let Some(bad) = s.iter().find(|v| !v.is_finite()) {
            bail!("{source}: label {bad} is not a finite score");
        }
        Some(Labels::Scores(s))
    } else {
        let c: Vec<i64> = label.i64()?.into_no_null_iter().collect();
        let n = task.label_names().len() as i64;
        if let Some((row, bad)) = c.iter().enumerate().find(|(_, &v)| v < 0 || v >= n) {
            bail!(
                "{source}: example {row} has label {bad}, but {task} has classes 0..={} ({})",
                n - 1,
                task.label_names().join(", ")
            );
        }
        Some(Labels::Classes(c))
    };
    Ok(Columns {
        first,
        second,
        labels,
    })
}

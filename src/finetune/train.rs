//! The training loop: seeded, resumable, evaluated on dev every N steps, keeping the best model.
//!
//! A run writes into its output folder:
//! - `config.json`, `model.safetensors`, `tokenizer.json`: the best model so far (by the task's
//!   main metric on dev), in the Hugging Face layout — the folder loads as a model anywhere;
//! - `checkpoint/`: the last state (model, `optimizer.safetensors`, `state.json`), replaced
//!   atomically at every evaluation; a run started again with the same options resumes from it
//!   and reaches the same result as an uninterrupted one (batch order and dropout masks are
//!   functions of the seed, the epoch and the step); once the last step is done there is nothing
//!   left to resume, so the finished run's checkpoint keeps only `state.json` (the weights and
//!   the optimizer's moments, three times the model's size, are not kept);
//! - `run.json`: the options, checked on resume;
//! - `log.jsonl`: one line per step (`train`), per evaluation (`eval`) and per traced layer
//!   (`trace`); see [`crate::finetune::log`].

use crate::data::glue::{self, Split, Task};
use crate::finetune::biencoder::SentenceEncoder;
use crate::finetune::classifier::{Problem, SequenceClassifier};
use crate::finetune::data::TaskData;
use crate::finetune::isotropy_reg::{
    reference_covariance, BatchPenalty, IsotropyReg, Reference, REFERENCE_TOKENS,
};
use crate::finetune::log::{EvalLine, LogLine, LogWriter, TrainLine};
use crate::finetune::metrics::{argmax, main_metric, score, Labels, Scores};
use crate::finetune::optim::{AdamW, AdamWOptions, StepReport};
use crate::finetune::trace;
use crate::nn::batch::Batch;
use crate::nn::dropout::Dropout;
use crate::nn::model::Model;
use crate::util::atomic;
use crate::util::process::keep_freed_memory;
use crate::util::progress::Progress;
use crate::util::sample::sorted_sample;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use polars::prelude::{DataFrame, IdxCa, IdxSize};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How long to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Budget {
    /// Passes over the training split (fractions allowed).
    Epochs(f64),
    /// Optimizer steps.
    Steps(usize),
}

/// What a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// transformers' `BertForSequenceClassification`: a head on `[CLS]` with cross-entropy
    /// (classes) or squared error (STS-B's score); a sentence pair is one input (a
    /// cross-encoder).
    #[default]
    Head,
    /// A bi-encoder ([`SentenceEncoder`]), as sentence-transformers trains one with
    /// `CosineSimilarityLoss`: each sentence of a pair embedded alone and mean-pooled, the
    /// squared error between the two vectors' cosine and the gold score / 5. STS-B only.
    Cosine,
}

/// `restarts` of options saved before it existed.
fn one() -> usize {
    1
}

/// Everything that defines a fine-tuning run (the output folder aside).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneOptions {
    /// The GLUE task (stored in `run.json` as the Hub's name, `sst2`).
    pub task: Task,
    /// The base model (registry name, hub id or folder).
    pub base: String,
    /// What is trained (options saved before it existed trained a head).
    #[serde(default)]
    pub objective: Objective,
    /// How long to train.
    pub budget: Budget,
    /// AdamW and the schedule.
    pub optimizer: AdamWOptions,
    /// Examples per batch.
    pub batch_size: usize,
    /// Inputs are truncated to this many tokens.
    pub max_len: usize,
    /// Seed of the head's initialisation, the batch order, the dropout masks and the samples.
    pub seed: u64,
    /// Independent runs from the base model, with seeds `seed`, `seed + 1`, …; the output folder
    /// keeps the one with the best dev score (Devlin et al. 2019, §4.1: random restarts for small
    /// datasets, where fine-tuning is unstable). Each run trains the whole budget.
    #[serde(default = "one")]
    pub restarts: usize,
    /// Evaluate on dev (and write the checkpoint) every this many steps, and at the end.
    pub eval_every: usize,
    /// Record the geometry trace every this many steps (0: never); also before the first step and
    /// after the last.
    pub trace_every: usize,
    /// Dev inputs in the trace's probe set.
    pub trace_examples: usize,
    /// Train on a seeded sample of this many training examples (`None`: all).
    pub train_limit: Option<usize>,
    /// Evaluate on a seeded sample of this many dev examples (`None`: all).
    pub dev_limit: Option<usize>,
    /// An isotropy regulariser added to the task loss (`None`: the task loss alone; runs saved
    /// before it existed had none). Head objective only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isotropy_reg: Option<IsotropyReg>,
}

impl FinetuneOptions {
    /// The default budget for `task` from `base`, chosen so that SST-2, MRPC, CoLA, RTE and STS-B
    /// together train in about an hour on a 2-core CPU from all-MiniLM-L6-v2 (see docs/timings.md).
    pub fn default_for(task: Task, base: &str) -> Self {
        // CoLA: batches of 16 at 1e-4 for 6 epochs reached a best MCC of 32.2 (step 2,412), where
        // 4 epochs reached 28.9 and batches of 32 at 8e-5 28.1. RTE (2,490 pairs) is
        // unstable, so it takes the better of two seeded runs on dev (BERT's random restarts),
        // each of 6 epochs of 16 at 8e-5 to fit the hour. Single runs of 8 epochs reached
        // 59.9 (seed 0) and 61.0 (seed 1); 6 epochs 57.8 and 60.6; 10 epochs at 5e-5 had not
        // passed 57.8 when stopped after 6.5, 5 epochs of 32 at 5e-5 reached 57.0, and inputs of
        // up to 256 tokens (12% of RTE pairs exceed 128) 57.4. All chosen on the 277 dev pairs.
        let (budget, lr, batch_size, eval_every, restarts) = match task {
            Task::Sst2 => (Budget::Steps(2000), 5e-5, 32, 250, 1),
            Task::Mrpc => (Budget::Epochs(4.0), 8e-5, 32, 58, 1),
            Task::Cola => (Budget::Epochs(6.0), 1e-4, 16, 268, 1),
            Task::Rte => (Budget::Epochs(6.0), 8e-5, 16, 78, 2),
            Task::Stsb => (Budget::Epochs(4.0), 8e-5, 32, 90, 1),
            Task::Qnli | Task::Wnli => (Budget::Epochs(3.0), 5e-5, 32, 200, 1),
        };
        Self {
            task,
            base: base.to_string(),
            objective: Objective::Head,
            budget,
            optimizer: AdamWOptions {
                lr,
                ..AdamWOptions::default()
            },
            batch_size,
            max_len: 128,
            seed: 0,
            restarts,
            eval_every,
            trace_every: eval_every,
            trace_examples: 256,
            train_limit: None,
            dev_limit: None,
            isotropy_reg: None,
        }
    }

    /// A bi-encoder on STS-B ([`Objective::Cosine`]) with sentence-transformers' STS-B recipe
    /// (its `training_stsbenchmark.py`): 4 epochs of 16 pairs at 2e-5 with 10 % warmup; evaluated
    /// (and traced) 4 times per epoch.
    pub fn bi_encoder(base: &str) -> Self {
        Self {
            objective: Objective::Cosine,
            optimizer: AdamWOptions {
                lr: 2e-5,
                ..AdamWOptions::default()
            },
            batch_size: 16,
            eval_every: 90,
            trace_every: 90,
            ..Self::default_for(Task::Stsb, base)
        }
    }

    /// The quick profile the tests and `ISOLAB_PROFILE=quick` use: one run of 40 steps on 640
    /// training examples, evaluated on 200 dev examples every 20 steps, traced every 10.
    pub fn quick(task: Task, base: &str) -> Self {
        Self {
            budget: Budget::Steps(40),
            restarts: 1,
            batch_size: 16,
            eval_every: 20,
            trace_every: 10,
            trace_examples: 48,
            train_limit: Some(640),
            dev_limit: Some(200),
            ..Self::default_for(task, base)
        }
    }
}

/// The trainer's position, saved with every checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    step: usize,
    total_steps: usize,
    best_score: Option<f64>,
    best_step: Option<usize>,
    seconds: f64,
    /// The epoch whose I-STAR reference covariance the checkpoint holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reference_epoch: Option<usize>,
}

/// `best.json`: the step and dev scores of the model in a run's folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Best {
    /// The step the best model was saved at.
    pub step: usize,
    /// Its dev scores.
    pub scores: Scores,
}

/// Whether the run in `run` has trained all its steps (its checkpoint says so, or, for a run
/// with restarts, its `restarts.json` does) and its best model is there.
pub fn finished(run: &Path) -> bool {
    if run.join(RESTARTS_FILE).is_file() {
        return run.join("best.json").is_file();
    }
    let state = std::fs::read_to_string(run.join("checkpoint").join("state.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<State>(&t).ok());
    state.is_some_and(|s| s.step == s.total_steps) && run.join("best.json").is_file()
}

/// Reads a run folder's `best.json`.
pub fn read_best(run: &Path) -> Result<Best> {
    let path = run.join("best.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a best-model record", path.display()))
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneReport {
    /// Steps trained.
    pub steps: usize,
    /// The best dev scores (the model in the output folder).
    pub best: Scores,
    /// The step of the best model.
    pub best_step: usize,
    /// Seconds of training, resumed sessions included.
    pub seconds: f64,
    /// The output folder.
    pub out: PathBuf,
}

/// A seeded sample of `n` rows of `df` (all rows when `n` is `None` or not smaller).
fn sample(df: DataFrame, n: Option<usize>, seed: u64) -> Result<DataFrame> {
    let rows = sorted_sample(df.height(), n, seed);
    if rows.len() == df.height() {
        return Ok(df);
    }
    let idx: Vec<IdxSize> = rows.into_iter().map(|i| i as IdxSize).collect();
    Ok(df.take(&IdxCa::from_vec("i".into(), idx))?)
}

/// The logits of every example of `data` in inference mode, in the data's order
/// (examples × labels).
pub fn logits_all(
    model: &SequenceClassifier,
    data: &TaskData,
    batch_size: usize,
) -> Result<Tensor> {
    if batch_size == 0 {
        bail!("batch size 0: a batch needs at least one example");
    }
    let pad = model.model.config().pad_token_id as u32;
    let n = model.problem().num_labels();
    let mut out = vec![0f32; data.len() * n];
    for rows in data.eval_batches(batch_size) {
        let batch = data.batch(&rows, pad, &model.model.device)?;
        let logits: Vec<Vec<f32>> = model.logits(&batch)?.to_dtype(DType::F32)?.to_vec2()?;
        for (&r, l) in rows.iter().zip(logits) {
            out[r * n..(r + 1) * n].copy_from_slice(&l);
        }
    }
    Ok(Tensor::from_vec(out, (data.len(), n), &Device::Cpu)?)
}

/// Predicts every example of `data` in inference mode: the class of the largest logit, or the
/// regression output.
pub fn predict(model: &SequenceClassifier, data: &TaskData, batch_size: usize) -> Result<Labels> {
    let logits: Vec<Vec<f32>> = logits_all(model, data, batch_size)?.to_vec2()?;
    Ok(match model.problem() {
        Problem::Regression => Labels::Scores(logits.iter().map(|l| l[0] as f64).collect()),
        Problem::Classes(_) => Labels::Classes(logits.iter().map(|l| argmax(l) as i64).collect()),
    })
}

/// Scores the model on a labelled split.
pub fn evaluate(model: &SequenceClassifier, data: &TaskData, batch_size: usize) -> Result<Scores> {
    let gold = data
        .labels
        .as_ref()
        .with_context(|| format!("{}: this split has no labels to score against", data.task))?;
    match (model.problem(), data.task.is_regression()) {
        (Problem::Regression, false) => {
            bail!(
                "the model is a regression model, but {} is a classification task",
                data.task
            )
        }
        (Problem::Classes(n), false) if n != data.task.label_names().len() => bail!(
            "the model has {n} classes, but {} has {}",
            data.task,
            data.task.label_names().len()
        ),
        (Problem::Classes(_), true) => {
            bail!(
                "the model is a classifier, but {} is a regression task",
                data.task
            )
        }
        _ => {}
    }
    let predicted = predict(model, data, batch_size)?;
    score(data.task, &predicted, gold)
}

/// One training step: forward with dropout (masks seeded by `dropout_seed`), loss, backward,
/// clipping and the AdamW update at learning rate `lr`. Returns the loss. Stops with an error,
/// before changing any weight, when the loss or the gradient is not finite.
pub fn train_step(
    model: &SequenceClassifier,
    optim: &mut AdamW,
    batch: &Batch,
    targets: &Tensor,
    dropout_seed: u64,
    lr: f64,
) -> Result<(f64, StepReport)> {
    let mut dropout = Dropout::new(dropout_seed);
    let logits = model.logits_train(batch, &mut dropout)?;
    apply_loss(&model.loss(&logits, targets)?, optim, lr)
}

/// [`train_step`] with an isotropy regulariser: the loss is the task's plus `penalty`'s term on
/// the step's own hidden states (one forward pass, one backward through both). Returns the task
/// loss, the regularised quantity (IsoScore⋆ or the mean cosine of the batch's tokens) and the
/// optimiser's report.
pub fn train_step_regularised(
    model: &SequenceClassifier,
    optim: &mut AdamW,
    batch: &Batch,
    targets: &Tensor,
    penalty: &BatchPenalty,
    dropout_seed: u64,
    lr: f64,
) -> Result<(f64, f64, StepReport)> {
    let mut dropout = Dropout::new(dropout_seed);
    let (logits, states) = model.logits_and_states_train(batch, &mut dropout)?;
    let task = model.loss(&logits, targets)?;
    let (value, term) = penalty.apply(&states)?;
    let task_value = task.to_scalar::<f32>()? as f64;
    let value = value.to_scalar::<f32>()? as f64;
    let (_, report) = apply_loss(&(task + term)?, optim, lr)?;
    Ok((task_value, value, report))
}

/// Backward from `loss` and one AdamW update at learning rate `lr`; returns the loss's value.
/// Stops with an error, before changing any weight, when the loss or the gradient is not finite.
fn apply_loss(loss: &Tensor, optim: &mut AdamW, lr: f64) -> Result<(f64, StepReport)> {
    let value = loss.to_scalar::<f32>()? as f64;
    if !value.is_finite() {
        bail!("the training loss became {value}");
    }
    let grads = loss.backward()?;
    let report = optim.step(&grads, lr)?;
    Ok((value, report))
}

/// Fine-tunes `opts.base` on `opts.task` into `out`, resuming from `out/checkpoint` when a run
/// with the same options was interrupted there. Returns the best dev scores.
///
/// With `opts.restarts` > 1, run `k` trains into `out/restart-<k>` with seed `opts.seed + k`
/// (each resumable on its own); once all have finished, the best one's model, `best.json` and
/// `log.jsonl` are copied into `out` and `restarts.json` lists every run's best dev score.
pub fn finetune(opts: &FinetuneOptions, out: &Path) -> Result<FinetuneReport> {
    keep_freed_memory();
    if opts.batch_size == 0 {
        bail!("batch size 0: a batch needs at least one example");
    }
    if opts.eval_every == 0 {
        bail!("eval_every 0: evaluate at least at the end (eval_every ≥ 1)");
    }
    if let Budget::Steps(0) = opts.budget {
        bail!("a budget of 0 steps trains nothing");
    }
    if let Budget::Epochs(e) = opts.budget {
        if !(e > 0.0 && e.is_finite()) {
            bail!("a budget of {e} epochs trains nothing");
        }
    }
    if let (Some(reg), Objective::Cosine) = (&opts.isotropy_reg, opts.objective) {
        bail!(
            "--isotropy-reg {}: the isotropy regulariser trains a head (--objective head), not a bi-encoder",
            reg.penalty
        );
    }
    if let Some(IsotropyReg {
        penalty: crate::finetune::isotropy_reg::Penalty::IsoscoreStar { zeta, .. },
        ..
    }) = opts.isotropy_reg
    {
        if !(0.0..=1.0).contains(&zeta) {
            bail!("--reg-zeta {zeta}: the shrinkage weight must be in [0, 1]");
        }
    }
    if opts.objective == Objective::Cosine && opts.task != Task::Stsb {
        bail!(
            "the cosine objective trains a bi-encoder on sentence pairs with a similarity score (STS-B); {} has classes: use the head objective",
            opts.task
        );
    }
    match opts.restarts {
        0 => bail!("restarts 0: train at least one run (restarts ≥ 1)"),
        1 => train_run(opts, out),
        n => {
            claim_folder(opts, out)?;
            let mut runs = Vec::with_capacity(n);
            for k in 0..n {
                let run = FinetuneOptions {
                    seed: opts.seed.wrapping_add(k as u64),
                    restarts: 1,
                    ..opts.clone()
                };
                println!("restart {} of {n} (seed {})", k + 1, run.seed);
                runs.push((
                    run.seed,
                    train_run(&run, &out.join(format!("restart-{k}")))?,
                ));
            }
            keep_best_restart(runs, out)
        }
    }
}

/// The record of a run with restarts, written once all have finished.
const RESTARTS_FILE: &str = "restarts.json";

/// One restart's line in `restarts.json`.
#[derive(Debug, Serialize)]
struct RestartRecord {
    folder: String,
    seed: u64,
    best_step: usize,
    best: f64,
    seconds: f64,
    kept: bool,
}

/// Copies the best of the finished restarts `runs` (seed, report; the first of equals) into
/// `out` and writes `restarts.json`. The report's seconds are those of all restarts together.
fn keep_best_restart(runs: Vec<(u64, FinetuneReport)>, out: &Path) -> Result<FinetuneReport> {
    let mut kept = 0;
    for (k, (_, r)) in runs.iter().enumerate() {
        if r.best.main_value() > runs[kept].1.best.main_value() {
            kept = k;
        }
    }
    let best = &runs[kept].1;
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "best.json",
        "log.jsonl",
    ] {
        let from = best.out.join(file);
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        atomic::write_bytes(&out.join(file), &bytes)?;
    }
    let records: Vec<RestartRecord> = runs
        .iter()
        .enumerate()
        .map(|(k, (seed, r))| RestartRecord {
            folder: format!("restart-{k}"),
            seed: *seed,
            best_step: r.best_step,
            best: r.best.main_value(),
            seconds: r.seconds,
            kept: k == kept,
        })
        .collect();
    atomic::write_bytes(
        &out.join(RESTARTS_FILE),
        serde_json::to_string_pretty(&records)?.as_bytes(),
    )?;
    println!(
        "kept restart {} of {} (dev {:.4}; the others {})",
        kept + 1,
        runs.len(),
        best.best.main_value(),
        records
            .iter()
            .filter(|r| !r.kept)
            .map(|r| format!("{:.4}", r.best))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(FinetuneReport {
        steps: best.steps,
        best: best.best.clone(),
        best_step: best.best_step,
        seconds: runs.iter().map(|(_, r)| r.seconds).sum(),
        out: out.to_path_buf(),
    })
}

/// Checks that `out` holds no run with other options than `opts` (a run with the same options
/// is resumed), then records `opts` in `out/run.json`.
fn claim_folder(opts: &FinetuneOptions, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let run_path = out.join("run.json");
    if run_path.exists() {
        let text = std::fs::read_to_string(&run_path)?;
        let previous: FinetuneOptions = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a fine-tuning run's options", run_path.display()))?;
        if &previous != opts {
            let prev = serde_json::to_value(&previous)?;
            let now = serde_json::to_value(opts)?;
            let diff: Vec<String> = now
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| prev.get(k.as_str()) != Some(v))
                .map(|(k, v)| {
                    format!(
                        "{k}: {} there, {v} now",
                        prev.get(k.as_str()).cloned().unwrap_or_default()
                    )
                })
                .collect();
            bail!(
                "{} holds a run with other options ({}); resume with the same options or choose another --out",
                out.display(),
                diff.join("; ")
            );
        }
    }
    atomic::write_bytes(&run_path, serde_json::to_string_pretty(opts)?.as_bytes())
}

/// The checkpoint's copy of I-STAR's reference covariance (a run resumed inside an epoch uses
/// the one the epoch began with).
const REFERENCE_FILE: &str = "reference_cov.safetensors";

/// Dev examples per batch when a run scores itself.
const EVAL_BATCH: usize = 64;

/// Each step's dropout seed is `seed · DROPOUT_SEED_SALT + step`: distinct for every step of every
/// seed a run will meet, and the same on every machine.
const DROPOUT_SEED_SALT: u64 = 1_000_003;

/// Seconds between refreshes of the progress line's loss and speed.
const PROGRESS_EVERY_SECS: f64 = 2.0;

/// One training run (no restarts) into `out`.
fn train_run(opts: &FinetuneOptions, out: &Path) -> Result<FinetuneReport> {
    let mut run = Run::prepare(opts, out)?;
    if run.state.step == 0 && opts.trace_every > 0 {
        run.trace()?;
    }
    run.train()?;
    let best = read_best(out)?;
    Ok(FinetuneReport {
        steps: run.state.step,
        best: best.scores,
        best_step: run.state.best_step.unwrap_or(0),
        seconds: run.state.seconds,
        out: out.to_path_buf(),
    })
}

/// The model a run trains, as its objective says.
enum Trainee {
    Head(SequenceClassifier),
    Cosine(SentenceEncoder),
}

impl Trainee {
    /// The model `opts` asks for, from its base (a new head initialised from `opts.seed`).
    fn new(opts: &FinetuneOptions) -> Result<Self> {
        Ok(match opts.objective {
            Objective::Head => Trainee::Head(SequenceClassifier::for_task(
                &opts.base, opts.task, opts.seed,
            )?),
            Objective::Cosine => Trainee::Cosine(SentenceEncoder::from_base(&opts.base)?),
        })
    }

    /// The encoder (with its tokenizer and device).
    fn encoder(&self) -> &Model {
        match self {
            Trainee::Head(m) => &m.model,
            Trainee::Cosine(m) => &m.model,
        }
    }

    fn params(&self) -> &[(String, Var)] {
        match self {
            Trainee::Head(m) => m.params(),
            Trainee::Cosine(m) => m.params(),
        }
    }

    /// One optimizer step on the examples `rows` of `data` ([`train_step`] for a head,
    /// [`train_step_regularised`] with a regulariser on hidden state `reg.1`).
    fn train_step(
        &self,
        data: &TaskData,
        rows: &[usize],
        optim: &mut AdamW,
        reg: Option<(&IsotropyReg, usize, Option<&Reference>)>,
        dropout_seed: u64,
        lr: f64,
    ) -> Result<StepDone> {
        match self {
            Trainee::Head(m) => {
                let device = &m.model.device;
                let batch = data.batch(rows, m.model.config().pad_token_id as u32, device)?;
                let targets = data.targets(rows, device)?;
                let indices = match reg {
                    Some(_) => data.content_indices(rows, batch.ids.dim(1)?),
                    None => Vec::new(),
                };
                let (loss, reg_value, report) = match reg {
                    // A batch with fewer than 2 tokens besides [CLS]/[SEP] has no point cloud:
                    // it trains on the task loss alone.
                    Some((reg, layer, reference)) if indices.len() >= 2 => {
                        let penalty = BatchPenalty {
                            reg,
                            layer,
                            indices: &indices,
                            reference,
                        };
                        let (loss, value, report) = train_step_regularised(
                            m,
                            optim,
                            &batch,
                            &targets,
                            &penalty,
                            dropout_seed,
                            lr,
                        )?;
                        (loss, Some(value), report)
                    }
                    _ => {
                        let (loss, report) =
                            train_step(m, optim, &batch, &targets, dropout_seed, lr)?;
                        (loss, None, report)
                    }
                };
                Ok(StepDone {
                    loss,
                    reg: reg_value,
                    report,
                    tokens: batch.tokens,
                    padded: batch.ids.elem_count(),
                })
            }
            // `finetune` refuses a regulariser for a bi-encoder.
            Trainee::Cosine(m) => {
                let mut dropout = Dropout::new(dropout_seed);
                let (loss, tokens, padded) = m.loss(data, rows, &mut dropout)?;
                let (loss, report) = apply_loss(&loss, optim, lr)?;
                Ok(StepDone {
                    loss,
                    reg: None,
                    report,
                    tokens,
                    padded,
                })
            }
        }
    }

    fn evaluate(&self, dev: &TaskData) -> Result<Scores> {
        match self {
            Trainee::Head(m) => evaluate(m, dev, EVAL_BATCH),
            Trainee::Cosine(m) => m.evaluate(dev, EVAL_BATCH),
        }
    }

    fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Trainee::Head(m) => m.save(dir),
            Trainee::Cosine(m) => m.save(dir),
        }
    }
}

/// What one step did: the task loss, the regularised quantity (with a regulariser), the
/// optimiser's report, and the real and padded tokens of the step's batches.
struct StepDone {
    loss: f64,
    reg: Option<f64>,
    report: StepReport,
    tokens: usize,
    padded: usize,
}

/// A run being trained: the model, its data, the optimiser and where it stands.
struct Run<'a> {
    opts: &'a FinetuneOptions,
    out: &'a Path,
    ckpt: PathBuf,
    model: Trainee,
    train: TaskData,
    dev: TaskData,
    /// The dev rows the geometry trace embeds.
    probe: Vec<usize>,
    /// Batches in one epoch.
    per_epoch: usize,
    /// Steps the options ask for.
    total: usize,
    optim: AdamW,
    state: State,
    log: LogWriter,
    /// The regularised hidden state (with a regulariser).
    reg_layer: Option<usize>,
    /// I-STAR's reference covariance and the epoch it was computed for.
    reference: Option<(usize, Reference)>,
}

impl<'a> Run<'a> {
    /// Claims `out`, builds the model, reads and tokenizes the data, and resumes from the
    /// checkpoint in `out` when there is one.
    fn prepare(opts: &'a FinetuneOptions, out: &'a Path) -> Result<Self> {
        let model = Trainee::new(opts)?;
        // Options the model can refute (a regularised layer it does not have) are checked
        // before the folder is claimed, so a refused run leaves nothing behind.
        let reg_layer = opts
            .isotropy_reg
            .map(|r| r.layer.resolve(model.encoder().encoder.num_hidden_states()))
            .transpose()?;
        claim_folder(opts, out)?;
        let ckpt = out.join("checkpoint");
        check_base(&ckpt, model.encoder(), opts)?;
        let (train, dev) = read_data(&model, opts)?;
        let per_epoch = train.len().div_ceil(opts.batch_size);
        let total = match opts.budget {
            Budget::Steps(n) => n,
            Budget::Epochs(e) => ((e * per_epoch as f64).ceil() as usize).max(1),
        };
        let probe = trace::probe_rows(&dev, opts.trace_examples, opts.seed);
        let mut optim = AdamW::new(model.params(), opts.optimizer)?;
        let state = resume(&ckpt, out, &model, &mut optim, total)?;
        let log = LogWriter::open(&out.join("log.jsonl"), state.step)?;
        let reference = match (opts.isotropy_reg, state.reference_epoch) {
            (Some(reg), Some(epoch)) if state.step < total && reg.needs_reference() => {
                let path = ckpt.join(REFERENCE_FILE);
                Some((epoch, Reference::load(&path, &model.encoder().device)?))
            }
            _ => None,
        };
        Ok(Run {
            opts,
            out,
            ckpt,
            model,
            train,
            dev,
            probe,
            per_epoch,
            total,
            optim,
            state,
            log,
            reg_layer,
            reference,
        })
    }

    /// Makes sure I-STAR's reference covariance is the one of `epoch`: computed from the model
    /// as it is now at the start of an epoch (or kept from the checkpoint when resuming inside
    /// one).
    fn refresh_reference(&mut self, epoch: usize) -> Result<()> {
        let (Some(reg), Some(layer)) = (self.opts.isotropy_reg, self.reg_layer) else {
            return Ok(());
        };
        if !reg.needs_reference() || self.reference.as_ref().is_some_and(|(e, _)| *e == epoch) {
            return Ok(());
        }
        let start = Instant::now();
        let reference = reference_covariance(
            self.model.encoder(),
            &self.train,
            layer,
            REFERENCE_TOKENS,
            self.opts.seed,
            epoch as u64,
        )?;
        println!(
            "I-STAR reference covariance of hidden state {layer} for epoch {}: {:.1} s",
            epoch + 1,
            start.elapsed().as_secs_f64()
        );
        self.reference = Some((epoch, reference));
        Ok(())
    }

    /// Records the geometry of every layer at the current step.
    fn trace(&mut self) -> Result<()> {
        for p in trace::measure(
            self.model.encoder(),
            &self.dev,
            &self.probe,
            self.state.step,
        )? {
            self.log.write(&LogLine::Trace(p))?;
        }
        Ok(())
    }

    /// Trains the remaining steps, tracing, evaluating and checkpointing as the options say.
    fn train(&mut self) -> Result<()> {
        let (opts, task, total) = (self.opts, self.opts.task, self.total);
        println!(
            "fine-tuning {} on {task}: {} training examples ({} truncated to {} tokens), {} dev, {total} steps of {} ({:.2} epochs)",
            opts.base,
            self.train.len(),
            self.train.truncated,
            opts.max_len,
            self.dev.len(),
            opts.batch_size,
            total as f64 / self.per_epoch as f64
        );
        let session = Instant::now();
        let start_seconds = self.state.seconds;
        let mut progress = Progress::new(
            &format!("fine-tuning {task}"),
            (total - self.state.step) as u64,
        );
        let mut epoch_batches: Option<(usize, Vec<Vec<usize>>)> = None;
        let mut last_dev = self.state.best_score;
        let mut window = (0f64, 0usize, Instant::now());
        while self.state.step < total {
            let s = self.state.step;
            let epoch = s / self.per_epoch;
            if epoch_batches.as_ref().is_none_or(|(e, _)| *e != epoch) {
                epoch_batches = Some((
                    epoch,
                    self.train
                        .training_batches(opts.batch_size, opts.seed, epoch as u64),
                ));
            }
            self.refresh_reference(epoch)?;
            let rows = epoch_batches.as_ref().expect("set above").1[s % self.per_epoch].clone();
            let line = self.step(&rows)?;
            self.state.step += 1;
            self.state.seconds = start_seconds + session.elapsed().as_secs_f64();
            self.log.write(&LogLine::Train(TrainLine {
                seconds: self.state.seconds,
                ..line
            }))?;
            window.0 += line.loss;
            window.1 += 1;
            progress.inc(1);
            if window.2.elapsed().as_secs_f64() > PROGRESS_EVERY_SECS || self.state.step == total {
                let secs = window.2.elapsed().as_secs_f64();
                progress.set_message(&format!(
                    "loss {:.4}, {:.2} step/s, dev {}",
                    window.0 / window.1 as f64,
                    window.1 as f64 / secs,
                    last_dev.map_or("-".into(), |d| format!("{d:.4}"))
                ));
                window = (0.0, 0, Instant::now());
            }
            let step = self.state.step;
            let due = |every: usize| step.is_multiple_of(every) || step == total;
            if opts.trace_every > 0 && due(opts.trace_every) {
                self.trace()?;
            }
            if due(opts.eval_every) {
                last_dev = Some(self.evaluate_and_checkpoint()?);
            }
        }
        progress.finish(&format!(
            "best dev {} {:.4} at step {}",
            main_metric(task),
            self.state.best_score.unwrap_or(f64::NAN),
            self.state.best_step.unwrap_or(0)
        ));
        Ok(())
    }

    /// One optimizer step on the training examples `rows`; the log line it makes (its
    /// `seconds` still to be set).
    fn step(&mut self, rows: &[usize]) -> Result<TrainLine> {
        let s = self.state.step;
        let (opts, total) = (self.opts, self.total);
        let lr = opts.optimizer.lr_at(s, total);
        let dropout_seed = opts
            .seed
            .wrapping_mul(DROPOUT_SEED_SALT)
            .wrapping_add(s as u64);
        let reg = match (&self.opts.isotropy_reg, self.reg_layer) {
            (Some(reg), Some(layer)) => Some((reg, layer, self.reference.as_ref().map(|r| &r.1))),
            _ => None,
        };
        let done = self
            .model
            .train_step(&self.train, rows, &mut self.optim, reg, dropout_seed, lr)
            .with_context(|| {
                let kept = match self.state.best_step {
                    Some(_) => format!(
                        "the last good checkpoint is kept in {}",
                        self.ckpt.display()
                    ),
                    None => "no checkpoint was written yet".to_string(),
                };
                format!(
                    "step {} (learning rate {lr:.3e}): training stopped; {kept}; try a lower --lr",
                    s + 1
                )
            })?;
        Ok(TrainLine {
            step: s + 1,
            epoch: (s as f64 + 1.0) / self.per_epoch as f64,
            loss: done.loss,
            reg: done.reg,
            lr: done.report.lr,
            grad_norm: done.report.grad_norm,
            tokens: done.tokens,
            padded: done.padded,
            seconds: 0.0,
        })
    }

    /// Scores the model on dev, keeps it in `out` when it is the best so far, and replaces the
    /// checkpoint. Returns the main metric.
    fn evaluate_and_checkpoint(&mut self) -> Result<f64> {
        let (out, total) = (self.out, self.total);
        let scores = self.model.evaluate(&self.dev)?;
        let value = scores.main_value();
        self.log.write(&LogLine::Eval(EvalLine {
            step: self.state.step,
            scores: scores.clone(),
            seconds: self.state.seconds,
        }))?;
        if self.state.best_score.is_none_or(|b| value > b) {
            self.state.best_score = Some(value);
            self.state.best_step = Some(self.state.step);
            self.model.save(out)?;
            let best = Best {
                step: self.state.step,
                scores,
            };
            atomic::write_bytes(
                &out.join("best.json"),
                serde_json::to_string_pretty(&best)?.as_bytes(),
            )?;
        }
        // The finished run's checkpoint keeps no reference covariance (nothing left to resume).
        self.state.reference_epoch = self
            .reference
            .as_ref()
            .filter(|_| self.state.step < total)
            .map(|(e, _)| *e);
        let (model, optim, state) = (&self.model, &self.optim, &self.state);
        let reference = self.reference.as_ref().map(|(_, r)| r);
        atomic::write_dir(&self.ckpt, |dir| {
            if state.step < total {
                model.save(dir)?;
                optim.save(&dir.join("optimizer.safetensors"))?;
                if let Some(r) = reference {
                    r.save(&dir.join(REFERENCE_FILE))?;
                }
            }
            atomic::write_bytes(
                &dir.join("base_fingerprint"),
                model.encoder().fingerprint.as_bytes(),
            )?;
            atomic::write_bytes(
                &dir.join("state.json"),
                serde_json::to_string_pretty(state)?.as_bytes(),
            )
        })?;
        Ok(value)
    }
}

/// Refuses a checkpoint trained from another base model than `opts.base` (a registry name can
/// point at other files over time).
fn check_base(ckpt: &Path, model: &Model, opts: &FinetuneOptions) -> Result<()> {
    if ckpt.exists() {
        let state_base = std::fs::read_to_string(ckpt.join("base_fingerprint")).unwrap_or_default();
        if state_base.trim() != model.fingerprint {
            bail!(
                "{}: this checkpoint was trained from another base model than '{}' (fingerprint differs); choose another --out",
                ckpt.display(),
                opts.base
            );
        }
    }
    Ok(())
}

/// The run's training and dev examples (seeded samples where the options limit them),
/// tokenized.
fn read_data(model: &Trainee, opts: &FinetuneOptions) -> Result<(TaskData, TaskData)> {
    let task = opts.task;
    let train_df = sample(glue::load(task, Split::Train)?, opts.train_limit, opts.seed)?;
    let dev_df = sample(glue::load(task, Split::Dev)?, opts.dev_limit, opts.seed)?;
    let read = |df: &DataFrame, split: &str| -> Result<TaskData> {
        let source = format!("{task} {split}");
        match model {
            Trainee::Head(_) => TaskData::new(model.encoder(), task, df, opts.max_len, &source),
            Trainee::Cosine(_) => {
                TaskData::new_apart(model.encoder(), task, df, opts.max_len, &source)
            }
        }
    };
    let (train, dev) = (read(&train_df, "train")?, read(&dev_df, "dev")?);
    if train.labels.is_none() {
        bail!("{task} train: no labels to train on");
    }
    Ok((train, dev))
}

/// Where a run of `total` steps stands: from `ckpt/state.json` when there is one (restoring the
/// model's weights and the optimiser's moments of an unfinished run), else at step 0.
fn resume(
    ckpt: &Path,
    out: &Path,
    model: &Trainee,
    optim: &mut AdamW,
    total: usize,
) -> Result<State> {
    let mut state = State {
        step: 0,
        total_steps: total,
        best_score: None,
        best_step: None,
        seconds: 0.0,
        reference_epoch: None,
    };
    if ckpt.join("state.json").exists() {
        state = serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json"))?)
            .with_context(|| format!("{}: corrupt state.json", ckpt.display()))?;
    }
    if state.step > 0 && state.step < state.total_steps {
        let saved = candle_core::safetensors::load(ckpt.join("model.safetensors"), &Device::Cpu)
            .with_context(|| format!("reading {}", ckpt.join("model.safetensors").display()))?;
        for (name, var) in model.params() {
            let t = saved
                .get(name)
                .with_context(|| format!("{}: no tensor '{name}'", ckpt.display()))?;
            var.set(t).with_context(|| {
                format!("{}: tensor '{name}' does not fit the model", ckpt.display())
            })?;
        }
        optim.restore(&ckpt.join("optimizer.safetensors"))?;
        println!(
            "resuming {} at step {} of {} (best so far {:?} at step {:?})",
            out.display(),
            state.step,
            state.total_steps,
            state.best_score,
            state.best_step
        );
    } else if state.step > 0 {
        println!(
            "{}: finished earlier ({} steps); nothing left to train",
            out.display(),
            state.step
        );
    }
    Ok(state)
}

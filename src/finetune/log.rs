//! A run's `log.jsonl`: one typed line per step, evaluation and traced layer, written by the
//! training loop and read back as polars DataFrames for the notebooks.

use crate::finetune::metrics::Scores;
use crate::finetune::trace::{TracePoint, SPECTRUM_HEAD};
use crate::util::atomic;
use crate::util::frame::Fresh;
use anyhow::{Context, Result};
use polars::prelude::{BooleanChunked, Column, DataFrame, NewChunkedArray};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;

/// One optimizer step.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainLine {
    /// Steps taken, this one included.
    pub step: usize,
    /// Epochs done (fractional).
    pub epoch: f64,
    /// The batch's task loss (without a regulariser's term).
    pub loss: f64,
    /// With an isotropy regulariser: the regularised quantity on the batch's tokens (IsoScore⋆
    /// for I-STAR, the mean cosine for CosReg).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reg: Option<f64>,
    /// The learning rate of the step.
    pub lr: f64,
    /// The gradient's global norm before clipping.
    pub grad_norm: f64,
    /// Real tokens in the batch.
    pub tokens: usize,
    /// Batch × padded length.
    pub padded: usize,
    /// Seconds of training since the run began (resumed sessions included).
    pub seconds: f64,
}

/// One evaluation on dev.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalLine {
    /// Steps taken.
    pub step: usize,
    /// The dev scores.
    pub scores: Scores,
    /// Seconds of training since the run began.
    pub seconds: f64,
}

/// A line of `log.jsonl`: a JSON object whose `kind` says which.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LogLine {
    /// A training step.
    Train(TrainLine),
    /// An evaluation.
    Eval(EvalLine),
    /// One layer's geometry at one step.
    Trace(TracePoint),
}

impl LogLine {
    /// The step the line belongs to.
    pub fn step(&self) -> usize {
        match self {
            LogLine::Train(l) => l.step,
            LogLine::Eval(l) => l.step,
            LogLine::Trace(l) => l.step,
        }
    }
}

/// Appends lines to a run's `log.jsonl`.
pub(crate) struct LogWriter {
    file: std::fs::File,
}

impl LogWriter {
    /// Opens `path`, keeping only the lines of steps up to `keep_through` (a resumed run drops
    /// what the interrupted one logged after its checkpoint).
    pub(crate) fn open(path: &Path, keep_through: usize) -> Result<Self> {
        if path.exists() {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<LogLine>(l).is_ok_and(|v| v.step() <= keep_through)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            atomic::write_bytes(path, kept.as_bytes())?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Self { file })
    }

    /// Appends one line.
    pub(crate) fn write(&mut self, line: &LogLine) -> Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(line)?)?;
        Ok(())
    }
}

/// A run's log as three tables.
pub struct TrainingLog {
    /// One row per step: `step`, `epoch`, `loss` (the task's), `reg` (the regularised quantity;
    /// null without a regulariser), `lr`, `grad_norm`, `tokens` (real tokens in the batch),
    /// `padded` (batch × length), `seconds` (since the run began).
    pub train: DataFrame,
    /// One row per evaluation: `step`, `seconds`, and every metric of the task (`accuracy`, `f1`,
    /// `mcc`, `pearson`, `spearman`, as the task has them).
    pub eval: DataFrame,
    /// One row per traced layer and step: `step`, `layer`, `tokens`, `isotropy`,
    /// `isotropy_both_signs`, `mean_cosine`, `isoscore`, `participation_ratio` (null in logs
    /// written before it was recorded), `dominant`, and `evr_1` … `evr_8`
    /// (the largest explained-variance ratios).
    pub trace: DataFrame,
}

fn f64_col(name: &str, values: impl Iterator<Item = f64>) -> Column {
    Column::new(name.into(), values.collect::<Vec<f64>>())
}

fn u64_col(name: &str, values: impl Iterator<Item = usize>) -> Column {
    Column::new(name.into(), values.map(|v| v as u64).collect::<Vec<u64>>())
}

impl TrainingLog {
    /// Reads `<run>/log.jsonl`.
    pub fn read(run: &Path) -> Result<TrainingLog> {
        let path = run.join("log.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let (mut train, mut evals, mut trace) = (Vec::new(), Vec::new(), Vec::new());
        for (i, l) in text.lines().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let line: LogLine = serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a log line", path.display(), i + 1))?;
            match line {
                LogLine::Train(t) => train.push(t),
                LogLine::Eval(e) => evals.push(e),
                LogLine::Trace(t) => trace.push(t),
            }
        }
        let train = DataFrame::new_infer_height(vec![
            u64_col("step", train.iter().map(|t| t.step)),
            f64_col("epoch", train.iter().map(|t| t.epoch)),
            f64_col("loss", train.iter().map(|t| t.loss)),
            Column::new(
                "reg".into(),
                train.iter().map(|t| t.reg).collect::<Vec<Option<f64>>>(),
            ),
            f64_col("lr", train.iter().map(|t| t.lr)),
            f64_col("grad_norm", train.iter().map(|t| t.grad_norm)),
            u64_col("tokens", train.iter().map(|t| t.tokens)),
            u64_col("padded", train.iter().map(|t| t.padded)),
            f64_col("seconds", train.iter().map(|t| t.seconds)),
        ])?;
        let metrics: BTreeSet<&String> =
            evals.iter().flat_map(|e| e.scores.values.keys()).collect();
        let mut cols = vec![
            u64_col("step", evals.iter().map(|e| e.step)),
            f64_col("seconds", evals.iter().map(|e| e.seconds)),
        ];
        for m in metrics {
            let v: Vec<Option<f64>> = evals
                .iter()
                .map(|e| e.scores.values.get(m).copied())
                .collect();
            cols.push(Column::new(m.as_str().into(), v));
        }
        let eval = DataFrame::new_infer_height(cols)?;
        let mut cols = vec![
            u64_col("step", trace.iter().map(|t| t.step)),
            u64_col("layer", trace.iter().map(|t| t.layer)),
            u64_col("tokens", trace.iter().map(|t| t.tokens)),
            f64_col("isotropy", trace.iter().map(|t| t.isotropy)),
            f64_col(
                "isotropy_both_signs",
                trace.iter().map(|t| t.isotropy_both_signs),
            ),
            f64_col("mean_cosine", trace.iter().map(|t| t.mean_cosine)),
            f64_col("isoscore", trace.iter().map(|t| t.isoscore)),
            Column::new(
                "participation_ratio".into(),
                trace
                    .iter()
                    .map(|t| t.participation_ratio)
                    .collect::<Vec<Option<f64>>>(),
            ),
            u64_col("dominant", trace.iter().map(|t| t.dominant)),
        ];
        for i in 0..SPECTRUM_HEAD {
            let v: Vec<Option<f64>> = trace.iter().map(|t| t.explained.get(i).copied()).collect();
            cols.push(Column::new(format!("evr_{}", i + 1).into(), v));
        }
        let trace = DataFrame::new_infer_height(cols)?;
        Ok(TrainingLog {
            train: train.fresh(),
            eval: eval.fresh(),
            trace: trace.fresh(),
        })
    }

    /// The deepest traced hidden state (the last layer), 0 when nothing was traced.
    pub fn last_layer(&self) -> u64 {
        self.trace
            .fresh()
            .column("layer")
            .ok()
            .and_then(|c| c.u64().ok().and_then(|l| l.into_no_null_iter().max()))
            .unwrap_or(0)
    }

    /// The trace rows of one hidden state, in step order.
    pub fn layer_trace(&self, layer: u64) -> Result<DataFrame> {
        // A fresh copy: a DataFrame kept across notebook cells has a stale name lookup.
        let trace = self.trace.fresh();
        let mask: Vec<bool> = trace
            .column("layer")?
            .u64()?
            .iter()
            .map(|l| l == Some(layer))
            .collect();
        Ok(trace
            .filter(&BooleanChunked::from_slice("layer".into(), &mask))?
            .fresh())
    }
}

//! Reading a run's `log.jsonl` back as polars DataFrames, for the notebooks.

use crate::display::Fresh;
use crate::finetune::trace::SPECTRUM_HEAD;
use anyhow::{Context, Result};
use polars::prelude::{BooleanChunked, Column, DataFrame, NewChunkedArray};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// A run's log as three tables.
pub struct TrainingLog {
    /// One row per step: `step`, `epoch`, `loss`, `lr`, `grad_norm`, `tokens` (real tokens in the
    /// batch), `padded` (batch × length), `seconds` (since the run began).
    pub train: DataFrame,
    /// One row per evaluation: `step`, `seconds`, and every metric of the task (`accuracy`, `f1`,
    /// `mcc`, `pearson`, `spearman`, as the task has them).
    pub eval: DataFrame,
    /// One row per traced layer and step: `step`, `layer`, `tokens`, `isotropy`,
    /// `isotropy_both_signs`, `mean_cosine`, `isoscore`, `dominant`, and `evr_1` … `evr_8`
    /// (the largest explained-variance ratios).
    pub trace: DataFrame,
}

fn f64_col(rows: &[&Value], key: &str) -> Column {
    let v: Vec<Option<f64>> = rows
        .iter()
        .map(|r| r.get(key).and_then(|x| x.as_f64()))
        .collect();
    Column::new(key.into(), v)
}

fn u64_col(rows: &[&Value], key: &str) -> Column {
    let v: Vec<Option<u64>> = rows
        .iter()
        .map(|r| r.get(key).and_then(|x| x.as_u64()))
        .collect();
    Column::new(key.into(), v)
}

impl TrainingLog {
    /// Reads `<run>/log.jsonl`.
    pub fn read(run: &Path) -> Result<TrainingLog> {
        let path = run.join("log.jsonl");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let lines: Vec<Value> = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l)
                    .with_context(|| format!("{}:{}: not a JSON line", path.display(), i + 1))
            })
            .collect::<Result<_>>()?;
        let of =
            |kind: &str| -> Vec<&Value> { lines.iter().filter(|v| v["kind"] == kind).collect() };
        let train = of("train");
        let train = DataFrame::new_infer_height(vec![
            u64_col(&train, "step"),
            f64_col(&train, "epoch"),
            f64_col(&train, "loss"),
            f64_col(&train, "lr"),
            f64_col(&train, "grad_norm"),
            u64_col(&train, "tokens"),
            u64_col(&train, "padded"),
            f64_col(&train, "seconds"),
        ])?;
        let evals = of("eval");
        let metrics: BTreeSet<String> = evals
            .iter()
            .filter_map(|e| e["scores"]["values"].as_object())
            .flat_map(|m| m.keys().cloned())
            .collect();
        let mut cols = vec![u64_col(&evals, "step"), f64_col(&evals, "seconds")];
        for m in &metrics {
            let v: Vec<Option<f64>> = evals
                .iter()
                .map(|e| e["scores"]["values"].get(m).and_then(|x| x.as_f64()))
                .collect();
            cols.push(Column::new(m.as_str().into(), v));
        }
        let eval = DataFrame::new_infer_height(cols)?;
        let trace = of("trace");
        let mut cols = vec![
            u64_col(&trace, "step"),
            u64_col(&trace, "layer"),
            u64_col(&trace, "tokens"),
            f64_col(&trace, "isotropy"),
            f64_col(&trace, "isotropy_both_signs"),
            f64_col(&trace, "mean_cosine"),
            f64_col(&trace, "isoscore"),
            u64_col(&trace, "dominant"),
        ];
        for i in 0..SPECTRUM_HEAD {
            let v: Vec<Option<f64>> = trace
                .iter()
                .map(|t| t["explained"].get(i).and_then(|x| x.as_f64()))
                .collect();
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

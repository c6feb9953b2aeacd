//! GLUE's metrics, as GLUE defines them per task.

use crate::data::glue::Task;
use crate::geometry::stats::{pearson, spearman};
use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Gold labels or predictions: classes for classification tasks, scores for STS-B.
#[derive(Debug, Clone, PartialEq)]
pub enum Labels {
    /// Class indices.
    Classes(Vec<i64>),
    /// Real-valued scores.
    Scores(Vec<f64>),
}

impl Labels {
    /// How many labels.
    pub fn len(&self) -> usize {
        match self {
            Labels::Classes(c) => c.len(),
            Labels::Scores(s) => s.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The index of the largest value (the first on ties): the predicted class of a row of logits.
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |a, (i, &x)| if x > a.1 { (i, x) } else { a },
        )
        .0
}

/// The metric a task is ranked by (the one "keep the best checkpoint" compares): accuracy for
/// SST-2, RTE, QNLI and WNLI, F1 for MRPC, Matthews correlation for CoLA, Spearman for STS-B.
pub fn main_metric(task: Task) -> &'static str {
    match task {
        Task::Mrpc => "f1",
        Task::Cola => "mcc",
        Task::Stsb => "spearman",
        Task::Sst2 | Task::Rte | Task::Qnli | Task::Wnli => "accuracy",
    }
}

/// A task's GLUE scores on one set of predictions (fractions, not percentages).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    /// The task.
    pub task: String,
    /// How many examples were scored.
    pub n: usize,
    /// The name of the main metric (see [`main_metric`]).
    pub main: String,
    /// Every metric GLUE reports for the task, by name.
    pub values: BTreeMap<String, f64>,
}

impl Scores {
    /// The main metric's value.
    pub fn main_value(&self) -> f64 {
        self.values[&self.main]
    }
}

/// Scores `predicted` against `gold`: accuracy (SST-2, RTE, QNLI, WNLI), accuracy and F1 of
/// class 1 (MRPC), Matthews correlation (CoLA; 0 when a row or column of the confusion matrix is
/// empty, as scikit-learn), Pearson and Spearman (STS-B).
pub fn score(task: Task, predicted: &Labels, gold: &Labels) -> Result<Scores> {
    if predicted.len() != gold.len() {
        bail!(
            "{} predictions for {} gold labels",
            predicted.len(),
            gold.len()
        );
    }
    if gold.is_empty() {
        bail!("no examples to score");
    }
    let mut values = BTreeMap::new();
    match (predicted, gold) {
        (Labels::Classes(p), Labels::Classes(g)) => {
            let n = g.len() as f64;
            let correct = p.iter().zip(g).filter(|(a, b)| a == b).count() as f64;
            values.insert(String::from("accuracy"), correct / n);
            let count = |pv: i64, gv: i64| {
                p.iter()
                    .zip(g)
                    .filter(|(&a, &b)| a == pv && b == gv)
                    .count() as f64
            };
            let (tp, fp, fn_, tn) = (count(1, 1), count(1, 0), count(0, 1), count(0, 0));
            if task == Task::Mrpc {
                let f1 = if tp == 0.0 {
                    0.0
                } else {
                    2.0 * tp / (2.0 * tp + fp + fn_)
                };
                values.insert(String::from("f1"), f1);
            }
            if task == Task::Cola {
                let denom = ((tp + fp) * (tp + fn_) * (tn + fp) * (tn + fn_)).sqrt();
                let mcc = if denom == 0.0 {
                    0.0
                } else {
                    (tp * tn - fp * fn_) / denom
                };
                values.insert(String::from("mcc"), mcc);
            }
        }
        (Labels::Scores(p), Labels::Scores(g)) => {
            values.insert(String::from("pearson"), pearson(p, g)?);
            values.insert(String::from("spearman"), spearman(p, g)?);
        }
        _ => bail!("{task}: predictions and gold labels are of different kinds"),
    }
    Ok(Scores {
        task: task.to_string(),
        n: gold.len(),
        main: main_metric(task).to_string(),
        values,
    })
}

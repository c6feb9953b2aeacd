//! The isotropy-regularisation experiment: GLUE tasks × λ × seeds, each an I-STAR (or CosReg)
//! fine-tune with the same budget, and one table of what each run reached — its dev score and
//! the regularised layer's geometry on the dev probe set at the step whose model it kept.
//!
//! A run lives in `<out>/<task>/<penalty>_<λ>/seed<s>`; the experiment resumes interrupted runs
//! and skips finished ones, so running it again only trains what is missing.

use crate::analysis::claims::{noise_margin, Verdict};
use crate::analysis::spread::summarise;
use crate::data::glue::Task;
use crate::finetune::isotropy_reg::{IsotropyReg, Penalty, RegLayer};
use crate::finetune::log::TrainingLog;
use crate::finetune::metrics::main_metric;
use crate::finetune::train::{finetune, finished, read_best, Budget, FinetuneOptions};
use crate::util::atomic;
use crate::util::frame::{column_numbers, column_texts};
use anyhow::{bail, Context, Result};
use polars::prelude::{ChunkCompareEq, Column, DataFrame};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the experiment trains.
#[derive(Debug, Clone, PartialEq)]
pub struct RegExperiment {
    /// The base model (registry name, hub id or folder).
    pub base: String,
    /// The tasks (each with [`RegExperiment::options`]' budget).
    pub tasks: Vec<Task>,
    /// The penalty; its λ is replaced by each of `lambdas`.
    pub penalty: Penalty,
    /// The weights λ to train with (0: the penalty only measured).
    pub lambdas: Vec<f64>,
    /// Seeds 0, 1, … of each (task, λ).
    pub seeds: usize,
    /// The tests' quick profile (40 steps on samples) instead of the experiment's budget.
    pub quick: bool,
}

/// One finished run's line in the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegRun {
    /// The task (the Hub's name, `sst2`).
    pub task: String,
    /// `isoscore-star` or `cosine`.
    pub penalty: String,
    /// λ.
    pub lambda: f64,
    /// The run's seed.
    pub seed: u64,
    /// The task's main metric.
    pub metric: String,
    /// Its best dev value (the kept model's).
    pub dev: f64,
    /// The step of the kept model.
    pub best_step: usize,
    /// The regularised hidden state.
    pub layer: usize,
    /// Its IsoScore on the dev probe set at `best_step`.
    pub isoscore: f64,
    /// Its I(W) there.
    pub isotropy: f64,
    /// Its participation ratio there.
    pub participation_ratio: f64,
    /// Its mean cosine there.
    pub mean_cosine: f64,
    /// Training seconds.
    pub seconds: f64,
    /// The run's folder.
    pub folder: String,
}

impl RegExperiment {
    /// I-STAR on the last layer, SST-2, MRPC and CoLA × λ ∈ {−5, 0, 5} (−5 is the example of
    /// I-STAR's code, which lowers isotropy; 5 raises it as strongly), `seeds` seeds each.
    pub fn new(base: &str, seeds: usize) -> Self {
        Self {
            base: base.to_string(),
            tasks: vec![Task::Sst2, Task::Mrpc, Task::Cola],
            penalty: Penalty::IsoscoreStar {
                lambda: 0.0,
                zeta: crate::finetune::isotropy_reg::DEFAULT_ZETA,
            },
            lambdas: vec![-5.0, 0.0, 5.0],
            seeds,
            quick: false,
        }
    }

    /// The options of one run. The budget is below the tasks' defaults so that the grid fits a
    /// working session on two CPU cores, and the same for every λ and seed: SST-2 300 steps of
    /// 32 (the default 2,000), MRPC and CoLA 2 epochs (the default 4 and 6), each at the task's
    /// default learning rate and batch; evaluated and traced (256 dev inputs) at the same steps,
    /// so the kept model's geometry is in the trace.
    pub fn options(&self, task: Task, lambda: f64, seed: u64) -> FinetuneOptions {
        let mut opts = if self.quick {
            FinetuneOptions::quick(task, &self.base)
        } else {
            let mut o = FinetuneOptions::default_for(task, &self.base);
            (o.budget, o.eval_every) = match task {
                Task::Sst2 => (Budget::Steps(300), 100),
                Task::Mrpc => (Budget::Epochs(2.0), 58),
                Task::Cola => (Budget::Epochs(2.0), 268),
                _ => (o.budget, o.eval_every),
            };
            o.restarts = 1;
            o
        };
        opts.trace_every = opts.eval_every;
        opts.seed = seed;
        opts.isotropy_reg = Some(IsotropyReg {
            penalty: self.penalty.with_lambda(lambda),
            layer: RegLayer::Last,
        });
        opts
    }

    /// The folder of one run under `out`.
    pub fn folder(&self, out: &Path, task: Task, lambda: f64, seed: u64) -> PathBuf {
        out.join(task.hub_config())
            .join(format!("{}_{lambda}", self.penalty.name()))
            .join(format!("seed{seed}"))
    }

    fn runs(&self) -> Vec<(Task, f64, u64)> {
        let mut runs = Vec::new();
        for &task in &self.tasks {
            for &lambda in &self.lambdas {
                for seed in 0..self.seeds as u64 {
                    runs.push((task, lambda, seed));
                }
            }
        }
        runs
    }

    /// Trains every run not finished yet (resuming interrupted ones), then writes
    /// `<out>/summary.json` ([`summary`]: every finished run in `out`, this experiment's and any
    /// other's) and returns it as a table.
    pub fn run(&self, out: &Path) -> Result<DataFrame> {
        if self.tasks.is_empty() || self.lambdas.is_empty() || self.seeds == 0 {
            bail!("the experiment needs at least one task, one λ and one seed");
        }
        let runs = self.runs();
        for (k, &(task, lambda, seed)) in runs.iter().enumerate() {
            let dir = self.folder(out, task, lambda, seed);
            let opts = self.options(task, lambda, seed);
            if finished(&dir) {
                let saved = read_options(&dir)?;
                if saved != opts {
                    bail!(
                        "{} holds a finished run with other options than this experiment's (another profile or budget?): choose another --out",
                        dir.display()
                    );
                }
                continue;
            }
            println!(
                "run {} of {}: {task}, {} λ = {lambda}, seed {seed}",
                k + 1,
                runs.len(),
                self.penalty.name()
            );
            finetune(&opts, &dir).with_context(|| format!("training {}", dir.display()))?;
        }
        let rows = summary(out)?;
        atomic::write_bytes(
            &out.join("summary.json"),
            serde_json::to_string_pretty(&rows)?.as_bytes(),
        )?;
        runs_frame(&rows)
    }
}

/// Every finished regularised run in `out/<task>/<penalty>_<λ>/seed<s>`, read from its own
/// `run.json`, ordered by task, penalty, λ and seed.
pub fn summary(out: &Path) -> Result<Vec<RegRun>> {
    let mut runs = Vec::new();
    for dir in subfolders(out)?
        .iter()
        .map(|t| subfolders(t))
        .collect::<Result<Vec<_>>>()?
        .concat()
        .iter()
        .map(|p| subfolders(p))
        .collect::<Result<Vec<_>>>()?
        .concat()
    {
        if !finished(&dir) {
            continue;
        }
        let opts = read_options(&dir)?;
        let Some(reg) = opts.isotropy_reg else {
            continue;
        };
        runs.push(read_run(&dir, &opts, &reg)?);
    }
    runs.sort_by(|a, b| {
        (&a.task, &a.penalty)
            .cmp(&(&b.task, &b.penalty))
            .then(a.lambda.total_cmp(&b.lambda))
            .then(a.seed.cmp(&b.seed))
    });
    Ok(runs)
}

/// A run's options, from its `run.json`.
fn read_options(dir: &Path) -> Result<FinetuneOptions> {
    let path = dir.join("run.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a fine-tuning run's options", path.display()))
}

/// The folders in `dir`, sorted (none when `dir` does not exist).
fn subfolders(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}

/// The summary line of a finished run trained with `opts` and its regulariser `reg`.
fn read_run(dir: &Path, opts: &FinetuneOptions, reg: &IsotropyReg) -> Result<RegRun> {
    let task = opts.task;
    let best = read_best(dir)?;
    let log = TrainingLog::read(dir)?;
    // The trace covers every hidden state: the last traced is the last layer.
    let layer = reg.layer.resolve(log.last_layer() as usize + 1)?;
    let trace = log.layer_trace(layer as u64)?;
    let steps: Vec<u64> = trace.column("step")?.u64()?.into_no_null_iter().collect();
    let Some(row) = steps.iter().position(|&s| s == best.step as u64) else {
        bail!(
            "{}: no trace at the kept model's step {} (the experiment traces at every evaluation)",
            dir.display(),
            best.step
        );
    };
    let at = |name: &str| -> Result<f64> {
        trace
            .column(name)?
            .f64()?
            .get(row)
            .with_context(|| format!("{}: no {name} in the trace", dir.display()))
    };
    let seconds = log
        .train
        .column("seconds")?
        .f64()?
        .into_no_null_iter()
        .last()
        .unwrap_or(0.0);
    Ok(RegRun {
        task: task.hub_config().to_string(),
        penalty: reg.penalty.name().to_string(),
        lambda: reg.penalty.lambda(),
        seed: opts.seed,
        metric: main_metric(task).to_string(),
        dev: best.scores.main_value(),
        best_step: best.step,
        layer,
        isoscore: at("isoscore")?,
        isotropy: at("isotropy")?,
        participation_ratio: at("participation_ratio")?,
        mean_cosine: at("mean_cosine")?,
        seconds,
        folder: dir.display().to_string(),
    })
}

/// The runs as a DataFrame, one row each.
pub fn runs_frame(rows: &[RegRun]) -> Result<DataFrame> {
    let f = |name: &str, v: fn(&RegRun) -> f64| {
        Column::new(name.into(), rows.iter().map(v).collect::<Vec<f64>>())
    };
    let s = |name: &str, v: fn(&RegRun) -> String| {
        Column::new(name.into(), rows.iter().map(v).collect::<Vec<String>>())
    };
    Ok(DataFrame::new_infer_height(vec![
        s("task", |r| r.task.clone()),
        s("penalty", |r| r.penalty.clone()),
        f("lambda", |r| r.lambda),
        Column::new(
            "seed".into(),
            rows.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
        s("metric", |r| r.metric.clone()),
        f("dev", |r| r.dev),
        f("isoscore", |r| r.isoscore),
        f("isotropy", |r| r.isotropy),
        f("participation_ratio", |r| r.participation_ratio),
        f("mean_cosine", |r| r.mean_cosine),
        f("seconds", |r| r.seconds),
    ])?)
}

/// Reads `<out>/summary.json` as written by [`RegExperiment::run`].
pub fn read_summary(out: &Path) -> Result<Vec<RegRun>> {
    let path = out.join("summary.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not an isotropy-regularisation summary", path.display()))
}

/// Mean and standard deviation over seeds of the dev score and the geometry, per task and λ.
pub fn spread_over_seeds(runs: &DataFrame) -> Result<DataFrame> {
    summarise(
        runs,
        &["task", "penalty", "lambda"],
        &["dev", "isoscore", "isotropy", "participation_ratio"],
    )
}

/// Every hidden state's geometry in each run at the step whose model it kept (the trace's dev
/// probe set): one row per run and layer, with `task`, `penalty`, `lambda`, `seed`, `layer`,
/// `isoscore`, `isotropy` and `mean_cosine`.
pub fn layers_frame(rows: &[RegRun]) -> Result<DataFrame> {
    let (mut task, mut penalty, mut lambda, mut seed, mut layer) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut isoscore, mut isotropy, mut mean_cosine) = (vec![], vec![], vec![]);
    for run in rows {
        let trace = TrainingLog::read(Path::new(&run.folder))?.trace;
        let kept = trace.filter(&trace.column("step")?.u64()?.equal(run.best_step as u64))?;
        if kept.height() == 0 {
            bail!(
                "{}: no trace at the kept model's step {}",
                run.folder,
                run.best_step
            );
        }
        let values = |name: &str| column_numbers(&kept, name);
        isoscore.extend(values("isoscore")?);
        isotropy.extend(values("isotropy")?);
        mean_cosine.extend(values("mean_cosine")?);
        let layers: Vec<u64> = kept.column("layer")?.u64()?.into_no_null_iter().collect();
        for l in layers {
            task.push(run.task.clone());
            penalty.push(run.penalty.clone());
            lambda.push(run.lambda);
            seed.push(run.seed);
            layer.push(l);
        }
    }
    Ok(DataFrame::new_infer_height(vec![
        Column::new("task".into(), task),
        Column::new("penalty".into(), penalty),
        Column::new("lambda".into(), lambda),
        Column::new("seed".into(), seed),
        Column::new("layer".into(), layer),
        Column::new("isoscore".into(), isoscore),
        Column::new("isotropy".into(), isotropy),
        Column::new("mean_cosine".into(), mean_cosine),
    ])?)
}

/// What each λ ≠ 0 did against λ = 0 of the same task and penalty, from
/// [`spread_over_seeds`]' table, judged against the spread over seeds: one row per task and
/// λ ≠ 0 with
/// - `isoscore_change`, the regularised layer's IsoScore minus λ = 0's, and `isoscore_moved`,
///   whether it moved the way λ pushes (up for λ > 0) by more than the noise margin;
/// - `dev_change`, the dev score minus λ = 0's (× 100, in points of the task's metric);
/// - `claim` and `verdict`: for λ < 0, I-STAR's finding that lowering isotropy improves the
///   score; for λ > 0, the paper's claim 4, that making a fine-tuned space isotropic does not
///   help (the effect is the score's *fall*, so "within noise" there means it did not help either);
/// - `noise_margin`, twice the standard deviation of the difference over seeds
///   ([`noise_margin`]); with fewer than two seeds on either side there is no spread, and the
///   verdict says "one seed".
///
/// ```
/// use isotropy_lab::finetune::experiment::verdicts;
/// use polars::prelude::*;
///
/// let spread = df!(
///     "task" => ["sst2", "sst2", "sst2"], "penalty" => ["isoscore-star"; 3],
///     "lambda" => [-5.0, 0.0, 5.0], "n" => [3u32, 3, 3],
///     "dev_mean" => [0.83, 0.85, 0.78], "dev_sd" => [0.005, 0.008, 0.04],
///     "isoscore_mean" => [0.01, 0.02, 0.3], "isoscore_sd" => [0.001, 0.002, 0.1],
/// )?;
/// let v = verdicts(&spread)?;
/// let verdict: Vec<&str> = v.column("verdict")?.str()?.iter().flatten().collect();
/// // λ = −5 lowered the score beyond noise, against I-STAR's finding; λ = 5 lowered it too
/// // (2 × √(0.04² + 0.008²) × 100 ≈ 8.2 points of margin against a 7-point fall): within noise.
/// assert_eq!(verdict, ["inconsistent", "within noise"]);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn verdicts(spread: &DataFrame) -> Result<DataFrame> {
    let (text, number) = (
        |name: &str| column_texts(spread, name),
        |name: &str| column_numbers(spread, name),
    );
    let (task, penalty) = (text("task")?, text("penalty")?);
    let (lambda, n) = (number("lambda")?, number("n")?);
    let (dev, dev_sd) = (number("dev_mean")?, number("dev_sd")?);
    let (iso, iso_sd) = (number("isoscore_mean")?, number("isoscore_sd")?);
    let mut rows: Vec<(usize, f64, String, f64, f64, String)> = Vec::new();
    for i in (0..spread.height()).filter(|&i| lambda[i] != 0.0) {
        let Some(b) = (0..spread.height())
            .find(|&b| lambda[b] == 0.0 && task[b] == task[i] && penalty[b] == penalty[i])
        else {
            continue;
        };
        let seeded = n[i] >= 2.0 && n[b] >= 2.0;
        let iso_change = iso[i] - iso[b];
        let dev_change = 100.0 * (dev[i] - dev[b]);
        let (moved, margin, verdict) = if seeded {
            let iso_margin = noise_margin(iso_sd[i], iso_sd[b]);
            let margin = 100.0 * noise_margin(dev_sd[i], dev_sd[b]);
            let effect = if lambda[i] < 0.0 {
                dev_change
            } else {
                -dev_change
            };
            (
                (iso_change * lambda[i].signum() > iso_margin).to_string(),
                margin,
                Verdict::judge(effect, margin)?.to_string(),
            )
        } else {
            ("one seed".to_string(), f64::NAN, "one seed".to_string())
        };
        rows.push((i, iso_change, moved, dev_change, margin, verdict));
    }
    let claim = |lambda: f64| {
        if lambda < 0.0 {
            "I-STAR: lowering isotropy improves the score"
        } else {
            "4: making the space isotropic does not help"
        }
    };
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "task".into(),
            rows.iter().map(|r| task[r.0].clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "penalty".into(),
            rows.iter()
                .map(|r| penalty[r.0].clone())
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "lambda".into(),
            rows.iter().map(|r| lambda[r.0]).collect::<Vec<_>>(),
        ),
        Column::new(
            "isoscore_change".into(),
            rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        ),
        Column::new(
            "isoscore_moved".into(),
            rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "dev_change".into(),
            rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        ),
        Column::new(
            "noise_margin".into(),
            rows.iter().map(|r| r.4).collect::<Vec<_>>(),
        ),
        Column::new(
            "claim".into(),
            rows.iter().map(|r| claim(lambda[r.0])).collect::<Vec<_>>(),
        ),
        Column::new(
            "verdict".into(),
            rows.iter().map(|r| r.5.clone()).collect::<Vec<_>>(),
        ),
    ])?)
}

//! `isolab`: the command line of isotropy-lab.

use anyhow::{bail, Context, Result};
use clap::builder::PossibleValue;
use clap::{Args, Parser, Subcommand, ValueEnum};
use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::analysis::layers::{layer_table, Measure, MeasureOptions};
use isotropy_lab::analysis::methods::enhance_embeddings;
use isotropy_lab::data::fetch::{resolve_model_with, FetchOptions};
use isotropy_lab::data::glue::{self, fetch_glue, Split, Task};
use isotropy_lab::finetune::classifier::SequenceClassifier;
use isotropy_lab::finetune::data::TaskData;
use isotropy_lab::finetune::experiment::{spread_over_seeds, RegExperiment};
use isotropy_lab::finetune::isotropy_reg::{IsotropyReg, Penalty, RegLayer};
use isotropy_lab::finetune::train::{
    evaluate, finetune, logits_all, Budget, FinetuneOptions, Objective,
};
use isotropy_lab::geometry::enhance::Method;
use isotropy_lab::nn::model::Model;
use isotropy_lab::util::process::elementwise_on_calling_thread;
use polars::prelude::AnyValue;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "isolab",
    version,
    about = "Isotropy and geometry of BERT embedding spaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch a model (registry name, hub id or folder) or the GLUE data (`glue`); idempotent.
    Fetch {
        /// `minilm`, `minilm-sre`, `bert-base-uncased`, a hub id such as
        /// `textattack/bert-base-uncased-SST-2`, or `glue`.
        what: String,
        /// With `glue`: the tasks to fetch (default: all).
        #[arg(long, value_enum, ignore_case = true, value_delimiter = ',')]
        tasks: Vec<Task>,
    },
    /// Extract token embeddings of every layer into DIR/hidden_states.safetensors and
    /// DIR/tokens.parquet.
    Extract {
        /// Model name, hub id or folder.
        #[arg(long)]
        model: String,
        /// GLUE task.
        #[arg(
            long,
            value_enum,
            ignore_case = true,
            required_unless_present = "sentences"
        )]
        task: Option<Task>,
        /// Split.
        #[arg(long, value_enum, ignore_case = true, default_value_t = Split::Dev)]
        split: Split,
        /// A text file with one sentence per line, instead of a GLUE task.
        #[arg(long, conflicts_with = "task")]
        sentences: Option<PathBuf>,
        /// `all` or a comma-separated list of hidden-state indices (0 = embeddings).
        #[arg(long, default_value = "all")]
        layers: String,
        /// Embed a seeded sample of N sentences.
        #[arg(long)]
        limit: Option<usize>,
        /// Seed of the sample.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Truncate inputs to this many tokens.
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        /// Keep the [CLS] and [SEP] rows (the authors' protocol, the default, drops them).
        #[arg(long)]
        keep_special: bool,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Print geometry measures of an extraction folder, one JSON object per layer.
    Measure {
        /// An extraction folder (from `isolab extract` or `isolab enhance`).
        #[arg(long = "in")]
        input: PathBuf,
        /// `all`, or a comma-separated list of isotropy, cosine, spectrum, rogue,
        /// self-similarity, intra-sentence, clusters, lid.
        #[arg(long, value_delimiter = ',', default_value = "all")]
        metric: Vec<Metric>,
        /// Seed of the sampled and clustered measures.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Apply an isotropy-enhancement method to an extraction folder; writes the same layout.
    Enhance {
        /// An extraction folder (from `isolab extract`).
        #[arg(long = "in")]
        input: PathBuf,
        /// zero-mean, cluster-zero-mean, global or cluster-based.
        #[arg(long)]
        method: Method,
        /// Number of clusters (default 27).
        #[arg(long)]
        k: Option<usize>,
        /// Number of removed directions (default 15 for global, 12 for cluster-based).
        #[arg(long)]
        d: Option<usize>,
        /// Seed of the clustering.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// `all` or a comma-separated list of hidden-state indices to enhance (and write).
        #[arg(long, default_value = "all")]
        layers: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Fine-tune a BERT encoder on a GLUE task (sequence classification); resumes an interrupted
    /// run in the same folder. The folder then holds the best model in the Hugging Face layout.
    Finetune(FinetuneArgs),
    /// Fine-tune with an isotropy regulariser on the last layer over tasks × λ × seeds, each
    /// with the same budget, into OUT/<task>/<penalty>_<λ>/seed<s>, and write OUT/summary.json
    /// (dev score and the layer's IsoScore, I(W), participation ratio per run); resumes
    /// interrupted runs and skips finished ones.
    RegExperiment {
        /// Output folder (default: ISOLAB_REG_EXPERIMENT, else runs/isotropy-reg, where chapter
        /// 08 reads the main job's experiment).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Base model: registry name, hub id or folder.
        #[arg(long, default_value = "minilm")]
        base: String,
        /// Comma-separated GLUE tasks.
        #[arg(
            long,
            value_enum,
            value_delimiter = ',',
            default_value = "sst2,mrpc,cola"
        )]
        tasks: Vec<Task>,
        /// Comma-separated weights λ (λ < 0 lowers isotropy, λ > 0 raises it).
        #[arg(
            long,
            value_delimiter = ',',
            allow_hyphen_values = true,
            default_value = "-5,0,5"
        )]
        lambdas: Vec<f64>,
        /// `isoscore-star` (I-STAR, ζ = 0.2) or `cosine` (CosReg).
        #[arg(long, default_value = "isoscore-star")]
        penalty: String,
        /// Seeds per task and λ (default: ISOLAB_SEEDS, else 1).
        #[arg(long)]
        seeds: Option<usize>,
        /// `default` (the experiment's budget) or `quick` (40 steps on samples);
        /// `ISOLAB_PROFILE=quick` selects quick too.
        #[arg(long, value_enum)]
        profile: Option<Profile>,
    },
    /// Score a fine-tuned model on a GLUE split or a labelled file in the task's GLUE format;
    /// prints the metrics as JSON.
    Evaluate {
        /// The fine-tuned model: folder, registry name or hub id.
        #[arg(long)]
        model: String,
        /// GLUE task.
        #[arg(long, value_enum, ignore_case = true)]
        task: Task,
        /// The split (`test` has no labels: refused).
        #[arg(long, value_enum, ignore_case = true, default_value_t = Split::Dev, conflicts_with = "file")]
        split: Split,
        /// A labelled TSV file in the task's GLUE dev format, instead of a split.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Truncate inputs to this many tokens.
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        /// Examples per batch.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Also write the logits (examples × labels, in file order) to this safetensors file.
        #[arg(long)]
        logits: Option<PathBuf>,
    },
}

/// The arguments of `isolab finetune`.
#[derive(Args)]
struct FinetuneArgs {
    /// GLUE task (qnli and wnli where a training split exists).
    #[arg(long, value_enum, ignore_case = true)]
    task: Task,
    /// Base model: registry name, hub id or folder.
    #[arg(long, default_value = "minilm")]
    base: String,
    /// `head` (a classifier or regressor on [CLS], a pair as one input) or `cosine` (STS-B: a
    /// bi-encoder, mean pooling and a cosine-similarity loss, as sentence-transformers trains).
    #[arg(long, value_enum, default_value = "head")]
    objective: Objective,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// `default` (the task's default budget) or `quick` (40 steps on small samples, as the
    /// tests run); `ISOLAB_PROFILE=quick` selects quick too. The flags below override it.
    #[arg(long, value_enum)]
    profile: Option<Profile>,
    /// Budget in epochs.
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<f64>,
    /// Budget in optimizer steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Examples per batch.
    #[arg(long)]
    batch: Option<usize>,
    /// Truncate inputs to this many tokens.
    #[arg(long)]
    max_len: Option<usize>,
    /// Seed (head initialisation, batch order, dropout).
    #[arg(long)]
    seed: Option<u64>,
    /// Independent runs with seeds SEED, SEED+1, …, each in OUT/restart-<k>; OUT keeps the
    /// best on dev (RTE's default: 2).
    #[arg(long)]
    restarts: Option<usize>,
    /// Evaluate on dev and checkpoint every N steps.
    #[arg(long)]
    eval_every: Option<usize>,
    /// Record the geometry trace every N steps (0: never).
    #[arg(long)]
    trace_every: Option<usize>,
    /// Train on a seeded sample of N training examples.
    #[arg(long)]
    train_limit: Option<usize>,
    /// Evaluate on a seeded sample of N dev examples.
    #[arg(long)]
    dev_limit: Option<usize>,
    /// Add an isotropy regulariser to the task loss: `isoscore-star:λ` (I-STAR, λ (1 −
    /// IsoScore⋆)) or `cosine:λ` (CosReg, λ × mean cosine); λ > 0 pushes toward isotropy, λ < 0
    /// away from it. On the tokens of the batch, [CLS]/[SEP] and padding left out.
    #[arg(long, allow_hyphen_values = true)]
    isotropy_reg: Option<Penalty>,
    /// The regularised hidden state: `last` or an index (0 = the embedding output).
    #[arg(long, default_value = "last", requires = "isotropy_reg")]
    reg_layer: RegLayer,
    /// I-STAR's shrinkage of the batch covariance toward a reference covariance of 25,000
    /// training tokens, recomputed every epoch (0: none; default 0.2, as I-STAR trains).
    #[arg(long, requires = "isotropy_reg")]
    reg_zeta: Option<f64>,
}

impl FinetuneArgs {
    /// The options of the run: the profile's, with each flag given overriding its value.
    fn options(&self) -> Result<FinetuneOptions> {
        let quick = match self.profile {
            Some(p) => p == Profile::Quick,
            None => isotropy_lab::notebook::profile::quick(),
        };
        let mut opts = match (quick, self.objective) {
            (true, objective) => FinetuneOptions {
                objective,
                ..FinetuneOptions::quick(self.task, &self.base)
            },
            (false, Objective::Head) => FinetuneOptions::default_for(self.task, &self.base),
            (false, Objective::Cosine) => FinetuneOptions {
                task: self.task,
                ..FinetuneOptions::bi_encoder(&self.base)
            },
        };
        if let Some(e) = self.epochs {
            opts.budget = Budget::Epochs(e);
        }
        if let Some(n) = self.steps {
            opts.budget = Budget::Steps(n);
        }
        if let Some(lr) = self.lr {
            opts.optimizer.lr = lr;
        }
        opts.batch_size = self.batch.unwrap_or(opts.batch_size);
        opts.max_len = self.max_len.unwrap_or(opts.max_len);
        opts.seed = self.seed.unwrap_or(opts.seed);
        opts.restarts = self.restarts.unwrap_or(opts.restarts);
        opts.eval_every = self.eval_every.unwrap_or(opts.eval_every);
        opts.trace_every = self.trace_every.unwrap_or(opts.trace_every);
        if self.train_limit.is_some() {
            opts.train_limit = self.train_limit;
        }
        if self.dev_limit.is_some() {
            opts.dev_limit = self.dev_limit;
        }
        opts.isotropy_reg = match (self.isotropy_reg, self.reg_zeta) {
            (Some(Penalty::Cosine { .. }), Some(_)) => {
                bail!("--reg-zeta: CosReg has no shrinkage (it is I-STAR's, isoscore-star:λ)")
            }
            (Some(mut penalty), z) => {
                if let (Penalty::IsoscoreStar { zeta, .. }, Some(z)) = (&mut penalty, z) {
                    *zeta = z;
                }
                Some(IsotropyReg {
                    penalty,
                    layer: self.reg_layer,
                })
            }
            (None, _) => None,
        };
        Ok(opts)
    }
}

/// A run profile of `isolab finetune`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Profile {
    /// The task's default budget.
    Default,
    /// 40 steps on small samples, as the tests run.
    Quick,
}

/// A `--metric` value: every measure, or one.
#[derive(Clone, Copy)]
enum Metric {
    All,
    One(Measure),
}

impl ValueEnum for Metric {
    fn value_variants<'a>() -> &'a [Self] {
        const VARIANTS: [Metric; 9] = [
            Metric::All,
            Metric::One(Measure::Isotropy),
            Metric::One(Measure::Cosine),
            Metric::One(Measure::Spectrum),
            Metric::One(Measure::Rogue),
            Metric::One(Measure::SelfSimilarity),
            Metric::One(Measure::IntraSentence),
            Metric::One(Measure::Clusters),
            Metric::One(Measure::LocalDimension),
        ];
        &VARIANTS
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        match self {
            Metric::All => Some(PossibleValue::new("all")),
            Metric::One(m) => m.to_possible_value(),
        }
    }
}

/// One line per task and λ: the dev score and the last layer's geometry, mean ± sd over seeds.
fn print_spread(spread: &polars::prelude::DataFrame) -> Result<()> {
    use isotropy_lab::util::frame::{column_numbers, column_texts};
    let text = |c: &str| column_texts(spread, c);
    let num = |c: &str| column_numbers(spread, c);
    let (task, penalty, lambda, n) = (text("task")?, text("penalty")?, num("lambda")?, num("n")?);
    let (dev, dev_sd) = (num("dev_mean")?, num("dev_sd")?);
    let (iso, iso_sd) = (num("isoscore_mean")?, num("isoscore_sd")?);
    let (iw, iw_sd) = (num("isotropy_mean")?, num("isotropy_sd")?);
    let (pr, pr_sd) = (
        num("participation_ratio_mean")?,
        num("participation_ratio_sd")?,
    );
    for i in 0..spread.height() {
        // A cell with one seed has no spread: print its values alone, not "± 0".
        let seeded = n[i] >= 2.0;
        let pm = |mean: String, sd: String| {
            if seeded {
                format!("{mean} ± {sd}")
            } else {
                mean
            }
        };
        println!(
            "{} {} λ = {}: dev {}, last layer IsoScore {}, I(W) {}, participation ratio {} ({})",
            task[i],
            penalty[i],
            lambda[i],
            pm(format!("{:.4}", dev[i]), format!("{:.4}", dev_sd[i])),
            pm(format!("{:.4}", iso[i]), format!("{:.4}", iso_sd[i])),
            pm(format!("{:.2e}", iw[i]), format!("{:.1e}", iw_sd[i])),
            pm(format!("{:.1}", pr[i]), format!("{:.1}", pr_sd[i])),
            if seeded {
                format!("{} seeds", n[i])
            } else {
                "one seed: no spread".to_string()
            }
        );
    }
    Ok(())
}

fn parse_layers(spec: &str) -> Result<Option<Vec<usize>>> {
    if spec == "all" {
        return Ok(None);
    }
    spec.split(',')
        .map(|p| {
            p.trim()
                .parse::<usize>()
                .with_context(|| format!("--layers: '{p}' is not a layer index"))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Fetch { what, tasks } => fetch(&what, tasks),
        Command::Extract {
            model,
            task,
            split,
            sentences,
            layers,
            limit,
            seed,
            max_len,
            keep_special,
            out,
        } => {
            let source = match (task, sentences) {
                (_, Some(path)) => Source::sentences_file(&path)?,
                (Some(task), None) => Source::glue(task, split),
                (None, None) => bail!("give --task or --sentences"),
            };
            let opts = ExtractOptions {
                layers: parse_layers(&layers)?,
                keep_special,
                limit,
                seed,
                max_len,
                ..ExtractOptions::default()
            };
            extract(&model, &source, &opts, &out)
        }
        Command::Measure {
            input,
            metric,
            seed,
        } => measure(&input, &metric, seed),
        Command::Enhance {
            input,
            method,
            k,
            d,
            seed,
            layers,
            out,
        } => enhance(&input, method.with_params(k, d), &layers, seed, &out),
        Command::Finetune(args) => {
            let opts = args.options()?;
            // Before candle's first operation and before any other thread starts.
            elementwise_on_calling_thread();
            let report = finetune(&opts, &args.out)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::RegExperiment {
            out,
            base,
            tasks,
            lambdas,
            penalty,
            seeds,
            profile,
        } => {
            let penalty = match penalty.as_str() {
                "isoscore-star" | "cosine" => format!("{penalty}:0").parse::<Penalty>()?,
                other => bail!("--penalty '{other}': expected isoscore-star or cosine"),
            };
            if let Some(bad) = lambdas.iter().find(|l| !l.is_finite()) {
                bail!("--lambdas: {bad} is not a finite number");
            }
            let experiment = RegExperiment {
                tasks,
                penalty,
                lambdas,
                quick: match profile {
                    Some(p) => p == Profile::Quick,
                    None => isotropy_lab::notebook::profile::quick(),
                },
                ..RegExperiment::new(
                    &base,
                    seeds.unwrap_or_else(|| {
                        isotropy_lab::notebook::profile::env_or("ISOLAB_SEEDS", 1)
                    }),
                )
            };
            let out = out.unwrap_or_else(isotropy_lab::util::paths::reg_experiment_dir);
            elementwise_on_calling_thread();
            let runs = experiment.run(&out)?;
            print_spread(&spread_over_seeds(&runs)?)?;
            println!("per run: {}", out.join("summary.json").display());
            Ok(())
        }
        Command::Evaluate {
            model,
            task,
            split,
            file,
            max_len,
            batch,
            logits,
        } => evaluate_model(
            &model,
            task,
            split,
            file.as_deref(),
            max_len,
            batch,
            logits.as_deref(),
        ),
    }
}

/// `isolab fetch`: a model, or the GLUE tasks.
fn fetch(what: &str, tasks: Vec<Task>) -> Result<()> {
    let opts = FetchOptions::from_env();
    if what == "glue" {
        let tasks = if tasks.is_empty() {
            Task::ALL.to_vec()
        } else {
            tasks
        };
        let dir = isotropy_lab::util::paths::glue_dir();
        let written = fetch_glue(&tasks, &dir, &opts)?;
        println!("GLUE in {}: {} files written", dir.display(), written.len());
    } else {
        let files = resolve_model_with(what, &opts)?;
        println!("{what} ({}):", files.source);
        for p in [&files.config, &files.weights, &files.tokenizer] {
            println!("  {}", p.display());
        }
    }
    Ok(())
}

/// `isolab extract`.
fn extract(model: &str, source: &Source, opts: &ExtractOptions, out: &Path) -> Result<()> {
    let model = Model::load(model)?;
    let emb = Embeddings::extract(&model, source, opts)?;
    emb.save(out)?;
    println!(
        "{} tokens × {} layers written to {} ({} inputs truncated)",
        emb.num_tokens(),
        emb.layers.len(),
        out.display(),
        emb.truncated
    );
    Ok(())
}

/// `isolab measure`: one JSON object per layer.
fn measure(input: &Path, metric: &[Metric], seed: u64) -> Result<()> {
    let emb = Embeddings::load(input)?;
    let measures = if metric.iter().any(|m| matches!(m, Metric::All)) {
        Measure::ALL.to_vec()
    } else {
        metric
            .iter()
            .filter_map(|m| match m {
                Metric::One(m) => Some(*m),
                Metric::All => None,
            })
            .collect()
    };
    let opts = MeasureOptions {
        measures,
        seed,
        ..MeasureOptions::default()
    };
    let table = layer_table(&emb, &opts)?;
    for i in 0..table.height() {
        let mut row = serde_json::Map::new();
        for column in table.columns() {
            let value = match column.get(i)? {
                AnyValue::UInt32(v) => serde_json::json!(v),
                AnyValue::Float64(v) if v.is_finite() => serde_json::json!(v),
                AnyValue::Float64(_) => serde_json::Value::Null,
                other => serde_json::json!(other.to_string()),
            };
            row.insert(column.name().to_string(), value);
        }
        println!("{}", serde_json::Value::Object(row));
    }
    Ok(())
}

/// `isolab enhance`.
fn enhance(input: &Path, method: Method, layers: &str, seed: u64, out: &Path) -> Result<()> {
    let emb = Embeddings::load(input)?;
    let layers = parse_layers(layers)?;
    let enhanced = enhance_embeddings(&emb, method, layers.as_deref(), seed)?;
    enhanced.save(out)?;
    println!(
        "{method}: {} tokens × {} layers written to {}",
        enhanced.num_tokens(),
        enhanced.layers.len(),
        out.display()
    );
    Ok(())
}

/// `isolab evaluate`: the scores as JSON, with the data they were computed on.
fn evaluate_model(
    model: &str,
    task: Task,
    split: Split,
    file: Option<&Path>,
    max_len: usize,
    batch: usize,
    logits: Option<&Path>,
) -> Result<()> {
    let (df, source) = match file {
        None => (glue::load(task, split)?, format!("{task} {split}")),
        Some(path) => {
            if !path.is_file() {
                bail!("--file {}: no such file", path.display());
            }
            (
                glue::read_tsv(path, task, Split::Dev)?,
                path.display().to_string(),
            )
        }
    };
    let clf = SequenceClassifier::load(model)?;
    let data = TaskData::new(&clf.model, task, &df, max_len, &source)?;
    if let Some(path) = logits {
        let t = logits_all(&clf, &data, batch)?;
        let bytes = safetensors::serialize([("logits", &t)], None)?;
        isotropy_lab::util::atomic::write_bytes(path, &bytes)?;
    }
    if data.labels.is_none() {
        bail!("{source} has no labels (GLUE scores its test splits on its own server): evaluate on dev or a labelled file");
    }
    let scores = evaluate(&clf, &data, batch)?;
    let mut out = serde_json::to_value(&scores)?;
    out["split"] = serde_json::json!(source);
    println!("{out}");
    Ok(())
}

//! `isolab`: the command line of isotropy-lab.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use isotropy_lab::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::fetch::{self, FetchOptions};
use isotropy_lab::finetune::classifier::SequenceClassifier;
use isotropy_lab::finetune::data::TaskData;
use isotropy_lab::finetune::train::{evaluate, finetune, logits_all, Budget, FinetuneOptions};
use isotropy_lab::geometry::enhance::{enhance_embeddings, Method};
use isotropy_lab::geometry::table::{layer_table, Measure, MeasureOptions};
use isotropy_lab::glue::{Split, Task};
use isotropy_lab::model::Model;
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
        #[arg(long, value_delimiter = ',')]
        tasks: Vec<String>,
    },
    /// Extract token embeddings of every layer into DIR/hidden_states.safetensors and
    /// DIR/tokens.parquet.
    Extract {
        /// Model name, hub id or folder.
        #[arg(long)]
        model: String,
        /// GLUE task (sst2, mrpc, cola, rte, stsb, qnli, wnli).
        #[arg(long, required_unless_present = "sentences")]
        task: Option<String>,
        /// Split: train, dev or test.
        #[arg(long, default_value = "dev")]
        split: String,
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
        /// Drop the [CLS] and [SEP] rows.
        #[arg(long)]
        drop_special: bool,
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
        #[arg(long, default_value = "all")]
        metric: String,
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
        method: String,
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
    Finetune {
        /// GLUE task (sst2, mrpc, cola, rte, stsb; qnli and wnli where a training split exists).
        #[arg(long)]
        task: String,
        /// Base model: registry name, hub id or folder.
        #[arg(long, default_value = "minilm")]
        base: String,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// `default` (the task's default budget) or `quick` (40 steps on small samples, as the
        /// tests run); `ISOLAB_PROFILE=quick` selects quick too. The flags below override it.
        #[arg(long)]
        profile: Option<String>,
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
    },
    /// Score a fine-tuned model on a GLUE split or a labelled file in the task's GLUE format;
    /// prints the metrics as JSON.
    Evaluate {
        /// The fine-tuned model: folder, registry name or hub id.
        #[arg(long)]
        model: String,
        /// GLUE task.
        #[arg(long)]
        task: String,
        /// `dev`, `train`, `test` (no labels: refused), or the path of a TSV file.
        #[arg(long, default_value = "dev")]
        split: String,
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
    let cli = Cli::parse();
    if let Command::Finetune { .. } = cli.command {
        isotropy_lab::finetune::ops::elementwise_on_calling_thread();
    }
    match cli.command {
        Command::Fetch { what, tasks } => {
            let opts = FetchOptions::from_env();
            if what == "glue" {
                let tasks = if tasks.is_empty() {
                    Task::ALL.to_vec()
                } else {
                    tasks
                        .iter()
                        .map(|t| Task::parse(t))
                        .collect::<Result<Vec<_>>>()?
                };
                let dir = isotropy_lab::paths::glue_dir();
                let written = fetch::fetch_glue(&tasks, &dir, &opts)?;
                println!("GLUE in {}: {} files written", dir.display(), written.len());
            } else {
                let files = fetch::resolve_model_with(&what, &opts)?;
                println!("{what} ({}):", files.source);
                for p in [&files.config, &files.weights, &files.tokenizer] {
                    println!("  {}", p.display());
                }
            }
        }
        Command::Extract {
            model,
            task,
            split,
            sentences,
            layers,
            limit,
            seed,
            max_len,
            drop_special,
            out,
        } => {
            let source = match (task, sentences) {
                (_, Some(path)) => Source::sentences_file(&path)?,
                (Some(task), None) => Source::glue(Task::parse(&task)?, Split::parse(&split)?),
                (None, None) => bail!("give --task or --sentences"),
            };
            let opts = ExtractOptions {
                layers: parse_layers(&layers)?,
                keep_special: !drop_special,
                limit,
                seed,
                max_len,
                ..ExtractOptions::default()
            };
            let model = Model::load(&model)?;
            let emb = Embeddings::extract(&model, &source, &opts)?;
            emb.save(&out)?;
            println!(
                "{} tokens × {} layers written to {} ({} inputs truncated)",
                emb.num_tokens(),
                emb.layers.len(),
                out.display(),
                emb.truncated
            );
        }
        Command::Measure {
            input,
            metric,
            seed,
        } => {
            let emb = Embeddings::load(&input)?;
            let measures = if metric == "all" {
                Measure::ALL.to_vec()
            } else {
                metric
                    .split(',')
                    .map(|m| Measure::parse(m.trim()))
                    .collect::<Result<Vec<_>>>()?
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
        }
        Command::Enhance {
            input,
            method,
            k,
            d,
            seed,
            layers,
            out,
        } => {
            let method = Method::parse(&method, k, d)?;
            let emb = Embeddings::load(&input)?;
            let layers = parse_layers(&layers)?;
            let enhanced = enhance_embeddings(&emb, method, layers.as_deref(), seed)?;
            enhanced.save(&out)?;
            println!(
                "{}: {} tokens × {} layers written to {}",
                method.label(),
                enhanced.num_tokens(),
                enhanced.layers.len(),
                out.display()
            );
        }
        Command::Finetune {
            task,
            base,
            out,
            profile,
            epochs,
            steps,
            lr,
            batch,
            max_len,
            seed,
            restarts,
            eval_every,
            trace_every,
            train_limit,
            dev_limit,
        } => {
            let task = Task::parse(&task)?;
            let quick = match profile.as_deref() {
                Some("quick") => true,
                Some("default") => false,
                Some(other) => bail!("--profile '{other}': expected default or quick"),
                None => isotropy_lab::profile::quick(),
            };
            let mut opts = if quick {
                FinetuneOptions::quick(task, &base)
            } else {
                FinetuneOptions::default_for(task, &base)
            };
            if let Some(e) = epochs {
                opts.budget = Budget::Epochs(e);
            }
            if let Some(n) = steps {
                opts.budget = Budget::Steps(n);
            }
            if let Some(lr) = lr {
                opts.optimizer.lr = lr;
            }
            opts.batch_size = batch.unwrap_or(opts.batch_size);
            opts.max_len = max_len.unwrap_or(opts.max_len);
            opts.seed = seed.unwrap_or(opts.seed);
            opts.restarts = restarts.unwrap_or(opts.restarts);
            opts.eval_every = eval_every.unwrap_or(opts.eval_every);
            opts.trace_every = trace_every.unwrap_or(opts.trace_every);
            if train_limit.is_some() {
                opts.train_limit = train_limit;
            }
            if dev_limit.is_some() {
                opts.dev_limit = dev_limit;
            }
            let report = finetune(&opts, &out)?;
            println!("{}", serde_json::to_string(&report)?);
        }
        Command::Evaluate {
            model,
            task,
            split,
            max_len,
            batch,
            logits,
        } => {
            let task = Task::parse(&task)?;
            let (df, source) = match split.as_str() {
                "dev" | "train" | "test" => {
                    let s = Split::parse(&split)?;
                    (
                        isotropy_lab::glue::load(task, s)?,
                        format!("{task} {split}"),
                    )
                }
                path => {
                    let p = Path::new(path);
                    if !p.is_file() {
                        bail!("--split '{path}': not dev, train, test or an existing file");
                    }
                    (
                        isotropy_lab::glue::read_tsv(p, task, Split::Dev)?,
                        p.display().to_string(),
                    )
                }
            };
            let clf = SequenceClassifier::load(&model)?;
            let data = TaskData::new(&clf.model, task, &df, max_len, &source)?;
            if let Some(path) = logits {
                let t = logits_all(&clf, &data, batch)?;
                let bytes = safetensors::serialize([("logits", &t)], None)?;
                isotropy_lab::atomic::write_bytes(&path, &bytes)?;
            }
            if data.labels.is_none() {
                bail!("{source} has no labels (GLUE scores its test splits on its own server): evaluate on dev or a labelled file");
            }
            let scores = evaluate(&clf, &data, batch)?;
            let mut out = serde_json::to_value(&scores)?;
            out["split"] = serde_json::json!(source);
            println!("{out}");
        }
    }
    Ok(())
}

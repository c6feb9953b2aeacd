//! `isolab`: the command line of isotropy-lab.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use isotropy_lab::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::fetch::{self, FetchOptions};
use isotropy_lab::geometry::enhance::{enhance_embeddings, Method};
use isotropy_lab::geometry::table::{layer_table, Measure, MeasureOptions};
use isotropy_lab::glue::{Split, Task};
use isotropy_lab::model::Model;
use polars::prelude::AnyValue;
use std::path::PathBuf;

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
    }
    Ok(())
}

//! GLUE tasks as polars DataFrames with uniform columns.
//!
//! Every loader returns the columns `idx` (u32), `sentence1` (str), `sentence2` (str, null for
//! single-sentence tasks) and `label`: an integer class (i64) for classification tasks, a float
//! score (f64) for STS-B, null where the split has no labels (the test splits).
//!
//! Files are read from the standard GLUE layout (`<GLUE_DIR>/<TASK>/<split>.tsv`, as GLUE's own
//! download script writes it), or from `<split>.parquet` files with the uniform columns, which
//! `isolab fetch glue` writes from the Hugging Face Hub's `nyu-mll/glue` dataset.
//!
//! Quirks handled: files are split on tabs with quoting off (MRPC, RTE and QNLI contain literal
//! `"`), MRPC's UTF-8 BOM is stripped, CoLA has no header, SST-2's trailing space before the tab is
//! trimmed, string labels of RTE / QNLI are mapped as the Hub maps them (`entailment` = 0,
//! `not_entailment` = 1), STS-B's sentences are columns 7 and 8 and its score the last column.

use crate::data::fetch::{verify_hub_blob, FetchOptions};
use crate::util::atomic;
use crate::util::frame::Fresh;
use anyhow::{bail, Context, Result};
use hf_hub::{Repo, RepoType};
use polars::prelude::{
    ChunkCompareIneq, Column, DataFrame, DataType, ParquetReader, ParquetWriter, SerReader, Series,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// A GLUE task available here.
///
/// Parsed from its name in any case, with or without dashes ([`FromStr`]: `sst2`, `SST-2`,
/// `sts-b`); shown as GLUE's folder name ([`fmt::Display`]: `SST-2`); stored as the Hub's
/// configuration name (`sst2`).
///
/// ```
/// use isotropy_lab::data::glue::Task;
///
/// let task: Task = "STS-B".parse()?;
/// assert_eq!(task, Task::Stsb);
/// assert_eq!(task.to_string(), "STS-B");
/// assert_eq!(task.hub_config(), "stsb");
/// assert!("mnli".parse::<Task>().is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[value(rename_all = "lower")]
pub enum Task {
    /// Stanford Sentiment Treebank, binary.
    #[value(alias = "sst-2")]
    Sst2,
    /// Microsoft Research Paraphrase Corpus.
    Mrpc,
    /// Corpus of Linguistic Acceptability.
    Cola,
    /// Recognizing Textual Entailment.
    Rte,
    /// Semantic Textual Similarity Benchmark (regression, 0–5).
    #[value(alias = "sts-b")]
    Stsb,
    /// Question NLI (only dev and test offline).
    Qnli,
    /// Winograd NLI.
    Wnli,
}

/// A split of a task: `train`, `dev` (also `validation`, `val`) or `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Split {
    /// The training split.
    Train,
    /// The development (validation) split.
    #[value(alias = "validation", alias = "val")]
    Dev,
    /// The test split (no labels).
    Test,
}

impl Task {
    /// Every task, in GLUE's order.
    pub const ALL: [Task; 7] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Stsb,
        Task::Qnli,
        Task::Rte,
        Task::Wnli,
    ];

    /// The folder name in GLUE's layout (`SST-2`).
    pub fn dir_name(self) -> &'static str {
        match self {
            Task::Sst2 => "SST-2",
            Task::Mrpc => "MRPC",
            Task::Cola => "CoLA",
            Task::Rte => "RTE",
            Task::Stsb => "STS-B",
            Task::Qnli => "QNLI",
            Task::Wnli => "WNLI",
        }
    }

    /// The configuration name in the Hub's `nyu-mll/glue` dataset (`sst2`).
    pub fn hub_config(self) -> &'static str {
        match self {
            Task::Sst2 => "sst2",
            Task::Mrpc => "mrpc",
            Task::Cola => "cola",
            Task::Rte => "rte",
            Task::Stsb => "stsb",
            Task::Qnli => "qnli",
            Task::Wnli => "wnli",
        }
    }

    /// Whether the label is a real-valued score (STS-B) rather than a class.
    pub fn is_regression(self) -> bool {
        self == Task::Stsb
    }

    /// The class names, indexed by label (empty for STS-B).
    pub fn label_names(self) -> &'static [&'static str] {
        match self {
            Task::Sst2 => &["negative", "positive"],
            Task::Mrpc => &["not_equivalent", "equivalent"],
            Task::Cola => &["unacceptable", "acceptable"],
            Task::Rte | Task::Qnli => &["entailment", "not_entailment"],
            Task::Wnli => &["not_entailment", "entailment"],
            Task::Stsb => &[],
        }
    }

    /// Which columns hold what in GLUE's TSV file for `split`.
    fn layout(self, split: Split) -> Layout {
        let test = split == Split::Test;
        let l = |header, fields, idx, s1, s2, label| Layout {
            header,
            fields,
            idx,
            s1,
            s2,
            label,
        };
        match (self, test) {
            (Task::Sst2, false) => l(true, 2, None, 0, None, Some(1)),
            (Task::Sst2, true) => l(true, 2, Some(0), 1, None, None),
            (Task::Mrpc, false) => l(true, 5, None, 3, Some(4), Some(0)),
            (Task::Mrpc, true) => l(true, 5, Some(0), 3, Some(4), None),
            (Task::Cola, false) => l(false, 4, None, 3, None, Some(1)),
            (Task::Cola, true) => l(true, 2, Some(0), 1, None, None),
            (Task::Stsb, false) => l(true, 10, Some(0), 7, Some(8), Some(9)),
            (Task::Stsb, true) => l(true, 9, Some(0), 7, Some(8), None),
            (Task::Rte | Task::Qnli | Task::Wnli, false) => {
                l(true, 4, Some(0), 1, Some(2), Some(3))
            }
            (Task::Rte | Task::Qnli | Task::Wnli, true) => l(true, 3, Some(0), 1, Some(2), None),
        }
    }

    /// Parses a label field of this task's TSV files.
    fn parse_label(self, field: &str) -> Result<Label> {
        let field = field.trim();
        if self.is_regression() {
            let score: f64 = field
                .parse()
                .with_context(|| format!("bad score '{field}'"))?;
            if !(0.0..=5.0).contains(&score) {
                bail!("score {score} outside 0..5");
            }
            return Ok(Label::Score(score));
        }
        let names = self.label_names();
        let class = match field.parse::<i64>() {
            Ok(c) => c,
            Err(_) => names
                .iter()
                .position(|n| *n == field)
                .map(|p| p as i64)
                .with_context(|| format!("bad label '{field}' (expected 0, 1 or {names:?})"))?,
        };
        if class < 0 || class as usize >= names.len() {
            bail!("label {class} outside 0..{}", names.len());
        }
        Ok(Label::Class(class))
    }
}

impl FromStr for Task {
    type Err = anyhow::Error;

    /// Parses `sst2`, `SST-2`, `sts-b`, … (case and dashes ignored).
    fn from_str(name: &str) -> Result<Task> {
        let key: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_lowercase();
        match Task::ALL.into_iter().find(|t| t.hub_config() == key) {
            Some(task) => Ok(task),
            None => bail!(
                "unknown GLUE task '{name}': expected one of {}",
                Task::ALL.map(Task::hub_config).join(", ")
            ),
        }
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

impl Split {
    /// The file stem in GLUE's layout.
    pub fn file_stem(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }

    /// The split name in the Hub's `nyu-mll/glue` dataset.
    pub fn hub_name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "validation",
            Split::Test => "test",
        }
    }
}

impl FromStr for Split {
    type Err = anyhow::Error;

    /// Parses `train`, `dev` (or `validation`, `val`), `test`, in any case (the names and aliases
    /// of the command line).
    fn from_str(name: &str) -> Result<Split> {
        <Split as clap::ValueEnum>::from_str(name, true)
            .map_err(|_| anyhow::anyhow!("unknown split '{name}': expected train, dev or test"))
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_stem())
    }
}

struct Layout {
    header: bool,
    fields: usize,
    idx: Option<usize>,
    s1: usize,
    s2: Option<usize>,
    label: Option<usize>,
}

enum Label {
    Class(i64),
    Score(f64),
}

/// Loads `task`/`split` from [`crate::util::paths::glue_dir`] (`GLUE_DIR`).
pub fn load(task: Task, split: Split) -> Result<DataFrame> {
    load_from(&crate::util::paths::glue_dir(), task, split)
}

/// The file a split is read from under `glue_dir`: the TSV if present, else the parquet.
pub fn split_path(glue_dir: &Path, task: Task, split: Split) -> Result<PathBuf> {
    let dir = glue_dir.join(task.dir_name());
    let tsv = dir.join(format!("{}.tsv", split.file_stem()));
    let parquet = dir.join(format!("{}.parquet", split.file_stem()));
    if tsv.is_file() {
        Ok(tsv)
    } else if parquet.is_file() {
        Ok(parquet)
    } else {
        bail!(
            "no {task} {split} data: neither {} nor {} exists (set GLUE_DIR, link ../shared/data/glue, or run `isolab fetch glue`)",
            tsv.display(),
            parquet.display()
        )
    }
}

/// Loads `task`/`split` from a GLUE folder.
pub fn load_from(glue_dir: &Path, task: Task, split: Split) -> Result<DataFrame> {
    let path = split_path(glue_dir, task, split)?;
    if path.extension().is_some_and(|e| e == "parquet") {
        let file =
            std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let df = ParquetReader::new(file)
            .finish()
            .with_context(|| format!("reading {}", path.display()))?;
        check_uniform(&df, task).with_context(|| format!("in {}", path.display()))?;
        return Ok(df.fresh());
    }
    read_tsv(&path, task, split)
}

/// Reads one GLUE TSV file; an error names the file and line.
pub fn read_tsv(path: &Path, task: Task, split: Split) -> Result<DataFrame> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let layout = task.layout(split);
    let mut idx: Vec<u32> = Vec::new();
    let mut s1: Vec<String> = Vec::new();
    let mut s2: Vec<Option<String>> = Vec::new();
    let mut classes: Vec<Option<i64>> = Vec::new();
    let mut scores: Vec<Option<f64>> = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        if line_no == 0 && layout.header {
            continue;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), line_no + 1);
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != layout.fields {
            bail!(
                "{}: expected {} tab-separated fields for {task} {split}, found {}",
                at(),
                layout.fields,
                fields.len()
            );
        }
        let row = s1.len() as u32;
        idx.push(match layout.idx {
            Some(c) => fields[c]
                .trim()
                .parse()
                .with_context(|| format!("{}: bad index '{}'", at(), fields[c]))?,
            None => row,
        });
        s1.push(fields[layout.s1].trim_end().to_string());
        s2.push(layout.s2.map(|c| fields[c].trim_end().to_string()));
        match layout
            .label
            .map(|c| task.parse_label(fields[c]))
            .transpose()
            .with_context(at)?
        {
            Some(Label::Class(c)) => classes.push(Some(c)),
            Some(Label::Score(s)) => scores.push(Some(s)),
            None if task.is_regression() => scores.push(None),
            None => classes.push(None),
        }
    }
    let label = if task.is_regression() {
        Column::new("label".into(), scores)
    } else {
        Column::new("label".into(), classes)
    };
    let df = DataFrame::new_infer_height(vec![
        Column::new("idx".into(), idx),
        Column::new("sentence1".into(), s1),
        Column::new("sentence2".into(), s2),
        label,
    ])?;
    Ok(df)
}

/// Checks that a DataFrame has the uniform GLUE columns and types.
pub fn check_uniform(df: &DataFrame, task: Task) -> Result<()> {
    let label_type = if task.is_regression() {
        DataType::Float64
    } else {
        DataType::Int64
    };
    for (name, dtype) in [
        ("idx", DataType::UInt32),
        ("sentence1", DataType::String),
        ("sentence2", DataType::String),
        ("label", label_type),
    ] {
        let col = df
            .column(name)
            .with_context(|| format!("missing column '{name}'"))?;
        if col.dtype() != &dtype && !(col.dtype() == &DataType::Null && name == "sentence2") {
            bail!("column '{name}' has type {}, expected {dtype}", col.dtype());
        }
    }
    Ok(())
}

/// Downloads GLUE tasks from the Hub's `nyu-mll/glue` dataset (parquet) into `glue_dir`, as
/// `<TASK>/<split>.parquet` files with the uniform columns of this module. Splits already
/// present (as TSV or parquet) are skipped. Returns the files written.
pub fn fetch_glue(tasks: &[Task], glue_dir: &Path, opts: &FetchOptions) -> Result<Vec<PathBuf>> {
    if opts.offline {
        bail!("HF_HUB_OFFLINE is set: cannot download GLUE from the hub");
    }
    let api = opts.api()?;
    let repo = api.repo(Repo::new("nyu-mll/glue".to_string(), RepoType::Dataset));
    let mut written = Vec::new();
    for &task in tasks {
        for split in [Split::Train, Split::Dev, Split::Test] {
            if split_path(glue_dir, task, split).is_ok() {
                continue;
            }
            let remote = format!(
                "{}/{}-00000-of-00001.parquet",
                task.hub_config(),
                split.hub_name()
            );
            let local = repo
                .get(&remote)
                .with_context(|| format!("downloading nyu-mll/glue {remote}"))?;
            verify_hub_blob(&local)?;
            let file = std::fs::File::open(&local)?;
            let raw = ParquetReader::new(file)
                .finish()
                .with_context(|| format!("reading {remote}"))?;
            let mut df =
                hub_to_uniform(&raw, task).with_context(|| format!("converting {remote}"))?;
            let out = glue_dir
                .join(task.dir_name())
                .join(format!("{}.parquet", split.file_stem()));
            atomic::write_file(&out, |f| {
                ParquetWriter::new(f).finish(&mut df)?;
                Ok(())
            })?;
            written.push(out);
        }
    }
    Ok(written)
}

/// Maps the Hub's GLUE columns to the uniform ones. The Hub marks missing test labels as -1.
fn hub_to_uniform(raw: &DataFrame, task: Task) -> Result<DataFrame> {
    let (first, second) = match task {
        Task::Sst2 | Task::Cola => ("sentence", None),
        Task::Qnli => ("question", Some("sentence")),
        _ => ("sentence1", Some("sentence2")),
    };
    let n = raw.height();
    let idx = raw
        .column("idx")?
        .cast(&DataType::UInt32)?
        .with_name("idx".into());
    let s1 = raw
        .column(first)?
        .cast(&DataType::String)?
        .with_name("sentence1".into());
    let s2 = match second {
        Some(c) => raw
            .column(c)?
            .cast(&DataType::String)?
            .with_name("sentence2".into()),
        None => Column::full_null("sentence2".into(), n, &DataType::String),
    };
    let label_type = if task.is_regression() {
        DataType::Float64
    } else {
        DataType::Int64
    };
    let label = raw.column("label")?.cast(&label_type)?;
    let missing = label.as_materialized_series().lt(0)?;
    let label = label
        .as_materialized_series()
        .zip_with(
            &!missing,
            &Series::full_null("label".into(), n, &label_type),
        )?
        .with_name("label".into());
    let df = DataFrame::new_infer_height(vec![idx, s1, s2, label.into()])?;
    check_uniform(&df, task)?;
    Ok(df)
}

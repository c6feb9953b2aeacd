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

use std::path::PathBuf;

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

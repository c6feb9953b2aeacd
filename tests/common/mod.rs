//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Once;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Points the extraction cache at a folder of the test build, once per test binary, and checks
/// that the setup steps the tests rely on have run.
pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("ISOLAB_CACHE", root().join("target").join("test-cache"));
        let glue = isotropy_lab::util::paths::glue_dir();
        assert!(
            glue.join("SST-2").join("dev.tsv").is_file(),
            "GLUE data not found in {}: run `bash scripts/setup.sh` (it links ../shared/data/glue) or set GLUE_DIR",
            glue.display()
        );
    });
}

/// The `minilm` model folder, fetched by `bash scripts/setup.sh` (`isolab fetch minilm`).
pub fn minilm_dir() -> PathBuf {
    let dir = isotropy_lab::util::paths::models_dir().join("minilm");
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} is missing: run `bash scripts/setup.sh` (or `cargo run -- fetch minilm`) first",
        dir.display()
    );
    dir
}

/// Writes `vocab.txt` (one token per line, in id order) from a `tokenizer.json`'s WordPiece
/// vocabulary, as older BERT checkpoints ship it.
pub fn write_vocab_txt(tokenizer_json: &std::path::Path, dest: &std::path::Path) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tokenizer_json).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    let mut tokens: Vec<(u64, &str)> = vocab
        .iter()
        .map(|(t, id)| (id.as_u64().unwrap(), t.as_str()))
        .collect();
    tokens.sort();
    assert!(
        tokens
            .iter()
            .enumerate()
            .all(|(i, (id, _))| i as u64 == *id),
        "vocabulary ids are not 0..n"
    );
    let lines: Vec<&str> = tokens.iter().map(|(_, t)| *t).collect();
    std::fs::write(dest, lines.join("\n") + "\n").unwrap();
}

/// A temporary copy of the minilm folder, for tests that damage it.
pub fn minilm_copy() -> tempfile::TempDir {
    let src = minilm_dir();
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

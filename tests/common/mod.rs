//! Helpers shared by the integration tests.
#![allow(dead_code)]

use isotropy_lab::util::hash::sha256_file;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Once};
use tiny_http::{Header, Response, Server};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// minilm's embedding layer and last layer (hidden states 0 and 6) for the first `limit`
/// sentences of `task`'s `split` in the order `seed` draws them, with the default protocol.
pub fn extract_minilm(
    task: isotropy_lab::data::glue::Task,
    split: isotropy_lab::data::glue::Split,
    limit: usize,
    seed: u64,
) -> isotropy_lab::analysis::extract::Embeddings {
    use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
    setup();
    let files = isotropy_lab::data::fetch::resolve_model(minilm_dir().to_str().unwrap()).unwrap();
    let model =
        isotropy_lab::nn::model::Model::load_files(files, &candle_core::Device::Cpu).unwrap();
    let opts = ExtractOptions {
        limit: Some(limit),
        seed,
        layers: Some(vec![0, 6]),
        ..ExtractOptions::default()
    };
    Embeddings::extract(&model, &Source::glue(task, split), &opts).unwrap()
}

/// The project's Python (`.venv`, with the Jupyter pieces setup installs), after [`setup`] and a
/// check that minilm is fetched: what the tests that run notebooks start from.
pub fn notebook_python() -> PathBuf {
    setup();
    minilm_dir();
    let python = root().join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh`",
        python.display()
    );
    python
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

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// A local Hugging Face Hub: serves `files` (URL path → local file, in the hub's layout
/// `/{repo}/resolve/{revision}/{file}`) with the headers hf-hub reads (`x-repo-commit`, `etag` /
/// `x-linked-etag`, `content-range`) until the test process ends; returns the endpoint.
pub fn serve_hub(files: HashMap<String, PathBuf>) -> String {
    let server = Arc::new(Server::http("127.0.0.1:0").unwrap());
    let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
    std::thread::spawn(move || {
        for request in server.incoming_requests() {
            let path = request.url().split('?').next().unwrap_or("").to_string();
            let Some(file) = files.get(&path) else {
                let _ =
                    request.respond(Response::from_string("Entry not found").with_status_code(404));
                continue;
            };
            let bytes = std::fs::read(file).unwrap();
            let size = bytes.len();
            let start = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Range"))
                .and_then(|h| h.value.as_str().strip_prefix("bytes=").map(String::from))
                .map(|r| {
                    let (a, b) = r.split_once('-').unwrap();
                    let a: usize = a.parse().unwrap();
                    let b: usize = if b.is_empty() {
                        size - 1
                    } else {
                        b.parse().unwrap()
                    };
                    (a, b.min(size - 1))
                });
            let sha = sha256_file(file).unwrap();
            let h = |k: &str, v: &str| Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
            let (body, range) = match start {
                Some((a, b)) => (bytes[a..=b].to_vec(), format!("bytes {a}-{b}/{size}")),
                None => (bytes.clone(), format!("bytes 0-{}/{size}", size - 1)),
            };
            let response = Response::from_data(body)
                .with_status_code(206)
                .with_header(h("x-repo-commit", COMMIT))
                .with_header(h("x-linked-etag", &format!("\"{sha}\"")))
                .with_header(h("etag", &format!("\"{sha}\"")))
                .with_header(h("content-range", &range));
            let _ = request.respond(response);
        }
    });
    endpoint
}

/// Runs the `isolab` binary with `args` (models and GLUE set up; the cache in
/// `target/test-cache`).
pub fn isolab(args: &[&str]) -> Output {
    setup();
    Command::new(env!("CARGO_BIN_EXE_isolab"))
        .args(args)
        .env("ISOLAB_CACHE", root().join("target").join("test-cache"))
        .output()
        .expect("isolab runs")
}

/// The stdout of a run that must succeed (its stdout and stderr shown when it did not).
pub fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "isolab failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The stderr of a run that must fail.
pub fn err(out: Output) -> String {
    assert!(!out.status.success(), "isolab should have failed");
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Starts `isolab finetune` with `args` (whose output folder is `out`), kills it once its
/// checkpoint (`out/checkpoint/state.json`) records `at_least` steps, and returns that state.
pub fn kill_after_checkpoint(
    args: &[String],
    out: &std::path::Path,
    at_least: u64,
) -> serde_json::Value {
    use std::time::{Duration, Instant};
    let state = out.join("checkpoint").join("state.json");
    // A checkpoint being replaced is briefly absent: read as not there yet.
    let read = || -> Option<serde_json::Value> {
        serde_json::from_str(&std::fs::read_to_string(&state).ok()?).ok()
    };
    setup();
    let mut child = Command::new(env!("CARGO_BIN_EXE_isolab"))
        .args(args)
        .env("ISOLAB_CACHE", root().join("target").join("test-cache"))
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("isolab starts");
    let start = Instant::now();
    while read().is_none_or(|s| s["step"].as_u64().unwrap_or(0) < at_least) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "no checkpoint of step {at_least} after 5 minutes"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    read().expect("the checkpoint is there")
}

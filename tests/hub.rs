//! The Hugging Face Hub download path, against a local HTTP server that serves the hub's URL
//! layout (`/{repo}/resolve/{revision}/{file}`, `/datasets/{repo}/resolve/…`) with the headers
//! hf-hub reads (`x-repo-commit`, `etag` / `x-linked-etag`, `content-range`).

mod common;

use isotropy_lab::data::fetch::{resolve_model_with, FetchOptions};
use isotropy_lab::data::glue::fetch_glue;
use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::util::hash::sha256_file;
use polars::prelude::*;
use std::collections::HashMap;

fn options(endpoint: &str, cache: &std::path::Path) -> FetchOptions {
    FetchOptions {
        hf_cache: Some(cache.to_path_buf()),
        endpoint: Some(endpoint.to_string()),
        offline: false,
        use_wheel: false,
        models_dir: cache.join("unused-models"),
    }
}

#[test]
fn model_comes_from_the_hub_then_from_its_cache() {
    let src = common::minilm_dir();
    let mut files = HashMap::new();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        files.insert(
            format!("/sentence-transformers/all-MiniLM-L6-v2/resolve/main/{name}"),
            src.join(name),
        );
    }
    // A checkpoint with only vocab.txt, like textattack/bert-base-uncased-SST-2.
    let vocab_dir = tempfile::tempdir().unwrap();
    common::write_vocab_txt(
        &src.join("tokenizer.json"),
        &vocab_dir.path().join("vocab.txt"),
    );
    files.insert(
        "/someone/vocab-only-bert/resolve/main/vocab.txt".into(),
        vocab_dir.path().join("vocab.txt"),
    );
    for name in ["config.json", "model.safetensors"] {
        files.insert(
            format!("/someone/vocab-only-bert/resolve/main/{name}"),
            src.join(name),
        );
    }
    let endpoint = common::serve_hub(files);
    let cache = tempfile::tempdir().unwrap();
    let opts = options(&endpoint, cache.path());

    let got = resolve_model_with("minilm", &opts).unwrap();
    assert_eq!(got.source, "hub");
    assert_eq!(
        sha256_file(&got.weights).unwrap(),
        sha256_file(&src.join("model.safetensors")).unwrap()
    );
    assert!(got.weights.starts_with(cache.path()));

    // Second time: from the cache, even with the hub unreachable.
    let offline = FetchOptions {
        offline: true,
        ..opts.clone()
    };
    let again = resolve_model_with("minilm", &offline).unwrap();
    assert_eq!(again.source, "hf-cache");
    assert_eq!(again.weights, got.weights);

    let vocab_only = resolve_model_with("someone/vocab-only-bert", &opts).unwrap();
    assert_eq!(vocab_only.source, "hub");
    assert!(vocab_only.tokenizer.ends_with("vocab.txt"));

    // A hub id that the server does not have: a clear error naming it.
    let err = format!(
        "{:#}",
        resolve_model_with("nobody/no-such-model", &opts).unwrap_err()
    );
    assert!(err.contains("nobody/no-such-model"), "{err}");
}

#[test]
fn glue_comes_from_the_hub_as_parquet() {
    common::setup();
    // Parquet files in the hub's nyu-mll/glue column layout, made from the real TSV files.
    let staging = tempfile::tempdir().unwrap();
    let mut files = HashMap::new();
    for split in [Split::Train, Split::Dev, Split::Test] {
        let df = glue::load(Task::Sst2, split).unwrap();
        let label = df
            .column("label")
            .unwrap()
            .i64()
            .unwrap()
            .apply(|v| Some(v.unwrap_or(-1)));
        let mut hub = DataFrame::new_infer_height(vec![
            df.column("sentence1")
                .unwrap()
                .clone()
                .with_name("sentence".into()),
            label.into_series().with_name("label".into()).into(),
            df.column("idx").unwrap().cast(&DataType::Int32).unwrap(),
        ])
        .unwrap();
        let path = staging.path().join(format!("{}.parquet", split.hub_name()));
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut hub)
            .unwrap();
        files.insert(
            format!(
                "/datasets/nyu-mll/glue/resolve/main/sst2/{}-00000-of-00001.parquet",
                split.hub_name()
            ),
            path,
        );
    }
    let endpoint = common::serve_hub(files);
    let cache = tempfile::tempdir().unwrap();
    let glue_dir = tempfile::tempdir().unwrap();
    let written = fetch_glue(
        &[Task::Sst2],
        glue_dir.path(),
        &options(&endpoint, cache.path()),
    )
    .unwrap();
    assert_eq!(written.len(), 3);
    for split in [Split::Train, Split::Dev, Split::Test] {
        let fetched = glue::load_from(glue_dir.path(), Task::Sst2, split).unwrap();
        let tsv = glue::load(Task::Sst2, split).unwrap();
        assert!(
            fetched.equals_missing(&tsv),
            "{split}: fetched parquet differs from the TSV"
        );
    }
    // Idempotent: nothing left to fetch.
    assert!(fetch_glue(
        &[Task::Sst2],
        glue_dir.path(),
        &options(&endpoint, cache.path())
    )
    .unwrap()
    .is_empty());
}

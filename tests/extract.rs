//! Extraction on a real model and real data: the token table, layers, caching, the CLI contract.

mod common;

use candle_core::Device;
use isotropy_lab::analysis::extract::{cache_entry, Embeddings, ExtractOptions, Source};
use isotropy_lab::analysis::protocol::Protocol;
use isotropy_lab::data::fetch::resolve_model;
use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::nn::model::Model;
use isotropy_lab::util::hash::hex;
use polars::prelude::{ParquetReader, SerReader};
use std::process::Command;

fn minilm() -> Model {
    common::setup();
    Model::load_files(
        resolve_model(common::minilm_dir().to_str().unwrap()).unwrap(),
        &Device::Cpu,
    )
    .unwrap()
}

#[test]
fn token_table_lines_up_with_the_matrices() {
    let model = minilm();
    let source = Source::glue(Task::Sst2, Split::Dev);
    let opts = ExtractOptions {
        limit: Some(12),
        seed: 3,
        keep_special: true,
        ..ExtractOptions::default()
    };
    let emb = Embeddings::extract_uncached(&model, &source, &opts).unwrap();
    assert_eq!(emb.layers, (0..=6).collect::<Vec<_>>());
    for m in &emb.matrices {
        assert_eq!((m.rows(), m.cols()), (emb.num_tokens(), 384));
    }
    let t = &emb.tokens;
    let ids: Vec<u32> = t
        .column("sentence_id")
        .unwrap()
        .u32()
        .unwrap()
        .no_null_iter()
        .collect();
    let mut sentences = ids.clone();
    sentences.dedup();
    assert_eq!(
        sentences.len(),
        12,
        "a seeded sample of 12 sentences, in file order"
    );
    assert!(sentences.windows(2).all(|w| w[0] < w[1]));

    // Each sentence starts with [CLS] and ends with [SEP]; labels are the sentences' labels.
    let dev = glue::load(Task::Sst2, Split::Dev).unwrap();
    let dev_labels = dev.column("label").unwrap().i64().unwrap();
    let token = t.column("token").unwrap().str().unwrap();
    let label = t.column("label").unwrap().i64().unwrap();
    let class = t.column("token_class").unwrap().str().unwrap();
    let freq = t.column("frequency").unwrap().u64().unwrap();
    for i in 0..t.height() {
        let first = i == 0 || ids[i] != ids[i - 1];
        let last = i + 1 == t.height() || ids[i] != ids[i + 1];
        if first {
            assert_eq!(token.get(i), Some("[CLS]"));
        }
        if last {
            assert_eq!(token.get(i), Some("[SEP]"));
        }
        assert_eq!(label.get(i), dev_labels.get(ids[i] as usize));
        if token.get(i) == Some(".") {
            assert_eq!(class.get(i), Some("punctuation"));
            assert!(
                freq.get(i).unwrap() > 10_000,
                "'.' is frequent in SST-2 train"
            );
        }
        if token.get(i) == Some("the") {
            assert_eq!(class.get(i), Some("stop word"));
        }
    }
    // Row i of a layer matrix is the hidden state of token i: the embedding-layer output of a
    // token depends on its id, position and segment only, so equal (id, position) rows are equal.
    let tid = t.column("token_id").unwrap().u32().unwrap();
    let pos = t.column("position").unwrap().u32().unwrap();
    let layer0 = emb.layer(0).unwrap();
    let cls: Vec<usize> = (0..t.height())
        .filter(|&i| tid.get(i) == Some(101) && pos.get(i) == Some(0))
        .collect();
    assert_eq!(cls.len(), 12);
    for &i in &cls[1..] {
        assert_eq!(layer0.row(i), layer0.row(cls[0]));
    }

    // The default protocol (the authors') drops [CLS]/[SEP]: exactly two rows per sentence, and
    // the protocol caption says so, read from the token tables.
    let opts2 = ExtractOptions {
        limit: Some(12),
        seed: 3,
        layers: Some(vec![6]),
        ..ExtractOptions::default()
    };
    let dropped = Embeddings::extract_uncached(&model, &source, &opts2).unwrap();
    let protocol = Protocol::default();
    assert!(protocol
        .caption(&[&dropped])
        .contains("[CLS] and [SEP] removed"));
    assert!(protocol.caption(&[&emb]).contains("kept"));
    let special = emb.tokens.column("is_special").unwrap().bool().unwrap();
    let ordinary: Vec<usize> = (0..emb.num_tokens())
        .filter(|&i| special.get(i) == Some(false))
        .collect();
    assert_eq!(
        dropped.layer(6).unwrap(),
        &emb.layer(6).unwrap().select_rows(&ordinary).unwrap(),
        "the dropped rows are the special ones; the rest are unchanged"
    );
    assert_eq!(dropped.num_tokens(), emb.num_tokens() - 24);
    assert_eq!(dropped.layers, vec![6]);
    assert!(!dropped
        .tokens
        .column("is_special")
        .unwrap()
        .bool()
        .unwrap()
        .any());
}

#[test]
fn cache_returns_the_same_embeddings_and_pairs_use_segments() {
    let model = minilm();
    let source = Source::glue(Task::Mrpc, Split::Dev);
    let opts = ExtractOptions {
        limit: Some(5),
        layers: Some(vec![0, 6]),
        ..ExtractOptions::default()
    };
    let first = Embeddings::extract(&model, &source, &opts).unwrap();
    let second = Embeddings::extract(&model, &source, &opts).unwrap();
    assert_eq!(first.matrices, second.matrices);
    assert!(first.tokens.equals_missing(&second.tokens));
    let seg = first.tokens.column("segment").unwrap().u32().unwrap();
    assert!(
        seg.no_null_iter().any(|s| s == 1),
        "sentence pairs carry segment 1 tokens"
    );
}

#[test]
fn cli_extract_and_measure_contract() {
    common::setup();
    common::minilm_dir();
    let out = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_isolab");
    let status = Command::new(bin)
        .args([
            "extract", "--model", "minilm", "--task", "sst2", "--split", "dev", "--layers", "0,6",
            "--limit", "8", "--out",
        ])
        .arg(out.path())
        .status()
        .unwrap();
    assert!(status.success());
    let emb = Embeddings::load(out.path()).unwrap();
    assert_eq!(emb.layers, vec![0, 6]);
    let bytes = std::fs::read(out.path().join("hidden_states.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    assert_eq!(names, vec!["layer_0", "layer_6"]);
    assert_eq!(
        st.tensor("layer_6").unwrap().dtype(),
        safetensors::Dtype::F32
    );

    let output = Command::new(bin)
        .args(["measure", "--in"])
        .arg(out.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (line, layer) in lines.iter().zip([0, 6]) {
        assert_eq!(line["layer"], layer);
        let iso = line["isotropy"].as_f64().unwrap();
        let cos = line["mean_cosine"].as_f64().unwrap();
        assert!(iso > 0.0 && iso <= 1.0 && cos > -1.0 && cos < 1.0, "{line}");
    }

    // A sentences file instead of a task.
    let file = out.path().join("sentences.txt");
    std::fs::write(
        &file,
        "The cat sat on the mat.\nA second sentence, with punctuation!\n",
    )
    .unwrap();
    let out2 = out.path().join("sentences-out");
    let status = Command::new(bin)
        .args(["extract", "--model", "minilm", "--sentences"])
        .arg(&file)
        .args(["--layers", "6", "--out"])
        .arg(&out2)
        .status()
        .unwrap();
    assert!(status.success());
    let emb = Embeddings::load(&out2).unwrap();
    assert_eq!(
        emb.tokens
            .column("sentence_id")
            .unwrap()
            .n_unique()
            .unwrap(),
        2
    );
    assert_eq!(
        emb.tokens.column("frequency").unwrap().null_count(),
        emb.num_tokens()
    );

    // Bad arguments: a clear error, non-zero exit.
    let output = Command::new(bin)
        .args([
            "extract", "--model", "minilm", "--task", "sst2", "--layers", "0,9", "--out",
        ])
        .arg(out.path().join("x"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("layer 9"));
}

#[test]
fn cli_enhance_contract() {
    common::setup();
    common::minilm_dir();
    let dir = tempfile::tempdir().unwrap();
    let (input, enhanced) = (dir.path().join("in"), dir.path().join("cluster-based"));
    let bin = env!("CARGO_BIN_EXE_isolab");
    let status = Command::new(bin)
        .args([
            "extract", "--model", "minilm", "--task", "sst2", "--layers", "0,6", "--limit", "24",
            "--out",
        ])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let original = Embeddings::load(&input).unwrap();

    let output = Command::new(bin)
        .args(["enhance", "--in"])
        .arg(&input)
        .args([
            "--method",
            "cluster-based",
            "--k",
            "3",
            "--d",
            "2",
            "--seed",
            "1",
            "--layers",
            "6",
            "--out",
        ])
        .arg(&enhanced)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out = Embeddings::load(&enhanced).unwrap();
    assert_eq!(out.layers, vec![6], "only the enhanced layers are written");
    assert_eq!(out.num_tokens(), original.num_tokens());
    assert!(
        out.tokens.equals_missing(&original.tokens),
        "same token table"
    );
    assert_eq!(out.meta["enhancement"], "cluster-based k=3 d=2 seed=1");
    // The same method through the library gives the same matrix.
    let method = isotropy_lab::geometry::enhance::Method::ClusterBased { k: 3, d: 2 };
    let expected = method.apply(original.layer(6).unwrap(), 1).unwrap();
    assert_eq!(out.layer(6).unwrap(), &expected);

    // Zero-mean on every layer, then every measure on the result.
    let zero = dir.path().join("zero-mean");
    let status = Command::new(bin)
        .args(["enhance", "--in"])
        .arg(&input)
        .args(["--method", "zero-mean", "--out"])
        .arg(&zero)
        .status()
        .unwrap();
    assert!(status.success());
    let z = Embeddings::load(&zero).unwrap();
    assert_eq!(z.layers, vec![0, 6]);
    let m = z.layer(6).unwrap();
    for j in 0..m.cols() {
        let mean: f64 =
            (0..m.rows()).map(|i| f64::from(m.row(i)[j])).sum::<f64>() / m.rows() as f64;
        assert!(mean.abs() < 1e-5, "column {j} mean {mean}");
    }
    let output = Command::new(bin)
        .args(["measure", "--metric", "all", "--in"])
        .arg(&zero)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for key in [
        "isotropy",
        "isotropy_both_signs",
        "mean_cosine",
        "isoscore",
        "participation_ratio",
        "pc90",
        "dominant",
        "rogue_dim",
        "rogue_share",
        "self_similarity",
        "intra_sentence",
        "clusters",
        "silhouette",
        "cluster_isotropy",
        "local_dimension",
    ] {
        assert!(
            first.get(key).is_some(),
            "measure output lacks {key}: {first}"
        );
    }
    // Zero-mean removes the common direction: mean cosine near 0.
    let cos = first["mean_cosine"].as_f64().unwrap();
    assert!(cos.abs() < 0.05, "mean cosine after zero-mean {cos}");

    // Bad parameters: clear errors naming the value.
    let output = Command::new(bin)
        .args(["enhance", "--in"])
        .arg(&input)
        .args(["--method", "global", "--d", "384", "--out"])
        .arg(dir.path().join("bad"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("D = 384") && err.contains("384 dimensions"),
        "{err}"
    );
    assert!(
        !dir.path().join("bad").exists(),
        "nothing written on failure"
    );
}

/// The token frequencies of a task's training split are counted once and cached on disk: the
/// cached table equals a fresh count, a later extraction reads it without writing it again, and
/// an unreadable one is reported, counted again and replaced.
#[test]
fn training_frequencies_are_cached_and_recounted_when_unreadable() {
    let model = minilm();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let extract = |out: &str| {
        // A fresh embedding cache each time, so that every run reads the frequency table.
        let _ = std::fs::remove_dir_all(cache.join("extract"));
        let output = Command::new(env!("CARGO_BIN_EXE_isolab"))
            .env("ISOLAB_CACHE", &cache)
            .args([
                "extract", "--model", "minilm", "--task", "cola", "--split", "dev", "--layers",
                "6", "--limit", "8", "--out",
            ])
            .arg(tmp.path().join(out))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        let emb = Embeddings::load(&tmp.path().join(out)).unwrap();
        let freq: Vec<Option<u64>> = emb
            .tokens
            .column("frequency")
            .unwrap()
            .u64()
            .unwrap()
            .iter()
            .collect();
        (freq, stderr)
    };
    let tables = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(cache.join("frequencies"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    };
    let (first, _) = extract("a");
    let files = tables();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = &files[0];

    // The cached table is a count of every token id of CoLA's training split.
    let train = glue::load(Task::Cola, Split::Train).unwrap();
    let inputs: Vec<(String, Option<String>)> = train
        .column("sentence1")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|s| (s.unwrap().to_string(), None))
        .collect();
    let (encodings, _) = model.tokenize(&inputs, 128).unwrap();
    let mut fresh = std::collections::HashMap::new();
    for e in &encodings {
        for &id in e.get_ids() {
            *fresh.entry(id).or_insert(0u64) += 1;
        }
    }
    let read = || {
        ParquetReader::new(std::fs::File::open(file).unwrap())
            .finish()
            .unwrap()
    };
    let table = read();
    let ids = table.column("token_id").unwrap().u32().unwrap();
    let counts = table.column("count").unwrap().u64().unwrap();
    let cached: std::collections::HashMap<u32, u64> = ids
        .iter()
        .zip(counts.iter())
        .map(|(i, n)| (i.unwrap(), n.unwrap()))
        .collect();
    assert_eq!(cached, fresh);
    assert!(first.iter().all(Option::is_some));

    // Read again, not rewritten.
    let written = std::fs::metadata(file).unwrap().modified().unwrap();
    let (second, _) = extract("b");
    assert_eq!(second, first);
    assert_eq!(
        std::fs::metadata(file).unwrap().modified().unwrap(),
        written
    );

    // Unreadable: reported, counted again, replaced.
    std::fs::write(file, b"not a parquet file").unwrap();
    let (third, stderr) = extract("c");
    assert_eq!(third, first);
    assert!(
        stderr.contains("ignoring an unreadable cache entry"),
        "{stderr}"
    );
    assert_eq!(tables(), files);
    let table = polars::prelude::ParquetReader::new(std::fs::File::open(file).unwrap());
    assert_eq!(
        polars::prelude::SerReader::finish(table).unwrap().height(),
        fresh.len()
    );
}

#[test]
fn a_request_for_some_layers_is_read_from_the_entry_of_every_layer() {
    let model = minilm();
    // Sentences of this test alone: no other test (or earlier code) writes their cache entries.
    let source = Source::Sentences {
        name: "the layer-subset test".into(),
        sentences: vec![
            "Only the requested hidden states are read back.".into(),
            "The entry of every hidden state answers a narrower request.".into(),
        ],
    };
    let every = ExtractOptions::default();
    let some = ExtractOptions {
        layers: Some(vec![6, 2]),
        ..ExtractOptions::default()
    };
    // An entry of the narrower request left by an older build would answer it directly.
    let _ = std::fs::remove_dir_all(cache_entry(&model, &source, &some).unwrap());
    let all = Embeddings::extract(&model, &source, &every).unwrap();
    let entry = cache_entry(&model, &source, &every).unwrap();
    assert!(entry.join("hidden_states.safetensors").is_file());

    let read = Embeddings::extract(&model, &source, &some).unwrap();
    assert_eq!(read.layers, vec![2, 6]);
    let fresh = Embeddings::extract_uncached(&model, &source, &some).unwrap();
    assert_eq!(
        read.matrices, fresh.matrices,
        "the same values as an extraction of just those hidden states"
    );
    assert_eq!(read.layer(6).unwrap(), all.layer(6).unwrap());
    assert!(read.tokens.equals_missing(&fresh.tokens));
    assert_eq!(
        read.meta, fresh.meta,
        "the facts of the request, not of the entry"
    );
    assert!(
        !cache_entry(&model, &source, &some).unwrap().exists(),
        "served from the entry of every hidden state, not extracted and stored again"
    );

    let err = format!(
        "{:#}",
        Embeddings::load_layers(&entry, &[2, 9]).unwrap_err()
    );
    assert!(
        err.contains("hidden state 9 is not stored") && err.contains(&entry.display().to_string()),
        "{err}"
    );
    // A request the model cannot answer fails as it would uncached, entry or no entry.
    for (layers, expected) in [
        (vec![], "no layers requested"),
        (vec![7], "layer 7 does not exist"),
    ] {
        let bad = ExtractOptions {
            layers: Some(layers),
            ..ExtractOptions::default()
        };
        let err = format!(
            "{:#}",
            Embeddings::extract(&model, &source, &bad).unwrap_err()
        );
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn a_cached_layer_is_not_hashed_again() {
    let model = minilm();
    let source = Source::Sentences {
        name: "the stored-digest test".into(),
        sentences: vec!["A layer read back from the cache keeps its digest.".into()],
    };
    let opts = ExtractOptions::default();
    let entry = cache_entry(&model, &source, &opts).unwrap();
    let _ = std::fs::remove_dir_all(&entry);
    let fresh = Embeddings::extract_uncached(&model, &source, &opts).unwrap();
    Embeddings::extract(&model, &source, &opts).unwrap();
    let path = entry.join("hidden_states.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let mut meta = header.metadata().clone().unwrap();
    for (layer, m) in fresh.layers.iter().zip(&fresh.matrices) {
        assert_eq!(
            meta.get(&format!("sha256_layer_{layer}")),
            Some(&hex(&m.digest())),
            "layer {layer}'s digest is stored with it"
        );
    }
    // A digest planted in the entry is what the layer read back reports: it was not hashed.
    let planted = [7u8; 32];
    meta.insert("sha256_layer_3".into(), hex(&planted));
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let rewritten = safetensors::serialize(tensors.tensors(), Some(meta)).unwrap();
    // Replaced by a rename, as the cache replaces its files (an entry is never rewritten in
    // place: a layer read from it may still be mapped).
    isotropy_lab::util::atomic::write_bytes(&path, &rewritten).unwrap();
    let read = Embeddings::extract(&model, &source, &opts).unwrap();
    assert_eq!(read.layer(3).unwrap().digest(), planted);
    assert_eq!(
        read.layer(4).unwrap().digest(),
        fresh.layer(4).unwrap().digest()
    );
    assert_eq!(
        read.meta, fresh.meta,
        "the digests are not facts of the extraction"
    );
    // So is a request for that layer alone, served from the same entry.
    let one = ExtractOptions {
        layers: Some(vec![3]),
        ..ExtractOptions::default()
    };
    let _ = std::fs::remove_dir_all(cache_entry(&model, &source, &one).unwrap());
    let read_one = Embeddings::extract(&model, &source, &one).unwrap();
    assert_eq!(read_one.layer(3).unwrap().digest(), planted);
    // A folder read with `Embeddings::load` (it may come from elsewhere) is hashed anew.
    let loaded = Embeddings::load(&entry).unwrap();
    assert_eq!(
        loaded.layer(3).unwrap().digest(),
        fresh.layer(3).unwrap().digest()
    );
    std::fs::remove_dir_all(&entry).unwrap();
}

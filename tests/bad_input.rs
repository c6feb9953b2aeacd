//! Bad input gets a clear error that names the culprit, never a panic, and leaves nothing
//! half-written.

mod common;

use candle_core::Device;
use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::data::fetch::resolve_model;
use isotropy_lab::nn::model::Model;

fn load_err(dir: &std::path::Path) -> String {
    let err = resolve_model(dir.to_str().unwrap())
        .and_then(|files| Model::load_files(files, &Device::Cpu))
        .err()
        .expect("loading should fail");
    format!("{err:#}")
}

#[test]
fn missing_model_folder_or_file() {
    let err = format!(
        "{:#}",
        resolve_model("/nonexistent/model-folder").unwrap_err()
    );
    assert!(err.contains("/nonexistent/model-folder"), "{err}");
    let copy = common::minilm_copy();
    std::fs::remove_file(copy.path().join("tokenizer.json")).unwrap();
    let err = load_err(copy.path());
    assert!(err.contains("missing tokenizer.json"), "{err}");
}

#[test]
fn config_that_is_not_bert() {
    let copy = common::minilm_copy();
    let path = copy.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"bert\"", "\"roberta\"");
    std::fs::write(&path, text).unwrap();
    let err = load_err(copy.path());
    assert!(
        err.contains("config.json") && err.contains("roberta"),
        "{err}"
    );
}

#[test]
fn tokenizer_that_does_not_match_the_embeddings() {
    let copy = common::minilm_copy();
    let path = copy.path().join("config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"vocab_size\": 30522", "\"vocab_size\": 1000");
    std::fs::write(&path, text).unwrap();
    let err = load_err(copy.path());
    assert!(
        err.contains("tokenizer.json") && err.contains("vocab_size 1000"),
        "{err}"
    );
}

#[test]
fn models_of_two_depths_are_not_compared_at_one_last_layer() {
    let minilm = Model::load_files(
        resolve_model(common::minilm_dir().to_str().unwrap()).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(minilm.shared_last_layer(&minilm).unwrap(), 6);
    // The same checkpoint read as a 3-layer encoder (its upper layers' weights unused).
    let copy = common::minilm_copy();
    let path = copy.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let shallow_text = text.replace("\"num_hidden_layers\": 6", "\"num_hidden_layers\": 3");
    assert_ne!(
        text, shallow_text,
        "minilm's config.json names num_hidden_layers"
    );
    std::fs::write(&path, shallow_text).unwrap();
    let shallow = Model::load_files(
        resolve_model(copy.path().to_str().unwrap()).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let err = format!("{:#}", minilm.shared_last_layer(&shallow).unwrap_err());
    assert!(
        err.contains("has 6 layers")
            && err.contains("has 3:")
            && err.contains(copy.path().to_str().unwrap()),
        "{err}"
    );
}

#[test]
fn corrupt_safetensors() {
    let copy = common::minilm_copy();
    let path = copy.path().join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_err(copy.path());
    assert!(err.contains("model.safetensors"), "{err}");
    std::fs::write(&path, b"this is not a safetensors file").unwrap();
    let err = load_err(copy.path());
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn empty_sentence_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.txt");
    std::fs::write(&path, "\n  \n").unwrap();
    let err = Source::sentences_file(&path).unwrap_err().to_string();
    assert!(
        err.contains("empty.txt") && err.contains("no sentences"),
        "{err}"
    );
}

#[test]
fn over_long_sentence_is_truncated_and_counted() {
    common::setup();
    let model = Model::load_files(
        resolve_model(common::minilm_dir().to_str().unwrap()).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    let long = "word ".repeat(300);
    let source = Source::Sentences {
        name: "long".into(),
        sentences: vec![long, "short one".into()],
    };
    let opts = ExtractOptions {
        max_len: 16,
        layers: Some(vec![6]),
        ..ExtractOptions::default()
    };
    let emb = Embeddings::extract_uncached(&model, &source, &opts).unwrap();
    assert_eq!(emb.truncated, 1);
    // 16 and 4 tokens with [CLS] and [SEP], which the default protocol leaves out.
    assert_eq!(emb.num_tokens(), 14 + 2);
    // Longer than the model's position table: refused with the limit named.
    let opts = ExtractOptions {
        max_len: 4096,
        ..ExtractOptions::default()
    };
    let err = Embeddings::extract_uncached(&model, &source, &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("4096") && err.contains("512"), "{err}");
}

#[test]
fn failed_folder_write_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("entry");
    let result = isotropy_lab::util::atomic::write_dir(&target, |tmp| {
        std::fs::write(tmp.join("half.bin"), b"half")?;
        anyhow::bail!("interrupted")
    });
    assert!(result.is_err());
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temporary folder left behind"
    );
}

#[test]
fn unreadable_extraction_folder_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hidden_states.safetensors"), b"garbage").unwrap();
    let err = format!("{:#}", Embeddings::load(dir.path()).unwrap_err());
    assert!(err.contains("hidden_states.safetensors"), "{err}");
}

#[test]
fn what_a_killed_writer_left_is_removed_by_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("entry");
    // A process id that runs no process (Linux's /proc tells), one that does (init), and this
    // process itself: another thread of it writing the same entry (the names carry a count after
    // the process id).
    let dead = (400_000..)
        .find(|p| !std::path::Path::new("/proc").join(p.to_string()).exists())
        .unwrap();
    let stale = dir.path().join(format!(".entry.tmp-{dead}-0"));
    let live = dir.path().join(".entry.tmp-1-3");
    let this = dir
        .path()
        .join(format!(".entry.tmp-{}-7", std::process::id()));
    for d in [&stale, &live, &this] {
        std::fs::create_dir(d).unwrap();
        std::fs::write(d.join("half.bin"), b"half").unwrap();
    }
    isotropy_lab::util::atomic::write_dir(&target, |tmp| {
        std::fs::write(tmp.join("whole.bin"), b"whole")?;
        Ok(())
    })
    .unwrap();
    assert!(target.join("whole.bin").is_file());
    assert!(!stale.exists(), "a dead writer's temporary folder was kept");
    assert!(
        live.exists(),
        "a running writer's temporary folder was removed"
    );
    assert!(
        this.exists(),
        "another thread's temporary folder was removed"
    );
}

/// Threads filling the same folder at once (two tests extracting one cache entry, as CI saw fail
/// with "Directory not empty") all succeed, and the folder holds one writer's whole content.
#[test]
fn concurrent_writers_of_one_folder_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("entry");
    std::thread::scope(|scope| {
        let writers: Vec<_> = (0..8u8)
            .map(|i| {
                let target = &target;
                scope.spawn(move || {
                    for round in 0..20u8 {
                        isotropy_lab::util::atomic::write_dir(target, |tmp| {
                            std::fs::write(tmp.join("a.bin"), [i, round])?;
                            std::fs::write(tmp.join("b.bin"), [i, round])?;
                            Ok(())
                        })?;
                    }
                    anyhow::Ok(())
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap().unwrap();
        }
    });
    let a = std::fs::read(target.join("a.bin")).unwrap();
    assert_eq!(
        a,
        std::fs::read(target.join("b.bin")).unwrap(),
        "halves of two writes"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n != "entry")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temporary folders left: {leftovers:?}"
    );
}

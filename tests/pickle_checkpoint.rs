//! A checkpoint that only has `pytorch_model.bin` loads through candle's restricted pickle reader,
//! also with the old BERT tensor names (`bert.` prefix, LayerNorm `gamma` / `beta`), and gives the
//! same hidden states as the safetensors file. The `.bin` is written from the real minilm weights
//! by tests/tools/safetensors_to_torch_bin.py (standard-library Python, no torch).

mod common;

use candle_core::Device;
use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::data::fetch::resolve_model;
use isotropy_lab::nn::model::Model;
use std::process::Command;

fn embed(dir: &std::path::Path) -> Embeddings {
    let model =
        Model::load_files(resolve_model(dir.to_str().unwrap()).unwrap(), &Device::Cpu).unwrap();
    let source = Source::Sentences {
        name: "probe".into(),
        sentences: vec![
            "A pickled checkpoint.".into(),
            "It should embed exactly like the safetensors one!".into(),
        ],
    };
    Embeddings::extract_uncached(&model, &source, &ExtractOptions::default()).unwrap()
}

#[test]
fn pytorch_model_bin_matches_safetensors() {
    common::setup();
    let reference = embed(&common::minilm_dir());
    for old_names in [false, true] {
        let copy = common::minilm_copy();
        let mut cmd = Command::new("python3");
        cmd.arg(common::root().join("tests/tools/safetensors_to_torch_bin.py"));
        if old_names {
            cmd.arg("--old-bert-names");
        }
        let status = cmd
            .arg(copy.path().join("model.safetensors"))
            .arg(copy.path().join("pytorch_model.bin"))
            .status()
            .expect("running python3");
        assert!(status.success());
        std::fs::remove_file(copy.path().join("model.safetensors")).unwrap();
        let files = resolve_model(copy.path().to_str().unwrap()).unwrap();
        assert!(files.weights.ends_with("pytorch_model.bin"));
        let got = embed(copy.path());
        assert_eq!(got.matrices, reference.matrices, "old names: {old_names}");
    }
}

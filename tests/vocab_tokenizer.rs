//! A checkpoint with only `vocab.txt` (no `tokenizer.json`) tokenizes exactly like the
//! `tokenizer.json` of the same model, on real GLUE sentences and sentence pairs.

mod common;

use candle_core::Device;
use isotropy_lab::data::fetch::resolve_model;
use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::nn::model::Model;

#[test]
fn vocab_txt_matches_tokenizer_json() {
    common::setup();
    let copy = common::minilm_copy();
    common::write_vocab_txt(
        &copy.path().join("tokenizer.json"),
        &copy.path().join("vocab.txt"),
    );
    std::fs::remove_file(copy.path().join("tokenizer.json")).unwrap();
    std::fs::write(
        copy.path().join("tokenizer_config.json"),
        r#"{"do_lower_case": true}"#,
    )
    .unwrap();

    let from_vocab = Model::load_files(
        resolve_model(copy.path().to_str().unwrap()).unwrap(),
        &Device::Cpu,
    )
    .unwrap();
    assert!(from_vocab.files.tokenizer.ends_with("vocab.txt"));
    let from_json = Model::load_files(
        resolve_model(common::minilm_dir().to_str().unwrap()).unwrap(),
        &Device::Cpu,
    )
    .unwrap();

    for task in [Task::Sst2, Task::Mrpc, Task::Cola] {
        let df = glue::load(task, Split::Dev).unwrap();
        let s1 = df.column("sentence1").unwrap().str().unwrap();
        let s2 = df.column("sentence2").unwrap().str().unwrap();
        let inputs: Vec<(String, Option<String>)> = (0..df.height())
            .map(|i| (s1.get(i).unwrap().to_string(), s2.get(i).map(String::from)))
            .collect();
        let (a, _) = from_vocab.tokenize(&inputs, 512).unwrap();
        let (b, _) = from_json.tokenize(&inputs, 512).unwrap();
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(
                x.get_ids(),
                y.get_ids(),
                "{task} dev row {i}: {:?}",
                inputs[i]
            );
            assert_eq!(x.get_type_ids(), y.get_type_ids());
            assert_eq!(x.get_special_tokens_mask(), y.get_special_tokens_mask());
            assert_eq!(x.get_word_ids(), y.get_word_ids());
        }
    }
}

//! Every notebook runs headless in the evcxr kernel with the quick profile (two at a time), shows
//! an HTML table and an SVG figure, records its key numbers within range, and has no error output
//! (scripts/run_notebooks.py does the checking); then each executed chapter's HTML is rendered in
//! headless Chromium, whose figures must be decoded, visible and drawn and whose tables must have
//! rows (scripts/check_render.py). Then chapter 01 in the paper profile. (tests/lab.rs runs two
//! chapters at once, in the lab.)
//!
//! The chapters compare minilm with its fine-tune on each task; here those are quick-profile
//! fine-tunes (`isolab finetune --profile quick`, 40 steps) of SST-2, MRPC and STS-B made first,
//! so every chapter runs the same code path as after the main job: with the STS-B bi-encoder
//! (`--objective cosine`) and two more SST-2 seeds.

mod common;

use std::process::Command;

#[test]
fn notebooks_run_headless() {
    let python = common::notebook_python();
    let root = common::root();
    let finetunes = root.join("target").join("notebook-finetunes");
    // Run 0 of each task, and two more seeds of SST-2 laid out as `ISOLAB_SEEDS=3` lays them
    // out (`sst2-seed1` with seed 10, `sst2-seed2` with seed 20), for chapter 07's spread over
    // fine-tunes.
    let runs = [
        ("sst2", "head", 0, "sst2"),
        ("mrpc", "head", 0, "mrpc"),
        ("stsb", "head", 0, "stsb"),
        ("stsb", "cosine", 0, "stsb-cosine"),
        ("sst2", "head", 10, "sst2-seed1"),
        ("sst2", "head", 20, "sst2-seed2"),
    ];
    for (task, objective, seed, folder) in runs {
        let status = Command::new(env!("CARGO_BIN_EXE_isolab"))
            .args(["finetune", "--profile", "quick", "--task", task])
            .args(["--objective", objective, "--seed"])
            .arg(seed.to_string())
            .arg("--out")
            .arg(finetunes.join(folder))
            .status()
            .expect("running isolab finetune");
        assert!(status.success(), "quick fine-tune {folder} failed");
    }
    let out = root.join("target").join("notebook-test");
    let status = Command::new(&python)
        .env("ISOLAB_FINETUNES", &finetunes)
        .arg(root.join("scripts/run_notebooks.py"))
        .arg("--quick")
        // Two chapters at a time: a kernel's cells are mostly one compiler process at a time.
        .args(["--jobs", "2"])
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running scripts/run_notebooks.py");
    assert!(
        status.success(),
        "a notebook failed; see the output above and {}",
        out.display()
    );
    let mut pages: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "html"))
        .collect();
    pages.sort();
    assert!(
        !pages.is_empty(),
        "no executed chapter in {}",
        out.display()
    );
    for page in pages {
        let status = Command::new(&python)
            .arg(root.join("scripts/check_render.py"))
            .arg(&page)
            .status()
            .expect("running scripts/check_render.py");
        assert!(
            status.success(),
            "{} does not render as it should",
            page.display()
        );
    }
    paper_profile_runs_chapter_01_from_the_hub(&python, &finetunes);
}

/// `ISOLAB_PROFILE=paper`: chapter 01 compares `bert-base-uncased` with TextAttack's SST-2
/// fine-tune of it, both downloaded from the hub. Here the hub is a local server that serves
/// minilm's files as `google-bert/bert-base-uncased` (the registry's hub id of
/// `bert-base-uncased`) and the quick SST-2 fine-tune as `textattack/bert-base-uncased-SST-2`, into
/// an empty Hugging Face cache. Run after the quick chapters: beside them, on two cores, it would
/// only slow both.
fn paper_profile_runs_chapter_01_from_the_hub(
    python: &std::path::Path,
    finetunes: &std::path::Path,
) {
    let root = common::root();
    let mut files = std::collections::HashMap::new();
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        files.insert(
            format!("/google-bert/bert-base-uncased/resolve/main/{name}"),
            common::minilm_dir().join(name),
        );
        files.insert(
            format!("/textattack/bert-base-uncased-SST-2/resolve/main/{name}"),
            finetunes.join("sst2").join(name),
        );
    }
    let endpoint = common::serve_hub(files);
    let hf_home = tempfile::tempdir().unwrap();
    let out = root.join("target").join("notebook-test-paper");
    let status = Command::new(python)
        .env("ISOLAB_PROFILE", "paper")
        .env("HF_ENDPOINT", &endpoint)
        .env("HF_HOME", hf_home.path())
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("ISOLAB_PRETRAINED")
        .env_remove("ISOLAB_FINETUNED")
        // The profile's models, on a sample small enough for the tests.
        .env("ISOLAB_SENTENCES", "128")
        .arg(root.join("scripts/run_notebooks.py"))
        .arg("--out")
        .arg(&out)
        .arg(root.join("notebooks/01_isotropy_by_layer.ipynb"))
        .status()
        .expect("running scripts/run_notebooks.py");
    assert!(
        status.success(),
        "chapter 01 failed in the paper profile; see {}",
        out.display()
    );
    let executed = std::fs::read_to_string(out.join("01_isotropy_by_layer.ipynb")).unwrap();
    for says in [
        "bert-base-uncased (12 layers, 768 dimensions), the paper's MLM-only",
        "textattack/bert-base-uncased-SST-2, TextAttack's public fine-tune",
    ] {
        assert!(
            executed.contains(says),
            "chapter 01 does not say \"{says}\""
        );
    }
    for repo in [
        "models--google-bert--bert-base-uncased",
        "models--textattack--bert-base-uncased-SST-2",
    ] {
        assert!(
            hf_home.path().join("hub").join(repo).is_dir(),
            "{repo} was not downloaded into the Hugging Face cache"
        );
    }
}

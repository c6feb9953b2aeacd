//! Every notebook runs headless in the evcxr kernel with the quick profile, shows an HTML table
//! and an SVG figure, prints its key numbers within range, and has no error output
//! (scripts/run_notebooks.py does the checking); then each executed chapter's HTML is rendered in
//! headless Chromium, whose figures must be decoded, visible and drawn and whose tables must have
//! rows (scripts/check_render.py).
//!
//! The chapters compare minilm with its fine-tune on each task; here those are quick-profile
//! fine-tunes (`isolab finetune --profile quick`, 40 steps) of SST-2, MRPC and STS-B made first,
//! so every chapter runs the same code path as after the main job.

mod common;

use std::process::Command;

#[test]
fn notebooks_run_headless() {
    common::setup();
    common::minilm_dir();
    let root = common::root();
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh`",
        python.display()
    );
    let finetunes = root.join("target").join("notebook-finetunes");
    for task in ["sst2", "mrpc", "stsb"] {
        let status = Command::new(env!("CARGO_BIN_EXE_isolab"))
            .args(["finetune", "--profile", "quick", "--task", task, "--out"])
            .arg(finetunes.join(task))
            .status()
            .expect("running isolab finetune");
        assert!(status.success(), "quick fine-tune of {task} failed");
    }
    let out = root.join("target").join("notebook-test");
    let status = Command::new(&python)
        .env("ISOLAB_FINETUNES", &finetunes)
        .arg(root.join("scripts/run_notebooks.py"))
        .arg("--quick")
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
}

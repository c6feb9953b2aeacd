//! Every notebook runs headless in the evcxr kernel with the quick profile, shows an HTML table
//! and an SVG figure, prints its key numbers within range, and has no error output
//! (scripts/run_notebooks.py does the checking); then each executed chapter's HTML is rendered in
//! headless Chromium, whose figures must be decoded, visible and drawn and whose tables must have
//! rows (scripts/check_render.py).

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
    let out = root.join("target").join("notebook-test");
    let status = Command::new(&python)
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

//! Every notebook runs headless in the evcxr kernel with the quick profile, shows an HTML table
//! and an SVG figure, and has no error output (scripts/run_notebooks.py does the checking).

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
}

//! The lab in a real browser: `scripts/lab.sh` on a free localhost port, driven in Debian's
//! Chromium through WebDriver by `scripts/check_lab.py`: two chapters open in two tabs run all
//! their cells at the same time, each shows a rendered table and figure and no error, and an edited
//! parameter cell and the cell after it run again with new output. Screenshots of both tabs are
//! kept in target/lab-test.

mod common;

use std::process::Command;

#[test]
fn two_chapters_run_side_by_side_in_the_browser_and_an_edited_cell_answers() {
    let python = common::notebook_python();
    let root = common::root();
    let out = root.join("target").join("lab-test");
    let status = Command::new(python)
        .env("ISOLAB_PROFILE", "quick")
        .arg(root.join("scripts/check_lab.py"))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running scripts/check_lab.py");
    assert!(
        status.success(),
        "the lab failed in the browser; see the output above and {}",
        out.display()
    );
}

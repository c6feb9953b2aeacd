//! The lab in a real browser: `scripts/lab.sh` on a free localhost port, driven in Debian's
//! Chromium through WebDriver by `scripts/check_lab.py`: two chapters open in two tabs run all
//! their cells at the same time, each shows a rendered table and figure and no error, and an edited
//! parameter cell and the cell after it run again with new output. Screenshots of both tabs are
//! kept in target/lab-test.
//!
//! Every kernel starts 150 s slower than it would (`--slow-start 150`: the prelude sleeps), as a
//! loaded machine or a cold dependency build could. evcxr answers Jupyter only once its prelude has
//! run; with jupyter_server's default 60 s timeouts such a start broke both tabs (their kernels
//! died, Run All never ran), which the 30-minute timeout setup writes for the server fixes
//! (environment.md, "The lab").

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
        .args(["--slow-start", "150"])
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

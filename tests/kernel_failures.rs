//! The kernel's failure modes a reader meets, in a real isotropy-lab kernel driven through
//! Jupyter's messaging protocol by `scripts/check_kernel_failures.py`: a model name that does not
//! exist and impossible parameter values (a layer past the last, D at least the dimension, k
//! larger than the rows) fail with errors that name them; a cell interrupted mid-extraction leaves
//! no cache entry and recomputes when run again; a kernel restarted mid-fine-tune resumes the run
//! from its checkpoint.

mod common;

use std::process::Command;

#[test]
fn interrupts_restarts_and_impossible_values_get_clear_answers() {
    let python = common::notebook_python();
    let root = common::root();
    let out = root.join("target").join("kernel-failures");
    let status = Command::new(python)
        .arg(root.join("scripts/check_kernel_failures.py"))
        .arg("--out")
        .arg(&out)
        .status()
        .expect("running scripts/check_kernel_failures.py");
    assert!(
        status.success(),
        "a failure mode got no clear answer; see the output above"
    );
}

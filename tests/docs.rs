//! The documentation cannot drift from the code: every environment variable the crate, the
//! chapters and the scripts read is in docs/environment-variables.md, and every variable there is
//! read somewhere.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

/// Variables without the `ISOLAB_` prefix (hf-hub's, GLUE's, the benchmarks' reference Python):
/// looked for by name.
const FOREIGN: [&str; 5] = [
    "GLUE_DIR",
    "HF_HOME",
    "HF_ENDPOINT",
    "HF_HUB_OFFLINE",
    "REF_PYTHON",
];

/// Every `ISOLAB_…` name in `text`, and each of [`FOREIGN`] it mentions.
fn names_in(text: &str, into: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = rest.find("ISOLAB_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .unwrap_or(tail.len());
        into.insert(tail[..end].trim_end_matches('_').to_string());
        rest = &tail[end..];
    }
    for name in FOREIGN {
        if text.contains(name) {
            into.insert(name.to_string());
        }
    }
}

/// The files under `dir` (recursively) whose extension is one of `extensions`.
fn files(dir: &Path, extensions: &[&str], out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, extensions, out);
        } else if path
            .extension()
            .is_some_and(|e| extensions.iter().any(|x| e == *x))
        {
            out.push(path);
        }
    }
}

#[test]
fn every_environment_variable_read_is_documented_and_every_documented_one_is_read() {
    let root = common::root();
    let mut sources = Vec::new();
    files(&root.join("src"), &["rs"], &mut sources);
    files(&root.join("notebooks"), &["ipynb"], &mut sources);
    files(&root.join("scripts"), &["sh", "py"], &mut sources);
    let mut read = BTreeSet::new();
    for path in &sources {
        names_in(&std::fs::read_to_string(path).unwrap(), &mut read);
    }
    let doc_path = root.join("docs").join("environment-variables.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    // The table's first column: "| `NAME` | …".
    let documented: BTreeSet<String> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .map(String::from)
        .collect();
    let undocumented: Vec<&String> = read.difference(&documented).collect();
    let unread: Vec<&String> = documented.difference(&read).collect();
    assert!(
        undocumented.is_empty(),
        "read in src/, notebooks/ or scripts/ but not in {}: {undocumented:?}",
        doc_path.display()
    );
    assert!(
        unread.is_empty(),
        "in {} but read nowhere: {unread:?}",
        doc_path.display()
    );
}

#[test]
fn the_variable_scan_finds_a_new_variable() {
    // The check above fails when a chapter starts reading a variable nobody documented.
    let mut found = BTreeSet::new();
    names_in(
        r#"let x: usize = env_or("ISOLAB_NEW_KNOB", 3); // and GLUE_DIR"#,
        &mut found,
    );
    assert_eq!(
        found,
        BTreeSet::from(["ISOLAB_NEW_KNOB".to_string(), "GLUE_DIR".to_string()])
    );
}

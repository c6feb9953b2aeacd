//! The chapters' source as a reader meets it, checked without a kernel: code that fits the page
//! (the exported HTML and a JupyterLab column show about 90 characters before cutting or
//! scrolling), and each chapter that compares a base model with a fine-tune says which ones in
//! its first code cell.

mod common;

use serde_json::Value;
use std::path::PathBuf;

/// The widest code line a chapter may have, in characters.
const WIDTH: usize = 90;

fn chapters() -> Vec<(String, Value)> {
    let dir = common::root().join("notebooks");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ipynb"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 8, "chapters in {}: {paths:?}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let nb = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.file_stem().unwrap().to_string_lossy().into_owned(), nb)
        })
        .collect()
}

/// The source of each code cell of a notebook.
fn code_cells(nb: &Value) -> Vec<String> {
    nb["cells"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["cell_type"] == "code")
        .map(|c| match &c["source"] {
            Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
            other => other.as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Lines wider than [`WIDTH`], as `chapter cell N: [width] line`.
fn too_wide(chapter: &str, cells: &[String]) -> Vec<String> {
    cells
        .iter()
        .enumerate()
        .flat_map(|(i, source)| {
            source
                .lines()
                .filter(|l| l.chars().count() > WIDTH)
                .map(move |l| format!("{chapter} code cell {i}: [{}] {l}", l.chars().count()))
        })
        .collect()
}

#[test]
fn code_fits_ninety_columns() {
    let wide: Vec<String> = chapters()
        .iter()
        .flat_map(|(name, nb)| too_wide(name, &code_cells(nb)))
        .collect();
    assert!(
        wide.is_empty(),
        "{} code lines are wider than {WIDTH} characters (cut off in the HTML pages):\n{}",
        wide.len(),
        wide.join("\n")
    );
}

#[test]
fn the_width_check_finds_a_wide_line() {
    let cells = vec![format!("let x = 1;\n{}", "y".repeat(WIDTH + 1))];
    assert_eq!(too_wide("c", &cells).len(), 1);
    // Characters, not bytes: "×" is two bytes.
    assert!(too_wide("c", &["×".repeat(WIDTH)]).is_empty());
}

#[test]
fn chapters_that_compare_models_name_them_first() {
    for (name, nb) in chapters() {
        let cells = code_cells(&nb);
        let compares = cells.iter().any(|c| c.contains("finetuned_for("));
        // Chapter 06 fine-tunes its own model live; its first output says which and how.
        if !compares || name.starts_with("06") {
            continue;
        }
        let first_with_models = cells
            .iter()
            .position(|c| c.contains("finetuned_for("))
            .unwrap();
        assert!(
            cells[first_with_models].contains("describe_models("),
            "{name}: the cell that picks the models does not describe them (describe_models)"
        );
    }
}

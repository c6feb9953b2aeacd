//! The crate's layers depend one way: util → data → nn → geometry → analysis → finetune →
//! notebook. A module may name (`crate::…`) only its own layer and the layers before it, and the
//! geometry layer, which takes plain matrices, names neither candle nor polars nor any layer but
//! util. This reads every source file's code lines (comments aside) and lists each line that
//! breaks the rule.

use std::path::{Path, PathBuf};

/// The layers, lowest first.
const LAYERS: [&str; 7] = [
    "util", "data", "nn", "geometry", "analysis", "finetune", "notebook",
];

/// What the geometry layer may name besides itself.
const GEOMETRY_MAY_USE: [&str; 1] = ["util"];

/// Names the geometry layer's code must not contain: it runs without candle and polars.
const GEOMETRY_MUST_NOT_NAME: [&str; 2] = ["candle", "polars"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The identifier at the start of `text`.
fn ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The top-level modules a line of code names as `crate::NAME` or `crate::{NAME, …}` (a group
/// that spans lines is read on its first line only, which this crate's rustfmt never writes).
fn named_modules(code: &str) -> Vec<&str> {
    let mut names = Vec::new();
    // `$crate::` in macros names this crate's root, not a module.
    for (at, m) in code.match_indices("crate::") {
        if code[..at].ends_with('$') {
            continue;
        }
        let rest = &code[at + m.len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                // The names at the group's top level: after `{` and after each `,` at depth 0.
                let mut depth = 0;
                let mut start = Some(0);
                for (i, c) in group.char_indices() {
                    if let Some(s) = start.take() {
                        let name = ident(group[s..].trim_start());
                        if !name.is_empty() {
                            names.push(name);
                        }
                    }
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => start = Some(i + 1),
                        _ => {}
                    }
                }
            }
            None => names.push(ident(rest)),
        }
    }
    names
}

/// Every line of `src/` that names a module it may not, as `file:line: what`.
fn violations(src: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).unwrap();
        let Some(layer) = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .and_then(|top| LAYERS.iter().position(|l| *l == top))
        else {
            // lib.rs (the module map and the prelude) and main.rs (the binary) sit above all.
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            let at = format!("{}:{}", rel.display(), no + 1);
            for module in named_modules(code) {
                match LAYERS.iter().position(|l| *l == module) {
                    Some(other) if other > layer => found.push(format!(
                        "{at}: {} (layer {}) names {module} (a higher layer)",
                        LAYERS[layer],
                        layer + 1
                    )),
                    Some(other)
                        if LAYERS[layer] == "geometry"
                            && other != layer
                            && !GEOMETRY_MAY_USE.contains(&module) =>
                    {
                        found.push(format!("{at}: geometry names {module}"))
                    }
                    Some(_) => {}
                    None => found.push(format!("{at}: names crate::{module}, in no layer")),
                }
            }
            if LAYERS[layer] == "geometry" {
                for name in GEOMETRY_MUST_NOT_NAME {
                    if code.contains(name) {
                        found.push(format!("{at}: geometry names {name}"));
                    }
                }
            }
        }
    }
    found
}

#[test]
fn layers_depend_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = violations(&src);
    assert!(
        found.is_empty(),
        "imports against the layer order {}:\n{}",
        LAYERS.join(" → "),
        found.join("\n")
    );
}

/// The check sees a forbidden import: a copy of `src/` with one added fails it.
#[test]
fn an_upward_import_is_caught() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let copy = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    for file in &files {
        let to = copy.path().join(file.strip_prefix(&src).unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(file, &to).unwrap();
    }
    let spectrum = copy.path().join("geometry/spectrum.rs");
    let text = std::fs::read_to_string(&spectrum).unwrap();
    std::fs::write(
        &spectrum,
        format!("use crate::analysis::extract::Embeddings;\n{text}"),
    )
    .unwrap();
    let kernels = copy.path().join("nn/kernels.rs");
    let text = std::fs::read_to_string(&kernels).unwrap();
    std::fs::write(
        &kernels,
        format!("use crate::{{nn::bert, finetune::train}};\n{text}"),
    )
    .unwrap();
    let found = violations(copy.path());
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("geometry/spectrum.rs:1: geometry (layer 4) names analysis"));
    assert!(found[1].starts_with("nn/kernels.rs:1: nn (layer 3) names finetune"));
}

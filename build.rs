//! Stamps the build with a hash of what decides what the crate computes (`ISOLAB_BUILD_STAMP`):
//! its sources, the data files compiled into it, its manifest and lock file, and the compiler's
//! version. Results cached on disk by one build (`util::memo`) are never read by another that
//! might compute them differently.

use std::path::{Path, PathBuf};

/// The data files the sources include with `include_str!`.
const COMPILED_IN: [&str; 2] = ["data/models.json", "data/stopwords_en.txt"];

/// FNV-1a, 64 bits: enough to tell builds apart, and no dependency for the build script.
fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let mut paths = Vec::new();
    files(&root.join("src"), &mut paths);
    for file in COMPILED_IN.iter().chain(&["Cargo.toml", "Cargo.lock"]) {
        paths.push(root.join(file));
    }
    paths.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    fnv(&mut hash, &version);
    for path in &paths {
        let relative = path.strip_prefix(&root).unwrap_or(path);
        fnv(&mut hash, relative.to_string_lossy().as_bytes());
        fnv(&mut hash, &std::fs::read(path).unwrap_or_default());
        fnv(&mut hash, &[0xff]);
    }
    println!("cargo:rustc-env=ISOLAB_BUILD_STAMP={hash:016x}");
    println!("cargo:rerun-if-changed=src");
    for file in COMPILED_IN.iter().chain(&["Cargo.toml", "Cargo.lock"]) {
        println!("cargo:rerun-if-changed={file}");
    }
}

//! Stamps the build with a hash of the crate's sources and its lock file (`ISOLAB_BUILD_STAMP`),
//! so results cached on disk by one build of the crate (`util::memo`) are never read by another
//! that might compute them differently.

use std::path::{Path, PathBuf};

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
    paths.push(root.join("Cargo.lock"));
    paths.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for path in &paths {
        let relative = path.strip_prefix(&root).unwrap_or(path);
        fnv(&mut hash, relative.to_string_lossy().as_bytes());
        fnv(&mut hash, &std::fs::read(path).unwrap_or_default());
        fnv(&mut hash, &[0xff]);
    }
    println!("cargo:rustc-env=ISOLAB_BUILD_STAMP={hash:016x}");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=Cargo.lock");
}

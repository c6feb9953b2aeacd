//! Results cached on disk by everything they are computed from, so a notebook cell run again
//! answers from disk: a [`Key`] hashes the inputs (matrices by their values, options by their
//! `Debug` text) together with the build of this crate, and [`cached_frame`] keeps the table
//! computed for it in `<cache>/results/<kind>/<key>.parquet` (a value that is not a table,
//! [`cached_json`]: `<key>.json`).
//!
//! The build stamp is a hash of the crate's sources and lock file, made when it is compiled: a
//! change to the code (a fixed bug, a new default) never reads a table an older build wrote. An
//! unreadable entry is reported and computed again; an entry that cannot be written costs the
//! next run time only.

use crate::util::atomic;
use crate::util::hash::hex;
use crate::util::matrix::Matrix;
use anyhow::{Context, Result};
use polars::prelude::{DataFrame, ParquetReader, ParquetWriter, SerReader};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Debug;
use std::path::{Path, PathBuf};

/// How many hex digits of a key name its file (96 bits).
const KEY_CHARS: usize = 24;

/// What a cached result is computed from: a kind (the folder it is kept in) and its inputs,
/// hashed with sha256.
///
/// ```
/// use isotropy_lab::util::matrix::Matrix;
/// use isotropy_lab::util::memo::Key;
///
/// let w = Matrix::new(2, 2, vec![1.0, 2.0, 3.0, 4.0])?;
/// let key = |seed: u64| Key::new("example").matrix(&w).debug(&seed).name();
/// assert_eq!(key(0), key(0));
/// assert_ne!(key(0), key(1));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Clone)]
pub struct Key {
    kind: String,
    hasher: Sha256,
}

impl Key {
    /// A key of `kind` (a folder name: letters, digits and `-`), stamped with this build.
    pub fn new(kind: &str) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(format!("isolab-memo {}\n", env!("ISOLAB_BUILD_STAMP")).as_bytes());
        let mut key = Key {
            kind: kind.to_string(),
            hasher,
        };
        key.part(kind.as_bytes());
        key
    }

    /// One input, length-prefixed so that parts never run into each other.
    fn part(&mut self, bytes: &[u8]) {
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
    }

    /// Adds a matrix: its shape and every value's bits.
    pub fn matrix(mut self, m: &Matrix) -> Key {
        self.part(format!("{}x{}", m.rows(), m.cols()).as_bytes());
        self.hasher
            .update(((m.data().len() * 4) as u64).to_le_bytes());
        let mut bytes = Vec::with_capacity(4 * 4096);
        for chunk in m.data().chunks(4096) {
            bytes.clear();
            bytes.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            self.hasher.update(&bytes);
        }
        self
    }

    /// Adds a value by its `Debug` text (options structs, numbers, labels: `f64`'s `Debug`
    /// prints every bit that matters).
    pub fn debug(mut self, value: &impl Debug) -> Key {
        self.part(format!("{value:?}").as_bytes());
        self
    }

    /// The key's file name, without extension: the first 96 bits of the hash, as hex.
    pub fn name(&self) -> String {
        hex(&self.hasher.clone().finalize())[..KEY_CHARS].to_string()
    }

    /// Where the result for this key is kept, as a file with `extension`.
    fn path(&self, extension: &str) -> PathBuf {
        crate::util::paths::cache_dir()
            .join("results")
            .join(&self.kind)
            .join(format!("{}.{extension}", self.name()))
    }
}

/// The table for `key`: read from the cache when an earlier run computed it, else computed by
/// `compute` and written to the cache (atomically).
pub fn cached_frame(key: Key, compute: impl FnOnce() -> Result<DataFrame>) -> Result<DataFrame> {
    let path = key.path("parquet");
    if path.is_file() {
        match read_frame(&path) {
            Ok(frame) => return Ok(frame),
            Err(e) => eprintln!(
                "ignoring an unreadable cache entry {}: {e:#}",
                path.display()
            ),
        }
    }
    let mut frame = compute()?;
    if let Err(e) = atomic::write_file(&path, |f| {
        ParquetWriter::new(f).finish(&mut frame)?;
        Ok(())
    }) {
        eprintln!("not caching {}: {e:#}", path.display());
    }
    Ok(frame)
}

fn read_frame(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    ParquetReader::new(file)
        .finish()
        .with_context(|| format!("reading {}", path.display()))
}

/// The value for `key`, as [`cached_frame`] keeps a table: read from its JSON file when an
/// earlier run computed it, else computed and written. JSON text does not always parse back to
/// the same `f64` (serde_json's parser may miss by the last bit): keep an `f64` that must come
/// back exact as its bits (`f64::to_bits`).
pub fn cached_json<T: Serialize + DeserializeOwned>(
    key: Key,
    compute: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let path = key.path("json");
    if path.is_file() {
        let read = std::fs::read(&path)
            .with_context(|| format!("reading {}", path.display()))
            .and_then(|bytes| {
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{}: not a cached value", path.display()))
            });
        match read {
            Ok(value) => return Ok(value),
            Err(e) => eprintln!("ignoring an unreadable cache entry: {e:#}"),
        }
    }
    let value = compute()?;
    let written = serde_json::to_vec(&value)
        .map_err(anyhow::Error::from)
        .and_then(|bytes| atomic::write_bytes(&path, &bytes));
    if let Err(e) = written {
        eprintln!("not caching {}: {e:#}", path.display());
    }
    Ok(value)
}

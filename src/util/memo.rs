//! Results cached on disk by everything they are computed from, so a notebook cell run again
//! answers from disk: a [`Key`] hashes the inputs (matrices by their values, options by their
//! `Debug` text) together with the build of this crate, and [`cached_frame`] keeps the table
//! computed for it in `<cache>/results/<kind>/<key>.parquet` (a value that is not a table,
//! [`cached_json`]: `<key>.json`). One kind is keyed by a file's identity, not its contents:
//! [`sha256_file_cached`], the hash of a large file that has not changed.
//!
//! The build stamp is a hash of the crate's sources, manifest, lock file, compiled-in data and
//! compiler version, made when it is compiled (`build.rs`): a change to the code (a fixed bug, a
//! new default) never reads a result an older build wrote. An entry that cannot be read, or that
//! its caller's check refuses (a table of the wrong shape), is reported, computed again and
//! replaced; an entry that cannot be written costs the next run time only.

use crate::util::atomic;
use crate::util::frame::Fresh;
use crate::util::hash::{hex, sha256_file};
use crate::util::matrix::Matrix;
use anyhow::{bail, Context, Result};
use polars::prelude::{DataFrame, ParquetReader, ParquetWriter, SerReader};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt::Debug;
use std::io::Write;
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

    /// Adds a matrix: its shape and every value's bits, through its [`Matrix::digest`].
    pub fn matrix(mut self, m: &Matrix) -> Key {
        self.part(&m.digest());
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

/// The table for `key`: read from the cache when an earlier run computed it and `check` accepts
/// it, else computed by `compute` and written to the cache (atomically). The table returned is
/// fresh ([`Fresh`]).
pub fn cached_frame(
    key: Key,
    check: impl Fn(&DataFrame) -> Result<()>,
    compute: impl FnOnce() -> Result<DataFrame>,
) -> Result<DataFrame> {
    let frame = cached(
        &key.path("parquet"),
        |path| {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            ParquetReader::new(file)
                .finish()
                .with_context(|| format!("reading {}", path.display()))
        },
        |file, frame| {
            ParquetWriter::new(file).finish(&mut frame.clone())?;
            Ok(())
        },
        check,
        compute,
    )?;
    Ok(frame.fresh())
}

/// A check for [`cached_frame`]: fails unless `frame` has `height` rows and exactly `columns`,
/// in that order.
///
/// ```
/// use isotropy_lab::polars::prelude::{Column, DataFrame};
/// use isotropy_lab::util::memo::expect_shape;
///
/// let t = DataFrame::new_infer_height(vec![Column::new("k".into(), [1u32, 2])])?;
/// assert!(expect_shape(&t, 2, &["k"]).is_ok());
/// assert!(expect_shape(&t, 3, &["k"]).is_err());
/// assert!(expect_shape(&t, 2, &["seed"]).is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn expect_shape(frame: &DataFrame, height: usize, columns: &[&str]) -> Result<()> {
    let names: Vec<&str> = frame
        .get_column_names()
        .iter()
        .map(|c| c.as_str())
        .collect();
    if frame.height() != height || names != columns {
        anyhow::bail!(
            "a table of {} rows with columns {names:?}, where {height} rows with {columns:?} \
             were expected",
            frame.height()
        );
    }
    Ok(())
}

/// The value for `key`, as [`cached_frame`] keeps a table, in a JSON file. JSON text does not
/// always parse back to the same `f64` (serde_json's parser may miss by the last bit): keep an
/// `f64` that must come back exact as its bits (`f64::to_bits`).
pub fn cached_json<T: Serialize + DeserializeOwned>(
    key: Key,
    check: impl Fn(&T) -> Result<()>,
    compute: impl FnOnce() -> Result<T>,
) -> Result<T> {
    cached(
        &key.path("json"),
        |path| {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a cached value", path.display()))
        },
        |file, value| {
            let mut buffered = std::io::BufWriter::new(file);
            serde_json::to_writer(&mut buffered, value)?;
            Ok(buffered.flush()?)
        },
        check,
        compute,
    )
}

/// Files smaller than this are hashed every time by [`sha256_file_cached`]: reading them costs
/// less than a cache entry.
const HASHED_EVERY_TIME: u64 = 1 << 20;

/// How long a file must have stood unchanged before [`sha256_file_cached`] keeps its hash: a
/// file written within the same tick of the clock as its last stat could change unseen.
const SETTLED_SECONDS: i64 = 2;

/// [`sha256_file`], cached by the file's identity: its canonical path, length, device, inode,
/// modification and change times (the change time no tool can set back: what git's index also
/// keeps). A model's weights (90 MB and more) are hashed when its files are verified and again
/// for its fingerprint at every load; a file whose identity has not changed is not read again.
///
/// Kept only for a file that stood unchanged for 2 s before it was hashed and did not change
/// while it was; a file that changes while it is hashed is an error. Files under 1 MiB, and
/// every file on a system without Unix file metadata, are hashed every time. Deleting
/// `<cache>/results/file-sha256` makes every file be read again.
pub fn sha256_file_cached(path: &Path) -> Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        // Length, device, inode, modification and change times (seconds, nanoseconds).
        let identity = || -> Result<[i64; 7]> {
            let m =
                std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
            Ok([
                m.len() as i64,
                m.dev() as i64,
                m.ino() as i64,
                m.mtime(),
                m.mtime_nsec(),
                m.ctime(),
                m.ctime_nsec(),
            ])
        };
        let before = identity()?;
        // The later of the modification and change times, in whole seconds.
        let touched = before[3].max(before[5]);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        if before[0] >= HASHED_EVERY_TIME as i64 && now - touched > SETTLED_SECONDS {
            let canonical = std::fs::canonicalize(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            let key = Key::new("file-sha256").debug(&canonical).debug(&before);
            return cached_json(
                key,
                |sha: &String| {
                    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                        bail!("{sha:?} is not a sha256");
                    }
                    Ok(())
                },
                || {
                    let sha = sha256_file(path)?;
                    if identity()? != before {
                        bail!("{}: the file changed while it was hashed", path.display());
                    }
                    Ok(sha)
                },
            );
        }
    }
    sha256_file(path)
}

/// The cache's one rule: an entry at `path` that `read` reads and `check` accepts is the
/// result; otherwise (reported) the result is computed and written in its place, best-effort.
fn cached<T>(
    path: &Path,
    read: impl FnOnce(&Path) -> Result<T>,
    write: impl FnOnce(&mut std::fs::File, &T) -> Result<()>,
    check: impl Fn(&T) -> Result<()>,
    compute: impl FnOnce() -> Result<T>,
) -> Result<T> {
    if path.is_file() {
        match read(path).and_then(|value| check(&value).map(|()| value)) {
            Ok(value) => return Ok(value),
            Err(e) => eprintln!(
                "ignoring the cache entry {}, computing it again: {e:#}",
                path.display()
            ),
        }
    }
    let value = compute()?;
    if let Err(e) = atomic::write_file(path, |file| write(file, &value)) {
        eprintln!("not caching {}: {e:#}", path.display());
    }
    Ok(value)
}

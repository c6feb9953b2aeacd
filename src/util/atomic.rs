//! Atomic file and folder writes: readers see the old content or the new, never half of it.

use anyhow::{Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A sibling path of `path` for temporary content, unique to this write: the process id (which
/// tells a killed writer's leftovers from a running one's) and a per-process count (threads of one
/// process writing the same path at once do not share it).
fn temp_sibling(path: &Path) -> PathBuf {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()))
}

/// Removes what writers of `path` that were killed before they finished left behind: temporary
/// siblings whose process no longer runs (Linux, where `/proc` tells; elsewhere nothing is
/// removed). A notebook cell interrupted mid-write is such a writer.
fn remove_stale_siblings(path: &Path) {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    if !Path::new("/proc/self").exists() {
        return;
    }
    let prefix = format!(".{}.tmp-", name.to_string_lossy());
    let Ok(entries) = fs::read_dir(if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    }) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name
            .to_string_lossy()
            .strip_prefix(&prefix)
            .map(String::from)
        else {
            continue;
        };
        // The suffix is `<pid>-<count>`; a running writer's folders stay whatever their count.
        let pid = pid.split('-').next().unwrap_or_default();
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new("/proc").join(p.to_string()).exists());
        if !alive {
            let stale = entry.path();
            let _ = fs::remove_dir_all(&stale).or_else(|_| fs::remove_file(&stale));
        }
    }
}

/// Writes a file atomically: the content goes to a temporary sibling, is synced, then renamed over
/// `path`. `write` receives the open temporary file.
pub fn write_file(path: &Path, write: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    remove_stale_siblings(path);
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        write(&mut file)?;
        file.flush()?;
        file.sync_all()?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

/// Renames the folder `tmp` to `dir`. A folder at `dir` is first renamed aside (one atomic step,
/// unlike removing it file by file, which another writer's rename can interrupt) and removed after
/// our rename. When another writer puts its folder at `dir` between those two renames, ours is
/// tried again, up to 500 times; then the error is returned.
fn replace_dir(tmp: &Path, dir: &Path) -> Result<()> {
    use std::io::ErrorKind::{AlreadyExists, DirectoryNotEmpty, NotFound};
    let mut tries_left = 500;
    loop {
        tries_left -= 1;
        let aside = temp_sibling(dir);
        if let Err(e) = fs::rename(dir, &aside) {
            if e.kind() != NotFound {
                return Err(e).with_context(|| format!("replacing {}", dir.display()));
            }
        }
        let renamed = fs::rename(tmp, dir);
        let _ = fs::remove_dir_all(&aside);
        match renamed {
            Ok(()) => return Ok(()),
            Err(e) if tries_left > 0 && matches!(e.kind(), DirectoryNotEmpty | AlreadyExists) => {}
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()));
            }
        }
    }
}

/// Writes bytes to `path` atomically.
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file(path, |f| Ok(f.write_all(bytes)?))
}

/// Fills a folder atomically: `fill` writes into an empty temporary sibling folder, which then
/// replaces `dir` (an existing `dir` is moved aside and removed). On error nothing is left behind;
/// what a killed writer left is removed by the next write of the same folder. Two writers of one
/// folder at once (two threads filling the same cache entry) both succeed, the last one's content
/// kept: a folder another writer renamed into place just before ours is moved aside and the rename
/// tried again.
pub fn write_dir(dir: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    remove_stale_siblings(dir);
    let tmp = temp_sibling(dir);
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let result = fill(&tmp).and_then(|()| replace_dir(&tmp, dir));
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

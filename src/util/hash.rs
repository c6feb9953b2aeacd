//! sha256 of files and bytes, as lowercase hex: model files are verified by it, and caches are
//! keyed by it.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of bytes.
///
/// ```
/// assert_eq!(isotropy_lab::util::hash::hex(&[0x00, 0xab, 0x10]), "00ab10");
/// ```
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 32 bytes a sha256 [`hex`] text spells, or `None` if `text` is not 64 hex digits.
///
/// ```
/// use isotropy_lab::util::hash::{hex, sha256_from_hex};
///
/// let digest = [7u8; 32];
/// assert_eq!(sha256_from_hex(&hex(&digest)), Some(digest));
/// assert_eq!(sha256_from_hex("00ab10"), None);
/// assert_eq!(sha256_from_hex(&format!("+a{}", "0".repeat(62))), None);
/// ```
pub fn sha256_from_hex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

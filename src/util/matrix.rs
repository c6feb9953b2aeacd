//! A dense row-major f32 matrix: one row per token, one column per hidden dimension.

use anyhow::{bail, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock};

// A matrix's values are read and written as they lie in memory: hashed by
// [`Matrix::digest`], and copied to and from the extraction cache's safetensors files, which are
// little-endian.
#[cfg(target_endian = "big")]
compile_error!("isotropy-lab reads and writes f32 values as little-endian memory");

/// A row-major `rows × cols` matrix of f32. Its values never change once made, so its
/// [`Matrix::digest`] is computed once and kept. They are held in memory, or (a layer read back
/// from the extraction cache) in a read-only map of the file that holds them, read from disk
/// only where they are used: a result cached by the layer's digest is answered without reading
/// it.
#[derive(Clone)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Values,
    digest: OnceLock<[u8; 32]>,
}

/// Where a matrix's values are.
#[derive(Clone)]
enum Values {
    Owned(Vec<f32>),
    /// `len` values from byte `start` of a map of a file that nothing rewrites in place (checked
    /// to be aligned for f32 when made).
    Mapped {
        map: Arc<memmap2::Mmap>,
        start: usize,
        len: usize,
    },
}

impl Values {
    fn as_slice(&self) -> &[f32] {
        match self {
            Values::Owned(v) => v,
            Values::Mapped { map, start, len } => {
                bytemuck::cast_slice(&map[*start..*start + *len * std::mem::size_of::<f32>()])
            }
        }
    }
}

impl PartialEq for Matrix {
    fn eq(&self, other: &Matrix) -> bool {
        (self.rows, self.cols) == (other.rows, other.cols) && self.data() == other.data()
    }
}

impl std::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Matrix")
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("data", &self.data())
            .finish()
    }
}

impl Matrix {
    /// Wraps row-major data; fails if `data.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        if data.len() != rows * cols {
            bail!(
                "matrix data has {} values, expected {rows} × {cols} = {}",
                data.len(),
                rows * cols
            );
        }
        Ok(Self::from_parts(rows, cols, data))
    }

    fn from_parts(rows: usize, cols: usize, data: Vec<f32>) -> Matrix {
        Matrix {
            rows,
            cols,
            data: Values::Owned(data),
            digest: OnceLock::new(),
        }
    }

    /// The `rows × cols` little-endian f32 values at bytes `start..` of `map`, left in the map:
    /// its pages are read from disk when a value on them is first used. The file must not be
    /// rewritten in place while the matrix lives (the extraction cache replaces its files by
    /// renaming new ones over them). Fails if the bytes run past the map or are not aligned
    /// for f32.
    pub(crate) fn mapped(
        rows: usize,
        cols: usize,
        map: Arc<memmap2::Mmap>,
        start: usize,
    ) -> Result<Matrix> {
        let len = rows.checked_mul(cols);
        let end = len
            .and_then(|len| len.checked_mul(std::mem::size_of::<f32>()))
            .and_then(|bytes| bytes.checked_add(start));
        let (Some(len), Some(bytes)) = (len, end.and_then(|end| map.get(start..end))) else {
            bail!(
                "a {rows} × {cols} matrix at byte {start} runs past the end of its file ({} bytes)",
                map.len()
            );
        };
        if bytemuck::try_cast_slice::<u8, f32>(bytes).is_err() {
            bail!("a {rows} × {cols} matrix at byte {start} is not aligned for f32 values");
        }
        Ok(Matrix {
            rows,
            cols,
            data: Values::Mapped { map, start, len },
            digest: OnceLock::new(),
        })
    }

    /// sha256 of the shape and every value's bits (little-endian: the crate builds on
    /// little-endian targets only), computed on the first call
    /// and kept: what the result caches ([`crate::util::memo::Key::matrix`]) key a matrix by,
    /// so a layer read by several cached results is hashed once.
    ///
    /// ```
    /// use isotropy_lab::util::matrix::Matrix;
    ///
    /// let a = Matrix::new(2, 2, vec![1.0, 2.0, 3.0, 4.0])?;
    /// assert_eq!(a.digest(), a.clone().digest());
    /// // The same values in another shape, or one value changed, give another digest.
    /// assert_ne!(a.digest(), Matrix::new(1, 4, vec![1.0, 2.0, 3.0, 4.0])?.digest());
    /// assert_ne!(a.digest(), Matrix::new(2, 2, vec![1.0, 2.0, 3.0, -4.0])?.digest());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn digest(&self) -> [u8; 32] {
        *self.digest.get_or_init(|| {
            let mut hasher = Sha256::new();
            hasher.update((self.rows as u64).to_le_bytes());
            hasher.update((self.cols as u64).to_le_bytes());
            hasher.update(bytemuck::cast_slice::<f32, u8>(self.data()));
            hasher.finalize().into()
        })
    }

    /// Records `digest` as this matrix's [`Matrix::digest`] without hashing its values: for a
    /// matrix read back from a file whose writer stored the digest of these very values (the
    /// extraction cache). Does nothing if the digest is already known.
    pub(crate) fn assume_digest(&self, digest: [u8; 32]) {
        let _ = self.digest.set(digest);
    }

    /// Number of rows (tokens).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (hidden dimensions).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data()[i * self.cols..(i + 1) * self.cols]
    }

    /// All values, row after row.
    pub fn data(&self) -> &[f32] {
        self.data.as_slice()
    }

    /// Fails unless the matrix has at least one row and column and only finite values.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            bail!(
                "{what}: the matrix is empty ({} × {})",
                self.rows,
                self.cols
            );
        }
        // Chunks checked in parallel, each without an early exit (a loop the compiler
        // vectorises); the first bad chunk is then searched for the first bad value.
        const CHUNK: usize = 1 << 16;
        let data = self.data();
        let bad = |v: &f32| !v.is_finite();
        let first_bad = data
            .par_chunks(CHUNK)
            .position_first(|c| c.iter().fold(false, |any, v| any | bad(v)))
            .and_then(|c| {
                data[c * CHUNK..]
                    .iter()
                    .position(bad)
                    .map(|p| c * CHUNK + p)
            });
        if let Some(pos) = first_bad {
            bail!(
                "{what}: value {} at row {}, column {} is not finite",
                data[pos],
                pos / self.cols,
                pos % self.cols
            );
        }
        Ok(())
    }

    /// The matrix without the columns in `drop` (indices out of range are ignored).
    ///
    /// ```
    /// use isotropy_lab::util::matrix::Matrix;
    ///
    /// let m = Matrix::new(2, 3, vec![1.0, 0.0, 2.0, 3.0, 0.0, 4.0])?;
    /// assert_eq!(m.without_columns(&[1]).data(), &[1.0, 2.0, 3.0, 4.0]);
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn without_columns(&self, drop: &[usize]) -> Matrix {
        let keep: Vec<usize> = (0..self.cols).filter(|j| !drop.contains(j)).collect();
        let mut data = Vec::with_capacity(self.rows * keep.len());
        for i in 0..self.rows {
            let row = self.row(i);
            data.extend(keep.iter().map(|&j| row[j]));
        }
        Matrix::from_parts(self.rows, keep.len(), data)
    }

    /// The matrix of the rows `idx`, in that order (repeats allowed: a bootstrap resample).
    ///
    /// ```
    /// use isotropy_lab::util::matrix::Matrix;
    ///
    /// let m = Matrix::new(3, 1, vec![1.0, 2.0, 3.0])?;
    /// assert_eq!(m.select_rows(&[2, 0, 2])?.data(), &[3.0, 1.0, 3.0]);
    /// assert!(m.select_rows(&[3]).is_err());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn select_rows(&self, idx: &[usize]) -> Result<Matrix> {
        if let Some(&bad) = idx.iter().find(|&&i| i >= self.rows) {
            bail!(
                "row {bad} does not exist: the matrix has {} rows",
                self.rows
            );
        }
        let mut data = Vec::with_capacity(idx.len() * self.cols);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Matrix::new(idx.len(), self.cols, data)
    }

    /// The matrix in f64, as a faer matrix.
    pub fn to_faer(&self) -> faer::Mat<f64> {
        let (rows, data) = (self.rows, self.data());
        let mut out = faer::Mat::<f64>::zeros(rows, self.cols);
        // faer is column-major: copy a block of rows at a time, so both sides stay in cache.
        for first in (0..rows).step_by(BLOCK) {
            let last = (first + BLOCK).min(rows);
            for j in 0..self.cols {
                let mut col = out.as_mut().col_mut(j);
                for i in first..last {
                    col[i] = f64::from(data[i * self.cols + j]);
                }
            }
        }
        out
    }

    /// Rows `start..start + out.len() / cols` into `out` in f64, row-major as they are here,
    /// minus `shift[j]` in column j where given: a straight conversion, which the geometry reads
    /// a block of rows at a time as a row-major faer view (`MatRef::from_row_major_slice`).
    pub(crate) fn write_rows_f64(&self, start: usize, out: &mut [f64], shift: Option<&[f64]>) {
        debug_assert!(shift.is_none_or(|s| s.len() == self.cols));
        if self.cols == 0 {
            return;
        }
        let from = start * self.cols;
        let values = &self.data()[from..from + out.len()];
        match shift {
            None => out
                .iter_mut()
                .zip(values)
                .for_each(|(o, &v)| *o = f64::from(v)),
            Some(shift) => {
                for (o, v) in out
                    .chunks_exact_mut(self.cols)
                    .zip(values.chunks_exact(self.cols))
                {
                    for ((o, &v), &s) in o.iter_mut().zip(v).zip(shift) {
                        *o = f64::from(v) - s;
                    }
                }
            }
        }
    }

    /// A faer matrix's values in f32, row-major.
    pub fn from_faer(m: faer::MatRef<'_, f64>) -> Matrix {
        let (rows, cols) = (m.nrows(), m.ncols());
        let mut data = vec![0f32; rows * cols];
        write_f32(m, &mut data);
        Matrix::from_parts(rows, cols, data)
    }
}

/// `m`'s values in f32 into `out`, row-major (`out` holds `m.nrows() × m.ncols()` values): the
/// inverse of [`Matrix::to_faer`].
fn write_f32(m: faer::MatRef<'_, f64>, out: &mut [f32]) {
    let (rows, cols) = (m.nrows(), m.ncols());
    debug_assert_eq!(out.len(), rows * cols);
    for start in (0..rows).step_by(BLOCK) {
        let end = (start + BLOCK).min(rows);
        for j in 0..cols {
            let col = m.col(j);
            for i in start..end {
                out[i * cols + j] = col[i] as f32;
            }
        }
    }
}

/// Rows per block when converting between row-major and column-major layouts.
const BLOCK: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    /// A map of a file holding one padding byte, then the f32 values 0, 1, …, 11.
    fn map_of_values() -> Arc<memmap2::Mmap> {
        let mut bytes = vec![0u8];
        for v in 0..12 {
            bytes.extend_from_slice(&(v as f32).to_le_bytes());
        }
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &bytes).unwrap();
        // SAFETY: the file is this test's own and is not written while mapped.
        Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap())
    }

    #[test]
    fn mapped_values_are_read_in_place_and_checked() {
        let map = map_of_values();
        // Byte 1 is where the values start, which a map (page-aligned) does not align for f32.
        let err = Matrix::mapped(3, 4, map.clone(), 1).unwrap_err();
        assert!(format!("{err}").contains("not aligned"), "{err}");
        let err = Matrix::mapped(4, 4, map.clone(), 0).unwrap_err();
        assert!(format!("{err}").contains("runs past the end"), "{err}");
        // The same values copied to an aligned file of their own.
        let mut bytes = map[1..].to_vec();
        bytes.extend_from_slice(&[0; 4]);
        let file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut &file, &bytes).unwrap();
        // SAFETY: the file is this test's own and is not written while mapped.
        let aligned = Arc::new(unsafe { memmap2::Mmap::map(&file) }.unwrap());
        let m = Matrix::mapped(3, 4, aligned, 0).unwrap();
        let owned = Matrix::new(3, 4, (0..12).map(|v| v as f32).collect()).unwrap();
        assert_eq!(m, owned);
        assert_eq!(m.row(2), owned.row(2));
        assert_eq!(m.digest(), owned.digest());
        assert_eq!(m.clone().data(), owned.data());
    }
}

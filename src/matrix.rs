//! A dense row-major f32 matrix: one row per token, one column per hidden dimension.

use anyhow::{bail, Result};

/// A row-major `rows × cols` matrix of f32.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
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
        Ok(Self { rows, cols, data })
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
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// All values, row after row.
    pub fn data(&self) -> &[f32] {
        &self.data
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
        if let Some(pos) = self.data.iter().position(|v| !v.is_finite()) {
            bail!(
                "{what}: value {} at row {}, column {} is not finite",
                self.data[pos],
                pos / self.cols,
                pos % self.cols
            );
        }
        Ok(())
    }

    /// The matrix in f64, as a faer matrix.
    pub fn to_faer(&self) -> faer::Mat<f64> {
        faer::Mat::from_fn(self.rows, self.cols, |i, j| {
            f64::from(self.data[i * self.cols + j])
        })
    }
}

//! polars DataFrames kept usable from notebook cell to cell, and stacked per model.
//!
//! evcxr compiles each cell into its own shared library, with its own copy of every static of the
//! statically linked dependencies. polars caches a DataFrame's schema (a hash map) the first time a
//! column of a frame wider than four columns is looked up by name, hashed with foldhash's
//! per-library random seed: a later cell, with another seed, then cannot find any column of that
//! frame by name. [`Fresh::fresh`] returns a copy without the cache (the columns are shared, not
//! copied). Every DataFrame this crate returns is fresh, and it never looks up columns on the
//! caller's frames in a way that fills their cache.

use polars::prelude::{Column, DataFrame, DataType};

/// A copy of a DataFrame without its cached schema, safe to look up by column name in any
/// notebook cell (see the module documentation). Cheap: columns are reference-counted.
pub trait Fresh {
    /// The same columns in a new DataFrame with no cached schema.
    fn fresh(&self) -> DataFrame;
}

impl Fresh for DataFrame {
    fn fresh(&self) -> DataFrame {
        DataFrame::new(self.height(), self.columns().to_vec()).unwrap_or_else(|_| self.clone())
    }
}

/// Stacks per-model tables with the same columns into one, with a first column `model` holding
/// each model's short name ([`crate::util::paths::model_display_name`]): the shape the notebooks
/// compare models in (one line per model in a `LineChart` of the notebook layer).
pub fn by_model(tables: &[(&str, DataFrame)]) -> anyhow::Result<DataFrame> {
    let mut out: Option<DataFrame> = None;
    for (name, table) in tables {
        let shown = crate::util::paths::model_display_name(name);
        let mut cols = vec![Column::new("model".into(), vec![shown; table.height()])];
        cols.extend(table.columns().iter().cloned());
        let table = DataFrame::new_infer_height(cols)?;
        out = Some(match out {
            None => table,
            Some(acc) => acc.vstack(&table)?,
        });
    }
    out.map(|df| df.fresh())
        .ok_or_else(|| anyhow::anyhow!("by_model: no tables given"))
}

/// The values of column `name` of `df` as text, whatever the column's type (a missing value
/// as ""). An error names the column and the ones the table has.
///
/// ```
/// use isotropy_lab::util::frame::column_texts;
/// use polars::prelude::*;
///
/// let table = df!("task" => ["sst2", "mrpc"], "lambda" => [-5.0, 0.0])?;
/// assert_eq!(column_texts(&table, "task")?, ["sst2", "mrpc"]);
/// assert_eq!(column_texts(&table, "lambda")?, ["-5.0", "0.0"]);
/// assert!(column_texts(&table, "seed").unwrap_err().to_string().contains("task, lambda"));
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn column_texts(df: &DataFrame, name: &str) -> anyhow::Result<Vec<String>> {
    let c = named_column(df, name)?.cast(&DataType::String)?;
    Ok(c.str()?
        .iter()
        .map(|v| v.unwrap_or("").to_string())
        .collect())
}

/// The values of numeric column `name` of `df` as f64 (a missing value as NaN). An error names
/// the column and the ones the table has, or says the column is not numeric.
///
/// ```
/// use isotropy_lab::util::frame::column_numbers;
/// use polars::prelude::*;
///
/// let table = df!("layer" => [Some(0u32), None], "task" => ["sst2", "mrpc"])?;
/// let layer = column_numbers(&table, "layer")?;
/// assert_eq!(layer[0], 0.0);
/// assert!(layer[1].is_nan());
/// assert!(column_numbers(&table, "task").is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn column_numbers(df: &DataFrame, name: &str) -> anyhow::Result<Vec<f64>> {
    use anyhow::Context;
    let c = named_column(df, name)?;
    if !c.dtype().is_primitive_numeric() {
        anyhow::bail!("column '{name}' is not numeric (it holds {})", c.dtype());
    }
    let c = c
        .cast(&DataType::Float64)
        .with_context(|| format!("column '{name}' is not numeric"))?;
    Ok(c.f64()?.iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Column `name` of a fresh copy of `df` (the caller's frame keeps no cached schema), or an
/// error that names it and the columns there are.
fn named_column(df: &DataFrame, name: &str) -> anyhow::Result<Column> {
    let f = df.fresh();
    match f.column(name) {
        Ok(c) => Ok(c.clone()),
        Err(_) => {
            let names: Vec<String> = f.get_column_names().iter().map(|n| n.to_string()).collect();
            anyhow::bail!(
                "the table has no column '{name}' (it has {})",
                names.join(", ")
            )
        }
    }
}

/// One number of a per-model, per-layer table (the shape of
/// [`crate::analysis::layers::compare_layers`]: columns `model`, `layer` and the measures): the
/// value of `column` in the row of `model` and `layer`, as f64. `model` may be given as loaded (a
/// folder, a registry name, a hub id): it is matched through its display name, as the table
/// holds it. A missing column, model or layer is an error that names it and what there is.
///
/// ```
/// use isotropy_lab::util::frame::value_at;
/// use polars::prelude::*;
///
/// let table = df!("model" => ["minilm", "minilm", "x"], "layer" => [0u32, 6, 6],
///                 "dominant" => [2u32, 5, 9])?;
/// assert_eq!(value_at(&table, "minilm", 6, "dominant")?, 5.0);
/// assert!(value_at(&table, "minilm", 7, "dominant").is_err());
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn value_at(table: &DataFrame, model: &str, layer: usize, column: &str) -> anyhow::Result<f64> {
    let shown = crate::util::paths::model_display_name(model);
    let models = column_texts(table, "model")?;
    let layers = column_numbers(table, "layer")?;
    let values = column_numbers(table, column)?;
    let row = models
        .iter()
        .zip(&layers)
        .position(|(m, l)| (*m == shown || m == model) && *l == layer as f64);
    match row {
        Some(i) if values[i].is_nan() => {
            anyhow::bail!("{column} of {shown}, layer {layer} is missing")
        }
        Some(i) => Ok(values[i]),
        None => {
            let mut have: Vec<&String> = models.iter().collect();
            have.dedup();
            anyhow::bail!(
                "no row for model '{shown}' and layer {layer} (models: {have:?}, layers {:?})",
                layers
                    .iter()
                    .filter(|l| !l.is_nan())
                    .fold(Vec::<f64>::new(), |mut v, &l| {
                        if !v.contains(&l) {
                            v.push(l);
                        }
                        v
                    })
            )
        }
    }
}

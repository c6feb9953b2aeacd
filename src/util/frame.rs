//! polars DataFrames kept usable from notebook cell to cell, and stacked per model.
//!
//! evcxr compiles each cell into its own shared library, with its own copy of every static of the
//! statically linked dependencies. polars caches a DataFrame's schema (a hash map) the first time a
//! column of a frame wider than four columns is looked up by name, hashed with foldhash's
//! per-library random seed: a later cell, with another seed, then cannot find any column of that
//! frame by name. [`Fresh::fresh`] returns a copy without the cache (the columns are shared, not
//! copied). Every DataFrame this crate returns is fresh, and it never looks up columns on the
//! caller's frames in a way that fills their cache.

use polars::prelude::{Column, DataFrame};

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
    use anyhow::Context;
    use polars::prelude::DataType;
    let t = table.fresh();
    let text = |name: &str| -> anyhow::Result<Vec<String>> {
        let c = t
            .column(name)
            .with_context(|| format!("the table has no column '{name}'"))?
            .cast(&DataType::String)?;
        Ok(c.str()?
            .iter()
            .map(|v| v.unwrap_or("").to_string())
            .collect())
    };
    let number = |name: &str| -> anyhow::Result<Vec<Option<f64>>> {
        let c = t
            .column(name)
            .with_context(|| {
                let names: Vec<String> =
                    t.get_column_names().iter().map(|n| n.to_string()).collect();
                format!(
                    "the table has no column '{name}' (it has {})",
                    names.join(", ")
                )
            })?
            .cast(&DataType::Float64)
            .with_context(|| format!("column '{name}' is not numeric"))?;
        Ok(c.f64()?.iter().collect())
    };
    let shown = crate::util::paths::model_display_name(model);
    let models = text("model")?;
    let layers = number("layer")?;
    let values = number(column)?;
    let row = models
        .iter()
        .zip(&layers)
        .position(|(m, l)| (*m == shown || m == model) && *l == Some(layer as f64));
    match row {
        Some(i) => {
            values[i].with_context(|| format!("{column} of {shown}, layer {layer} is missing"))
        }
        None => {
            let mut have: Vec<&String> = models.iter().collect();
            have.dedup();
            anyhow::bail!(
                "no row for model '{shown}' and layer {layer} (models: {have:?}, layers {:?})",
                layers
                    .iter()
                    .flatten()
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

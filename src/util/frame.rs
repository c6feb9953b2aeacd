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

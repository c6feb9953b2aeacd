//! The protocol an analysis follows, said once: which token rows it measures, which I(W) it
//! reports, how it clusters, and how many seeds and resamples give its spread.
//! [`Protocol::caption`] is the line the chapters print under a table.
//!
//! The default is the authors' protocol (their companion code, GitHub
//! Sara-Rajaee/clusterbased_isotropy_enhancement): `[CLS]` and `[SEP]` deleted before any measure
//! (here: not extracted, [`crate::analysis::extract::ExtractOptions::keep_special`] is false by
//! default), I(W) with one sign per eigenvector, k-means from randomly drawn rows for 10
//! iterations (scipy's `kmeans2(minit="points")`). Where their choice is arbitrary (the
//! eigenvector's sign, the unseeded k-means) we report the range or the spread it causes.

use crate::analysis::columns;
use crate::analysis::extract::Embeddings;
use crate::geometry::cluster::{KMeansInit, KMeansOptions};
use crate::util::frame::Fresh;

/// How the analyses of a chapter measure, cluster and estimate their spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Protocol {
    /// Seeds of every seeded step whose result is shown with its spread (k-means): `0..seeds`.
    pub seeds: usize,
    /// Bootstrap resamples of the sentences behind a spread that no seed controls (I(W), the
    /// spectrum, an STS-B score).
    pub resamples: usize,
    /// How k-means picks its first centres: [`KMeansInit::Points`] runs it as the authors do
    /// ([`KMeansOptions::authors`]), [`KMeansInit::PlusPlus`] as scikit-learn does
    /// ([`KMeansOptions::new`]).
    pub kmeans_init: KMeansInit,
}

impl Default for Protocol {
    /// The authors' protocol, with 5 k-means seeds and 20 bootstrap resamples.
    fn default() -> Self {
        Self {
            seeds: 5,
            resamples: 20,
            kmeans_init: KMeansInit::Points,
        }
    }
}

impl Protocol {
    /// The seeds `0..seeds`.
    pub fn seeds(&self) -> Vec<u64> {
        (0..self.seeds as u64).collect()
    }

    /// k-means options for `k` clusters with `seed`.
    pub fn kmeans(&self, k: usize, seed: u64) -> KMeansOptions {
        let options = match self.kmeans_init {
            KMeansInit::Points => KMeansOptions::authors(k),
            KMeansInit::PlusPlus => KMeansOptions::new(k),
        };
        KMeansOptions { seed, ..options }
    }

    /// One paragraph saying how a table of `models` was made: whether their token rows include
    /// `[CLS]`/`[SEP]` (read from their token tables; with no models given, what the default
    /// extraction does), which I(W) columns mean what, and how clusterings and spreads were drawn.
    pub fn caption(&self, models: &[&Embeddings]) -> String {
        let with_special = models
            .iter()
            .filter(|e| {
                e.tokens
                    .fresh()
                    .column(columns::IS_SPECIAL)
                    .ok()
                    .and_then(|c| c.bool().ok().map(|b| b.any()))
                    .unwrap_or(false)
            })
            .count();
        let rows = match with_special {
            _ if models.is_empty() => {
                "[CLS] and [SEP] removed, as ExtractOptions::default() extracts (the authors' protocol)"
                    .to_string()
            }
            0 => "[CLS] and [SEP] removed (the authors' protocol)".to_string(),
            n if n == models.len() => {
                "[CLS] and [SEP] kept (not the authors' protocol)".to_string()
            }
            n => format!(
                "[CLS] and [SEP] kept in {n} of {} models: not comparable",
                models.len()
            ),
        };
        let init = match self.kmeans_init {
            KMeansInit::Points => "first centres drawn from the rows, as scipy's kmeans2(minit='points') in the authors' code",
            KMeansInit::PlusPlus => "k-means++ first centres (scikit-learn's default, not the authors')",
        };
        let iterations = self.kmeans(2, 0).max_iter;
        format!(
            "Protocol: {rows}. I(W): `isotropy` takes one sign per eigenvector (largest component \
             positive); the authors' code takes whatever sign its solver returns, which puts their \
             value anywhere between `isotropy_sign_min` and `isotropy_sign_max`; \
             `isotropy_both_signs` takes F over ±u of every eigenvector, a lower bound that needs no \
             sign; `isotropy_live` leaves out the `dead_dims` coordinates. k-means (also inside the clustered enhancement methods): {init}, {iterations} \
             iterations, seeds 0–{}. Spreads: ± one standard deviation over those seeds, or over {} \
             bootstrap resamples of the sentences.",
            self.seeds.saturating_sub(1),
            self.resamples
        )
    }
}

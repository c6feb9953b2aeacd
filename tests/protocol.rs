//! The analysis protocol on a real model and real data: special tokens out by default (see also
//! tests/extract.rs), dead coordinates and I(W) without them, the seed-to-seed baseline of
//! clusterings, bootstrap spreads.

mod common;

use isotropy_lab::analysis::extract::Embeddings;
use isotropy_lab::analysis::layers::{layer_table, Measure, MeasureOptions};
use isotropy_lab::analysis::protocol::Protocol;
use isotropy_lab::analysis::spread::{bootstrap_layer, bootstrap_pair, summarise};
use isotropy_lab::util::matrix::Matrix;

fn mean_cosine_of(m: &Matrix) -> f64 {
    isotropy_lab::geometry::similarity::mean_cosine(m).unwrap()
}
use isotropy_lab::analysis::structure::{clustering_agreement, structure_over_seeds};
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::geometry::isotropy::{dead_coordinates, isotropy};

fn extract(limit: usize, seed: u64) -> Embeddings {
    common::extract_minilm(Task::Sst2, Split::Dev, limit, seed)
}

#[test]
fn isotropy_without_dead_coordinates_is_isotropy_of_the_live_columns() {
    let emb = extract(48, 0);
    let table = layer_table(&emb, &MeasureOptions::only(&[Measure::Isotropy])).unwrap();
    let dead_dims = table.column("dead_dims").unwrap().u32().unwrap();
    let live = table.column("isotropy_live").unwrap().f64().unwrap();
    let fixed = table.column("isotropy").unwrap().f64().unwrap();
    // Layer 0 (the embedding output) has no dead coordinate; the last layer has minilm's three.
    assert_eq!(dead_dims.get(0), Some(0));
    assert_eq!(live.get(0), fixed.get(0));
    assert_eq!(dead_dims.get(1), Some(3));
    let last = emb.layer(6).unwrap();
    let expected = isotropy(&last.without_columns(&dead_coordinates(last))).unwrap();
    assert_eq!(live.get(1), Some(expected.value));
    let (lo, hi) = (
        table.column("isotropy_sign_min").unwrap().f64().unwrap(),
        table.column("isotropy_sign_max").unwrap().f64().unwrap(),
    );
    for i in 0..2 {
        let (lo, v, hi) = (
            lo.get(i).unwrap(),
            fixed.get(i).unwrap(),
            hi.get(i).unwrap(),
        );
        assert!(
            lo <= v && v <= hi && lo < hi,
            "layer row {i}: {lo} <= {v} <= {hi}"
        );
    }
}

#[test]
fn clusterings_agree_with_themselves_more_than_chance_and_spreads_are_reported() {
    let emb = extract(48, 0);
    let protocol = Protocol::default();
    // The same space against itself: the cross rows are the seed-to-seed agreement again.
    let t = clustering_agreement([("a", &emb), ("b", &emb)], 6, 6, &protocol).unwrap();
    assert_eq!(t.height(), 3);
    let ari = t.column("ari_mean").unwrap().f64().unwrap();
    let pairs = t.column("pairs").unwrap().u32().unwrap();
    assert_eq!(pairs.get(0), Some(10), "5 seeds give 10 seed pairs");
    assert_eq!(pairs.get(2), Some(25), "and 25 pairs across the two spaces");
    assert!(
        ari.get(0).unwrap() > 0.2,
        "k-means of a real layer is far from chance: {t}"
    );
    // Another sample of sentences holds other tokens: a clear error, not a wrong table.
    let other = extract(40, 1);
    let err = clustering_agreement([("a", &emb), ("b", &other)], 6, 6, &protocol).unwrap_err();
    assert!(err.to_string().contains("different tokens"), "{err}");

    let per_seed = structure_over_seeds(&emb, 6, 6, &protocol).unwrap();
    assert_eq!(per_seed.height(), 5);
    let s = summarise(&per_seed, &["clusters"], &["nmi_class"]).unwrap();
    assert_eq!(s.column("n").unwrap().u32().unwrap().get(0), Some(5));
    assert!(
        s.column("nmi_class_sd")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap()
            > 0.0
    );

    let spread = bootstrap_layer(&emb, 6, 5, 0, |m| Ok(isotropy(m)?.both_signs.log10())).unwrap();
    assert_eq!(spread.n, 5);
    assert!(spread.sd > 0.0 && spread.min < spread.max);
    // Paired against itself: the same resamples, so every difference is exactly 0.
    let [a, b, d] =
        bootstrap_pair(&emb, &emb, 6, 5, 0, |m| Ok(isotropy(m)?.both_signs.log10())).unwrap();
    assert_eq!((a, b), (spread, spread));
    assert_eq!((d.mean, d.sd), (0.0, 0.0));
    assert!(
        bootstrap_pair(&emb, &other, 6, 5, 0, |m| Ok(mean_cosine_of(m)))
            .unwrap_err()
            .to_string()
            .contains("different sentences")
    );
}

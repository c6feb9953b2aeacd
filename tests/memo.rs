//! Results cached on disk by their inputs (`util::memo`): a table computed once is read back for
//! the same inputs, computed again for others, and recomputed when its file is unreadable; the
//! functions that cache (k-means labels, token probes, the choice of k) give from the cache what
//! they compute.

mod common;

use isotropy_lab::analysis::probes::{token_direction_probes, TokenProbeOptions, TokenTarget};
use isotropy_lab::analysis::protocol::Protocol;
use isotropy_lab::analysis::structure::{structure_over_seeds, structure_scores};
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::geometry::cluster::{choose_k, kmeans, KMeansOptions};
use isotropy_lab::util::frame::column_numbers;
use isotropy_lab::util::matrix::Matrix;
use isotropy_lab::util::memo::{cached_frame, Key};
use polars::prelude::{Column, DataFrame};
use std::cell::Cell;
use std::path::Path;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

fn numbers(frame: &DataFrame, name: &str) -> Vec<f64> {
    column_numbers(frame, name).unwrap()
}

/// One test in this binary: it points the cache at a folder of its own.
#[test]
fn results_are_read_back_for_the_same_inputs_only_and_recomputed_when_unreadable() {
    common::setup();
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("ISOLAB_CACHE", cache.path());
    let results = cache.path().join("results");

    // The store: computed once per key.
    let w = Matrix::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let computed = Cell::new(0);
    let table = |seed: u64| {
        cached_frame(Key::new("test-table").matrix(&w).debug(&seed), || {
            computed.set(computed.get() + 1);
            Ok(DataFrame::new_infer_height(vec![Column::new(
                "value".into(),
                vec![seed as f64 + 0.5],
            )])?)
        })
        .unwrap()
    };
    let first = table(1);
    assert_eq!(table(1), first);
    assert_eq!(computed.get(), 1, "the same inputs must be read back");
    assert_ne!(table(2), first);
    assert_eq!(computed.get(), 2, "other inputs must be computed");
    let stored = files(&results.join("test-table"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    // An unreadable entry is computed again and replaced.
    for path in &stored {
        std::fs::write(path, b"not parquet").unwrap();
    }
    assert_eq!(table(1), first);
    assert_eq!(computed.get(), 3, "an unreadable entry must be recomputed");
    assert_eq!(table(1), first);
    assert_eq!(
        computed.get(),
        3,
        "the recomputed entry must be written back"
    );

    // Token probes on real minilm rows: the second call reads the first's table.
    let train = common::extract_minilm(Task::Sst2, Split::Train, 150, 0);
    let dev = common::extract_minilm(Task::Sst2, Split::Dev, 60, 0);
    let protocol = Protocol {
        seeds: 2,
        ..Protocol::default()
    };
    let opts = TokenProbeOptions {
        ks: vec![2],
        train_tokens: 800,
        ..TokenProbeOptions::default()
    };
    let probes = |opts: &TokenProbeOptions| {
        token_direction_probes(&train, &dev, 6, TokenTarget::Class, opts, &protocol).unwrap()
    };
    let fresh = probes(&opts);
    let dir = results.join("token-probes");
    let written = files(&dir);
    assert_eq!(written.len(), 1);
    let modified = std::fs::metadata(&written[0]).unwrap().modified().unwrap();
    assert_eq!(probes(&opts), fresh);
    assert_eq!(
        std::fs::metadata(&written[0]).unwrap().modified().unwrap(),
        modified,
        "the cached table must be read, not written again"
    );
    let fewer = TokenProbeOptions {
        train_tokens: 400,
        ..opts.clone()
    };
    probes(&fewer);
    assert_eq!(files(&dir).len(), 2, "other options must be another entry");

    // k-means labels: the structure table over seeds is the same computed and read back, and
    // each row is what scoring a fresh k-means gives.
    let m = dev.layer(6).unwrap();
    let over_seeds = structure_over_seeds(&dev, 6, 4, &protocol).unwrap();
    assert_eq!(files(&results.join("kmeans-labels")).len(), protocol.seeds);
    // The scores sum over hash maps, so equal labels give equal scores up to rounding.
    let close = |a: &DataFrame, b: &DataFrame| {
        assert_eq!(a.get_column_names(), b.get_column_names());
        for name in a.get_column_names() {
            let (x, y) = (numbers(a, name), numbers(b, name));
            for (u, v) in x.iter().zip(&y) {
                assert!(
                    (u - v).abs() <= 1e-12 * u.abs().max(1.0),
                    "{name}: {u} vs {v}"
                );
            }
        }
    };
    close(
        &structure_over_seeds(&dev, 6, 4, &protocol).unwrap(),
        &over_seeds,
    );
    for (row, seed) in protocol.seeds().into_iter().enumerate() {
        let labels = kmeans(m, &protocol.kmeans(4, seed)).unwrap().labels;
        let want = structure_scores(&dev, &labels).unwrap();
        close(
            &over_seeds.slice(row as i64, 1).drop("seed").unwrap(),
            &want,
        );
    }

    // The choice of k by the silhouette: read back with its clustering.
    let opts = KMeansOptions {
        seed: 3,
        ..KMeansOptions::new(2)
    };
    let choice = choose_k(m, 2..=5, &opts, 500, 0.0).unwrap();
    let stored = files(&results.join("choose-k"));
    assert_eq!(stored.len(), 1);
    let again = choose_k(m, 2..=5, &opts, 500, 0.0).unwrap();
    assert_eq!((again.k, &again.scores), (choice.k, &choice.scores));
    let (a, b) = (&again.clustering, &choice.clustering);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.centroids, b.centroids);
    assert_eq!((a.inertia, a.iterations), (b.inertia, b.iterations));
    let direct = kmeans(
        m,
        &KMeansOptions {
            k: choice.k,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        a.labels, direct.labels,
        "the chosen clustering is k-means with that k"
    );
    choose_k(m, 2..=4, &opts, 500, 0.0).unwrap();
    assert_eq!(files(&results.join("choose-k")).len(), 2);
}

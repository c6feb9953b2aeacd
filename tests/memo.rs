//! Results cached on disk by their inputs (`util::memo`): a result computed once is read back for
//! the same inputs (an entry planted in its place comes back, which only a read can give),
//! computed again for other inputs, and recomputed and replaced when its entry is unreadable or
//! does not fit; the functions that cache (k-means labels, the choice of k, token probes, the
//! enhancement table's measures, the layer table's rows, named statistics and their bootstraps,
//! the clustered methods' labels, the fits of the methods that remove directions, a bi-encoder's
//! STS scores after each method, the sha256 of large files) give from the cache what they compute.

mod common;

use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::analysis::layers::{layer_table, Measure, MeasureOptions};
use isotropy_lab::analysis::methods::{method_table, sts_method_scores};
use isotropy_lab::analysis::probes::{token_direction_probes, TokenProbeOptions, TokenTarget};
use isotropy_lab::analysis::protocol::Protocol;
use isotropy_lab::analysis::spread::{bootstrap_pair, bootstrap_statistic, Statistic};
use isotropy_lab::analysis::structure::{structure_over_seeds, structure_scores};
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::geometry::cluster::{choose_k, kmeans, kmeans_labels, KMeansOptions};
use isotropy_lab::geometry::enhance::Method;
use isotropy_lab::geometry::stats::{spearman, sts_spearman};
use isotropy_lab::nn::model::Model;
use isotropy_lab::util::frame::column_numbers;
use isotropy_lab::util::hash::sha256_file;
use isotropy_lab::util::matrix::Matrix;
use isotropy_lab::util::memo::{cached_frame, expect_shape, sha256_file_cached, Key};
use polars::prelude::{Column, DataFrame, ParquetReader, ParquetWriter, SerReader};
use std::cell::Cell;
use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    found.sort();
    found
}

fn numbers(frame: &DataFrame, name: &str) -> Vec<f64> {
    column_numbers(frame, name).unwrap()
}

fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

/// Replaces column `name` of the cached table at `path` by `value` in every row.
fn plant(path: &Path, name: &str, value: f64) {
    let mut t = read_parquet(path);
    let height = t.height();
    t.with_column(Column::new(name.into(), vec![value; height]))
        .unwrap();
    ParquetWriter::new(std::fs::File::create(path).unwrap())
        .finish(&mut t)
        .unwrap();
}

/// One test in this binary: it points the cache at a folder of its own.
#[test]
fn results_are_read_back_for_the_same_inputs_only_and_recomputed_when_unreadable() {
    common::setup();
    let cache = tempfile::tempdir().unwrap();
    std::env::set_var("ISOLAB_CACHE", cache.path());
    let results = cache.path().join("results");

    // The store: computed once per key, refused entries recomputed.
    let w = Matrix::new(2, 2, vec![1.0, 2.0, 3.0, 4.0]).unwrap();
    let computed = Cell::new(0);
    let table = |seed: u64| {
        cached_frame(
            Key::new("test-table").matrix(&w).debug(&seed),
            |t| expect_shape(t, 1, &["value"]),
            || {
                computed.set(computed.get() + 1);
                Ok(DataFrame::new_infer_height(vec![Column::new(
                    "value".into(),
                    vec![seed as f64 + 0.5],
                )])?)
            },
        )
        .unwrap()
    };
    let first = table(1);
    assert_eq!(table(1), first);
    assert_eq!(computed.get(), 1, "the same inputs must be read back");
    assert_ne!(table(2), first);
    assert_eq!(computed.get(), 2, "other inputs must be computed");
    let stored = files(&results.join("test-table"));
    assert_eq!(stored.len(), 2, "{stored:?}");
    for path in &stored {
        plant(path, "value", 9.0);
    }
    assert_eq!(
        numbers(&table(1), "value"),
        [9.0],
        "a planted entry must be read"
    );
    // An unreadable entry, or one the check refuses, is computed again and replaced.
    std::fs::write(&stored[0], b"not parquet").unwrap();
    let mut wrong = DataFrame::new_infer_height(vec![Column::new("other".into(), [1.0])]).unwrap();
    ParquetWriter::new(std::fs::File::create(&stored[1]).unwrap())
        .finish(&mut wrong)
        .unwrap();
    let before = computed.get();
    assert_eq!(table(1), first);
    assert_eq!(table(2).height(), 1);
    assert_eq!(
        computed.get(),
        before + 2,
        "refused entries must be recomputed"
    );
    assert_eq!(table(1), first);
    assert_eq!(table(2).height(), 1);
    assert_eq!(
        computed.get(),
        before + 2,
        "recomputed entries must be written back"
    );

    // k-means labels on real minilm rows: computed, read back, repaired.
    let dev = common::extract_minilm(Task::Sst2, Split::Dev, 60, 0);
    let m = dev.layer(6).unwrap();
    let opts = KMeansOptions {
        seed: 4,
        ..KMeansOptions::new(4)
    };
    let labels = kmeans_labels(m, &opts).unwrap();
    assert_eq!(labels, kmeans(m, &opts).unwrap().labels);
    let entry = files(&results.join("kmeans-labels"));
    assert_eq!(entry.len(), 1);
    let zeros = vec![0usize; m.rows()];
    std::fs::write(&entry[0], serde_json::to_vec(&zeros).unwrap()).unwrap();
    assert_eq!(
        kmeans_labels(m, &opts).unwrap(),
        zeros,
        "a planted entry must be read"
    );
    std::fs::write(&entry[0], b"[0, 1]").unwrap();
    assert_eq!(
        kmeans_labels(m, &opts).unwrap(),
        labels,
        "too few labels must be refused"
    );
    assert_eq!(
        std::fs::read(&entry[0]).unwrap(),
        serde_json::to_vec(&labels).unwrap(),
        "the refused entry must be replaced"
    );

    // The structure table over seeds runs on those labels: each row is what scoring a fresh
    // k-means gives (the scores sum over hash maps: equal up to rounding).
    let protocol = Protocol {
        seeds: 2,
        ..Protocol::default()
    };
    let close = |a: &DataFrame, b: &DataFrame| {
        assert_eq!(a.get_column_names(), b.get_column_names());
        for name in a.get_column_names() {
            for (u, v) in numbers(a, name).iter().zip(numbers(b, name)) {
                assert!(
                    (u - v).abs() <= 1e-12 * u.abs().max(1.0),
                    "{name}: {u} vs {v}"
                );
            }
        }
    };
    let over_seeds = structure_over_seeds(&dev, 6, 4, &protocol).unwrap();
    for (row, seed) in protocol.seeds().into_iter().enumerate() {
        let fresh = kmeans(m, &protocol.kmeans(4, seed)).unwrap().labels;
        let want = structure_scores(&dev, &fresh).unwrap();
        close(
            &over_seeds.slice(row as i64, 1).drop("seed").unwrap(),
            &want,
        );
    }
    close(
        &structure_over_seeds(&dev, 6, 4, &protocol).unwrap(),
        &over_seeds,
    );

    // The choice of k: read back exactly, with its clustering; other arguments, another entry.
    let choice = choose_k(m, 2..=5, &opts, 500, 0.0).unwrap();
    let direct = kmeans(
        m,
        &KMeansOptions {
            k: choice.k,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(choice.clustering.labels, direct.labels);
    let again = choose_k(m, 2..=5, &opts, 500, 0.0).unwrap();
    assert_eq!((again.k, &again.scores), (choice.k, &choice.scores));
    let (a, b) = (&again.clustering, &choice.clustering);
    assert_eq!((&a.labels, &a.centroids), (&b.labels, &b.centroids));
    assert_eq!((a.inertia, a.iterations), (b.inertia, b.iterations));
    let entry = files(&results.join("choose-k"));
    assert_eq!(entry.len(), 1);
    let text = std::fs::read_to_string(&entry[0]).unwrap();
    let planted = text.replacen(
        &format!("\"iterations\":{}", b.iterations),
        "\"iterations\":9999",
        1,
    );
    assert_ne!(planted, text);
    std::fs::write(&entry[0], planted).unwrap();
    let read = choose_k(m, 2..=5, &opts, 500, 0.0).unwrap();
    assert_eq!(
        read.clustering.iterations, 9999,
        "a planted entry must be read"
    );
    choose_k(m, 2..=4, &opts, 500, 0.0).unwrap();
    assert_eq!(files(&results.join("choose-k")).len(), 2);

    // Token probes: read back; other options or another target, other entries.
    let train = common::extract_minilm(Task::Sst2, Split::Train, 150, 0);
    let probe_opts = TokenProbeOptions {
        ks: vec![2],
        train_tokens: 800,
        ..TokenProbeOptions::default()
    };
    let probes = |target: TokenTarget, opts: &TokenProbeOptions| {
        token_direction_probes(&train, &dev, 6, target, opts, &protocol).unwrap()
    };
    let fresh = probes(TokenTarget::Class, &probe_opts);
    assert_eq!(probes(TokenTarget::Class, &probe_opts), fresh);
    let dir = results.join("token-probes");
    let entry = files(&dir);
    assert_eq!(entry.len(), 1);
    plant(&entry[0], "top_k_accuracy", 2.0);
    let read = probes(TokenTarget::Class, &probe_opts);
    assert!(
        numbers(&read, "top_k_accuracy").iter().all(|&v| v == 2.0),
        "a planted entry must be read"
    );
    let fewer = TokenProbeOptions {
        train_tokens: 400,
        ..probe_opts.clone()
    };
    probes(TokenTarget::Class, &fewer);
    probes(TokenTarget::Label, &probe_opts);
    assert_eq!(files(&dir).len(), 3, "other inputs must be other entries");

    // The enhancement table: its measures are read back, its scorers run every time.
    let calls = Cell::new(0);
    let scorer = |w: &Matrix| -> anyhow::Result<f64> {
        calls.set(calls.get() + 1);
        Ok(w.data().iter().map(|v| f64::from(*v).abs()).sum())
    };
    let methods = [Method::ZeroMean, Method::ClusterBased { k: 3, d: 2 }];
    let table = || method_table(&dev, 6, &methods, 5, &[("size", &scorer)]).unwrap();
    let first = table();
    assert_eq!(calls.get(), 3);
    let second = table();
    assert_eq!(calls.get(), 6, "scorers must run on a cached table too");
    assert_eq!(first, second);
    let entries = files(&results.join("method-geometry"));
    assert_eq!(entries.len(), 3, "one entry per row");
    for path in &entries {
        plant(path, "isoscore", 0.25);
    }
    let read = table();
    assert!(
        numbers(&read, "isoscore").iter().all(|&v| v == 0.25),
        "planted measures must be read"
    );
    assert_eq!(numbers(&read, "size"), numbers(&first, "size"));

    // The layer table: a row per layer read back exactly; a refused row recomputed; other
    // measures, other entries.
    let measures = MeasureOptions::only(&[Measure::Isotropy, Measure::Cosine]);
    let fresh = layer_table(&dev, &measures).unwrap();
    assert_eq!(layer_table(&dev, &measures).unwrap(), fresh);
    let dir = results.join("layer-measures");
    let entries = files(&dir);
    assert_eq!(entries.len(), dev.layers.len(), "one entry per layer");
    for path in &entries {
        let mut row: Vec<(String, u64)> =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        for (name, bits) in &mut row {
            if name == "mean_cosine" {
                *bits = 0.125f64.to_bits();
            }
        }
        std::fs::write(path, serde_json::to_vec(&row).unwrap()).unwrap();
    }
    let read = layer_table(&dev, &measures).unwrap();
    assert!(
        numbers(&read, "mean_cosine").iter().all(|&v| v == 0.125),
        "planted rows must be read"
    );
    assert_eq!(numbers(&read, "isotropy"), numbers(&fresh, "isotropy"));
    std::fs::write(&entries[0], b"[]").unwrap();
    let repaired = numbers(&layer_table(&dev, &measures).unwrap(), "mean_cosine");
    let recomputed: Vec<f64> = repaired.iter().copied().filter(|&v| v != 0.125).collect();
    assert_eq!(
        recomputed.len(),
        1,
        "a refused row must be recomputed, the others read"
    );
    assert!(numbers(&fresh, "mean_cosine").contains(&recomputed[0]));
    layer_table(&dev, &MeasureOptions::only(&[Measure::Spectrum])).unwrap();
    assert_eq!(files(&dir).len(), 2 * entries.len());

    // A named statistic's paired bootstrap: what the closure gives, read back, repaired.
    // The other side: the same tokens with one coordinate zeroed (scaling would not change the
    // participation ratio), so the two sides differ and a swap would show.
    let mut other = dev.clone();
    let at = dev.layers.iter().position(|&l| l == 6).unwrap();
    let (rows, cols) = (m.rows(), m.cols());
    let mut zeroed = m.data().to_vec();
    for r in 0..rows {
        zeroed[r * cols] = 0.0;
    }
    other.matrices[at] = Matrix::new(rows, cols, zeroed).unwrap();
    let ratio = Statistic::ParticipationRatio;
    let boot = || bootstrap_statistic(&dev, &other, 6, 3, 1, ratio).unwrap();
    let fresh = boot();
    let direct = bootstrap_pair(&dev, &other, 6, 3, 1, |m| ratio.measure(m)).unwrap();
    assert_ne!(fresh[0].mean, fresh[1].mean, "the two sides must differ");
    assert_eq!(format!("{fresh:?}"), format!("{direct:?}"));
    assert_eq!(format!("{:?}", boot()), format!("{fresh:?}"));
    let entry = files(&results.join("bootstrap-pair"));
    assert_eq!(entry.len(), 1);
    let bits = |v: f64| v.to_bits();
    let planted = vec![
        [bits(1.0), bits(2.0)],
        [bits(3.0), bits(4.0)],
        [bits(5.0), bits(9.0)],
    ];
    std::fs::write(&entry[0], serde_json::to_vec(&planted).unwrap()).unwrap();
    let [a, b, difference] = boot();
    assert_eq!(
        (a.mean, b.mean, difference.mean),
        (3.0, 5.0, 2.0),
        "a planted entry must be read"
    );
    std::fs::write(&entry[0], serde_json::to_vec(&planted[..2]).unwrap()).unwrap();
    assert_eq!(
        format!("{:?}", boot()),
        format!("{fresh:?}"),
        "too few resamples must be refused and recomputed"
    );
    bootstrap_statistic(&dev, &other, 6, 3, 1, Statistic::Dominant).unwrap();
    assert_eq!(files(&results.join("bootstrap-pair")).len(), 2);
    assert!(
        !results.join("statistic").exists(),
        "a bootstrap's resamples are measured, not cached one by one"
    );

    // A named statistic of a whole layer: measured once, read back, repaired.
    let layer = dev.layer(6).unwrap();
    let measured = ratio.measure(layer).unwrap();
    assert_eq!(ratio.of(layer).unwrap().to_bits(), measured.to_bits());
    let entry = files(&results.join("statistic"));
    assert_eq!(entry.len(), 1);
    std::fs::write(&entry[0], serde_json::to_vec(&7.5f64.to_bits()).unwrap()).unwrap();
    assert_eq!(
        ratio.of(layer).unwrap(),
        7.5,
        "a planted entry must be read"
    );
    std::fs::write(&entry[0], b"not json").unwrap();
    assert_eq!(
        ratio.of(layer).unwrap().to_bits(),
        measured.to_bits(),
        "an unreadable entry must be recomputed"
    );
    Statistic::Dominant.of(layer).unwrap();
    ratio.of(other.layer(6).unwrap()).unwrap();
    assert_eq!(files(&results.join("statistic")).len(), 3);

    // A clustered method applied without labels clusters with the cached k-means labels: a
    // planted labelling is what it uses.
    let method = Method::ClusterBased { k: 5, d: 2 };
    let opts = method.kmeans_options(3).unwrap();
    let labels = kmeans_labels(m, &opts).unwrap();
    let entry = files(&results.join("kmeans-labels"))
        .into_iter()
        .find(|p| {
            let text = std::fs::read(p).unwrap();
            serde_json::from_slice::<Vec<usize>>(&text).is_ok_and(|l| l == labels)
        })
        .expect("the labels' entry");
    // Applied once before the labels change: its fits, cached too, are keyed by the clusters
    // they were made on, so the planted labelling gets fits of its own, not these.
    let before_planting = method.apply(m, 3).unwrap();
    let planted: Vec<usize> = (0..m.rows()).map(|i| i % opts.k).collect();
    assert_ne!(planted, labels);
    std::fs::write(&entry, serde_json::to_vec(&planted).unwrap()).unwrap();
    let applied = method.apply(m, 3).unwrap();
    assert_eq!(applied, method.apply_with(m, Some(&planted), 3).unwrap());
    assert_ne!(applied, before_planting);
    // The uncached f64 path fits the planted clusters afresh: a stale fit would not agree.
    let exact = method.apply_f64(m, Some(&planted), 3).unwrap();
    let worst = (0..m.rows())
        .flat_map(|i| (0..m.cols()).map(move |j| (i, j)))
        .map(|(i, j)| (f64::from(applied.row(i)[j]) - exact[(i, j)]).abs())
        .fold(0.0, f64::max);
    assert!(
        worst < 1e-4,
        "the planted clusters' rows differ by {worst} from a fresh fit"
    );
    assert_eq!(
        before_planting,
        method.apply_with(m, Some(&labels), 3).unwrap()
    );

    // A method that removes directions keeps its fit (means and top axes): written once, read
    // back (a planted fit that centres on zero and removes nothing gives the rows back
    // unchanged, which only a read can give), recomputed when unreadable, and the same for
    // every seed of a method without clusters.
    let removals = results.join("enhance-removal");
    let known = files(&removals);
    let global = Method::Global { d: 2 };
    let fitted = global.apply(m, 3).unwrap();
    let new: Vec<PathBuf> = files(&removals)
        .into_iter()
        .filter(|p| !known.contains(p))
        .collect();
    assert_eq!(new.len(), 1, "one fit written: {new:?}");
    let nothing = serde_json::json!([{"means": vec![0u64; m.cols()], "top": [], "dim": m.cols()}]);
    std::fs::write(&new[0], serde_json::to_vec(&nothing).unwrap()).unwrap();
    assert_eq!(
        global.apply(m, 3).unwrap(),
        *m,
        "a planted fit must be read"
    );
    assert_eq!(
        global.apply(m, 4).unwrap(),
        *m,
        "the seed is no part of a global fit's key"
    );
    std::fs::write(&new[0], b"[]").unwrap();
    assert_eq!(
        global.apply(m, 3).unwrap(),
        fitted,
        "a fit for no group must be refused and recomputed"
    );
    assert_eq!(files(&removals).len(), known.len() + 1);

    // A large file's sha256: read back while the file is unchanged, hashed again once it is
    // replaced; a small file, or one written in the last 2 s, hashed every time. (The models
    // loaded above have entries too.)
    let hashes = results.join("file-sha256");
    let before = files(&hashes);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("model.safetensors");
    let mut content = vec![7u8; 2 << 20];
    std::fs::write(&weights, &content).unwrap();
    let sha = sha256_file(&weights).unwrap();
    assert_eq!(sha256_file_cached(&weights).unwrap(), sha);
    assert_eq!(
        files(&hashes),
        before,
        "a file just written must not be cached"
    );
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(sha256_file_cached(&weights).unwrap(), sha);
    let entry: Vec<PathBuf> = files(&hashes)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(entry.len(), 1);
    let planted = "0".repeat(64);
    std::fs::write(&entry[0], serde_json::to_vec(&planted).unwrap()).unwrap();
    assert_eq!(
        sha256_file_cached(&weights).unwrap(),
        planted,
        "an unchanged file's hash must be read back"
    );
    std::fs::write(&entry[0], serde_json::to_vec("not a hash").unwrap()).unwrap();
    assert_eq!(
        sha256_file_cached(&weights).unwrap(),
        sha,
        "a refused entry is recomputed"
    );
    content[0] = 8;
    isotropy_lab::util::atomic::write_bytes(&weights, &content).unwrap();
    let replaced = sha256_file_cached(&weights).unwrap();
    assert_eq!(replaced, sha256_file(&weights).unwrap());
    assert_ne!(replaced, sha, "a replaced file must be hashed again");
    let config = dir.path().join("config.json");
    std::fs::write(&config, b"{}").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(
        sha256_file_cached(&config).unwrap(),
        sha256_file(&config).unwrap()
    );
    assert_eq!(sha256_file_cached(&weights).unwrap(), replaced);
    assert_eq!(
        files(&hashes).len(),
        before.len() + 2,
        "the replaced file once settled has an entry of its own, the small file none"
    );

    // A bi-encoder's STS scores after each method: what scoring each applied method gives,
    // read back, repaired.
    sts_scores_are_what_the_methods_give_and_are_read_back(&results);
}

/// [`sts_method_scores`] on 40 real STS-B dev pairs through minilm, in the test's cache.
fn sts_scores_are_what_the_methods_give_and_are_read_back(results: &Path) {
    let stsb = isotropy_lab::data::glue::load(Task::Stsb, Split::Dev).unwrap();
    let n = 40;
    let text = |name: &str| -> Vec<String> {
        let c = stsb.column(name).unwrap();
        c.str()
            .unwrap()
            .iter()
            .take(n)
            .map(|s| s.unwrap().to_string())
            .collect()
    };
    let mut sentences = text("sentence1");
    sentences.extend(text("sentence2"));
    let gold: Vec<f64> = numbers(&stsb, "label")[..n].to_vec();
    let model_files =
        isotropy_lab::data::fetch::resolve_model(common::minilm_dir().to_str().unwrap()).unwrap();
    let model = Model::load_files(model_files, &candle_core::Device::Cpu).unwrap();
    let source = Source::Sentences {
        name: "STS-B dev, 40 pairs".into(),
        sentences,
    };
    let options = ExtractOptions {
        layers: Some(vec![6]),
        ..ExtractOptions::default()
    };
    let emb = Embeddings::extract(&model, &source, &options).unwrap();
    let layer = emb.layer(6).unwrap();
    let methods = [Method::ZeroMean, Method::Global { d: 3 }];
    let scores = || sts_method_scores(&emb, 6, &gold, &methods, 2, 4).unwrap();
    let fresh = scores();
    // Each score: the pairs' sentence means after the method, scored as chapter 05 scores them.
    let pooled = |m: &Matrix| {
        let (_, s) = emb.sentence_means(m).unwrap();
        let d = s.cols();
        let half = |i: usize| Matrix::new(n, d, s.data()[i * n * d..(i + 1) * n * d].to_vec());
        (half(0).unwrap(), half(1).unwrap())
    };
    let applied: Vec<Matrix> = std::iter::once(layer.clone())
        .chain(methods.iter().map(|m| m.apply(layer, 2).unwrap()))
        .collect();
    for (j, m) in applied.iter().enumerate() {
        let (first, second) = pooled(m);
        let direct = sts_spearman(&first, &second, &gold).unwrap();
        assert!(
            (fresh.scores[j] - direct).abs() < 1e-9,
            "{j}: {fresh:?} vs {direct}"
        );
    }
    // A resample scores the drawn pairs: resample 1 is drawn with seed 2 + 1.
    let draw = isotropy_lab::util::sample::bootstrap(n, 3);
    let (first, second) = pooled(&applied[2]);
    let x: Vec<f64> = draw
        .iter()
        .map(|&i| isotropy_lab::geometry::stats::cosine(first.row(i), second.row(i)))
        .collect();
    let y: Vec<f64> = draw.iter().map(|&i| gold[i]).collect();
    let resampled = 100.0 * spearman(&x, &y).unwrap();
    assert!((fresh.resampled[1][2] - resampled).abs() < 1e-9);
    assert_ne!(fresh.resampled[0], fresh.resampled[1]);
    let (gain, gains) = fresh.removal_gain().unwrap();
    assert_eq!(gain, fresh.scores[2] - fresh.scores[0]);
    assert_eq!(gains.len(), 4);
    let mut short = fresh.clone();
    short.resampled[0].pop();
    let err = format!("{:#}", short.removal_gain().unwrap_err());
    assert!(
        err.contains("2 scores for the untouched layer and 2 methods"),
        "{err}"
    );
    short.methods = vec![Method::ZeroMean];
    let err = format!("{:#}", short.removal_gain().unwrap_err());
    assert!(err.contains("no method that removes directions"), "{err}");
    assert_eq!(scores(), fresh, "read back");
    let entry = files(&results.join("sts-method-scores"));
    assert_eq!(entry.len(), 1);
    let planted: Vec<Vec<u64>> = vec![vec![7.0f64.to_bits(); 3]; 5];
    std::fs::write(&entry[0], serde_json::to_vec(&planted).unwrap()).unwrap();
    assert_eq!(scores().scores, [7.0; 3], "a planted entry must be read");
    std::fs::write(&entry[0], serde_json::to_vec(&planted[..4]).unwrap()).unwrap();
    assert_eq!(
        scores(),
        fresh,
        "too few rows must be refused and recomputed"
    );
    // Another seed is another entry; gold scores for fewer pairs than the sentences hold are
    // refused by name.
    sts_method_scores(&emb, 6, &gold, &methods, 3, 4).unwrap();
    assert_eq!(files(&results.join("sts-method-scores")).len(), 2);
    let err = sts_method_scores(&emb, 6, &gold[..30], &methods, 2, 4).unwrap_err();
    assert!(
        format!("{err:#}").contains("80 sentence vectors for 30 pairs"),
        "{err:#}"
    );
}

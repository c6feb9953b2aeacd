//! The geometry toolkit against its references: PCA against scikit-learn, IsoScore against the
//! IsoScore package, I(W), cosine measures and local dimension against numpy / scikit-learn,
//! k-means and silhouette against scikit-learn, the enhancement methods against the authors'
//! definitions. Reference values: tests/data/geometry_reference.safetensors, from
//! scripts/reference_geometry.py. Plus invariants and bad input.

mod common;

use isotropy_lab::analysis::structure::cluster_table;
use isotropy_lab::geometry::cluster::{
    choose_k, kmeans, kmeans_from, local_isotropy, silhouette, KMeansOptions,
};
use isotropy_lab::geometry::enhance::{GlobalSweep, Method};
use isotropy_lab::geometry::isotropy::isotropy;
use isotropy_lab::geometry::lid::local_dimension;
use isotropy_lab::geometry::similarity::{
    intra_sentence_similarity, mean_cosine, self_similarity, CosineContributions,
};
use isotropy_lab::geometry::spectrum::{isoscore, Pca, Spectrum};
use isotropy_lab::util::matrix::Matrix;
use safetensors::SafeTensors;

fn reference() -> Vec<u8> {
    std::fs::read(common::root().join("tests/data/geometry_reference.safetensors")).unwrap()
}

fn f32_matrix(st: &SafeTensors, name: &str) -> Matrix {
    let t = st.tensor(name).unwrap();
    let data = t
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Matrix::new(t.shape()[0], t.shape()[1], data).unwrap()
}

fn f64s(st: &SafeTensors, name: &str) -> Vec<f64> {
    st.tensor(name)
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .data()
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn i64s(st: &SafeTensors, name: &str) -> Vec<i64> {
    st.tensor(name)
        .unwrap()
        .data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn labels(st: &SafeTensors, name: &str) -> Vec<usize> {
    i64s(st, name).into_iter().map(|l| l as usize).collect()
}

/// Relative difference.
fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(f64::MIN_POSITIVE)
}

/// The first `rows` rows of a matrix.
fn head(m: &Matrix, rows: usize) -> Matrix {
    Matrix::new(rows, m.cols(), m.data()[..rows * m.cols()].to_vec()).unwrap()
}

/// Largest |a − b| relative to the largest |b|.
fn max_rel_diff(a: &faer::Mat<f64>, b: &[f64]) -> f64 {
    let d = a.ncols();
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let mut worst = 0.0f64;
    for (idx, &v) in b.iter().enumerate() {
        worst = worst.max((a[(idx / d, idx % d)] - v).abs());
    }
    worst / scale
}

/// A seeded Gaussian cloud (Box–Muller), rows × cols.
fn gaussian(rows: usize, cols: usize, seed: u64) -> Matrix {
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(seed);
    let data = (0..rows * cols)
        .map(|_| {
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
        })
        .collect();
    Matrix::new(rows, cols, data).unwrap()
}

#[test]
fn variances_and_isoscore_match_the_references() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in ["aniso", "iso", "real", "sst2", "blobs"] {
        let m = f32_matrix(&st, case);
        let s = Spectrum::of(&m).unwrap();
        let expected = f64s(&st, &format!("{case}_variances"));
        let top = expected[0];
        // scikit-learn keeps min(N, d) components; the rest of ours are (numerically) zero.
        for (i, (&a, &b)) in s.variances.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-8 * b.abs() + 1e-12 * top,
                "{case} component {i}: {a} vs {b}"
            );
        }
        assert!(
            s.variances[expected.len()..]
                .iter()
                .all(|&v| v <= 1e-10 * top),
            "{case}: tail not zero"
        );
        let iso = s.isoscore().unwrap();
        // [the IsoScore package (float32 constants, ~1e-7 rounding), its formula in numpy float64]
        let expected = f64s(&st, &format!("{case}_isoscore"));
        assert!(
            (iso - expected[1]).abs() <= 1e-9 * expected[1].abs(),
            "{case} IsoScore {iso} vs numpy {}",
            expected[1]
        );
        assert!(
            (iso - expected[0]).abs() <= 1e-6 * expected[0].abs(),
            "{case} IsoScore {iso} vs package {}",
            expected[0]
        );
        // The same score from the covariance's trace and Frobenius norm, no eigenvalues.
        let direct = isoscore(&m).unwrap();
        assert!(
            (direct - expected[1]).abs() <= 1e-9 * expected[1].abs(),
            "{case} IsoScore without eigenvalues {direct} vs numpy {}",
            expected[1]
        );
    }
}

#[test]
fn spectrum_invariants_and_bad_input() {
    // Variance in one direction only: IsoScore 0, one component explains everything.
    let line = Matrix::new(4, 3, vec![1., 0., 0., 2., 0., 0., 3., 0., 0., 4., 0., 0.]).unwrap();
    let s = Spectrum::of(&line).unwrap();
    assert!(s.isoscore().unwrap().abs() < 1e-12);
    assert_eq!(s.components_for(0.99), 1);
    assert!((s.participation_ratio() - 1.0).abs() < 1e-12);
    // Equal variance in every direction: IsoScore 1, participation ratio d.
    let cube = Matrix::new(4, 2, vec![1., 0., -1., 0., 0., 1., 0., -1.]).unwrap();
    let s = Spectrum::of(&cube).unwrap();
    assert!((s.isoscore().unwrap() - 1.0).abs() < 1e-12);
    assert!((s.participation_ratio() - 2.0).abs() < 1e-12);
    // Bad input: clear errors.
    let one_row = Matrix::new(1, 3, vec![1., 2., 3.]).unwrap();
    assert!(Spectrum::of(&one_row)
        .unwrap_err()
        .to_string()
        .contains("at least 2 rows"));
    let constant = Matrix::new(3, 2, vec![1., 1., 1., 1., 1., 1.]).unwrap();
    assert!(Spectrum::of(&constant)
        .unwrap()
        .isoscore()
        .unwrap_err()
        .to_string()
        .contains("no variance"));
    let nan = Matrix::new(2, 2, vec![1., f32::NAN, 0., 0.]).unwrap();
    assert!(Spectrum::of(&nan)
        .unwrap_err()
        .to_string()
        .contains("not finite"));
    // No columns: an error, not a panic, where the f64 and per-cluster paths read rows.
    let empty = Matrix::new(2, 0, vec![]).unwrap();
    let e = local_isotropy(&empty, &[0, 0]).unwrap_err().to_string();
    assert!(e.contains("no columns"), "{e}");
    let e = Pca::fit_f64(faer::Mat::<f64>::zeros(2, 0).as_ref())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no columns"), "{e}");
    // IsoScore without the eigenvalues: the same two extremes and the same errors.
    assert!(isoscore(&line).unwrap().abs() < 1e-12);
    assert!((isoscore(&cube).unwrap() - 1.0).abs() < 1e-12);
    for (m, says) in [
        (&one_row, "at least 2 rows"),
        (&constant, "no variance"),
        (&nan, "not finite"),
    ] {
        let e = isoscore(m).unwrap_err().to_string();
        assert!(e.contains(says), "{e}");
    }
}

#[test]
fn isotropy_and_local_dimension_match_numpy_and_scikit_learn() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in ["aniso", "iso", "real", "sst2", "blobs"] {
        let m = f32_matrix(&st, case);
        // [log min F, log max F, I(W), I(W) both signs]
        let e = f64s(&st, &format!("{case}_iso"));
        let got = isotropy(&m).unwrap();
        assert!(
            rel(got.log_min_f, e[0]) < 1e-9,
            "{case} log min F {} vs {}",
            got.log_min_f,
            e[0]
        );
        assert!(
            rel(got.log_max_f, e[1]) < 1e-9,
            "{case} log max F {} vs {}",
            got.log_max_f,
            e[1]
        );
        assert!(
            rel(got.value.ln(), e[2].ln()) < 1e-9,
            "{case} I(W) {} vs {}",
            got.value,
            e[2]
        );
        assert!(
            rel(got.both_signs.ln(), e[3].ln()) < 1e-9,
            "{case} I(W) both signs {} vs {}",
            got.both_signs,
            e[3]
        );
        // Levina–Bickel, k = 10, every row a query.
        let expected = f64s(&st, &format!("{case}_lid"));
        let lid = local_dimension(&m, 10, None, 0).unwrap();
        assert_eq!(
            lid.per_point.len(),
            m.rows(),
            "{case}: every row has an estimate"
        );
        for &(row, v) in &lid.per_point {
            assert!(
                rel(v, expected[row]) < 1e-9,
                "{case} row {row}: LID {v} vs {}",
                expected[row]
            );
        }
    }
}

/// I(W) for every choice of one sign per eigenvector, by enumeration: the least and largest value.
fn isotropy_over_every_sign_choice(w: &Matrix) -> (f64, f64) {
    let x = w.to_faer();
    let gram = x.transpose() * &x;
    let eig = gram.self_adjoint_eigen(faer::Side::Lower).unwrap();
    let u = eig.U();
    let d = u.ncols();
    // F(u) and F(−u) for every eigenvector, by direct sums.
    let f: Vec<(f64, f64)> = (0..d)
        .map(|j| {
            let (mut plus, mut minus) = (0.0, 0.0);
            for i in 0..x.nrows() {
                let z: f64 = (0..x.ncols()).map(|c| x[(i, c)] * u[(c, j)]).sum();
                plus += z.exp();
                minus += (-z).exp();
            }
            (plus, minus)
        })
        .collect();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for pattern in 0u32..(1 << d) {
        let v: Vec<f64> = (0..d)
            .map(|j| {
                if pattern >> j & 1 == 0 {
                    f[j].0
                } else {
                    f[j].1
                }
            })
            .collect();
        let ratio = v.iter().copied().fold(f64::INFINITY, f64::min)
            / v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lo = lo.min(ratio);
        hi = hi.max(ratio);
    }
    (lo, hi)
}

#[test]
fn isotropy_sign_range_is_the_range_over_every_sign_choice() {
    for (seed, shift) in [(1u64, 0.0f32), (2, 0.3), (3, 1.0)] {
        let g = gaussian(60, 7, seed);
        let data: Vec<f32> = g
            .data()
            .iter()
            .enumerate()
            .map(|(i, &v)| v * (1.0 + (i % 7) as f32 * 0.3) + shift)
            .collect();
        let w = Matrix::new(60, 7, data).unwrap();
        let (lo, hi) = isotropy_over_every_sign_choice(&w);
        let got = isotropy(&w).unwrap();
        assert!(
            rel(got.sign_min, lo) < 1e-9,
            "seed {seed}: sign min {} vs {lo}",
            got.sign_min
        );
        assert!(
            got.both_signs <= got.sign_min,
            "both signs is a lower bound"
        );
        assert!(
            rel(got.sign_max, hi) < 1e-9,
            "seed {seed}: sign max {} vs {hi}",
            got.sign_max
        );
        assert!(lo * (1.0 - 1e-9) <= got.value && got.value <= hi * (1.0 + 1e-9));
    }
}

#[test]
fn dead_coordinates_are_found_and_removing_them_cannot_lower_min_f() {
    use isotropy_lab::geometry::isotropy::dead_coordinates;
    // Dead columns inserted into a matrix: I(W) of the live coordinates is the I(W) without them.
    let g = gaussian(80, 5, 9);
    let mut data = Vec::new();
    for i in 0..80 {
        let r = g.row(i);
        data.extend_from_slice(&[r[0] + 0.5, 0.0, r[1], r[2] * 2.0, 0.0, r[3], r[4]]);
    }
    let w = Matrix::new(80, 7, data).unwrap();
    assert_eq!(dead_coordinates(&w), vec![1, 4]);
    let live = isotropy(&w.without_columns(&dead_coordinates(&w))).unwrap();
    let mut same = Vec::new();
    for i in 0..80 {
        let r = g.row(i);
        same.extend_from_slice(&[r[0] + 0.5, r[1], r[2] * 2.0, r[3], r[4]]);
    }
    assert_eq!(live, isotropy(&Matrix::new(80, 5, same).unwrap()).unwrap());

    // all-MiniLM-L6-v2's last layer (reference rows from transformers): three dead coordinates.
    // Along them F(u) = N (to float precision), so min F can never exceed N there.
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let m = f32_matrix(&st, "sst2");
    let dead = dead_coordinates(&m);
    assert_eq!(dead.len(), 3, "dead coordinates {dead:?}");
    let full = isotropy(&m).unwrap();
    assert!(
        full.log_min_f <= (m.rows() as f64).ln() + 1e-6,
        "min F is at most N: log min F {} vs log N {}",
        full.log_min_f,
        (m.rows() as f64).ln()
    );
    let live = isotropy(&m.without_columns(&dead)).unwrap();
    assert!(
        live.log_min_f >= full.log_min_f - 1e-9 && live.value >= full.value * (1.0 - 1e-9),
        "without the dead coordinates min F can only rise: {} vs {}",
        live.value,
        full.value
    );
}

#[test]
fn pca_components_match_scikit_learn() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for case in ["aniso_head", "sst2"] {
        let m = if case == "aniso_head" {
            head(&f32_matrix(&st, "aniso"), 800)
        } else {
            f32_matrix(&st, case)
        };
        let pca = Pca::fit(&m).unwrap();
        let expected = f64s(&st, &format!("{case}_components"));
        let d = m.cols();
        let v = &pca.spectrum.variances;
        for c in 0..expected.len() / d {
            // A component is determined (up to round-off) only when its variance is apart from
            // its neighbours'.
            let gap = (v[c] - v[c + 1]).abs().min(if c > 0 {
                (v[c - 1] - v[c]).abs()
            } else {
                f64::INFINITY
            });
            if gap < 1e-3 * v[0] {
                continue;
            }
            for j in 0..d {
                let (a, b) = (pca.components[(j, c)], expected[c * d + j]);
                assert!(
                    (a - b).abs() < 1e-7,
                    "{case} component {c}[{j}]: {a} vs {b}"
                );
            }
        }
        let ratios = pca.spectrum.ratios();
        assert!((ratios.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

#[test]
fn cosine_measures_match_numpy() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let m = f32_matrix(&st, "sst2");
    let cos = f64s(&st, "sst2_cosine")[0];
    assert!(rel(mean_cosine(&m).unwrap(), cos) < 1e-9);
    let rogue = f64s(&st, "sst2_rogue");
    let c = CosineContributions::of(&m).unwrap();
    let scale = rogue.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for (j, (&a, &b)) in c.per_dimension.iter().zip(&rogue).enumerate() {
        assert!((a - b).abs() < 1e-9 * scale, "dimension {j}: {a} vs {b}");
    }
    let top = c.top(3);
    assert!(top[0].1 >= top[1].1 && top[1].1 >= top[2].1);
    let ids: Vec<String> = i64s(&st, "sst2_token_ids")
        .iter()
        .map(|i| i.to_string())
        .collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let s = self_similarity(&m, &refs, 2).unwrap();
    let expected = f64s(&st, "sst2_selfsim");
    assert!(
        rel(s.mean, expected[0]) < 1e-9,
        "self-similarity {} vs {}",
        s.mean,
        expected[0]
    );
    assert_eq!(s.per_type.len() as f64, expected[1]);
    let sentence: Vec<u32> = i64s(&st, "sst2_sentence")
        .iter()
        .map(|&i| i as u32)
        .collect();
    let intra = intra_sentence_similarity(&m, &sentence).unwrap();
    let expected = f64s(&st, "sst2_intra")[0];
    assert!(
        rel(intra, expected) < 1e-9,
        "intra-sentence {intra} vs {expected}"
    );
}

#[test]
fn kmeans_silhouette_and_enhancement_match_references() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // (case, D cluster-based, D global), as in the reference script.
    for (case, d_cluster, d_global) in [("aniso_head", 3, 4), ("sst2", 12, 15)] {
        let m = if case == "aniso_head" {
            head(&f32_matrix(&st, "aniso"), 800)
        } else {
            f32_matrix(&st, case)
        };
        let init = f32_matrix(&st, &format!("{case}_init"));
        let c = kmeans_from(&m, &init, 300).unwrap();
        let expected_labels = labels(&st, &format!("{case}_labels"));
        assert_eq!(
            c.labels, expected_labels,
            "{case}: labels differ from scikit-learn's"
        );
        let [inertia, sil] = f64s(&st, &format!("{case}_kmeans"))[..] else {
            panic!()
        };
        assert!(
            rel(c.inertia, inertia) < 1e-9,
            "{case} inertia {} vs {inertia}",
            c.inertia
        );
        let ours = silhouette(&m, &c.labels, None, 0).unwrap();
        assert!(rel(ours, sil) < 1e-9, "{case} silhouette {ours} vs {sil}");

        let local = cluster_table(&m, &c.labels).unwrap();
        let iso = local.column("isotropy_both_signs").unwrap().f64().unwrap();
        let sizes = c.sizes();
        for (k, &e) in f64s(&st, &format!("{case}_cluster_iso")).iter().enumerate() {
            if sizes[k] >= 2 {
                let got = iso.get(k).unwrap();
                assert!(
                    rel(got.ln(), e.ln()) < 1e-9,
                    "{case} cluster {k}: {got} vs {e}"
                );
            }
        }

        let k = init.rows();
        let methods = [
            ("zero_mean", Method::ZeroMean),
            ("cluster_zero_mean", Method::ClusterZeroMean { k }),
            ("global", Method::Global { d: d_global }),
            ("cluster_based", Method::ClusterBased { k, d: d_cluster }),
        ];
        let mut checked = 0;
        for (name, method) in methods {
            let key = format!("{case}_{name}");
            if st.tensor(&key).is_err() {
                continue;
            }
            let want = f64s(&st, &key);
            let got = method.apply_f64(&m, Some(&c.labels), 0).unwrap();
            let diff = max_rel_diff(&got, &want);
            assert!(diff < 1e-8, "{case} {name}: max relative difference {diff}");
            // The f32 path the tables and notebooks use: the same method, rounded to f32.
            let got = method.apply_with(&m, Some(&c.labels), 0).unwrap();
            let diff = max_rel_diff(&got.to_faer(), &want);
            assert!(
                diff < 1e-6,
                "{case} {name} in f32: max relative difference {diff}"
            );
            checked += 1;
        }
        assert!(checked >= 2, "{case}: enhancement references missing");
    }
}

#[test]
fn kmeans_plus_plus_inertia_is_at_most_scikit_learns() {
    common::setup(); // choose_k caches its choice: in the tests' cache folder
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // Seeds differ between the two libraries, so compare what seeds cannot change: on 8 clear
    // blobs both must find the same optimum; on real tokens (many local optima) the mean inertia
    // over 20 seeds, one k-means++ seeding each, must be no worse than scikit-learn's (1 % slack).
    for (case, k) in [("blobs", 8), ("sst2", 6)] {
        let m = f32_matrix(&st, case);
        let theirs = f64s(&st, &format!("{case}_kmeanspp"));
        let runs: Vec<f64> = (0..20)
            .map(|seed| {
                kmeans(
                    &m,
                    &KMeansOptions {
                        seed,
                        ..KMeansOptions::new(k)
                    },
                )
                .unwrap()
                .inertia
            })
            .collect();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        if case == "blobs" {
            assert!(
                best(&runs) <= best(&theirs) * (1.0 + 1e-9),
                "{case}: {} vs {}",
                best(&runs),
                best(&theirs)
            );
        }
        assert!(
            mean(&runs) <= mean(&theirs) * 1.01,
            "{case}: mean inertia {} vs scikit-learn {}",
            mean(&runs),
            mean(&theirs)
        );
        // Seeded: the same seed gives the same clustering; n_init keeps the best seeding.
        let opts = KMeansOptions {
            n_init: 5,
            ..KMeansOptions::new(k)
        };
        let a = kmeans(&m, &opts).unwrap();
        assert_eq!(kmeans(&m, &opts).unwrap().labels, a.labels);
        assert!(a.sizes().iter().all(|&s| s > 0));
    }
    // The blobs are 8 clear clusters: the silhouette picks k = 8.
    let blobs = f32_matrix(&st, "blobs");
    let choice = choose_k(&blobs, 2..=12, &KMeansOptions::new(2), 800, 0.1).unwrap();
    assert_eq!(choice.k, 8, "silhouettes {:?}", choice.scores);
    // Pure noise has no cluster structure worth the name: one cluster.
    let noise = gaussian(600, 8, 3);
    let choice = choose_k(&noise, 2..=6, &KMeansOptions::new(2), 600, 0.2).unwrap();
    assert_eq!(choice.k, 1, "silhouettes {:?}", choice.scores);
    assert!(choice.clustering.labels.iter().all(|&l| l == 0));
}

#[test]
fn enhancement_invariants() {
    common::setup(); // the clustered methods cache their k-means labels: in the tests' cache folder
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let m = f32_matrix(&st, "sst2");
    let d = m.cols();
    // Zero-mean output has zero mean (in f32: up to the rounding of each value).
    let z = Method::ZeroMean.apply_f64(&m, None, 0).unwrap();
    let z32 = Method::ZeroMean.apply(&m, 0).unwrap().to_faer();
    for j in 0..d {
        let mean = z.col(j).iter().sum::<f64>() / z.nrows() as f64;
        assert!(mean.abs() < 1e-12, "column {j} mean {mean}");
        // Each value rounds by at most 2⁻²⁴ of itself.
        let largest = z32.col(j).iter().fold(0.0f64, |a, v| a.max(v.abs()));
        let mean = z32.col(j).iter().sum::<f64>() / z32.nrows() as f64;
        assert!(mean.abs() < 1e-7 * largest, "f32 column {j} mean {mean}");
    }
    // Cluster-based output: in every cluster, orthogonal to the removed components; clusters
    // smaller than D (the seeded k-means leaves some) are handled.
    let (k, dd) = (8, 12);
    let opts = KMeansOptions::new(k);
    let clusters = kmeans(&m, &opts).unwrap();
    let out = Method::ClusterBased { k, d: dd }
        .apply_f64(&m, Some(&clusters.labels), 0)
        .unwrap();
    let out32 = Method::ClusterBased { k, d: dd }
        .apply_with(&m, Some(&clusters.labels), 0)
        .unwrap()
        .to_faer();
    for rows in clusters.members() {
        if rows.len() < 2 {
            continue;
        }
        let sub = Matrix::new(
            rows.len(),
            d,
            rows.iter().flat_map(|&i| m.row(i).to_vec()).collect(),
        )
        .unwrap();
        let pca = Pca::fit(&sub).unwrap();
        let removed = dd.min(rows.len() - 1);
        for &i in &rows {
            for c in 0..removed {
                let dot: f64 = (0..d).map(|j| out[(i, j)] * pca.components[(j, c)]).sum();
                assert!(dot.abs() < 1e-9, "row {i} on component {c}: {dot}");
                // Rounding each value to f32 moves the dot by at most 2⁻²⁴ ‖row‖.
                let norm = (0..d).map(|j| out32[(i, j)].powi(2)).sum::<f64>().sqrt();
                let dot: f64 = (0..d).map(|j| out32[(i, j)] * pca.components[(j, c)]).sum();
                assert!(
                    dot.abs() < 1e-7 * norm + 1e-12,
                    "f32 row {i} on component {c}: {dot}"
                );
            }
        }
    }
    // The f32 path applies the same method (k-means seeded inside).
    let f32_out = Method::ClusterBased { k, d: dd }.apply(&m, 0).unwrap();
    let f64_out = Method::ClusterBased { k, d: dd }
        .apply_f64(&m, None, 0)
        .unwrap();
    assert!((f32_out.row(5)[7] as f64 - f64_out[(5, 7)]).abs() < 1e-5);
    // Global removal raises I(W) on the real last layer (what the method is for).
    let before = isotropy(&m).unwrap().both_signs;
    let after = isotropy(&Method::Global { d: 15 }.apply(&m, 0).unwrap())
        .unwrap()
        .both_signs;
    assert!(after > before, "I(W) {before} → {after}");
}

/// The global method over a sweep of D from one PCA ([`GlobalSweep`]) gives what applying it and
/// measuring the result gives, on real last-layer rows: the same matrix, I(W) (every sign
/// variant) and spectrum.
#[test]
fn global_sweep_gives_what_measuring_each_removal_gives() {
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let m = f32_matrix(&st, "sst2");
    let sweep = GlobalSweep::fit(&m).unwrap();
    for d in [0, 1, 4, 12, 32] {
        let removed = Method::Global { d }.apply(&m, 0).unwrap();
        assert_eq!(sweep.apply(d).unwrap(), removed, "d={d}: matrices differ");
        let (got, want) = (sweep.isotropy(d).unwrap(), isotropy(&removed).unwrap());
        for (what, a, b) in [
            ("I(W)", got.value, want.value),
            ("both signs", got.both_signs, want.both_signs),
            ("sign min", got.sign_min, want.sign_min),
            ("sign max", got.sign_max, want.sign_max),
        ] {
            assert!(rel(a, b) < 1e-5, "d={d} {what}: sweep {a} vs measured {b}");
        }
        let (got, want) = (sweep.spectrum(d).unwrap(), Spectrum::of(&removed).unwrap());
        let top = want.variances[0];
        for (i, (a, b)) in got.variances.iter().zip(&want.variances).enumerate() {
            assert!((a - b).abs() < 1e-5 * top, "d={d} variance {i}: {a} vs {b}");
        }
        let (a, b) = (got.isoscore().unwrap(), want.isoscore().unwrap());
        assert!(
            (a - b).abs() < 1e-6,
            "d={d} IsoScore: sweep {a} vs measured {b}"
        );
    }
    assert!(
        sweep.apply(m.cols()).is_err(),
        "D = dimension must be refused"
    );
}

/// The enhancement table shares work between its methods (one PCA for every global D, one
/// k-means per k); each row is still what applying that method alone and measuring it gives.
#[test]
fn method_table_rows_are_each_method_applied_and_measured_alone() {
    use isotropy_lab::analysis::methods::method_table;
    use isotropy_lab::data::glue::{Split, Task};
    let emb = common::extract_minilm(Task::Sst2, Split::Dev, 120, 0);
    let layer = 6;
    let methods = [
        Method::ZeroMean,
        Method::ClusterZeroMean { k: 5 },
        Method::Global { d: 3 },
        Method::Global { d: 12 },
        Method::ClusterBased { k: 5, d: 4 },
    ];
    let norm = |m: &Matrix| -> anyhow::Result<f64> {
        Ok(m.data()
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt())
    };
    let table = method_table(&emb, layer, &methods, 7, &[("norm", &norm)]).unwrap();
    assert_eq!(table.height(), methods.len() + 1);
    let column = |name: &str| -> Vec<f64> {
        let c = table.column(name).unwrap().f64().unwrap();
        c.into_no_null_iter().collect()
    };
    let (iso, score, cos, norms) = (
        column("isotropy_both_signs"),
        column("isoscore"),
        column("mean_cosine"),
        column("norm"),
    );
    let original = emb.layer(layer).unwrap();
    let alone: Vec<Matrix> = std::iter::once(original.clone())
        .chain(methods.iter().map(|m| m.apply(original, 7).unwrap()))
        .collect();
    for (row, m) in alone.iter().enumerate() {
        let want_iso = isotropy(m).unwrap().both_signs;
        assert!(
            rel(iso[row], want_iso) < 1e-5,
            "row {row} I(W): {} vs {want_iso}",
            iso[row]
        );
        let want_score = Spectrum::of(m).unwrap().isoscore().unwrap();
        assert!((score[row] - want_score).abs() < 1e-6, "row {row} IsoScore");
        let want_cos = mean_cosine(m).unwrap();
        assert!((cos[row] - want_cos).abs() < 1e-6, "row {row} mean cosine");
        assert!(rel(norms[row], norm(m).unwrap()) < 1e-9, "row {row} scorer");
    }
}

#[test]
fn geometry_bad_input() {
    let err = |r: anyhow::Result<_>| -> String {
        match r {
            Ok(_) => panic!("expected an error"),
            Err(e) => format!("{e:#}"),
        }
    };
    let empty = Matrix::new(0, 4, vec![]).unwrap();
    assert!(err(isotropy(&empty).map(|_| ())).contains("empty"));
    assert!(err(mean_cosine(&empty).map(|_| ())).contains("empty"));
    assert!(err(kmeans(&empty, &KMeansOptions::new(2)).map(|_| ())).contains("empty"));
    let one = Matrix::new(1, 3, vec![1., 2., 3.]).unwrap();
    assert!(err(Pca::fit(&one).map(|_| ())).contains("at least 2 rows"));
    assert!(err(mean_cosine(&one).map(|_| ())).contains("at least 2"));
    assert!(err(local_dimension(&one, 2, None, 0).map(|_| ())).contains("rows"));
    let nan = Matrix::new(2, 2, vec![1., f32::NAN, 0., 1.]).unwrap();
    assert!(err(Method::ZeroMean.apply(&nan, 0).map(|_| ())).contains("not finite"));
    assert!(err(kmeans(&nan, &KMeansOptions::new(1)).map(|_| ())).contains("not finite"));
    let inf = Matrix::new(2, 2, vec![1., f32::INFINITY, 0., 1.]).unwrap();
    assert!(err(silhouette(&inf, &[0, 1], None, 0).map(|_| ())).contains("not finite"));
    let small = gaussian(10, 4, 1);
    assert!(err(kmeans(&small, &KMeansOptions::new(11)).map(|_| ()))
        .contains("larger than the number of rows"));
    assert!(err(Method::ClusterBased { k: 2, d: 4 }
        .apply(&small, 0)
        .map(|_| ()))
    .contains("only 4 dimensions"));
    assert!(err(Method::Global { d: 9 }.apply(&small, 0).map(|_| ())).contains("dimensions"));
    assert!(err("whitening".parse::<Method>().map(|_| ())).contains("unknown enhancement method"));
    assert!(err(silhouette(&small, &[0; 10], None, 0).map(|_| ())).contains("clusters"));
    assert!(err(local_dimension(&small, 1, None, 0).map(|_| ())).contains("at least 2"));
    // Constant rows: k-means cannot find 2 distinct centres; zero-mean gives zeros (documented).
    let constant = Matrix::new(5, 3, vec![0.5; 15]).unwrap();
    assert!(err(kmeans(&constant, &KMeansOptions::new(2)).map(|_| ())).contains("distinct"));
    let z = Method::ZeroMean.apply(&constant, 0).unwrap();
    assert!(z.data().iter().all(|&v| v == 0.0));
    assert!(err(Spectrum::of(&constant).unwrap().isoscore().map(|_| ())).contains("no variance"));
}

#[test]
fn correlations_and_mutual_information_match_scipy_and_scikit_learn() {
    use isotropy_lab::geometry::stats::{normalized_mutual_info, pearson, spearman};
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (a, b) = (f64s(&st, "stats_a"), f64s(&st, "stats_b"));
    let e = f64s(&st, "stats_expected");
    assert!(rel(pearson(&a, &b).unwrap(), e[0]) < 1e-12);
    assert!(
        rel(spearman(&a, &b).unwrap(), e[1]) < 1e-12,
        "ties get average ranks"
    );
    let (la, lb) = (i64s(&st, "nmi_a"), i64s(&st, "nmi_b"));
    let nmi = normalized_mutual_info(&la, &lb).unwrap();
    assert!(rel(nmi, f64s(&st, "nmi_expected")[0]) < 1e-10, "{nmi}");
    assert!((normalized_mutual_info(&la, &la).unwrap() - 1.0).abs() < 1e-12);
    assert!(pearson(&[1.0, 1.0], &[1.0, 2.0])
        .unwrap_err()
        .to_string()
        .contains("constant"));
    assert!(spearman(&[1.0], &[1.0])
        .unwrap_err()
        .to_string()
        .contains("at least 2"));
}

#[test]
fn clustering_agreement_matches_scikit_learn() {
    use isotropy_lab::geometry::stats::{adjusted_rand_index, normalized_mutual_info};
    // tests/data/stats_reference.json, from scripts/reference_stats.py.
    let path = common::root().join("tests/data/stats_reference.json");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for case in cases.as_array().unwrap() {
        let labels = |k: &str| -> Vec<i64> {
            case[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        };
        let (a, b, name) = (labels("a"), labels("b"), case["name"].as_str().unwrap());
        let ari = adjusted_rand_index(&a, &b).unwrap();
        let expected = case["ari"].as_f64().unwrap();
        assert!(
            (ari - expected).abs() < 1e-12,
            "{name}: ARI {ari} vs {expected}"
        );
        let nmi = normalized_mutual_info(&a, &b).unwrap();
        let expected = case["nmi"].as_f64().unwrap();
        assert!(
            (nmi - expected).abs() < 1e-12,
            "{name}: NMI {nmi} vs {expected}"
        );
    }
    assert!(adjusted_rand_index(&[0, 1], &[0])
        .unwrap_err()
        .to_string()
        .contains("different lengths"));
}

#[test]
fn logistic_regression_matches_scikit_learn() {
    use isotropy_lab::geometry::logistic::{LogisticRegression, ProbeOptions};
    let bytes = reference();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for (case, k) in [("probe3", 3), ("probe2", 2)] {
        let x = f32_matrix(&st, case);
        let y = i64s(&st, &format!("{case}_y"));
        let opts = ProbeOptions {
            c: 0.5,
            tol: 1e-9,
            max_iter: 2000,
        };
        let lr = LogisticRegression::fit(&x, &y, &opts).unwrap();
        let ours = lr.decision(&x).unwrap();
        let theirs = f64s(&st, &format!("{case}_decision"));
        // scikit-learn's binary decision is the second class's score (ours: [0, score]).
        let ours: Vec<f64> = if k == 2 {
            ours.chunks_exact(2).map(|z| z[1] - z[0]).collect()
        } else {
            ours
        };
        assert_eq!(ours.len(), theirs.len());
        let scale = theirs.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let worst = ours
            .iter()
            .zip(&theirs)
            .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst < 1e-5 * scale,
            "{case}: decision differs by {worst} (scale {scale})"
        );
        assert!(lr.accuracy(&x, &y).unwrap() > 0.6);
        assert_eq!(
            lr.classes,
            (0..k as i64).map(|c| c * 10 + 3).collect::<Vec<_>>()
        );
    }
    let x = gaussian(4, 2, 1);
    assert!(
        LogisticRegression::fit(&x, &[1, 1, 1, 1], &ProbeOptions::default())
            .unwrap_err()
            .to_string()
            .contains("at least 2 classes")
    );
    assert!(LogisticRegression::fit(&x, &[0, 1], &ProbeOptions::default()).is_err());
}

/// I(W), IsoScore's spectrum and k-means give the same bits on one thread as on three: their
/// blocks of rows (1,024 each) are merged in a fixed order, and k-means applies its parallel
/// reassignment's moves in row order. 3,000 rows of an anisotropic cloud, so that every pass
/// has several blocks and k-means moves rows over several iterations.
#[test]
fn results_do_not_depend_on_the_number_of_threads() {
    let (rows, cols) = (3000, 40);
    let cloud = gaussian(rows, cols, 7);
    let data = cloud
        .data()
        .iter()
        .enumerate()
        .map(|(i, &v)| v * (1.0 + (i % cols) as f32 / 8.0) + if i % cols == 0 { 2.0 } else { 0.0 })
        .collect();
    let m = Matrix::new(rows, cols, data).unwrap();
    let run = || {
        (
            isotropy(&m).unwrap(),
            Spectrum::of(&m).unwrap(),
            kmeans(&m, &KMeansOptions::new(12)).unwrap(),
        )
    };
    let pool = |n| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .unwrap()
    };
    let (one, three) = (pool(1).install(run), pool(3).install(run));
    assert_eq!(one.0, three.0);
    assert_eq!(one.1, three.1);
    assert_eq!(one.2.labels, three.2.labels);
    assert_eq!(one.2.inertia.to_bits(), three.2.inertia.to_bits());
    assert!(three.2.iterations > 2, "{} iterations", three.2.iterations);
}

//! Speed of the geometry toolkit on real token matrices of 20,000 rows: the last layer of
//! all-MiniLM-L6-v2 on SST-2 dev (20,000 × 384), and that layer side by side with `minilm-sre`'s
//! (20,000 × 768). Times I(W), PCA, k-means (k = 27, one k-means++ seeding), IsoScore,
//! cluster-based enhancement (k = 27, D = 12) and chapter 05's sweep of the global method (D = 1,
//! 2, 4, 8, 12, 16, 24, 32, each result's I(W) and IsoScore; from one PCA, and for comparison
//! each D applied and measured on its own), median of 3, and writes the matrices and the
//! timings to target/bench-geometry/ for scripts/bench_geometry.py, which times numpy /
//! scikit-learn on the same matrices. scripts/bench_geometry.sh runs both and prints the ratios.
//!
//! The distance to the hardware: the machine's f64 peak is measured as the rate of a large
//! square matrix product (faer, every core), and each row made of matrix products (I(W), PCA,
//! IsoScore) is printed with its floating-point operations per second and the time that peak
//! would take for its products: the row's limit.

use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::geometry::cluster::{kmeans, KMeansOptions};
use isotropy_lab::geometry::enhance::{GlobalSweep, Method};
use isotropy_lab::geometry::isotropy::isotropy;
use isotropy_lab::geometry::spectrum::{isoscore, Pca, Spectrum};
use isotropy_lab::nn::model::Model;
use isotropy_lab::util::matrix::Matrix;
use std::collections::BTreeMap;
use std::time::Instant;

const ROWS: usize = 20_000;
/// Chapter 05's sweep of the global method's D.
const SWEEP: [usize; 8] = [1, 2, 4, 8, 12, 16, 24, 32];

/// The first ROWS token rows of `model`'s last layer on SST-2 dev, extracted in this process
/// (not read from the extraction cache): the rows below then run after an extraction, as in a
/// chapter's kernel on a cold cache. That state once made k-means 10 to 15 times slower than on
/// rows read from the cache (`Points::sq_distances` in src/geometry/cluster.rs says why).
fn last_layer(model: &str) -> anyhow::Result<Matrix> {
    let model = Model::load(model)?;
    let emb = Embeddings::extract_uncached(
        &model,
        &Source::glue(Task::Sst2, Split::Dev),
        &ExtractOptions {
            layers: Some(vec![6]),
            ..ExtractOptions::default()
        },
    )?;
    let m = emb.layer(6)?;
    Matrix::new(ROWS, m.cols(), m.data()[..ROWS * m.cols()].to_vec())
}

fn median_secs(mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

/// Size of the square product that measures the machine's f64 peak.
const PEAK_SIZE: usize = 2048;

/// The machine's f64 peak in floating-point operations per second: a PEAK_SIZE² product (2n³
/// operations) on faer with every core, median of 3.
fn peak_flops() -> anyhow::Result<f64> {
    let n = PEAK_SIZE;
    let a = faer::Mat::<f64>::from_fn(n, n, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let b = faer::Mat::<f64>::from_fn(n, n, |i, j| ((i * 5 + j) % 13) as f64 - 6.0);
    let mut c = faer::Mat::<f64>::zeros(n, n);
    let t = median_secs(|| {
        faer::linalg::matmul::matmul(
            c.as_mut(),
            faer::Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            1.0,
            faer::Par::rayon(0),
        );
        Ok(())
    })?;
    Ok(2.0 * (n as f64).powi(3) / t)
}

/// Floating-point operations of a row's matrix products and eigensolvers on an n × d matrix
/// (an a × b by b × c product counts 2abc; WᵀW's lower triangle n·d·(d + 1); a symmetric
/// eigendecomposition 9d³ with vectors, Golub & Van Loan's count), or None
/// for rows whose work depends on the data (k-means prunes distances by its bounds).
fn flops(what: &str, n: f64, d: f64) -> Option<f64> {
    let gram = n * d * (d + 1.0);
    match what {
        // WᵀW, its eigenvectors, every row's projection on them.
        "I(W)" => Some(gram + 9.0 * d.powi(3) + 2.0 * n * d * d),
        // The covariance and its eigenvectors.
        "PCA" => Some(gram + 9.0 * d.powi(3)),
        // The covariance (its trace and Frobenius norm are all IsoScore needs).
        "IsoScore" => Some(gram),
        _ => None,
    }
}

fn main() -> anyhow::Result<()> {
    let peak = peak_flops()?;
    println!(
        "f64 peak ({PEAK_SIZE}² matrix product, every core): {:.1} GFLOP/s",
        peak / 1e9
    );
    let a = last_layer("minilm")?;
    let b = last_layer("minilm-sre")?;
    let wide = Matrix::new(
        ROWS,
        768,
        (0..ROWS)
            .flat_map(|i| a.row(i).iter().chain(b.row(i)).copied().collect::<Vec<_>>())
            .collect(),
    )?;
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-geometry");
    std::fs::create_dir_all(&out)?;
    let mut tensors = Vec::new();
    let mut results: BTreeMap<String, f64> = BTreeMap::new();
    let mut limits: BTreeMap<String, f64> = BTreeMap::new();
    for (name, m) in [("d384", &a), ("d768", &wide)] {
        tensors.push((name.to_string(), m.clone()));
        let mut time =
            |what: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
                let t = median_secs(f)?;
                let key = format!("{name} {what}");
                match flops(what, m.rows() as f64, m.cols() as f64) {
                    Some(ops) => {
                        println!(
                            "{key}: {t:.3} s, {:.1} GFLOP/s; limit at the peak {:.3} s ({:.2}x it)",
                            ops / t / 1e9,
                            ops / peak,
                            t / (ops / peak)
                        );
                        limits.insert(key.clone(), ops / peak);
                    }
                    None => println!("{key}: {t:.3} s"),
                }
                results.insert(key, t);
                Ok(())
            };
        time("I(W)", &mut || isotropy(m).map(|_| ()))?;
        time("PCA", &mut || Pca::fit(m).map(|_| ()))?;
        time("k-means k=27", &mut || {
            kmeans(m, &KMeansOptions::new(27))
                .map(|c| println!("  inertia {:.2}, {} iterations", c.inertia, c.iterations))
        })?;
        time("IsoScore", &mut || isoscore(m).map(|_| ()))?;
        // k-means run here, not read from the cache that Method::apply reads its labels from.
        time("cluster-based k=27 D=12", &mut || {
            let method = Method::ClusterBased { k: 27, d: 12 };
            let opts = method.kmeans_options(0).expect("a clustered method");
            let labels = kmeans(m, &opts)?.labels;
            method.apply_with(m, Some(&labels), 0).map(|_| ())
        })?;
        time("global D=1..32", &mut || {
            let sweep = GlobalSweep::fit(m)?;
            for d in SWEEP {
                sweep.apply(d)?;
                sweep.isotropy(d)?;
                sweep.spectrum(d)?.isoscore()?;
            }
            Ok(())
        })?;
        time("global D=1..32, each D measured alone", &mut || {
            for d in SWEEP {
                let removed = Method::Global { d }.apply(m, 0)?;
                isotropy(&removed)?;
                Spectrum::of(&removed)?.isoscore()?;
            }
            Ok(())
        })?;
    }
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, m)| m.data().iter().flat_map(|v| v.to_le_bytes()).collect())
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, m), b)| {
            let view = safetensors::tensor::TensorView::new(
                safetensors::Dtype::F32,
                vec![m.rows(), m.cols()],
                b,
            )?;
            Ok((n.clone(), view))
        })
        .collect::<anyhow::Result<_>>()?;
    safetensors::serialize_to_file(views, None, &out.join("matrices.safetensors"))?;
    std::fs::write(
        out.join("rust.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "seconds": results,
            "limit_seconds": limits,
            "peak_gflops": peak / 1e9,
        }))?,
    )?;
    Ok(())
}

//! Speed of the geometry toolkit on real token matrices of 20,000 rows: the last layer of
//! all-MiniLM-L6-v2 on SST-2 dev (20,000 × 384), and that layer side by side with `minilm-sre`'s
//! (20,000 × 768). Times I(W), PCA, k-means (k = 27, one k-means++ seeding), IsoScore,
//! cluster-based enhancement (k = 27, D = 12) and chapter 05's sweep of the global method (D = 1,
//! 2, 4, 8, 12, 16, 24, 32, each result's I(W) and IsoScore; from one PCA, and for comparison
//! each D applied and measured on its own), median of 3, and writes the matrices and the
//! timings to target/bench-geometry/ for scripts/bench_geometry.py, which times numpy /
//! scikit-learn on the same matrices. scripts/bench_geometry.sh runs both and prints the ratios.

use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::geometry::cluster::{kmeans, KMeansOptions};
use isotropy_lab::geometry::enhance::{GlobalSweep, Method};
use isotropy_lab::geometry::isotropy::isotropy;
use isotropy_lab::geometry::spectrum::{Pca, Spectrum};
use isotropy_lab::nn::model::Model;
use isotropy_lab::util::matrix::Matrix;
use std::collections::BTreeMap;
use std::time::Instant;

const ROWS: usize = 20_000;
/// Chapter 05's sweep of the global method's D.
const SWEEP: [usize; 8] = [1, 2, 4, 8, 12, 16, 24, 32];

fn last_layer(model: &str) -> anyhow::Result<Matrix> {
    let model = Model::load(model)?;
    let emb = Embeddings::extract(
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

fn main() -> anyhow::Result<()> {
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
    for (name, m) in [("d384", &a), ("d768", &wide)] {
        tensors.push((name.to_string(), m.clone()));
        let mut time =
            |what: &str, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
                let t = median_secs(f)?;
                println!("{name} {what}: {t:.3} s");
                results.insert(format!("{name} {what}"), t);
                Ok(())
            };
        time("I(W)", &mut || isotropy(m).map(|_| ()))?;
        time("PCA", &mut || Pca::fit(m).map(|_| ()))?;
        time("k-means k=27", &mut || {
            kmeans(m, &KMeansOptions::new(27))
                .map(|c| println!("  inertia {:.2}, {} iterations", c.inertia, c.iterations))
        })?;
        time("IsoScore", &mut || Spectrum::of(m)?.isoscore().map(|_| ()))?;
        time("cluster-based k=27 D=12", &mut || {
            Method::ClusterBased { k: 27, d: 12 }
                .apply(m, 0)
                .map(|_| ())
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
        serde_json::to_string_pretty(&results)?,
    )?;
    Ok(())
}

//! Our encoder against Hugging Face transformers, and I(W) / mean cosine against numpy.
//! Reference values: tests/data/parity_minilm.safetensors, written by scripts/reference_parity.py.
//! Built with the `cuda` feature, the encoder's checks run on the first GPU too (`on_gpu_*`).

mod common;

use candle_core::{Device, Tensor};
use isotropy_lab::data::fetch::resolve_model;
use isotropy_lab::geometry::isotropy::isotropy;
use isotropy_lab::geometry::similarity::mean_cosine;
use isotropy_lab::nn::model::Model;
use isotropy_lab::util::matrix::Matrix;
use safetensors::SafeTensors;

struct Reference {
    bytes: Vec<u8>,
}

impl Reference {
    fn load() -> Self {
        let path = common::root().join("tests/data/parity_minilm.safetensors");
        Self {
            bytes: std::fs::read(&path).unwrap(),
        }
    }
    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }
    fn f32s(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        let st = self.tensors();
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (t.shape().to_vec(), v)
    }
    fn f64s(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        let st = self.tensors();
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        (t.shape().to_vec(), v)
    }
    fn ids(&self, name: &str) -> Vec<u32> {
        let st = self.tensors();
        let t = st.tensor(name).unwrap();
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect()
    }
    fn probes(&self) -> Vec<(String, Option<String>)> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).unwrap();
        let probes = &meta.metadata().as_ref().unwrap()["probes"];
        serde_json::from_str(probes).unwrap()
    }
}

fn minilm(device: &Device) -> Model {
    common::setup();
    let dir = common::minilm_dir();
    Model::load_files(resolve_model(dir.to_str().unwrap()).unwrap(), device).unwrap()
}

/// The first CUDA GPU, for the same checks with the `cuda` feature.
#[cfg(feature = "cuda")]
fn gpu() -> Device {
    Device::new_cuda(0).expect("the `cuda` feature's tests need a CUDA GPU")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn every_layer_matches_transformers_and_padding_changes_nothing() {
    every_layer_matches_transformers_on(&Device::Cpu);
}

#[cfg(feature = "cuda")]
#[test]
fn on_gpu_every_layer_matches_transformers_and_padding_changes_nothing() {
    every_layer_matches_transformers_on(&gpu());
}

fn every_layer_matches_transformers_on(device: &Device) {
    let model = minilm(device);
    let reference = Reference::load();
    let probes = reference.probes();
    let (encodings, truncated) = model.tokenize(&probes, 512).unwrap();
    assert_eq!(truncated, 0);
    let n_states = model.encoder.num_hidden_states();
    assert_eq!(n_states, 7);
    let hidden = model.config().hidden_size;

    // One input at a time, against transformers.
    let mut single: Vec<Vec<Vec<f32>>> = Vec::new();
    for (k, e) in encodings.iter().enumerate() {
        assert_eq!(
            e.get_ids(),
            reference.ids(&format!("s{k}_ids")).as_slice(),
            "token ids of probe {k}"
        );
        assert_eq!(
            e.get_type_ids(),
            reference.ids(&format!("s{k}_type_ids")).as_slice()
        );
        let n = e.len();
        let ids = Tensor::from_vec(e.get_ids().to_vec(), (1, n), device).unwrap();
        let types = Tensor::from_vec(e.get_type_ids().to_vec(), (1, n), device).unwrap();
        let mask = Tensor::ones((1, n), candle_core::DType::U32, device).unwrap();
        let states = model
            .encoder
            .forward_all(&ids, &types, &mask, n_states - 1)
            .unwrap();
        assert_eq!(states.len(), n_states);
        let mut per_layer = Vec::new();
        for (layer, s) in states.iter().enumerate() {
            let ours: Vec<f32> = s.flatten_all().unwrap().to_vec1().unwrap();
            let (shape, theirs) = reference.f32s(&format!("s{k}_layer{layer}"));
            assert_eq!(shape, vec![n, hidden]);
            let d = max_abs_diff(&ours, &theirs);
            assert!(
                d <= 1e-4,
                "probe {k} layer {layer}: max abs diff {d:e} > 1e-4"
            );
            per_layer.push(ours);
        }
        single.push(per_layer);
    }

    // All inputs as one padded batch: real tokens get the same vectors.
    let len = encodings.iter().map(|e| e.len()).max().unwrap();
    let (mut ids, mut types, mut mask) = (vec![], vec![], vec![]);
    for e in &encodings {
        let pad = len - e.len();
        ids.extend(
            e.get_ids()
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, pad)),
        );
        types.extend(
            e.get_type_ids()
                .iter()
                .copied()
                .chain(std::iter::repeat_n(0, pad)),
        );
        mask.extend(std::iter::repeat_n(1u32, e.len()).chain(std::iter::repeat_n(0, pad)));
    }
    let b = encodings.len();
    let t = |v: Vec<u32>| Tensor::from_vec(v, (b, len), device).unwrap();
    let states = model
        .encoder
        .forward_all(&t(ids), &t(types), &t(mask), n_states - 1)
        .unwrap();
    for (layer, s) in states.iter().enumerate() {
        let flat: Vec<f32> = s.flatten_all().unwrap().to_vec1().unwrap();
        for (k, e) in encodings.iter().enumerate() {
            let rows = &flat[k * len * hidden..(k * len + e.len()) * hidden];
            let d = max_abs_diff(rows, &single[k][layer]);
            assert!(
                d <= 1e-5,
                "probe {k} layer {layer}: padded batch differs by {d:e}"
            );
        }
    }
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn isotropy_matches_numpy() {
    let reference = Reference::load();
    // I(W) to 1e-9 relative in log space, on a random anisotropic matrix and on the real
    // last-layer rows of the probes.
    let (shape, data) = reference.f32s("iso_random");
    let (_, expected) = reference.f64s("iso_random_expected");
    let got = isotropy(&Matrix::new(shape[0], shape[1], data).unwrap()).unwrap();
    assert!(
        rel(got.value.ln(), expected[0].ln()) < 1e-9,
        "{} vs {}",
        got.value,
        expected[0]
    );
    assert!(
        rel(got.both_signs.ln(), expected[1].ln()) < 1e-9,
        "{} vs {}",
        got.both_signs,
        expected[1]
    );

    let probes = reference.probes();
    let mut rows = Vec::new();
    for k in 0..probes.len() {
        rows.extend(reference.f32s(&format!("s{k}_layer6")).1);
    }
    let real = Matrix::new(rows.len() / 384, 384, rows).unwrap();
    let (_, expected) = reference.f64s("iso_real_expected");
    let got = isotropy(&real).unwrap();
    assert!(
        rel(got.value.ln(), expected[0].ln()) < 1e-9,
        "{} vs {}",
        got.value,
        expected[0]
    );
    assert!(
        rel(got.both_signs.ln(), expected[1].ln()) < 1e-9,
        "{} vs {}",
        got.both_signs,
        expected[1]
    );

    // Mean cosine against numpy's mean over the explicit matrix of all pairs.
    let (_, exact) = reference.f64s("cosine_real_expected");
    let ours = mean_cosine(&real).unwrap();
    assert!(
        (ours - exact[0]).abs() < 1e-9 * exact[0].abs(),
        "ours {ours} vs numpy {}",
        exact[0]
    );
}

#[test]
fn isotropy_invariants() {
    // An isotropic Gaussian cloud: I(W) tends to 1 as N grows.
    use rand::{rngs::StdRng, Rng, SeedableRng};
    let mut rng = StdRng::seed_from_u64(1);
    let mut gauss = |n: usize, d: usize| {
        let data: Vec<f32> = (0..n * d)
            .map(|_| {
                // Box–Muller.
                let (u, v): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        Matrix::new(n, d, data).unwrap()
    };
    let small = isotropy(&gauss(200, 16)).unwrap().value;
    let large = isotropy(&gauss(20_000, 16)).unwrap().value;
    assert!(
        large > small && large > 0.9,
        "I(W) small {small}, large {large}"
    );
    // A shared offset makes the space anisotropic.
    let shifted = gauss(5_000, 16);
    let data: Vec<f32> = shifted.data().iter().map(|x| x + 3.0).collect();
    let shifted = Matrix::new(5_000, 16, data).unwrap();
    assert!(isotropy(&shifted).unwrap().value < 1e-3);
    // Huge values do not overflow (log space).
    let big = Matrix::new(2, 2, vec![1e4, 0.0, 0.0, 2e4]).unwrap();
    let i = isotropy(&big).unwrap();
    assert!(i.value.is_finite() && i.value >= 0.0 && i.log_max_f.is_finite());
}

#[test]
fn sst2_dev_last_layer_isotropy_matches_transformers_and_numpy() {
    sst2_dev_last_layer_isotropy_on(&Device::Cpu);
}

#[cfg(feature = "cuda")]
#[test]
fn on_gpu_sst2_dev_last_layer_isotropy_matches_transformers_and_numpy() {
    sst2_dev_last_layer_isotropy_on(&gpu());
}

fn sst2_dev_last_layer_isotropy_on(device: &Device) {
    use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
    use isotropy_lab::data::glue::{Split, Task};
    // End to end: our tokenizer, batching, encoder and I(W) against transformers + numpy on all of
    // SST-2 dev (21,943 tokens). Hidden states agree to ~1e-5, so I(W) agrees to far better than 1e-3.
    let model = minilm(device);
    let reference = Reference::load();
    let (_, expected) = reference.f64s("sst2_dev_last_expected");
    // The reference keeps [CLS] and [SEP] (21,943 tokens), so this extraction does too.
    let opts = ExtractOptions {
        layers: Some(vec![6]),
        keep_special: true,
        ..ExtractOptions::default()
    };
    // Uncached: the extraction cache is keyed by the model, the data and the options, not the
    // device, so a cached entry would let the GPU test read the CPU's rows (or the reverse).
    let source = Source::glue(Task::Sst2, Split::Dev);
    let emb = Embeddings::extract_uncached(&model, &source, &opts).unwrap();
    let last = emb.layer(6).unwrap();
    assert_eq!(last.rows() as f64, expected[2]);
    let got = isotropy(last).unwrap();
    assert!(
        rel(got.value, expected[0]) < 1e-3,
        "{} vs {}",
        got.value,
        expected[0]
    );
    assert!(
        rel(got.both_signs, expected[1]) < 1e-3,
        "{} vs {}",
        got.both_signs,
        expected[1]
    );
}

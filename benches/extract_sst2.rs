//! Extraction throughput: every hidden state of a model (`ISOLAB_BENCH_MODEL`: a registry name,
//! hub id or folder; all-MiniLM-L6-v2 by default) for all of SST-2 dev (872 sentences), batch 32,
//! length-sorted, to host memory. Prints real tokens per second (best of three).
//! scripts/bench_extract.sh runs it beside the PyTorch baseline (scripts/bench_extract_torch.py)
//! and prints the ratio.
//!
//! The distance to the hardware: the machine's f32 peak is measured as the rate of a large square
//! matrix product on the library the encoder's kernels use (gemm, every core), and the bench
//! prints the time that peak would take for the encoder's matrix products over the padded
//! batches (the limit) beside the time taken.
//!
//! A warm cell reads the extraction back from the cache instead: the bench also times
//! [`Embeddings::load`] of the extraction just made, beside `std::fs::read` of its hidden-states
//! file: one copy of the bytes from the page cache on one thread, the first step of the load
//! before it mapped the file.

use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source, HIDDEN_STATES_FILE};
use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::nn::model::Model;
use std::time::Instant;

/// Size of the square product that measures the machine's f32 peak.
const PEAK_SIZE: usize = 2048;

/// The machine's f32 peak in floating-point operations per second: a PEAK_SIZE² product (2n³
/// operations) on gemm with every core, best of 5 (the machine is shared, so the best run is the
/// one nearest to what the hardware does).
fn peak_flops() -> f64 {
    let n = PEAK_SIZE;
    let a: Vec<f32> = (0..n * n).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
    let b: Vec<f32> = (0..n * n).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
    let mut c = vec![0f32; n * n];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        // SAFETY: a, b and c are n × n, row-major, and c aliases neither.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                n as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
        std::hint::black_box(&c);
        best = best.min(start.elapsed().as_secs_f64());
    }
    2.0 * (n as f64).powi(3) / best
}

/// The encoder's floating-point operations on SST-2 dev in length-sorted batches of `opts`' size:
/// per padded token and layer, the query-key-value, attention-output and two feed-forward
/// products (2 · h · (4h + 2 · intermediate)); per batch item, layer and head, the scores and
/// the weighted values (4 · t² · head width, summed over heads: 4 · t² · h).
fn encoder_flops(model: &Model, opts: &ExtractOptions) -> anyhow::Result<f64> {
    let df = glue::load(Task::Sst2, Split::Dev)?;
    let inputs: Vec<(String, Option<String>)> = df
        .column("sentence1")?
        .str()?
        .iter()
        .map(|s| (s.unwrap_or("").to_string(), None))
        .collect();
    let (encodings, _) = model.tokenize(&inputs, opts.max_len)?;
    let mut lengths: Vec<f64> = encodings.iter().map(|e| e.len() as f64).collect();
    lengths.sort_by(f64::total_cmp);
    let c = model.config();
    let (h, inter) = (c.hidden_size as f64, c.intermediate_size as f64);
    let per_layer: f64 = lengths
        .chunks(opts.batch_size)
        .map(|b| {
            let t = b.iter().copied().fold(0.0, f64::max);
            b.len() as f64 * (t * 2.0 * h * (4.0 * h + 2.0 * inter) + 4.0 * t * t * h)
        })
        .sum();
    Ok(per_layer * c.num_hidden_layers as f64)
}

fn main() -> anyhow::Result<()> {
    let spec = std::env::var("ISOLAB_BENCH_MODEL").unwrap_or_else(|_| String::from("minilm"));
    let model = Model::load(&spec)?;
    let hidden_states = model.config().num_hidden_layers + 1;
    let source = Source::glue(Task::Sst2, Split::Dev);
    let opts = ExtractOptions {
        batch_size: 32,
        ..ExtractOptions::default()
    };
    let mut best = f64::INFINITY;
    let mut emb = None;
    for _ in 0..3 {
        drop(emb.take());
        let start = Instant::now();
        let run = Embeddings::extract_uncached(&model, &source, &opts)?;
        best = best.min(start.elapsed().as_secs_f64());
        emb = Some(run);
    }
    let emb = emb.expect("three runs");
    let tokens = emb.num_tokens();
    let (load, read, bytes) = load_times(&emb)?;
    let peak = peak_flops();
    let flops = encoder_flops(&model, &opts)?;
    println!(
        "f32 peak ({PEAK_SIZE}² matrix product on gemm, every core, best of 5): {:.1} GFLOP/s",
        peak / 1e9
    );
    println!(
        "encoder products: {:.1} GFLOP; at the peak {:.3} s (the limit); ours {:.1} GFLOP/s, {:.2}× the limit",
        flops / 1e9,
        flops / peak,
        flops / best / 1e9,
        best / (flops / peak)
    );
    println!(
        "isotropy-lab extract SST-2 dev: {tokens} tokens, {hidden_states} hidden states, best of 3 {best:.2} s = {:.0} tokens/s",
        tokens as f64 / best
    );
    println!(
        "load of the cached extraction ({:.0} MB of hidden states): best of 3 {load:.3} s; std::fs::read of the file {read:.3} s",
        bytes as f64 / 1e6
    );
    Ok(())
}

/// Best of three: [`Embeddings::load`] of `emb` saved to a temporary folder, and `std::fs::read`
/// of its hidden-states file; with the file's size in bytes.
fn load_times(emb: &Embeddings) -> anyhow::Result<(f64, f64, u64)> {
    let dir = tempfile::tempdir()?;
    emb.save(dir.path())?;
    let file = dir.path().join(HIDDEN_STATES_FILE);
    let (mut load, mut read) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..3 {
        let start = Instant::now();
        let loaded = Embeddings::load(dir.path())?;
        load = load.min(start.elapsed().as_secs_f64());
        anyhow::ensure!(
            loaded.matrices == emb.matrices,
            "the load gave other values"
        );
        let start = Instant::now();
        std::hint::black_box(std::fs::read(&file)?);
        read = read.min(start.elapsed().as_secs_f64());
    }
    Ok((load, read, std::fs::metadata(&file)?.len()))
}

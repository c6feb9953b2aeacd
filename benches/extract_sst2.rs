//! Extraction throughput: every hidden state of a model (`ISOLAB_BENCH_MODEL`: a registry name,
//! hub id or folder; all-MiniLM-L6-v2 by default) for all of SST-2 dev (872 sentences), batch 32,
//! length-sorted, to host memory. Prints real tokens per second (best of three runs).
//! scripts/bench_extract.sh runs it beside the PyTorch baseline (scripts/bench_extract_torch.py)
//! and prints the ratio.

use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::nn::model::Model;
use std::time::Instant;

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
    let mut tokens = 0;
    for _ in 0..3 {
        let start = Instant::now();
        let emb = Embeddings::extract_uncached(&model, &source, &opts)?;
        best = best.min(start.elapsed().as_secs_f64());
        tokens = emb.num_tokens();
    }
    println!(
        "isotropy-lab extract SST-2 dev: {tokens} tokens, {hidden_states} hidden states, best of 3 {best:.2} s = {:.0} tokens/s",
        tokens as f64 / best
    );
    Ok(())
}

//! Fine-tuning speed: seconds per training step (forward with dropout, cross-entropy, backward,
//! gradient clipping, AdamW update) of a model (`ISOLAB_BENCH_MODEL`: a registry name, hub id or
//! folder; all-MiniLM-L6-v2 by default) with a classification head, on the same
//! batches as scripts/bench_finetune_torch.py: SST-2 dev in file order, 32 sentences per batch,
//! padded to the batch's longest (41–60 tokens). Two warm-up steps, then the median of ten.
//! scripts/bench_finetune.sh runs both and prints the ratio.

use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::finetune::classifier::SequenceClassifier;
use isotropy_lab::finetune::data::TaskData;
use isotropy_lab::finetune::optim::{AdamW, AdamWOptions};
use isotropy_lab::finetune::train::train_step;
use isotropy_lab::util::process::{elementwise_on_calling_thread, keep_freed_memory};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    // As `isolab finetune` runs.
    elementwise_on_calling_thread();
    keep_freed_memory();
    let spec = std::env::var("ISOLAB_BENCH_MODEL").unwrap_or_else(|_| String::from("minilm"));
    let model = SequenceClassifier::for_task(&spec, Task::Sst2, 0)?;
    let df = glue::load(Task::Sst2, Split::Dev)?;
    let data = TaskData::new(&model.model, Task::Sst2, &df, 128, "SST-2 dev")?;
    let mut optim = AdamW::new(
        model.params(),
        AdamWOptions {
            lr: 2e-5,
            ..AdamWOptions::default()
        },
    )?;
    let pad = model.model.config().pad_token_id as u32;
    let mut times = Vec::new();
    let mut tokens = Vec::new();
    for b in 0..12 {
        let rows: Vec<usize> = (b * 32..(b + 1) * 32).collect();
        let batch = data.batch(&rows, pad, &model.model.device)?;
        let targets = data.targets(&rows, &model.model.device)?;
        let start = Instant::now();
        train_step(&model, &mut optim, &batch, &targets, b as u64, 2e-5)?;
        if b >= 2 {
            times.push(start.elapsed().as_secs_f64());
            tokens.push(batch.ids.elem_count());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = (times[4] + times[5]) / 2.0;
    println!(
        "isotropy-lab training step, batch 32, {} padded tokens per batch on average: median {median:.3} s/step",
        tokens.iter().sum::<usize>() / tokens.len()
    );
    Ok(())
}

//! Fine-tuning speed: seconds per training step (forward with dropout, cross-entropy, backward,
//! gradient clipping, AdamW update) of a model (`ISOLAB_BENCH_MODEL`: a registry name, hub id or
//! folder; all-MiniLM-L6-v2 by default) with a classification head, on the same
//! batches as scripts/bench_finetune_torch.py: SST-2 dev in file order, 32 sentences per batch,
//! padded to the batch's longest (41–60 tokens). Two warm-up steps, then the median of ten.
//! scripts/bench_finetune.sh runs both and prints the ratio.
//!
//! Then the regulariser's overhead: batches 2–11 twice, each once plain and once with I-STAR on
//! the last layer (λ = −5, ζ = 0.2, the reference covariance of the SST-2 dev tokens), one after
//! the other; the median of the 20 time ratios. And the time I-STAR's reference covariance takes
//! (once per epoch), on every SST-2 dev token.

use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::finetune::classifier::SequenceClassifier;
use isotropy_lab::finetune::data::TaskData;
use isotropy_lab::finetune::isotropy_reg::{
    reference_covariance, BatchPenalty, IsotropyReg, Penalty, RegLayer, DEFAULT_ZETA,
    REFERENCE_TOKENS,
};
use isotropy_lab::finetune::optim::{AdamW, AdamWOptions};
use isotropy_lab::finetune::train::{train_step, train_step_regularised};
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
    let reg = IsotropyReg {
        penalty: Penalty::IsoscoreStar {
            lambda: -5.0,
            zeta: DEFAULT_ZETA,
        },
        layer: RegLayer::Last,
    };
    let last = model.model.encoder.num_hidden_states() - 1;
    let start = Instant::now();
    let reference = reference_covariance(&model.model, &data, last, REFERENCE_TOKENS, 0, 0)?;
    let reference_secs = start.elapsed().as_secs_f64();
    let step = |b: usize, regularised: bool, optim: &mut AdamW| -> anyhow::Result<(f64, usize)> {
        let rows: Vec<usize> = (b * 32..(b + 1) * 32).collect();
        let batch = data.batch(&rows, pad, &model.model.device)?;
        let targets = data.targets(&rows, &model.model.device)?;
        let indices = data.content_indices(&rows, batch.ids.dim(1)?);
        let penalty = BatchPenalty {
            reg: &reg,
            layer: last,
            indices: &indices,
            reference: Some(&reference),
        };
        let start = Instant::now();
        if regularised {
            train_step_regularised(&model, optim, &batch, &targets, &penalty, b as u64, 2e-5)?;
        } else {
            train_step(&model, optim, &batch, &targets, b as u64, 2e-5)?;
        }
        Ok((start.elapsed().as_secs_f64(), batch.ids.elem_count()))
    };
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[(v.len() - 1) / 2] + v[v.len() / 2]) / 2.0
    };
    // The plain step as scripts/bench_finetune_torch.py times it.
    let (mut times, mut tokens) = (Vec::new(), Vec::new());
    for b in 0..12 {
        let (t, padded) = step(b, false, &mut optim)?;
        if b >= 2 {
            times.push(t);
            tokens.push(padded);
        }
    }
    let plain = median(times);
    println!(
        "isotropy-lab training step, batch 32, {} padded tokens per batch on average: median {plain:.3} s/step",
        tokens.iter().sum::<usize>() / tokens.len()
    );
    // The regulariser's overhead: each batch with and without it, one after the other (so that
    // the machine's drift falls on both alike), batches 2–11 twice.
    let mut ratios = Vec::new();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for b in (2..12).chain(2..12) {
        let (a, _) = step(b, false, &mut optim)?;
        let (r, _) = step(b, true, &mut optim)?;
        ratios.push(r / a);
        without.push(a);
        with.push(r);
    }
    println!(
        "isotropy-lab training step with I-STAR on the last layer (λ -5, ζ 0.2): median {:.3} s against {:.3} s without, each batch both ways: overhead {:+.1} % (median of the 20 ratios)",
        median(with),
        median(without),
        100.0 * (median(ratios) - 1.0)
    );
    println!(
        "I-STAR's reference covariance (once per epoch) of the {} SST-2 dev tokens besides [CLS]/[SEP]: {reference_secs:.1} s",
        (0..data.len()).map(|i| data.content_positions(i).len()).sum::<usize>()
    );
    Ok(())
}

//! Chapter 07's claims 1–3 cell as a plain program: for each of the default profile's five
//! tasks, the fine-tune's load, both extractions (cached), the three named statistics of the
//! last layer and their paired bootstraps, and the clustering agreement, each step timed. Run
//! it twice: the first run fills the caches (`cache/`), the second is what a reader's warm cell
//! computes, without evcxr's compilation of the cell. The fine-tunes are the main job's, or
//! those under `ISOLAB_FINETUNES`.
//!
//! `cargo bench --profile dev --bench summary_claims`

use isotropy_lab::prelude::*;
use std::time::Instant;

fn timed<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let start = Instant::now();
    let out = f();
    println!("{:>8.3} s  {what}", start.elapsed().as_secs_f64());
    out
}

fn main() -> Result<()> {
    let all = Instant::now();
    let pretrained = base_model();
    let tasks = [Task::Sst2, Task::Mrpc, Task::Cola, Task::Rte, Task::Stsb];
    let (k, seed) = (10usize, 0u64);
    let protocol = Protocol::default();
    let pre_model = timed("load the pre-trained model", || Model::load(&pretrained))?;
    // The last layer alone, as the cell asks (read from the cache entry of every hidden state).
    let last = pre_model.config().num_hidden_layers;
    for task in tasks {
        let ft_name = finetuned_for(task);
        let ft_model = timed(&format!("{task}: load the fine-tune"), || {
            Model::load(&ft_name)
        })?;
        let options = ExtractOptions {
            limit: Some(1500),
            seed,
            layers: Some(vec![last]),
            ..ExtractOptions::default()
        };
        let source = Source::glue(task, Split::Dev);
        let pre = timed(&format!("{task}: extraction, pre-trained"), || {
            Embeddings::extract(&pre_model, &source, &options)
        })?;
        let ft = timed(&format!("{task}: extraction, fine-tuned"), || {
            Embeddings::extract(&ft_model, &source, &options)
        })?;
        let layer = last;
        for statistic in [
            Statistic::LogIsotropyLive,
            Statistic::Dominant,
            Statistic::ParticipationRatio,
        ] {
            timed(&format!("{task}: {statistic:?} of both, bootstrap"), || {
                statistic.of(pre.layer(layer)?)?;
                statistic.of(ft.layer(layer)?)?;
                bootstrap_statistic(&pre, &ft, layer, protocol.resamples, seed, statistic)
            })?;
        }
        timed(&format!("{task}: clustering agreement"), || {
            clustering_agreement(
                [(pretrained.as_str(), &pre), (ft_name.as_str(), &ft)],
                layer,
                k,
                &protocol,
            )
        })?;
    }
    println!("the cell's work: {:.3} s", all.elapsed().as_secs_f64());
    Ok(())
}

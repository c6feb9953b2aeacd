//! Token-level probes of the dominant directions on real minilm rows: their table, the promise
//! that removal is a projection with no re-standardisation, and what they find on layer 0.

mod common;

use isotropy_lab::analysis::extract::Embeddings;
use isotropy_lab::analysis::probes::{token_direction_probes, TokenProbeOptions, TokenTarget};
use isotropy_lab::analysis::protocol::Protocol;
use isotropy_lab::data::glue::{Split, Task};
use isotropy_lab::geometry::logistic::{LogisticRegression, ProbeOptions};
use isotropy_lab::geometry::spectrum::Pca;
use isotropy_lab::util::frame::Fresh;
use isotropy_lab::util::matrix::Matrix;
use isotropy_lab::util::sample::sorted_sample;

fn extract(task: Task, split: Split, limit: usize) -> Embeddings {
    common::extract_minilm(task, split, limit, 0)
}

fn column(frame: &polars::prelude::DataFrame, name: &str) -> Vec<f64> {
    frame
        .fresh()
        .column(name)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

#[test]
fn token_probes_remove_directions_by_projection_and_find_token_classes_in_layer_0() {
    let train = extract(Task::Sst2, Split::Train, 120);
    let dev = extract(Task::Sst2, Split::Dev, 40);
    let protocol = Protocol {
        seeds: 2,
        ..Protocol::default()
    };
    // Fitted to 1e-6 (ProbeOptions::default()): the rotation leaves the optimum in place, not
    // the path an optimiser stopped early takes to it.
    let opts = TokenProbeOptions {
        ks: vec![4],
        train_tokens: 800,
        probe: ProbeOptions::default(),
    };
    let probes =
        token_direction_probes(&train, &dev, 6, TokenTarget::Label, &opts, &protocol).unwrap();
    assert_eq!(probes.height(), 2 * 2, "per seed: k = 0 and k = 4");
    let removed = column(&probes, "removed_accuracy");

    // The same probe by hand for seed 0, k = 4: the draw's top 4 principal directions projected
    // out of the centred vectors *in their own coordinates*, everything divided by one number
    // (the draw's RMS coordinate), no per-column standardisation. The penalised probe does not
    // see the rotation, so it must score what the table says up to the optimiser's tolerance.
    let (xt, xd) = (train.layer(6).unwrap(), dev.layer(6).unwrap());
    let rows = sorted_sample(xt.rows(), Some(800), 0);
    let draw = xt.select_rows(&rows).unwrap().to_faer();
    let pca = Pca::fit_f64(draw.as_ref()).unwrap();
    let (rt, rd) = (
        pca.remove_top(draw.as_ref(), 4).unwrap(),
        pca.remove_top(xd.to_faer().as_ref(), 4).unwrap(),
    );
    let centred = pca.remove_top(draw.as_ref(), 0).unwrap();
    let rms =
        (centred.as_ref().squared_norm_l2() / (centred.nrows() * centred.ncols()) as f64).sqrt();
    let to_matrix = |m: &faer::Mat<f64>| {
        let data = (0..m.nrows())
            .flat_map(|i| (0..m.ncols()).map(move |j| (m[(i, j)] / rms) as f32))
            .collect();
        Matrix::new(m.nrows(), m.ncols(), data).unwrap()
    };
    let label = |e: &Embeddings, idx: Option<&[usize]>| -> Vec<i64> {
        let all: Vec<i64> = e
            .tokens
            .fresh()
            .column("label")
            .unwrap()
            .i64()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        match idx {
            Some(idx) => idx.iter().map(|&i| all[i]).collect(),
            None => all,
        }
    };
    let by_hand =
        LogisticRegression::fit(&to_matrix(&rt), &label(&train, Some(&rows)), &opts.probe)
            .unwrap()
            .accuracy(&to_matrix(&rd), &label(&dev, None))
            .unwrap();
    let tokens = dev.num_tokens() as f64;
    assert!(
        (by_hand - removed[1]).abs() <= 2.0 / tokens,
        "by hand {by_hand}, table {}",
        removed[1]
    );

    // On the embedding layer a token's vector is mostly its word piece: a probe on the full
    // vectors tells the token's class far better than the majority class does, and the two seeds
    // (two draws of training tokens) do not give the same table.
    let classes =
        token_direction_probes(&train, &dev, 0, TokenTarget::Class, &opts, &protocol).unwrap();
    let (top, removed) = (
        column(&classes, "top_k_accuracy"),
        column(&classes, "removed_accuracy"),
    );
    // Row 0: k = 0, where `top_k_accuracy` is the majority class and `removed_accuracy` the
    // full vectors.
    assert!(
        removed[0] > top[0] + 0.2,
        "full {} majority {}",
        removed[0],
        top[0]
    );
    let seed_row = |i: usize| (top[i], removed[i], top[i + 1], removed[i + 1]);
    assert_ne!(
        seed_row(0),
        seed_row(2),
        "two draws of training tokens gave the same probes"
    );

    // STS-B's labels are scores: a clear error, not a probe on truncated numbers.
    let sts = extract(Task::Stsb, Split::Dev, 10);
    let err = token_direction_probes(&sts, &sts, 6, TokenTarget::Label, &opts, &protocol)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a class"), "{err}");
}

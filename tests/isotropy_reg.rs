//! Isotropy as a training signal (issue 19): IsoScore from traces against the IsoScore package,
//! IsoScore⋆ and CosReg against I-STAR's definitions and torch's gradients
//! (tests/data/istar_reference.safetensors, from scripts/reference_istar.py), gradients against
//! finite differences, and regularised fine-tunes on real SST-2 data: the regularised layer's
//! IsoScore moves with the sign of λ, and a killed run resumes bit for bit.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{err, isolab, ok};
use isotropy_lab::finetune::experiment::{layers_frame, read_summary};
use isotropy_lab::finetune::isotropy_reg::{
    isoscore_star, mean_cosine_penalty, IsotropyReg, Penalty, Reference,
};
use isotropy_lab::finetune::log::TrainingLog;
use isotropy_lab::geometry::spectrum::Spectrum;
use isotropy_lab::polars::prelude::DataType;
use isotropy_lab::util::matrix::Matrix;
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};

fn read(name: &str) -> Vec<u8> {
    std::fs::read(common::root().join("tests/data").join(name)).unwrap()
}

/// A tensor of the reference file as f64, with its shape.
fn tensor(st: &SafeTensors, name: &str) -> Tensor {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let shape = t.shape().to_vec();
    let data: Vec<f64> = match t.dtype() {
        safetensors::Dtype::F32 => t
            .data()
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        safetensors::Dtype::F64 => t
            .data()
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("{name}: {other:?}"),
    };
    Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
}

fn scalar(t: &Tensor) -> f64 {
    t.to_scalar::<f64>().unwrap()
}

fn flat(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The batch (real minilm rows) and I-STAR's reference covariance of the reference file.
fn batch_and_reference() -> (Tensor, Reference) {
    let geometry = read("geometry_reference.safetensors");
    let istar = read("istar_reference.safetensors");
    let g = SafeTensors::deserialize(&geometry).unwrap();
    let st = SafeTensors::deserialize(&istar).unwrap();
    let points = tensor(&g, "real");
    let c0 = tensor(&st, "c0").to_dtype(DType::F32).unwrap();
    (points, Reference::new(c0).unwrap())
}

#[test]
fn isoscore_from_traces_equals_the_isoscore_package() {
    let bytes = read("geometry_reference.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // Real all-MiniLM-L6-v2 rows: last-layer tokens of SST-2 sentences and of the parity probes.
    // Fewer rows than dimensions: through the N × N Gram matrix.
    for case in ["sst2", "real"] {
        let points = tensor(&st, case);
        let ours = scalar(&isoscore_star(&points, None, 0.0).unwrap());
        // [the IsoScore package (float32 constants), its formula in numpy float64]
        let want = flat(&tensor(&st, &format!("{case}_isoscore")));
        assert!(
            (ours - want[0]).abs() <= 1e-6 * want[0].abs(),
            "{case}: IsoScore from tr Σ / ‖Σ‖_F {ours} vs the package's {}",
            want[0]
        );
        assert!(
            (ours - want[1]).abs() <= 1e-9 * want[1].abs(),
            "{case}: {ours} vs numpy {}",
            want[1]
        );
    }
    // More rows than dimensions (the first 48 of 384): through XᵀX, against the spectrum's
    // IsoScore (which the test above holds to the package).
    let rows = tensor(&st, "sst2").narrow(1, 0, 48).unwrap();
    let values: Vec<f32> = flat(&rows).into_iter().map(|v| v as f32).collect();
    let m = Matrix::new(rows.dim(0).unwrap(), 48, values).unwrap();
    let want = Spectrum::of(&m).unwrap().isoscore().unwrap();
    let ours = scalar(&isoscore_star(&rows, None, 0.0).unwrap());
    assert!(
        (ours - want).abs() <= 1e-9 * want,
        "48 wide: {ours} vs {want}"
    );
}

#[test]
fn istar_and_cosreg_match_the_authors_definitions_and_torch() {
    let bytes = read("istar_reference.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let want = flat(&tensor(&st, "istar"));
    let (points, reference) = batch_and_reference();
    let var = Var::from_tensor(&points).unwrap();

    // IsoScore⋆ with ζ = 0.2 (I-STAR's training value), and with ζ = 0.
    let star = isoscore_star(var.as_tensor(), Some(&reference), 0.2).unwrap();
    assert!(
        (scalar(&star) - want[0]).abs() <= 1e-9,
        "IsoScore⋆ {} vs torch {}",
        scalar(&star),
        want[0]
    );
    let s0 = scalar(&isoscore_star(&points, Some(&reference), 0.0).unwrap());
    assert!((s0 - want[1]).abs() <= 1e-9, "ζ = 0: {s0} vs {}", want[1]);
    // Shrinking toward a larger sample's covariance changes the value: the test sees ζ.
    assert!((want[0] - want[1]).abs() > 1e-3);

    let close = |ours: &Tensor, name: &str| {
        let (a, b) = (flat(ours), flat(&tensor(&st, name)));
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-5 * scale,
            "{name}: largest difference {worst:.3e} of {scale:.3e}"
        );
    };
    let grads = star.backward().unwrap();
    close(grads.get(var.as_tensor()).unwrap(), "istar_grad");

    let cos = mean_cosine_penalty(var.as_tensor()).unwrap();
    let want_cos = flat(&tensor(&st, "cosreg"))[0];
    assert!(
        (scalar(&cos) - want_cos).abs() <= 1e-12,
        "CosReg {} vs torch {want_cos}",
        scalar(&cos)
    );
    close(
        cos.backward().unwrap().get(var.as_tensor()).unwrap(),
        "cosreg_grad",
    );
}

#[test]
fn penalty_gradients_match_finite_differences() {
    let (points, reference) = batch_and_reference();
    // 40 real rows (f64), all 384 columns, and the first 16 columns: without shrinkage IsoScore
    // goes through the N × N Gram matrix when N is the smaller, else through XᵀX.
    let wide = points.narrow(0, 0, 40).unwrap();
    let narrow = wide.narrow(1, 0, 16).unwrap().contiguous().unwrap();
    let star = |lambda, zeta| Penalty::IsoscoreStar { lambda, zeta };
    let cases = [
        (star(-5.0, 0.2), &wide),
        (star(3.0, 0.0), &wide),
        (star(3.0, 0.0), &narrow),
        (Penalty::Cosine { lambda: 2.0 }, &wide),
    ];
    for (penalty, points) in cases {
        let reg = IsotropyReg {
            penalty,
            layer: isotropy_lab::finetune::isotropy_reg::RegLayer::Last,
        };
        let term = |p: &Tensor| scalar(&reg.term(p, Some(&reference)).unwrap().1);
        let var = Var::from_tensor(points).unwrap();
        let (_, t) = reg.term(var.as_tensor(), Some(&reference)).unwrap();
        let g = flat(t.backward().unwrap().get(var.as_tensor()).unwrap());
        let base = flat(points);
        // The largest entry of the gradient and a few others.
        let top = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        for k in [top, 7, 300, 555, g.len() - 1] {
            let at = |delta: f64| {
                let mut v = base.clone();
                v[k] += delta;
                term(&Tensor::from_vec(v, points.shape(), &Device::Cpu).unwrap())
            };
            let eps = 1e-5;
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            assert!(
                (numeric - g[k]).abs() <= 1e-5 * g[top].abs() + 1e-9,
                "{penalty:?} [{k}]: backward {:.6e}, finite differences {numeric:.6e}",
                g[k]
            );
        }
    }
}

/// The last traced value of `column` (the trace's dev probe set) for hidden state `layer`.
fn last_trace(run: &Path, layer: u64, column: &str) -> f64 {
    let t = TrainingLog::read(run).unwrap().layer_trace(layer).unwrap();
    let c = t.column(column).unwrap().f64().unwrap().clone();
    c.into_no_null_iter().last().unwrap()
}

/// The experiment runner on quick SST-2 fine-tunes (40 steps of 16) with I-STAR at λ = −5, 0
/// and 5 on the last layer (hidden state 6): after training, the dev probe set's IsoScore of that
/// layer is lowest for λ < 0 and highest for λ > 0; the summary holds each run's kept model and
/// its trace; run again, it trains nothing. CosReg at λ = 5 lowers the mean cosine. The log has
/// the regularised value of every step, `run.json` the regulariser.
#[test]
fn the_regulariser_moves_the_layers_isotropy_with_the_sign_of_lambda() {
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("grid");
    let args = [
        "reg-experiment",
        "--profile",
        "quick",
        "--tasks",
        "sst2",
        "--lambdas=-5,0,5",
        "--seeds",
        "1",
        "--out",
        grid.to_str().unwrap(),
    ];
    let said = ok(isolab(&args));
    assert!(
        (1..=3).all(|k| said.contains(&format!("run {k} of 3: SST-2"))),
        "{said}"
    );
    let rows = read_summary(&grid).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.lambda).collect::<Vec<_>>(),
        [-5.0, 0.0, 5.0]
    );
    let folder = |i: usize| PathBuf::from(&rows[i].folder);
    let (down, zero, up) = (folder(0), folder(1), folder(2));
    for r in &rows {
        let best = isotropy_lab::finetune::train::read_best(Path::new(&r.folder)).unwrap();
        assert_eq!((r.best_step, r.dev), (best.step, best.scores.main_value()));
        let t = TrainingLog::read(Path::new(&r.folder))
            .unwrap()
            .layer_trace(6)
            .unwrap();
        let steps: Vec<u64> = t
            .column("step")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        let at = steps.iter().position(|&s| s == best.step as u64).unwrap();
        let iso = t
            .column("isoscore")
            .unwrap()
            .f64()
            .unwrap()
            .get(at)
            .unwrap();
        assert_eq!(r.isoscore, iso);
        assert!(r.participation_ratio > 1.0 && r.participation_ratio < 384.0);
    }
    // Every hidden state of every run at its kept step; the last is the summary's layer.
    let layers = layers_frame(&rows).unwrap();
    assert_eq!(layers.height(), 3 * 7);
    let column = |name: &str| -> Vec<f64> {
        let c = layers
            .column(name)
            .unwrap()
            .cast(&DataType::Float64)
            .unwrap();
        c.f64().unwrap().into_no_null_iter().collect()
    };
    let (layer, iso) = (column("layer"), column("isoscore"));
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(layer[7 * i..7 * i + 7], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(iso[7 * i + 6], r.isoscore);
    }
    let again = ok(isolab(&args));
    assert!(!again.contains("run 1 of"), "{again}");
    // The same folders with the default budget: refused, not mixed in.
    let mut default = args;
    default[2] = "default";
    let e = err(isolab(&default));
    assert!(e.contains("other options than this experiment's"), "{e}");
    assert_eq!(
        serde_json::to_string(&read_summary(&grid).unwrap()).unwrap(),
        serde_json::to_string(&rows).unwrap()
    );

    let score = |r: &Path| last_trace(r, 6, "isoscore");
    let (d, z, u) = (score(&down), score(&zero), score(&up));
    assert!(d < z && z < u, "IsoScore after λ = −5, 0, 5: {d}, {z}, {u}");

    let log = TrainingLog::read(&down).unwrap();
    let reg = log.train.column("reg").unwrap().f64().unwrap().clone();
    assert_eq!(reg.null_count(), 0);
    let reg: Vec<f64> = reg.into_no_null_iter().collect();
    assert_eq!(reg.len(), 40);
    // The batch IsoScore⋆ falls as the penalty pushes it down.
    assert!(
        reg[35..].iter().sum::<f64>() < reg[..5].iter().sum::<f64>(),
        "{reg:?}"
    );
    let opts: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(down.join("run.json")).unwrap()).unwrap();
    assert_eq!(opts["isotropy_reg"]["penalty"]["kind"], "isoscore-star");
    assert_eq!(opts["isotropy_reg"]["penalty"]["lambda"], -5.0);
    assert_eq!(opts["isotropy_reg"]["penalty"]["zeta"], 0.2);
    assert_eq!(opts["isotropy_reg"]["layer"], "last");

    let cos = dir.path().join("cosine");
    ok(isolab(&[
        "finetune",
        "--task",
        "sst2",
        "--profile",
        "quick",
        "--trace-every",
        "20",
        "--isotropy-reg",
        "cosine:5",
        "--out",
        cos.to_str().unwrap(),
    ]));
    let (c, z) = (
        last_trace(&cos, 6, "mean_cosine"),
        last_trace(&zero, 6, "mean_cosine"),
    );
    assert!(c < z, "mean cosine after CosReg λ = 5: {c}, λ = 0: {z}");
}

/// An I-STAR run (10 steps per epoch, a checkpoint every 5) killed after its first checkpoint
/// (step 5, inside the first epoch, so the reference covariance comes back from the
/// checkpoint), started again and killed after a later one (at step 10 the resumed run computes
/// the next epoch's reference), then run to the end, has the same model and the same loss and
/// regularised value at every step as an uninterrupted run.
#[test]
fn a_killed_regularised_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "finetune",
            "--task",
            "sst2",
            "--profile",
            "quick",
            "--train-limit",
            "160",
            "--steps",
            "30",
            "--eval-every",
            "5",
            "--trace-every",
            "0",
            "--isotropy-reg",
            "isoscore-star:-5",
            "--reg-layer",
            "4",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().unwrap().to_string()])
        .collect()
    };
    let strs = |v: &[String]| {
        v.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let run = |out: &Path| isolab(&strs(&args(out)).split('\u{0}').collect::<Vec<_>>());
    let straight = dir.path().join("straight");
    let said = ok(run(&straight));
    assert_eq!(
        said.matches("I-STAR reference covariance").count(),
        3,
        "{said}"
    );

    // Killed twice: once after its first checkpoint (step 5, inside the first epoch), once after
    // a checkpoint at step 10 or later (at step 10, an epoch's end).
    let killed = dir.path().join("killed");
    let mut kills = Vec::new();
    for after in [5, 10] {
        let at = common::kill_after_checkpoint(&args(&killed), &killed, after);
        let step = at["step"].as_u64().unwrap();
        assert!(step < 30, "killed too late: {at}");
        // Inside an epoch, the checkpoint holds the reference covariance the epoch began with.
        if !step.is_multiple_of(10) {
            assert_eq!(at["reference_epoch"].as_u64(), Some(step / 10), "{at}");
            assert!(killed
                .join("checkpoint")
                .join("reference_cov.safetensors")
                .is_file());
        }
        kills.push(step);
    }
    assert_eq!(kills[0], 5, "the first kill came late: {kills:?}");
    let resumed = ok(run(&killed));
    assert!(resumed.contains("resuming"), "{resumed}");

    let lines = |r: &Path| {
        let log = TrainingLog::read(r).unwrap();
        let col = |c: &str| -> Vec<f64> {
            let s = log.train.column(c).unwrap().f64().unwrap().clone();
            s.into_no_null_iter().collect()
        };
        (col("loss"), col("reg"))
    };
    assert_eq!(lines(&straight), lines(&killed));
    assert!(
        std::fs::read(straight.join("model.safetensors")).unwrap()
            == std::fs::read(killed.join("model.safetensors")).unwrap(),
        "the best model differs between the uninterrupted and the resumed run"
    );
}

#[test]
fn bad_regulariser_options_are_refused_with_a_clear_message() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().join("r");
    let o = o.to_str().unwrap();
    let base = [
        "finetune",
        "--task",
        "sst2",
        "--profile",
        "quick",
        "--out",
        o,
    ];
    let with = |extra: &[&str]| err(isolab(&[&base[..], extra].concat()));
    let e = with(&["--isotropy-reg", "isoscore:1"]);
    assert!(e.contains("unknown regulariser 'isoscore'"), "{e}");
    let e = with(&["--isotropy-reg", "cosine:lots"]);
    assert!(e.contains("λ 'lots' is not a finite number"), "{e}");
    let e = with(&["--isotropy-reg", "cosine"]);
    assert!(e.contains("expected isoscore-star:λ or cosine:λ"), "{e}");
    let e = with(&["--isotropy-reg", "cosine:1", "--reg-zeta", "0.5"]);
    assert!(e.contains("CosReg has no shrinkage"), "{e}");
    let e = with(&["--isotropy-reg", "isoscore-star:1", "--reg-zeta", "1.5"]);
    assert!(e.contains("--reg-zeta 1.5") && e.contains("[0, 1]"), "{e}");
    let e = with(&["--reg-layer", "3"]);
    assert!(e.contains("--isotropy-reg"), "{e}");
    let e = with(&["--isotropy-reg", "isoscore-star:1", "--reg-layer", "9"]);
    assert!(
        e.contains("--reg-layer 9") && e.contains("hidden states 0..=6"),
        "{e}"
    );
    assert!(
        !out.path().join("r").join("run.json").exists(),
        "a refused run wrote run.json"
    );
    let e = err(isolab(&[
        "finetune",
        "--task",
        "stsb",
        "--objective",
        "cosine",
        "--profile",
        "quick",
        "--isotropy-reg",
        "cosine:1",
        "--out",
        o,
    ]));
    assert!(e.contains("trains a head"), "{e}");
    let experiment = ["reg-experiment", "--profile", "quick", "--out", o];
    let e = err(isolab(
        &[&experiment[..], &["--penalty", "isoscore"]].concat(),
    ));
    assert!(
        e.contains("--penalty 'isoscore': expected isoscore-star or cosine"),
        "{e}"
    );
    let e = err(isolab(&[&experiment[..], &["--lambdas=-5,NaN"]].concat()));
    assert!(e.contains("--lambdas: NaN is not a finite number"), "{e}");
}

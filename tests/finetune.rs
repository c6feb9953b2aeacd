//! Fine-tuning (issue 4): gradients, GLUE metrics, checkpoints that transformers reads with the
//! same logits, the geometry trace, resuming a killed run, and bad input. Every run here uses the
//! quick profile (`FinetuneOptions::quick`: 40 steps on 640 examples) on real GLUE data.

mod common;

use candle_core::{Device, Tensor};
use common::{err, isolab, ok};
use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::analysis::probes::split_half_accuracy;
use isotropy_lab::data::glue::{self, Split, Task};
use isotropy_lab::finetune::classifier::SequenceClassifier;
use isotropy_lab::finetune::data::TaskData;
use isotropy_lab::finetune::log::TrainingLog;
use isotropy_lab::finetune::metrics::{score, Labels};
use isotropy_lab::finetune::train::{evaluate, finetune, logits_all, Budget, FinetuneOptions};
use isotropy_lab::geometry::logistic::ProbeOptions;
use isotropy_lab::nn::dropout::Dropout;
use isotropy_lab::nn::model::Model;
use polars::prelude::{Column, DataFrame};
use std::path::Path;

#[test]
fn gradients_match_finite_differences() {
    common::setup();
    let model = SequenceClassifier::for_task("minilm", Task::Mrpc, 0).unwrap();
    let df = glue::load(Task::Mrpc, Split::Dev).unwrap().head(Some(6));
    let data = TaskData::new(&model.model, Task::Mrpc, &df, 128, "MRPC dev").unwrap();
    let rows: Vec<usize> = (0..6).collect();
    let batch = data.batch(&rows, 0, &Device::Cpu).unwrap();
    let targets = data.targets(&rows, &Device::Cpu).unwrap();
    // The same dropout masks in every evaluation: the loss is a function of the weights.
    let loss = || {
        let logits = model.logits_train(&batch, &mut Dropout::new(11)).unwrap();
        model.loss(&logits, &targets).unwrap()
    };
    let grads = loss().backward().unwrap();
    for name in [
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.LayerNorm.bias",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.1.attention.self.key.weight",
        "bert.encoder.layer.4.attention.self.value.bias",
        "bert.encoder.layer.2.attention.output.LayerNorm.weight",
        "bert.encoder.layer.4.output.LayerNorm.bias",
        "bert.encoder.layer.3.intermediate.dense.bias",
        "bert.encoder.layer.5.output.dense.weight",
        "bert.pooler.dense.weight",
        "classifier.bias",
    ] {
        let var = &model.params().iter().find(|(n, _)| n == name).unwrap().1;
        let g: Vec<f32> = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let k = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let orig: Vec<f32> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
        let shape = var.as_tensor().shape().clone();
        let at = |delta: f32| {
            let mut w = orig.clone();
            w[k] += delta;
            var.set(&Tensor::from_vec(w, shape.clone(), &Device::Cpu).unwrap())
                .unwrap();
            loss().to_scalar::<f32>().unwrap() as f64
        };
        let eps = 1e-2;
        let numeric = (at(eps) - at(-eps)) / (2.0 * eps as f64);
        at(0.0);
        let analytic = g[k] as f64;
        assert!(
            (numeric - analytic).abs() <= 0.02 * analytic.abs() + 1e-5,
            "{name}[{k}]: backward {analytic:.6e}, finite differences {numeric:.6e}"
        );
    }
}

/// With dropout off (a config with zero dropout), a training forward pass (every kernel a node
/// of the graph) gives the same bits as inference (the same kernels, no graph).
#[test]
fn training_forward_equals_inference_without_dropout() {
    common::setup();
    let copy = common::minilm_copy();
    let path = copy.path().join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["hidden_dropout_prob"] = serde_json::json!(0.0);
    config["attention_probs_dropout_prob"] = serde_json::json!(0.0);
    std::fs::write(&path, config.to_string()).unwrap();
    let model = SequenceClassifier::for_task(copy.path().to_str().unwrap(), Task::Rte, 0).unwrap();
    let df = glue::load(Task::Rte, Split::Dev).unwrap().head(Some(8));
    let data = TaskData::new(&model.model, Task::Rte, &df, 128, "RTE dev").unwrap();
    let rows: Vec<usize> = (0..8).collect();
    let batch = data.batch(&rows, 0, &Device::Cpu).unwrap();
    let eval: Vec<Vec<f32>> = model.logits(&batch).unwrap().to_vec2().unwrap();
    let train: Vec<Vec<f32>> = model
        .logits_train(&batch, &mut Dropout::new(0))
        .unwrap()
        .to_vec2()
        .unwrap();
    for (a, b) in eval.iter().zip(&train) {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.to_bits(), y.to_bits(), "inference {x}, training {y}");
        }
    }
}

#[test]
fn glue_metrics_match_scikit_learn_and_scipy() {
    let text =
        std::fs::read_to_string(common::root().join("tests/data/metrics_reference.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let classes = |v: &serde_json::Value| {
        Labels::Classes(
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect(),
        )
    };
    let close = |a: f64, b: &serde_json::Value, what: &str| {
        let b = b.as_f64().unwrap();
        assert!((a - b).abs() < 1e-12, "{what}: ours {a}, reference {b}");
    };
    for case in ["binary", "one_class"] {
        let c = &r[case];
        let (p, g) = (classes(&c["pred"]), classes(&c["gold"]));
        let mrpc = score(Task::Mrpc, &p, &g).unwrap();
        close(mrpc.values["accuracy"], &c["accuracy"], "accuracy");
        close(mrpc.values["f1"], &c["f1"], "f1");
        assert_eq!(mrpc.main, "f1");
        let cola = score(Task::Cola, &p, &g).unwrap();
        close(cola.values["mcc"], &c["mcc"], "mcc");
        assert_eq!(cola.main_value(), cola.values["mcc"]);
    }
    let c = &r["scores"];
    let floats = |v: &serde_json::Value| {
        Labels::Scores(
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect(),
        )
    };
    let sts = score(Task::Stsb, &floats(&c["pred"]), &floats(&c["gold"])).unwrap();
    close(sts.values["pearson"], &c["pearson"], "pearson");
    close(sts.values["spearman"], &c["spearman"], "spearman");
    assert!(score(
        Task::Sst2,
        &Labels::Classes(vec![1]),
        &Labels::Classes(vec![])
    )
    .is_err());
}

/// Checkpoints from `scripts/reference_finetune.py`'s command (one seeded step, whose learning
/// rate is 0: the initial model, identical on any machine): transformers' logits on the first 16
/// dev examples, recorded by that script, against ours.
#[test]
fn checkpoints_match_transformers_logits() {
    for task in ["sst2", "stsb", "mrpc"] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().to_str().unwrap();
        ok(isolab(&[
            "finetune",
            "--task",
            task,
            "--out",
            out,
            "--profile",
            "quick",
            "--steps",
            "1",
            "--eval-every",
            "1",
            "--trace-every",
            "0",
        ]));
        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
                .unwrap();
        assert_eq!(config["architectures"][0], "BertForSequenceClassification");
        let regression = task == "stsb";
        assert_eq!(config["num_labels"], if regression { 1 } else { 2 });
        assert_eq!(
            config["problem_type"],
            if regression {
                "regression"
            } else {
                "single_label_classification"
            }
        );
        assert!(dir.path().join("tokenizer.json").is_file());
        let reference = candle_core::safetensors::load(
            common::root().join(format!("tests/data/finetune_reference_{task}.safetensors")),
            &Device::Cpu,
        )
        .unwrap();
        let theirs: Vec<Vec<f32>> = reference["logits"].to_vec2().unwrap();
        let ids: Vec<Vec<i64>> = reference["input_ids"].to_vec2().unwrap();
        let n = theirs.len();
        let t: Task = task.parse().unwrap();
        let model = SequenceClassifier::load(out).unwrap();
        let df = glue::load(t, Split::Dev).unwrap().head(Some(n));
        let data = TaskData::new(&model.model, t, &df, 128, "dev").unwrap();
        for (i, e) in data.encodings.iter().enumerate() {
            let theirs: Vec<u32> = ids[i].iter().take(e.len()).map(|&x| x as u32).collect();
            assert_eq!(
                e.get_ids(),
                &theirs[..],
                "{task} example {i}: token ids differ"
            );
        }
        let ours: Vec<Vec<f32>> = logits_all(&model, &data, 8).unwrap().to_vec2().unwrap();
        let mut worst = 0f32;
        for (a, b) in ours.iter().zip(&theirs) {
            for (x, y) in a.iter().zip(b) {
                worst = worst.max((x - y).abs());
            }
        }
        assert!(
            worst <= 1e-4,
            "{task}: max |ours − transformers| = {worst:e}"
        );
    }
}

/// The quick profile end to end through the CLI, on a pair task: best model in the HF layout
/// that the foundation's loader reads, a log with the trace of every layer, `evaluate` on a
/// labelled file in GLUE's format.
#[test]
fn quick_finetune_logs_trace_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rte");
    let report = ok(isolab(&[
        "finetune",
        "--task",
        "rte",
        "--out",
        out.to_str().unwrap(),
        "--profile",
        "quick",
    ]));
    let report: serde_json::Value = serde_json::from_str(report.lines().last().unwrap()).unwrap();
    assert_eq!(report["steps"], 40);
    let log = TrainingLog::read(&out).unwrap();
    assert_eq!(log.train.height(), 40);
    let loss = log.train.column("loss").unwrap().f64().unwrap();
    assert!(loss.into_no_null_iter().all(|l| l.is_finite() && l > 0.0));
    // Evaluations at steps 20 and 40 (eval_every 20), accuracy in [0, 1].
    assert_eq!(log.eval.height(), 2);
    let acc = log.eval.column("accuracy").unwrap().f64().unwrap();
    assert!(acc.into_no_null_iter().all(|a| (0.0..=1.0).contains(&a)));
    // Trace: steps 0, 10, 20, 30, 40 × 7 hidden states, finite I(W) in (0, 1].
    assert_eq!(log.trace.height(), 5 * 7);
    let iso = log.trace.column("isotropy").unwrap().f64().unwrap();
    assert!(iso.into_no_null_iter().all(|v| v > 0.0 && v <= 1.0));
    let evr = log.trace.column("evr_1").unwrap().f64().unwrap();
    assert!(evr.into_no_null_iter().all(|v| v > 0.0 && v < 1.0));
    // The trace moves: the last layer's I(W) at step 40 differs from step 0.
    let last: Vec<f64> = (0..log.trace.height())
        .filter(|&i| {
            log.trace
                .column("layer")
                .unwrap()
                .get(i)
                .unwrap()
                .extract::<u64>()
                == Some(6)
        })
        .map(|i| iso.get(i).unwrap())
        .collect();
    assert_eq!(last.len(), 5);
    assert_ne!(last[0], last[4]);

    // The foundation's loader reads the folder as an encoder.
    let model = Model::load(out.to_str().unwrap()).unwrap();
    assert_eq!(model.config().num_hidden_layers, 6);

    // `evaluate` on a labelled file in RTE's format equals the library's evaluation.
    let dev =
        std::fs::read_to_string(isotropy_lab::util::paths::glue_dir().join("RTE/dev.tsv")).unwrap();
    let file = dir.path().join("rte-part.tsv");
    std::fs::write(
        &file,
        dev.lines().take(41).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let printed = ok(isolab(&[
        "evaluate",
        "--model",
        out.to_str().unwrap(),
        "--task",
        "rte",
        "--file",
        file.to_str().unwrap(),
    ]));
    let printed: serde_json::Value = serde_json::from_str(printed.trim()).unwrap();
    assert_eq!(printed["n"], 40);
    let clf = SequenceClassifier::load(out.to_str().unwrap()).unwrap();
    let df = glue::read_tsv(&file, Task::Rte, Split::Dev).unwrap();
    let data = TaskData::new(&clf.model, Task::Rte, &df, 128, "part").unwrap();
    let scores = evaluate(&clf, &data, 16).unwrap();
    assert_eq!(
        printed["values"]["accuracy"].as_f64().unwrap(),
        scores.values["accuracy"]
    );
    // The head alone on extracted [CLS] vectors (what chapter 05 scores after each enhancement
    // method) agrees with the full model on all of RTE dev.
    let all = glue::load(Task::Rte, Split::Dev).unwrap();
    let full = evaluate(
        &clf,
        &TaskData::new(&clf.model, Task::Rte, &all, 128, "dev").unwrap(),
        32,
    )
    .unwrap();
    let emb = Embeddings::extract_uncached(
        &clf.model,
        &Source::glue(Task::Rte, Split::Dev),
        &ExtractOptions {
            layers: Some(vec![6]),
            keep_special: true,
            ..ExtractOptions::default()
        },
    )
    .unwrap();
    let head = clf
        .head_score(&emb, emb.layer(6).unwrap(), Task::Rte)
        .unwrap()
        .values["accuracy"];
    assert!(
        (head - full.values["accuracy"]).abs() < 1.5 / 277.0,
        "head {head}, model {}",
        full.values["accuracy"]
    );
    // A split-half probe on the same vectors is a real classifier: above chance would be luck on
    // RTE, so only its range and determinism are checked here.
    let p1 = split_half_accuracy(&emb, emb.layer(6).unwrap(), &ProbeOptions::default(), 3).unwrap();
    let p2 = split_half_accuracy(&emb, emb.layer(6).unwrap(), &ProbeOptions::default(), 3).unwrap();
    assert!((0.0..=1.0).contains(&p1) && p1 == p2);

    // The test split has no labels: refused with the reason.
    let e = err(isolab(&[
        "evaluate",
        "--model",
        out.to_str().unwrap(),
        "--task",
        "rte",
        "--split",
        "test",
    ]));
    assert!(e.contains("no labels"), "{e}");
}

fn train_lines(dir: &Path) -> Vec<(u64, f64)> {
    let log = TrainingLog::read(dir).unwrap();
    let step = log.train.column("step").unwrap().u64().unwrap().clone();
    let loss = log.train.column("loss").unwrap().f64().unwrap().clone();
    step.into_no_null_iter()
        .zip(loss.into_no_null_iter())
        .collect()
}

/// A run killed after its step-10 checkpoint, started again, ends with the same weights, the
/// same best model and the same log as an uninterrupted run.
#[test]
fn killed_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "finetune",
            "--task",
            "sst2",
            "--profile",
            "quick",
            "--steps",
            "30",
            "--eval-every",
            "10",
            "--trace-every",
            "10",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_str().unwrap().to_string()])
        .collect()
    };
    let straight = dir.path().join("straight");
    ok(isolab(
        &args(&straight)
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>(),
    ));

    let killed = dir.path().join("killed");
    let at = common::kill_after_checkpoint(&args(&killed), &killed, 1);
    assert!(at["step"].as_u64().unwrap() < 30, "killed too late: {at}");
    let resumed = ok(isolab(
        &args(&killed).iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    ));
    assert!(resumed.contains("resuming"), "{resumed}");

    let a = std::fs::read(straight.join("model.safetensors")).unwrap();
    let b = std::fs::read(killed.join("model.safetensors")).unwrap();
    assert!(
        a == b,
        "the best model differs between the uninterrupted and the resumed run"
    );
    // Every step's loss, bit for bit: the resumed weights and optimizer moments were the same.
    assert_eq!(train_lines(&straight), train_lines(&killed));
    // Finished: nothing left to resume, so the checkpoint keeps its state but not the weights.
    for run in [&straight, &killed] {
        let mut kept: Vec<String> = std::fs::read_dir(run.join("checkpoint"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            ["base_fingerprint", "state.json"],
            "{}",
            run.display()
        );
    }
    let again = ok(isolab(
        &args(&killed).iter().map(|s| s.as_str()).collect::<Vec<_>>(),
    ));
    assert!(again.contains("nothing left to train"), "{again}");
    let (ts, tk) = (
        TrainingLog::read(&straight).unwrap().trace,
        TrainingLog::read(&killed).unwrap().trace,
    );
    assert_eq!(ts.height(), tk.height());
    assert!(ts.equals_missing(&tk), "the traces differ");
}

/// With restarts, each run trains into its own folder with its own seed, and the output folder
/// keeps the one with the best dev score: its model, best.json and log, recorded in restarts.json.
#[test]
fn restarts_keep_the_best_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rte");
    let args = [
        "finetune",
        "--task",
        "rte",
        "--profile",
        "quick",
        "--steps",
        "6",
        "--eval-every",
        "3",
        "--trace-every",
        "3",
        "--seed",
        "5",
        "--restarts",
        "2",
        "--out",
        out.to_str().unwrap(),
    ];
    let first = ok(isolab(&args));
    assert!(first.contains("restart 2 of 2 (seed 6)"), "{first}");
    let records: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("restarts.json")).unwrap()).unwrap();
    assert_eq!(records.len(), 2);
    let best: Vec<f64> = records
        .iter()
        .map(|r| r["best"].as_f64().unwrap())
        .collect();
    let kept: Vec<usize> = (0..2)
        .filter(|&k| records[k]["kept"].as_bool().unwrap())
        .collect();
    assert_eq!(kept.len(), 1, "{records:?}");
    let k = kept[0];
    assert!(
        best[k] >= best[1 - k] && (k == 0 || best[1] > best[0]),
        "{records:?}"
    );
    for (i, r) in records.iter().enumerate() {
        let run = out.join(format!("restart-{i}"));
        let opts: FinetuneOptions =
            serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
        assert_eq!((opts.seed, opts.restarts), (5 + i as u64, 1));
        assert_eq!(r["seed"].as_u64().unwrap(), 5 + i as u64);
        let b = isotropy_lab::finetune::train::read_best(&run).unwrap();
        assert_eq!(b.scores.main_value(), best[i]);
        assert!(isotropy_lab::finetune::train::finished(&run));
    }
    let chosen = out.join(format!("restart-{k}"));
    for file in ["model.safetensors", "config.json", "best.json", "log.jsonl"] {
        assert!(
            std::fs::read(out.join(file)).unwrap() == std::fs::read(chosen.join(file)).unwrap(),
            "{file} is not the kept restart's"
        );
    }
    assert!(isotropy_lab::finetune::train::finished(&out));
    // The two seeds train differently.
    assert_ne!(
        train_lines(&out.join("restart-0")),
        train_lines(&out.join("restart-1"))
    );
    // Started again, both runs are found finished and the same one is kept.
    let again = ok(isolab(&args));
    assert_eq!(again.matches("nothing left to train").count(), 2, "{again}");
    let again: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("restarts.json")).unwrap()).unwrap();
    assert_eq!(again, records);
}

fn quick(task: Task) -> FinetuneOptions {
    FinetuneOptions {
        trace_every: 0,
        ..FinetuneOptions::quick(task, "minilm")
    }
}

#[test]
fn bad_input_is_refused_with_a_clear_message() {
    common::setup();
    // Unknown task.
    let e = err(isolab(&[
        "finetune",
        "--task",
        "sst3",
        "--out",
        "/tmp/never-written",
    ]));
    assert!(
        e.contains("invalid value 'sst3' for '--task") && e.contains("possible values"),
        "{e}"
    );
    assert!(!Path::new("/tmp/never-written").exists());

    // A base model without a tokenizer.
    let copy = common::minilm_copy();
    std::fs::remove_file(copy.path().join("tokenizer.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = format!(
        "{:#}",
        finetune(
            &FinetuneOptions::quick(Task::Sst2, copy.path().to_str().unwrap()),
            &dir.path().join("a")
        )
        .unwrap_err()
    );
    assert!(e.contains("tokenizer"), "{e}");

    // Labels outside the classes, and an empty split.
    let model = SequenceClassifier::for_task("minilm", Task::Sst2, 0).unwrap();
    let df = DataFrame::new_infer_height(vec![
        Column::new("idx".into(), vec![0u32, 1]),
        Column::new("sentence1".into(), vec!["good", "bad"]),
        Column::new("sentence2".into(), vec![None::<String>, None]),
        Column::new("label".into(), vec![1i64, 5]),
    ])
    .unwrap();
    let e = TaskData::new(&model.model, Task::Sst2, &df, 128, "my.tsv")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("my.tsv") && e.contains("label 5"), "{e}");
    let e = TaskData::new(
        &model.model,
        Task::Sst2,
        &df.head(Some(0)),
        128,
        "empty.tsv",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("empty.tsv: no examples"), "{e}");

    // A budget of zero steps, and no run at all: refused before anything is written.
    let nothing = [
        (
            FinetuneOptions {
                budget: Budget::Steps(0),
                ..quick(Task::Sst2)
            },
            "0 steps",
        ),
        (
            FinetuneOptions {
                restarts: 0,
                ..quick(Task::Sst2)
            },
            "restarts 0",
        ),
    ];
    for (opts, says) in nothing {
        let e = finetune(&opts, &dir.path().join("b"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{e}");
        assert!(!dir.path().join("b").exists());
    }

    // Resuming a folder of another task.
    let folder = dir.path().join("c");
    let opts = FinetuneOptions {
        budget: Budget::Steps(2),
        eval_every: 2,
        ..quick(Task::Rte)
    };
    finetune(&opts, &folder).unwrap();
    let other = FinetuneOptions {
        budget: Budget::Steps(2),
        eval_every: 2,
        ..quick(Task::Mrpc)
    };
    let e = finetune(&other, &folder).unwrap_err().to_string();
    assert!(e.contains("other options") && e.contains("task"), "{e}");

    // A loss that turns NaN: stopped, the last checkpoint (finite weights) kept.
    let folder = dir.path().join("d");
    let opts = FinetuneOptions {
        budget: Budget::Steps(12),
        eval_every: 1,
        optimizer: isotropy_lab::finetune::optim::AdamWOptions {
            lr: 1e30,
            max_grad_norm: f64::INFINITY,
            ..Default::default()
        },
        ..quick(Task::Sst2)
    };
    let e = format!("{:#}", finetune(&opts, &folder).unwrap_err());
    assert!(e.contains("training stopped"), "{e}");
    assert!(e.contains("last good checkpoint is kept"), "{e}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(folder.join("checkpoint/state.json")).unwrap(),
    )
    .unwrap();
    assert!(state["step"].as_u64().unwrap() >= 1);
    let weights =
        candle_core::safetensors::load(folder.join("checkpoint/model.safetensors"), &Device::Cpu)
            .unwrap();
    for (name, t) in weights {
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{name} is not finite in the kept checkpoint"
        );
    }
}

/// `--objective cosine` on STS-B: a bi-encoder saved as a plain encoder, whose recorded dev
/// Spearman is the score the chapters compute from the same model (each sentence embedded alone,
/// mean-pooled without [CLS]/[SEP], cosine of the pair), and refused on a classification task.
#[test]
fn bi_encoder_scores_what_the_chapters_measure() {
    common::setup();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stsb-cosine");
    let opts = FinetuneOptions {
        budget: Budget::Steps(20),
        eval_every: 10,
        trace_every: 10,
        trace_examples: 32,
        train_limit: Some(320),
        dev_limit: Some(100),
        ..FinetuneOptions::bi_encoder("minilm")
    };
    let report = finetune(&opts, &out).unwrap();
    let log = TrainingLog::read(&out).unwrap();
    assert_eq!(log.train.height(), 20);
    // (cos − score/5)² ≤ 4; a finite, positive loss that is not stuck at its bounds.
    let loss: Vec<f64> = log
        .train
        .column("loss")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(
        loss.iter().all(|&l| l.is_finite() && l > 0.0 && l < 1.0),
        "{loss:?}"
    );
    // The trace measures the first sentences of the probe pairs: steps 0, 10, 20 × 7 layers.
    assert_eq!(log.trace.height(), 3 * 7);

    // A plain encoder: BertModel, no head tensor, loadable by the chapters.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "BertModel");
    let tensors =
        candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    assert!(tensors
        .keys()
        .all(|n| n.starts_with("embeddings.") || n.starts_with("encoder.")));
    let model = Model::load(out.to_str().unwrap()).unwrap();

    // The same dev pairs (the run's seeded sample), each sentence alone through extraction.
    let dev = glue::load(Task::Stsb, Split::Dev).unwrap();
    let rows = isotropy_lab::util::sample::sorted_sample(dev.height(), Some(100), opts.seed);
    let text = |name: &str| -> Vec<String> {
        let c = dev.column(name).unwrap().str().unwrap();
        rows.iter()
            .map(|&i| c.get(i).unwrap().to_string())
            .collect()
    };
    let gold: Vec<f64> = {
        let c = dev.column("label").unwrap().f64().unwrap();
        rows.iter().map(|&i| c.get(i).unwrap()).collect()
    };
    let mut sentences = text("sentence1");
    sentences.extend(text("sentence2"));
    let source = Source::Sentences {
        name: "STS-B dev sample of the bi-encoder test".into(),
        sentences,
    };
    let emb = Embeddings::extract(
        &model,
        &source,
        &ExtractOptions {
            layers: Some(vec![6]),
            ..ExtractOptions::default()
        },
    )
    .unwrap();
    let (_, s) = emb.sentence_means(emb.layer(6).unwrap()).unwrap();
    let n = rows.len();
    let cosines: Vec<f64> = (0..n)
        .map(|i| isotropy_lab::geometry::stats::cosine(s.row(i), s.row(n + i)))
        .collect();
    let ours = isotropy_lab::geometry::stats::spearman(&cosines, &gold).unwrap();
    let recorded = report.best.values["spearman"];
    assert!(
        (ours - recorded).abs() < 1e-3,
        "chapters {ours}, run {recorded}"
    );

    // A classification task has no similarity to fit.
    let e = finetune(
        &FinetuneOptions {
            task: Task::Sst2,
            ..opts.clone()
        },
        &dir.path().join("sst2-cosine"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cosine objective") && e.contains("SST-2"), "{e}");
}

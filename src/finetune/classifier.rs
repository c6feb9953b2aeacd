//! `BertForSequenceClassification` on candle: the encoder, a pooler (`[CLS]` → dense → tanh),
//! dropout and a linear classifier, with transformers' layout, tensor names and initialisation.

use crate::analysis::extract::Embeddings;
use crate::data::fetch::{self, ModelFiles};
use crate::data::glue::Task;
use crate::finetune::metrics::{argmax, score, Labels, Scores};
use crate::nn::batch::Batch;
use crate::nn::bert::{apply_linear, Mode};
use crate::nn::dropout::Dropout;
use crate::nn::model::{read_config, Model};
use crate::nn::weights::{read_checkpoint, trainable};
use crate::util::atomic;
use crate::util::matrix::Matrix;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor, Var, D};
use candle_nn::Linear;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// What the head predicts: one of `n` classes (cross-entropy) or a real score (mean squared
/// error), as transformers' `problem_type` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// `single_label_classification` with this many labels.
    Classes(usize),
    /// `regression` (one output).
    Regression,
}

impl Problem {
    /// The head's problem for a GLUE task.
    pub fn of(task: Task) -> Problem {
        if task.is_regression() {
            Problem::Regression
        } else {
            Problem::Classes(task.label_names().len())
        }
    }

    /// The number of outputs.
    pub fn num_labels(self) -> usize {
        match self {
            Problem::Classes(n) => n,
            Problem::Regression => 1,
        }
    }

    /// transformers' `problem_type` string.
    pub fn name(self) -> &'static str {
        match self {
            Problem::Classes(_) => "single_label_classification",
            Problem::Regression => "regression",
        }
    }
}

/// A BERT sequence classifier whose weights are trainable variables.
pub struct SequenceClassifier {
    /// The encoder with its tokenizer (shares its weights with [`SequenceClassifier::params`]).
    pub model: Model,
    pooler: Linear,
    classifier: Linear,
    params: Vec<(String, Var)>,
    problem: Problem,
    label_names: Vec<String>,
    classifier_dropout: f32,
    config_json: Value,
}

/// transformers' `_init_weights` for a Linear layer: weight ~ N(0, std²), bias 0.
fn init_linear(
    out_dim: usize,
    in_dim: usize,
    std: f64,
    rng: &mut StdRng,
) -> Result<(Tensor, Tensor)> {
    let normal: Vec<f32> = (0..out_dim * in_dim)
        .map(|_| {
            // Box–Muller on two uniforms in (0, 1].
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            (std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect();
    Ok((
        Tensor::from_vec(normal, (out_dim, in_dim), &Device::Cpu)?,
        Tensor::zeros(out_dim, DType::F32, &Device::Cpu)?,
    ))
}

impl SequenceClassifier {
    /// A classifier for `task` on top of the encoder `base` (a registry name, hub id or folder):
    /// the pooler comes from the checkpoint when it has one, and the classifier too when its shape
    /// fits the task; what is missing is initialised as transformers does (N(0, 0.02²) weights,
    /// zero biases), from `seed`.
    pub fn for_task(base: &str, task: Task, seed: u64) -> Result<Self> {
        let files = fetch::resolve_model(base)?;
        let problem = Problem::of(task);
        let labels: Vec<String> = match problem {
            Problem::Classes(_) => task.label_names().iter().map(|s| s.to_string()).collect(),
            Problem::Regression => vec!["LABEL_0".into()],
        };
        Self::build(files, problem, labels, Some(seed))
    }

    /// Loads a fine-tuned sequence classifier (our checkpoints or transformers'), reading the
    /// number of labels and the problem type from `config.json`.
    pub fn load(spec: &str) -> Result<Self> {
        let files = fetch::resolve_model(spec)?;
        let (_, raw) = read_config(&files)?;
        let labels: Vec<String> = match raw.get("id2label").and_then(|v| v.as_object()) {
            Some(map) => {
                let mut pairs: Vec<(usize, String)> = map
                    .iter()
                    .map(|(k, v)| {
                        let i = k.parse::<usize>().map_err(|_| {
                            anyhow!(
                                "{}: id2label key '{k}' is not an index",
                                files.config.display()
                            )
                        })?;
                        Ok((i, v.as_str().unwrap_or_default().to_string()))
                    })
                    .collect::<Result<_>>()?;
                pairs.sort();
                pairs.into_iter().map(|(_, v)| v).collect()
            }
            None => {
                let n = raw.get("num_labels").and_then(|v| v.as_u64()).unwrap_or(2) as usize;
                (0..n).map(|i| format!("LABEL_{i}")).collect()
            }
        };
        let problem = match raw.get("problem_type").and_then(|v| v.as_str()) {
            Some("regression") => Problem::Regression,
            Some("single_label_classification") | None if labels.len() == 1 => {
                Problem::Regression
            }
            Some("single_label_classification") | None => Problem::Classes(labels.len()),
            Some(other) => bail!(
                "{}: problem_type '{other}' is not supported (single_label_classification or regression)",
                files.config.display()
            ),
        };
        Self::build(files, problem, labels, None)
    }

    /// Builds the model; with `seed`, missing head tensors are initialised, without it they are
    /// an error.
    fn build(
        files: ModelFiles,
        problem: Problem,
        label_names: Vec<String>,
        seed: Option<u64>,
    ) -> Result<Self> {
        let (config, raw) = read_config(&files)?;
        let mut tensors = read_checkpoint(&files.weights)?;
        let h = config.hidden_size;
        let n = problem.num_labels();
        let mut rng = StdRng::seed_from_u64(seed.unwrap_or(0));
        let std = config.initializer_range;
        let mut fill = |name: &str,
                        out_dim: usize,
                        in_dim: usize,
                        tensors: &mut HashMap<String, Tensor>|
         -> Result<()> {
            let w = format!("{name}.weight");
            let b = format!("{name}.bias");
            let fits = tensors
                .get(&w)
                .is_some_and(|t| t.dims() == [out_dim, in_dim])
                && tensors.get(&b).is_some_and(|t| t.dims() == [out_dim]);
            if !fits {
                if seed.is_none() {
                    bail!(
                        "{}: no trained '{w}' of shape [{out_dim}, {in_dim}]: this is not a sequence classifier with {out_dim} outputs (fine-tune it first: isolab finetune)",
                        files.weights.display()
                    );
                }
                let (wt, bt) = init_linear(out_dim, in_dim, std, &mut rng)?;
                tensors.insert(w, wt);
                tensors.insert(b, bt);
            }
            Ok(())
        };
        fill("bert.pooler.dense", h, h, &mut tensors)?;
        fill("classifier", n, h, &mut tensors)?;
        let device = Device::Cpu;
        let (params, vb) = trainable(&tensors, |_| true, &device)?;
        let pooler = candle_nn::linear(h, h, vb.pp("bert.pooler.dense"))?;
        let classifier = candle_nn::linear(h, n, vb.pp("classifier"))?;
        let model = Model::with_weights(files, vb, &device)?;
        let classifier_dropout = config
            .classifier_dropout
            .unwrap_or(config.hidden_dropout_prob) as f32;
        Ok(Self {
            model,
            pooler,
            classifier,
            params,
            problem,
            label_names,
            classifier_dropout,
            config_json: raw,
        })
    }

    /// The head's problem.
    pub fn problem(&self) -> Problem {
        self.problem
    }

    /// The trainable tensors under transformers' names, sorted by name.
    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// Logits (batch × labels) in inference mode.
    pub fn logits(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.forward(batch, &mut Mode::Eval)?.0)
    }

    /// Logits in training mode: dropout from `dropout`, differentiable kernels.
    pub fn logits_train(&self, batch: &Batch, dropout: &mut Dropout) -> Result<Tensor> {
        Ok(self.forward(batch, &mut Mode::Train(dropout))?.0)
    }

    /// Logits in training mode and every hidden state they came from (batch × seq × hidden,
    /// 0 = the embedding output), all in one graph: a loss on a hidden state trains the weights
    /// below it.
    pub fn logits_and_states_train(
        &self,
        batch: &Batch,
        dropout: &mut Dropout,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        self.forward(batch, &mut Mode::Train(dropout))
    }

    fn forward(&self, batch: &Batch, mode: &mut Mode) -> Result<(Tensor, Vec<Tensor>)> {
        let layers = self.model.encoder.num_hidden_states() - 1;
        let states = self
            .model
            .encoder
            .run(&batch.ids, &batch.types, &batch.mask, layers, mode)?;
        let last = states.last().expect("at least the embedding output");
        let cls = last.i((.., 0))?;
        let pooled = apply_linear(&self.pooler, &cls, mode)?.tanh()?;
        let pooled = match mode {
            Mode::Eval => pooled,
            Mode::Train(d) => d.apply(&pooled, self.classifier_dropout)?,
        };
        Ok((apply_linear(&self.classifier, &pooled, mode)?, states))
    }

    /// The head alone (pooler, tanh, classifier; inference mode) on last-layer `[CLS]` vectors
    /// (rows × hidden): logits, rows × labels.
    pub fn head_logits(&self, cls: &Matrix) -> Result<Tensor> {
        let x = Tensor::from_slice(cls.data(), (cls.rows(), cls.cols()), &self.model.device)?;
        let pooled = apply_linear(&self.pooler, &x, &Mode::Eval)?.tanh()?;
        Ok(apply_linear(&self.classifier, &pooled, &Mode::Eval)?)
    }

    /// The fine-tuned head's scores on features it did not produce: the `[CLS]` rows of `m` (a
    /// last layer of `emb`, or a transformed copy of it with the same rows, as the enhancement
    /// methods give) through the pooler and classifier, scored against the sentences' labels with
    /// `task`'s GLUE metrics (accuracy, F1, MCC; Pearson and Spearman for a regression head). The
    /// extraction must keep special tokens and come from `task`'s labelled split.
    pub fn head_score(&self, emb: &Embeddings, m: &Matrix, task: Task) -> Result<Scores> {
        if Problem::of(task) != self.problem {
            bail!(
                "head score: this head is {:?}, {task} needs {:?}",
                self.problem,
                Problem::of(task)
            );
        }
        let (ids, cls) = emb.cls_rows(m).context("head score")?;
        let logits: Vec<Vec<f32>> = self.head_logits(&cls)?.to_vec2()?;
        let (predicted, gold) = match self.problem {
            Problem::Classes(_) => (
                Labels::Classes(logits.iter().map(|l| argmax(l) as i64).collect()),
                Labels::Classes(emb.sentence_classes(&ids)?),
            ),
            Problem::Regression => (
                Labels::Scores(logits.iter().map(|l| f64::from(l[0])).collect()),
                Labels::Scores(emb.sentence_labels(&ids)?),
            ),
        };
        score(task, &predicted, &gold)
    }

    /// The loss transformers computes for the problem type: cross-entropy of the logits against
    /// class indices (`targets` u32), or mean squared error of the single output against scores
    /// (`targets` f32).
    pub fn loss(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        Ok(match self.problem {
            Problem::Classes(_) => candle_nn::loss::cross_entropy(logits, targets)?,
            Problem::Regression => {
                let pred = logits.squeeze(D::Minus1)?;
                pred.sub(targets)?.sqr()?.mean_all()?
            }
        })
    }

    /// The configuration transformers reads back: the base's, with `architectures`,
    /// `num_labels`, `id2label`, `label2id` and `problem_type` set.
    pub fn config_json(&self) -> Value {
        let mut c = self.config_json.clone();
        let id2label: serde_json::Map<String, Value> = self
            .label_names
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), json!(l)))
            .collect();
        let label2id: serde_json::Map<String, Value> = self
            .label_names
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), json!(i)))
            .collect();
        if let Some(obj) = c.as_object_mut() {
            obj.insert(
                "architectures".into(),
                json!(["BertForSequenceClassification"]),
            );
            obj.insert("num_labels".into(), json!(self.problem.num_labels()));
            obj.insert("id2label".into(), Value::Object(id2label));
            obj.insert("label2id".into(), Value::Object(label2id));
            obj.insert("problem_type".into(), json!(self.problem.name()));
        }
        c
    }

    /// Writes the model in the Hugging Face layout into `dir` (which must exist): `config.json`,
    /// `model.safetensors` (transformers' tensor names) and the tokenizer files of the base
    /// (`Model::save_tokenizer`). Each file is written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .params
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let bytes = safetensors::serialize(
            tensors.iter().map(|(n, t)| (n.as_str(), t)),
            Some(HashMap::from([("format".to_string(), "pt".to_string())])),
        )?;
        atomic::write_bytes(&dir.join("model.safetensors"), &bytes)?;
        atomic::write_bytes(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&self.config_json())?.as_bytes(),
        )?;
        self.model.save_tokenizer(dir)
    }
}

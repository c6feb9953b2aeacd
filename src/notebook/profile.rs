//! Run profiles for notebooks, switched by one variable, `ISOLAB_PROFILE`:
//! - unset (the default profile): minilm and the main job's fine-tunes of it, readers' and the main
//!   job's sample sizes;
//! - `quick`: the tests' small samples and short fine-tunes;
//! - `paper`: the paper's own setting for readers who are online: `bert-base-uncased` and public
//!   GLUE fine-tunes of it by hub id ([`paper_finetune`]), with the authors' k and D (the
//!   methods' defaults) and the default profile's sample sizes.

use crate::data::glue::Task;
use std::str::FromStr;

/// A run profile (`ISOLAB_PROFILE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Unset: minilm, the main job's fine-tunes, full samples.
    Default,
    /// `quick`: the tests' small samples.
    Quick,
    /// `paper`: `bert-base-uncased` and its public GLUE fine-tunes from the Hugging Face Hub.
    Paper,
}

impl Profile {
    /// The profile `ISOLAB_PROFILE` selects; an unknown value is reported and the default used.
    pub fn current() -> Profile {
        match std::env::var("ISOLAB_PROFILE").as_deref() {
            Ok("quick") => Profile::Quick,
            Ok("paper") => Profile::Paper,
            Ok("") | Ok("default") | Err(_) => Profile::Default,
            Ok(other) => {
                eprintln!(
                    "ISOLAB_PROFILE={other:?} is not a profile (quick, paper); using the default"
                );
                Profile::Default
            }
        }
    }
}

/// Whether the quick profile is on (`ISOLAB_PROFILE=quick`).
pub fn quick() -> bool {
    Profile::current() == Profile::Quick
}

/// The base model the chapters start from: `ISOLAB_PRETRAINED` when set; else
/// `bert-base-uncased` in the paper profile and `minilm` otherwise.
pub fn base_model() -> String {
    match std::env::var("ISOLAB_PRETRAINED") {
        Ok(spec) if !spec.is_empty() => spec,
        _ if Profile::current() == Profile::Paper => String::from("bert-base-uncased"),
        _ => String::from("minilm"),
    }
}

/// The public fine-tune of `bert-base-uncased` on `task` that the paper profile uses, by hub id:
/// TextAttack's GLUE models (Morris et al. 2020). TextAttack's registry (`textattack/model_args.py`)
/// evaluates each on its GLUE validation split with no label remapping (it permutes only MNLI's and
/// SNLI's), so GLUE's label order holds; the STS-B model has one output, scaled there by 5 (it
/// predicts score / 5). `None` for tasks it has none for.
pub fn paper_finetune(task: Task) -> Option<&'static str> {
    match task {
        Task::Sst2 => Some("textattack/bert-base-uncased-SST-2"),
        Task::Mrpc => Some("textattack/bert-base-uncased-MRPC"),
        Task::Cola => Some("textattack/bert-base-uncased-CoLA"),
        Task::Rte => Some("textattack/bert-base-uncased-RTE"),
        Task::Stsb => Some("textattack/bert-base-uncased-STS-B"),
        Task::Qnli => Some("textattack/bert-base-uncased-QNLI"),
        Task::Wnli => Some("textattack/bert-base-uncased-WNLI"),
    }
}

/// A notebook parameter: the environment variable `name` if set and parseable, else `default`.
/// Lets a reader or the main job override any parameter cell value without editing the notebook.
/// A value that does not parse is reported and the default is used.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.parse().unwrap_or_else(|_| {
            eprintln!("{name}={v:?} is not a valid value here; using the default");
            default
        }),
        Err(_) => default,
    }
}

/// The fine-tuned model the chapters compare with the pre-trained one on `task`:
/// `ISOLAB_FINETUNED` when set; in the paper profile [`paper_finetune`]; else the main job's
/// fine-tune of `task`
/// (`<paths::finetunes_dir()>/<task>`, once that run has finished); else `minilm-sre`, a
/// fine-tune of all-MiniLM-L6-v2 on another task (so every chapter runs before any fine-tuning).
pub fn finetuned_for(task: Task) -> String {
    if let Ok(spec) = std::env::var("ISOLAB_FINETUNED") {
        if !spec.is_empty() {
            return spec;
        }
    }
    if let (Profile::Paper, Some(id)) = (Profile::current(), paper_finetune(task)) {
        return id.to_string();
    }
    let dir = crate::util::paths::finetunes_dir().join(task.hub_config());
    if crate::finetune::train::finished(&dir) {
        return dir.display().to_string();
    }
    String::from("minilm-sre")
}

/// The bi-encoder fine-tune the chapters compare with the base model on STS-B's cosine score:
/// `ISOLAB_FINETUNED_BI_ENCODER` when set; else the main job's
/// (`<paths::finetunes_dir()>/stsb-cosine`, `isolab finetune --task stsb --objective cosine`,
/// once it has finished); else `minilm-sre`, itself a bi-encoder fine-tune of all-MiniLM-L6-v2
/// (with a cosine-similarity loss, on incident reports rather than STS-B). In the paper profile,
/// the paper's STS-B fine-tune (a cross-encoder: the paper's setting has no bi-encoder).
pub fn finetuned_bi_encoder() -> String {
    if let Ok(spec) = std::env::var("ISOLAB_FINETUNED_BI_ENCODER") {
        if !spec.is_empty() {
            return spec;
        }
    }
    if Profile::current() == Profile::Paper {
        // The paper's setting has no bi-encoder: its STS-B fine-tune is a cross-encoder.
        return finetuned_for(Task::Stsb);
    }
    let dir = crate::util::paths::finetunes_dir().join(BI_ENCODER_RUN);
    if crate::finetune::train::finished(&dir) {
        return dir.display().to_string();
    }
    String::from("minilm-sre")
}

/// The folder, under the fine-tunes folder, of the main job's STS-B bi-encoder.
pub const BI_ENCODER_RUN: &str = "stsb-cosine";

/// Every finished fine-tune of `task` the main job made, as folder paths: run 0
/// (`<paths::finetunes_dir()>/<task>`, the one [`finetuned_for`] falls back to) and the extra
/// seeds that `ISOLAB_SEEDS=N` trains (`<task>-seed1` … `<task>-seed<N−1>`), in order, up to the
/// first that is missing or unfinished. Empty before the main job has fine-tuned `task`.
pub fn finetuned_runs(task: Task) -> Vec<String> {
    let root = crate::util::paths::finetunes_dir();
    (0..)
        .map(|s| match s {
            0 => root.join(task.hub_config()),
            s => root.join(format!("{}-seed{s}", task.hub_config())),
        })
        .take_while(|dir| crate::finetune::train::finished(dir))
        .map(|dir| dir.display().to_string())
        .collect()
}

/// One paragraph naming the two models a chapter compares and what they are: the base model (for
/// `minilm`: a contrastively trained sentence encoder, not an MLM-only BERT) and the fine-tuned
/// one (the main job's fine-tune of `task`, the `minilm-sre` stand-in, or a model set from
/// outside), and what that means for the reading.
pub fn describe_models(pretrained: &str, finetuned: &str, task: Task) -> String {
    let base = if pretrained == "minilm" {
        String::from(
            "Base model: minilm (all-MiniLM-L6-v2, 6 layers, 384 dimensions), a MiniLM trained \
             contrastively on sentence pairs to be a sentence encoder, not an MLM-only BERT such \
             as the paper's bert-base-uncased.",
        )
    } else if pretrained == "bert-base-uncased" {
        String::from(
            "Base model: bert-base-uncased (12 layers, 768 dimensions), the paper's MLM-only \
             pre-trained BERT.",
        )
    } else {
        format!("Base model: {pretrained}.")
    };
    let own = crate::util::paths::finetunes_dir().join(task.hub_config());
    let bi_encoder = crate::util::paths::finetunes_dir().join(BI_ENCODER_RUN);
    let tuned = if finetuned == bi_encoder.display().to_string() {
        format!(
            "Fine-tuned model: our own bi-encoder fine-tune of the base model on STS-B ({}): each \
             sentence embedded alone, mean-pooled, trained so that the cosine of a pair follows \
             its similarity, as the base model itself was trained.",
            bi_encoder.display()
        )
    } else if finetuned == own.display().to_string() {
        format!(
            "Fine-tuned model: our own fine-tune of the base model on {task} ({}), the paper's \
             case.",
            own.display()
        )
    } else if paper_finetune(task) == Some(finetuned) {
        format!(
            "Fine-tuned model: {finetuned}, TextAttack's public fine-tune of bert-base-uncased on \
             {task}, the paper's setting."
        )
    } else if finetuned == "minilm-sre" {
        format!(
            "Fine-tuned model: minilm-sre, a STAND-IN until the main job has fine-tuned {task}: \
             minilm fine-tuned with a cosine-similarity loss on incident reports, not on {task}. \
             Read a difference as what a fine-tune did, not what fine-tuning on {task} does."
        )
    } else {
        format!("Fine-tuned model: {finetuned} (set from outside, ISOLAB_FINETUNED).")
    };
    format!("{base}\n{tuned}")
}

//! Run profiles for notebooks: the tests run every notebook with a quick profile (small samples),
//! readers and the main job with the default one. One variable switches:
//! `ISOLAB_PROFILE=quick`.

use std::str::FromStr;

/// Whether the quick profile is on (`ISOLAB_PROFILE=quick`).
pub fn quick() -> bool {
    std::env::var("ISOLAB_PROFILE").is_ok_and(|p| p == "quick")
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
/// `ISOLAB_FINETUNED` when set; else the main job's fine-tune of `task`
/// (`<paths::finetunes_dir()>/<task>`, once that run has finished); else `minilm-sre`, a
/// fine-tune of all-MiniLM-L6-v2 on another task (so every chapter runs before any fine-tuning).
pub fn finetuned_for(task: crate::data::glue::Task) -> String {
    if let Ok(spec) = std::env::var("ISOLAB_FINETUNED") {
        if !spec.is_empty() {
            return spec;
        }
    }
    let dir = crate::util::paths::finetunes_dir().join(task.hub_config());
    if crate::finetune::train::finished(&dir) {
        return dir.display().to_string();
    }
    String::from("minilm-sre")
}

/// One paragraph naming the two models a chapter compares and what they are: the base model (for
/// `minilm`: a contrastively trained sentence encoder, not an MLM-only BERT) and the fine-tuned
/// one (the main job's fine-tune of `task`, the `minilm-sre` stand-in, or a model set from
/// outside), and what that means for the reading.
pub fn describe_models(pretrained: &str, finetuned: &str, task: crate::data::glue::Task) -> String {
    let base = if pretrained == "minilm" {
        String::from(
            "Base model: minilm (all-MiniLM-L6-v2, 6 layers, 384 dimensions), a MiniLM trained \
             contrastively on sentence pairs to be a sentence encoder, not an MLM-only BERT such \
             as the paper's bert-base-uncased.",
        )
    } else {
        format!("Base model: {pretrained}.")
    };
    let own = crate::util::paths::finetunes_dir().join(task.hub_config());
    let tuned = if finetuned == own.display().to_string() {
        format!(
            "Fine-tuned model: our own fine-tune of the base model on {task} ({}), the paper's \
             case.",
            own.display()
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

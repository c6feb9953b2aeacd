//! GLUE loaders on the real files: row counts and label balances from shared/data/glue/README.md,
//! and every quirk listed there.

mod common;

use isotropy_lab::data::glue::{self, Split, Task};

fn counts(task: Task, split: Split) -> (usize, Vec<(i64, usize)>) {
    common::setup();
    let df = glue::load(task, split).unwrap();
    glue::check_uniform(&df, task).unwrap();
    let mut per_class = std::collections::BTreeMap::new();
    if !task.is_regression() {
        for l in df.column("label").unwrap().i64().unwrap().iter().flatten() {
            *per_class.entry(l).or_insert(0usize) += 1;
        }
    }
    (df.height(), per_class.into_iter().collect())
}

#[test]
fn sst2_counts_and_balance() {
    assert_eq!(
        counts(Task::Sst2, Split::Train),
        (67_349, vec![(0, 29_780), (1, 37_569)])
    );
    assert_eq!(
        counts(Task::Sst2, Split::Dev),
        (872, vec![(0, 428), (1, 444)])
    );
    assert_eq!(counts(Task::Sst2, Split::Test).0, 1_821);
}

#[test]
fn mrpc_counts_balance_and_bom() {
    assert_eq!(
        counts(Task::Mrpc, Split::Train),
        (3_668, vec![(0, 1_194), (1, 2_474)])
    );
    assert_eq!(
        counts(Task::Mrpc, Split::Dev),
        (408, vec![(0, 129), (1, 279)])
    );
    assert_eq!(counts(Task::Mrpc, Split::Test).0, 1_725);
    // Quoting off: a sentence with literal quotes stays one field.
    let df = glue::load(Task::Mrpc, Split::Train).unwrap();
    let first = df
        .column("sentence1")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert!(first.contains("\" the witness \""), "{first}");
    assert!(df.column("sentence2").unwrap().null_count() == 0);
}

#[test]
fn cola_has_no_header_and_counts() {
    assert_eq!(
        counts(Task::Cola, Split::Train),
        (8_551, vec![(0, 2_528), (1, 6_023)])
    );
    assert_eq!(
        counts(Task::Cola, Split::Dev),
        (1_043, vec![(0, 322), (1, 721)])
    );
    assert_eq!(counts(Task::Cola, Split::Test).0, 1_063);
    let df = glue::load(Task::Cola, Split::Train).unwrap();
    let first = df
        .column("sentence1")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(
        first,
        "Our friends won't buy this analysis, let alone the next one we propose."
    );
    assert_eq!(df.column("sentence2").unwrap().null_count(), df.height());
}

#[test]
fn rte_string_labels_map_like_the_hub() {
    // entailment = 0, not_entailment = 1; dev has 146 entailment and 131 not_entailment.
    assert_eq!(
        counts(Task::Rte, Split::Dev),
        (277, vec![(0, 146), (1, 131)])
    );
    assert_eq!(counts(Task::Rte, Split::Train).0, 2_490);
    assert_eq!(counts(Task::Rte, Split::Test).0, 3_000);
}

#[test]
fn stsb_scores_are_floats_in_range() {
    for (split, n) in [
        (Split::Train, 5_749),
        (Split::Dev, 1_500),
        (Split::Test, 1_379),
    ] {
        common::setup();
        let df = glue::load(Task::Stsb, split).unwrap();
        assert_eq!(df.height(), n);
        let label = df.column("label").unwrap().f64().unwrap();
        if split == Split::Test {
            assert_eq!(label.null_count(), n);
        } else {
            assert_eq!(label.null_count(), 0);
            assert!(label.iter().flatten().all(|s| (0.0..=5.0).contains(&s)));
        }
    }
    let df = glue::load(Task::Stsb, Split::Dev).unwrap();
    assert_eq!(
        df.column("sentence1").unwrap().str().unwrap().get(0),
        Some("A man with a hard hat is dancing.")
    );
    assert_eq!(df.column("label").unwrap().f64().unwrap().get(0), Some(5.0));
}

#[test]
fn qnli_and_wnli_counts() {
    assert_eq!(counts(Task::Qnli, Split::Dev).0, 5_463);
    assert_eq!(counts(Task::Qnli, Split::Test).0, 5_463);
    let err = glue::load(Task::Qnli, Split::Train)
        .unwrap_err()
        .to_string();
    assert!(err.contains("QNLI") && err.contains("train"), "{err}");
    assert_eq!(counts(Task::Wnli, Split::Train).0, 635);
    assert_eq!(counts(Task::Wnli, Split::Dev).0, 71);
    assert_eq!(counts(Task::Wnli, Split::Test).0, 146);
}

#[test]
fn sst2_trailing_space_is_trimmed() {
    common::setup();
    let df = glue::load(Task::Sst2, Split::Dev).unwrap();
    let s = df
        .column("sentence1")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    assert_eq!(s, "it 's a charming and often affecting journey .");
}

#[test]
fn malformed_row_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let task_dir = dir.path().join("RTE");
    std::fs::create_dir_all(&task_dir).unwrap();
    let path = task_dir.join("dev.tsv");
    std::fs::write(
        &path,
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n",
    )
    .unwrap();
    let err = format!(
        "{:#}",
        glue::load_from(dir.path(), Task::Rte, Split::Dev).unwrap_err()
    );
    assert!(err.contains(&format!("{}:3", path.display())), "{err}");
    assert!(err.contains("expected 4"), "{err}");

    std::fs::write(
        &path,
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n",
    )
    .unwrap();
    let err = format!(
        "{:#}",
        glue::load_from(dir.path(), Task::Rte, Split::Dev).unwrap_err()
    );
    assert!(
        err.contains(&format!("{}:2", path.display())) && err.contains("maybe"),
        "{err}"
    );
}

#[test]
fn unknown_task_and_split_are_named() {
    assert!("mnli"
        .parse::<Task>()
        .unwrap_err()
        .to_string()
        .contains("mnli"));
    assert!("holdout"
        .parse::<Split>()
        .unwrap_err()
        .to_string()
        .contains("holdout"));
    assert_eq!("STS-B".parse::<Task>().unwrap(), Task::Stsb);
}

//! Local structure of a layer: what its clusters hold (token classes, frequency, sentence labels),
//! how much of that structure the clusters capture (normalised mutual information), and a 2-D PCA
//! view of the tokens. Rajaee & Pilehvar (2021, §5) show these token-type and frequency clusters
//! in pre-trained spaces and follow how fine-tuning reshapes them.

use crate::analysis::columns;
use crate::analysis::extract::Embeddings;
use crate::analysis::protocol::Protocol;
use crate::data::tokens::TokenClass;
use crate::geometry::cluster::{kmeans_labels, local_isotropy};
use crate::geometry::spectrum::Pca;
use crate::geometry::stats::{adjusted_rand_index, normalized_mutual_info, Spread};
use crate::util::frame::Fresh;
use crate::util::matrix::Matrix;
use crate::util::sample::sorted_sample;
use anyhow::{bail, Result};
use faer::Mat;
use polars::prelude::{Column, DataFrame, DataType};

/// Per-token facts the structure tables group by.
struct TokenFacts {
    class: Vec<String>,
    frequency_bucket: Vec<String>,
    label: Vec<String>,
    token: Vec<String>,
}

/// The frequency bucket of a training-split count: `<10`, `10-99`, `100-999`, `1000+`, or
/// `unseen` when the task has no training split.
pub fn frequency_bucket(count: Option<u64>) -> &'static str {
    match count {
        None => "unseen",
        Some(c) if c < 10 => "<10",
        Some(c) if c < 100 => "10-99",
        Some(c) if c < 1000 => "100-999",
        Some(_) => "1000+",
    }
}

fn facts(emb: &Embeddings) -> Result<TokenFacts> {
    let t = emb.tokens.fresh();
    let strings = |name: &str| -> Result<Vec<String>> {
        let c = t.column(name)?.cast(&DataType::String)?;
        Ok(c.str()?
            .iter()
            .map(|v| v.unwrap_or("none").to_string())
            .collect())
    };
    let freq = t.column(columns::FREQUENCY)?.cast(&DataType::UInt64)?;
    Ok(TokenFacts {
        class: strings(columns::TOKEN_CLASS)?,
        frequency_bucket: freq
            .u64()?
            .iter()
            .map(|f| frequency_bucket(f).to_string())
            .collect(),
        label: strings(columns::LABEL)?,
        token: strings(columns::TOKEN)?,
    })
}

/// What each cluster of a labelling of `emb`'s tokens holds: `cluster`, `size`, the share of each
/// token class (`special`, `punctuation`, `number`, `stop word`, `word`), `frequent` (share of
/// tokens seen 1000+ times in the training split), `main_class` and `purity` (the share of the
/// most common class), and `top_tokens` (the five most common tokens).
pub fn cluster_composition(emb: &Embeddings, labels: &[usize]) -> Result<DataFrame> {
    if labels.len() != emb.num_tokens() {
        bail!(
            "cluster composition: {} labels for {} tokens",
            labels.len(),
            emb.num_tokens()
        );
    }
    let f = facts(emb)?;
    let k = labels.iter().max().map_or(0, |m| m + 1);
    let mut size = vec![0u64; k];
    let mut class_counts = vec![[0u64; TokenClass::ALL.len()]; k];
    let mut frequent = vec![0u64; k];
    let mut tokens: Vec<std::collections::HashMap<&str, u64>> = vec![Default::default(); k];
    for (i, &c) in labels.iter().enumerate() {
        size[c] += 1;
        if let Some(j) = TokenClass::ALL.iter().position(|c| c.name() == f.class[i]) {
            class_counts[c][j] += 1;
        }
        if f.frequency_bucket[i] == "1000+" {
            frequent[c] += 1;
        }
        *tokens[c].entry(f.token[i].as_str()).or_default() += 1;
    }
    let share = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut cols = vec![
        Column::new("cluster".into(), (0..k as u32).collect::<Vec<_>>()),
        Column::new("size".into(), size.clone()),
    ];
    for (j, class) in TokenClass::ALL.iter().enumerate() {
        let v: Vec<f64> = (0..k).map(|c| share(class_counts[c][j], size[c])).collect();
        cols.push(Column::new(class.name().into(), v));
    }
    cols.push(Column::new(
        "frequent".into(),
        (0..k)
            .map(|c| share(frequent[c], size[c]))
            .collect::<Vec<_>>(),
    ));
    let main: Vec<(usize, u64)> = class_counts
        .iter()
        .map(|cc| {
            cc.iter()
                .copied()
                .enumerate()
                .max_by_key(|&(j, n)| (n, std::cmp::Reverse(j)))
                .unwrap_or((0, 0))
        })
        .collect();
    cols.push(Column::new(
        "main_class".into(),
        main.iter()
            .map(|m| TokenClass::ALL[m.0].name())
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "purity".into(),
        (0..k)
            .map(|c| share(main[c].1, size[c]))
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "top_tokens".into(),
        tokens
            .iter()
            .map(|m| {
                let mut v: Vec<(&str, u64)> = m.iter().map(|(t, n)| (*t, *n)).collect();
                v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                v.iter().take(5).map(|t| t.0).collect::<Vec<_>>().join(" ")
            })
            .collect::<Vec<_>>(),
    ));
    Ok(DataFrame::new_infer_height(cols)?.fresh())
}

/// How much of the token structure a clustering captures: normalised mutual information between
/// the clusters and the token class (`nmi_class`), the frequency bucket (`nmi_frequency`) and
/// the sentence label (`nmi_label`), and the size-weighted class purity (`purity`). One row,
/// ready to stack with [`crate::util::frame::by_model`].
pub fn structure_scores(emb: &Embeddings, labels: &[usize]) -> Result<DataFrame> {
    let f = facts(emb)?;
    let comp = cluster_composition(emb, labels)?;
    let size = comp.column("size")?.u64()?;
    let purity = comp.column("purity")?.f64()?;
    let total: f64 = size.iter().flatten().sum::<u64>() as f64;
    let weighted: f64 = size
        .iter()
        .zip(purity.iter())
        .map(|(s, p)| s.unwrap_or(0) as f64 * p.unwrap_or(0.0))
        .sum::<f64>()
        / total;
    Ok(DataFrame::new_infer_height(vec![
        Column::new("clusters".into(), [comp.height() as u32]),
        Column::new(
            "nmi_class".into(),
            [normalized_mutual_info(labels, &f.class)?],
        ),
        Column::new(
            "nmi_frequency".into(),
            [normalized_mutual_info(labels, &f.frequency_bucket)?],
        ),
        Column::new(
            "nmi_label".into(),
            [normalized_mutual_info(labels, &f.label)?],
        ),
        Column::new("purity".into(), [weighted]),
    ])?
    .fresh())
}

/// k-means of hidden state `layer` with `k` clusters, once per seed of `protocol`, each scored by
/// [`structure_scores`]: one row per seed (`seed`, then the score columns). Summarise it with
/// [`crate::analysis::spread::summarise`].
pub fn structure_over_seeds(
    emb: &Embeddings,
    layer: usize,
    k: usize,
    protocol: &Protocol,
) -> Result<DataFrame> {
    let m = emb.layer(layer)?;
    let mut out: Option<DataFrame> = None;
    for seed in protocol.seeds() {
        let labels = kmeans_labels(m, &protocol.kmeans(k, seed))?;
        let mut row = structure_scores(emb, &labels)?;
        row.insert_column(0, Column::new("seed".into(), [seed]))?;
        out = Some(match out {
            None => row,
            Some(acc) => acc.vstack(&row)?,
        });
    }
    match out {
        Some(df) => Ok(df.fresh()),
        None => bail!("structure over seeds: the protocol has no seeds"),
    }
}

/// Do two spaces cluster the same tokens alike? k-means (`k` clusters) of hidden state `layer` of
/// each model, once per seed of `protocol`, then the adjusted Rand index and NMI between
/// clusterings: of each model with itself under different seeds (the noise baseline: how much a
/// clustering moves with the seed alone) and of one model with the other (every pair of seeds).
/// One row per comparison: `comparison`, `pairs`, `ari_mean`, `ari_sd`, `nmi_mean`, `nmi_sd`.
/// Both extractions must hold the same tokens in the same order (the same data and options).
pub fn clustering_agreement(
    models: [(&str, &Embeddings); 2],
    layer: usize,
    k: usize,
    protocol: &Protocol,
) -> Result<DataFrame> {
    let ids = |e: &Embeddings| -> Result<Vec<Option<u32>>> {
        Ok(e.tokens
            .fresh()
            .column(columns::TOKEN_ID)?
            .cast(&DataType::UInt32)?
            .u32()?
            .iter()
            .collect())
    };
    if ids(models[0].1)? != ids(models[1].1)? {
        bail!(
            "clustering agreement: {} and {} hold different tokens (extract both from the same \
             data with the same options and a tokenizer of the same vocabulary)",
            models[0].0,
            models[1].0
        );
    }
    let seeds = protocol.seeds();
    if seeds.len() < 2 {
        bail!("clustering agreement: needs at least 2 seeds for the seed-to-seed baseline");
    }
    let labels = models
        .iter()
        .map(|(_, e)| {
            let m = e.layer(layer)?;
            seeds
                .iter()
                .map(|&s| kmeans_labels(m, &protocol.kmeans(k, s)))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let shown = |name: &str| crate::util::paths::model_display_name(name);
    let mut rows: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (i, (name, _)) in models.iter().enumerate() {
        let name = shown(name);
        let mut scores = Vec::new();
        for a in 0..seeds.len() {
            for b in a + 1..seeds.len() {
                let (x, y) = (&labels[i][a], &labels[i][b]);
                scores.push((adjusted_rand_index(x, y)?, normalized_mutual_info(x, y)?));
            }
        }
        rows.push((format!("{name}, seed vs seed"), scores));
    }
    let mut across = Vec::new();
    for x in &labels[0] {
        for y in &labels[1] {
            across.push((adjusted_rand_index(x, y)?, normalized_mutual_info(x, y)?));
        }
    }
    rows.push((
        format!("{} vs {}", shown(models[0].0), shown(models[1].0)),
        across,
    ));
    let spread = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        Spread::of(&v.iter().map(pick).collect::<Vec<_>>())
    };
    let mut cols: [Vec<f64>; 4] = Default::default();
    for (_, v) in &rows {
        let (ari, nmi) = (spread(v, |p| p.0)?, spread(v, |p| p.1)?);
        for (c, x) in cols.iter_mut().zip([ari.mean, ari.sd, nmi.mean, nmi.sd]) {
            c.push(x);
        }
    }
    let [ari_mean, ari_sd, nmi_mean, nmi_sd] = cols;
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "comparison".into(),
            rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        ),
        Column::new(
            "pairs".into(),
            rows.iter().map(|r| r.1.len() as u32).collect::<Vec<_>>(),
        ),
        Column::new("ari_mean".into(), ari_mean),
        Column::new("ari_sd".into(), ari_sd),
        Column::new("nmi_mean".into(), nmi_mean),
        Column::new("nmi_sd".into(), nmi_sd),
    ])?
    .fresh())
}

/// The tokens of hidden state `layer` on their first two principal components, for scatter plots:
/// `pc1`, `pc2`, `token`, `token_class`, `frequency_bucket`, `label`. At most `max_points` tokens,
/// a seeded sample (the components are fitted on all tokens).
pub fn pca_points(
    emb: &Embeddings,
    layer: usize,
    max_points: usize,
    seed: u64,
) -> Result<DataFrame> {
    let m = emb.layer(layer)?;
    let pca = Pca::fit(m)?;
    let f = facts(emb)?;
    let rows = sorted_sample(m.rows(), Some(max_points), seed);
    let sampled = Mat::from_fn(rows.len(), m.cols(), |i, j| f64::from(m.row(rows[i])[j]));
    let pcs = pca.transform(sampled.as_ref(), 2)?;
    let pick = |v: &[String]| rows.iter().map(|&i| v[i].clone()).collect::<Vec<_>>();
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "pc1".into(),
            (0..rows.len()).map(|i| pcs[(i, 0)]).collect::<Vec<_>>(),
        ),
        Column::new(
            "pc2".into(),
            (0..rows.len()).map(|i| pcs[(i, 1)]).collect::<Vec<_>>(),
        ),
        Column::new(columns::TOKEN.into(), pick(&f.token)),
        Column::new(columns::TOKEN_CLASS.into(), pick(&f.class)),
        Column::new("frequency_bucket".into(), pick(&f.frequency_bucket)),
        Column::new("label".into(), pick(&f.label)),
    ])?
    .fresh())
}

/// Sentence vectors (mean-pooled, [`Embeddings::sentence_means`]) of hidden state `layer` on their
/// first two principal components: `pc1`, `pc2`, `label`.
pub fn sentence_pca_points(emb: &Embeddings, layer: usize) -> Result<DataFrame> {
    let (ids, s) = emb.sentence_means(emb.layer(layer)?)?;
    let pca = Pca::fit(&s)?;
    let t = emb.tokens.fresh();
    let sid = t.column(columns::SENTENCE_ID)?.u32()?;
    let lab = t.column(columns::LABEL)?.cast(&DataType::String)?;
    let lab = lab.str()?;
    let mut label_of = std::collections::HashMap::new();
    for (id, l) in sid.iter().zip(lab.iter()) {
        if let (Some(id), Some(l)) = (id, l) {
            label_of.entry(id).or_insert_with(|| l.to_string());
        }
    }
    let pcs = pca.transform(s.to_faer().as_ref(), 2)?;
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "pc1".into(),
            (0..s.rows()).map(|i| pcs[(i, 0)]).collect::<Vec<_>>(),
        ),
        Column::new(
            "pc2".into(),
            (0..s.rows()).map(|i| pcs[(i, 1)]).collect::<Vec<_>>(),
        ),
        Column::new(
            "label".into(),
            ids.iter()
                .map(|id| label_of.get(id).cloned().unwrap_or_else(|| "none".into()))
                .collect::<Vec<_>>(),
        ),
    ])?
    .fresh())
}

/// Local isotropy (Cai et al. 2021) as a table: one row per cluster with `cluster`, `size`, and,
/// after centring the cluster on its own mean, `isotropy` (I(W), one sign per eigenvector),
/// `isotropy_both_signs` and `mean_cosine` ([`local_isotropy`]). A cluster with fewer than 2 rows
/// gets NaN.
pub fn cluster_table(w: &Matrix, labels: &[usize]) -> Result<DataFrame> {
    let local = local_isotropy(w, labels)?;
    Ok(DataFrame::new_infer_height(vec![
        Column::new(
            "cluster".into(),
            (0..local.len() as u32).collect::<Vec<_>>(),
        ),
        Column::new(
            "size".into(),
            local.iter().map(|c| c.size as u64).collect::<Vec<_>>(),
        ),
        Column::new(
            "isotropy".into(),
            local.iter().map(|c| c.isotropy).collect::<Vec<_>>(),
        ),
        Column::new(
            "isotropy_both_signs".into(),
            local
                .iter()
                .map(|c| c.isotropy_both_signs)
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "mean_cosine".into(),
            local.iter().map(|c| c.mean_cosine).collect::<Vec<_>>(),
        ),
    ])?
    .fresh())
}

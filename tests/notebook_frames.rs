//! DataFrames handed to notebooks carry no cached schema, and drawing or showing a frame does not
//! fill the caller's cache: in evcxr each cell is its own shared library with its own hash seed,
//! so a schema cached in one cell cannot be searched by name in the next (see `display`).

mod common;

use isotropy_lab::analysis::extract::{Embeddings, ExtractOptions, Source};
use isotropy_lab::analysis::layers::{compare_layers, MeasureOptions};
use isotropy_lab::nn::model::Model;
use isotropy_lab::notebook::display::html_table;
use isotropy_lab::notebook::plot::LineChart;
use isotropy_lab::util::frame::Fresh;

#[test]
fn frames_reach_notebooks_without_a_cached_schema() {
    common::setup();
    let model = Model::load(common::minilm_dir().to_str().unwrap()).unwrap();
    let source = Source::Sentences {
        name: "probe".into(),
        sentences: vec!["One sentence.".into(), "And a second one.".into()],
    };
    let emb = Embeddings::extract(&model, &source, &ExtractOptions::default()).unwrap();
    let loaded = Embeddings::extract(&model, &source, &ExtractOptions::default()).unwrap();
    assert!(
        loaded.tokens.cached_schema().is_none(),
        "tokens loaded from the cache"
    );

    let opts = MeasureOptions::default();
    let table = compare_layers(&[("a", &emb), ("b", &loaded)], &opts).unwrap();
    assert!(table.width() > 4);
    assert!(table.cached_schema().is_none(), "compare_layers output");

    LineChart::new("t", "layer", "isotropy")
        .by("model")
        .draw(&table)
        .unwrap();
    let _ = html_table(&table);
    assert!(
        table.cached_schema().is_none(),
        "drawing or showing filled the caller's cache"
    );

    // A by-name lookup fills the cache; fresh() gives a copy without it, sharing the columns.
    table.column("mean_cosine").unwrap();
    assert!(table.cached_schema().is_some());
    let fresh = table.fresh();
    assert!(fresh.cached_schema().is_none());
    assert!(fresh.equals_missing(&table));
}

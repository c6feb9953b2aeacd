//! Figures as SVG (plotters), shown inline in notebooks and saved as files.

use crate::util::frame::{column_numbers, column_texts};
use anyhow::{bail, Context, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use polars::prelude::DataFrame;
use std::path::Path;

/// An SVG figure.
#[derive(Debug, Clone)]
pub struct Figure {
    svg: String,
}

impl Figure {
    /// The SVG document.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// Writes the SVG to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::util::atomic::write_bytes(path, self.svg.as_bytes())
    }

    /// Figures one below the other, as one figure. A notebook cell shows one figure (evcxr keeps
    /// only the last SVG a cell prints), so a cell that draws a chart per task stacks them.
    ///
    /// ```
    /// use isotropy_lab::notebook::plot::{Figure, LineChart};
    /// use polars::prelude::*;
    ///
    /// let df = df!("step" => [0, 10], "loss" => [0.7, 0.4])?;
    /// let a = LineChart::new("SST-2", "step", "loss").draw(&df)?;
    /// let b = LineChart::new("MRPC", "step", "loss").draw(&df)?;
    /// let both = Figure::stack(&[a, b])?;
    /// assert!(both.svg().starts_with(r#"<svg width="720" height="800""#));
    /// assert!(both.svg().contains("SST-2") && both.svg().contains("MRPC"));
    /// assert!(Figure::stack(&[]).is_err());
    /// # Ok::<(), anyhow::Error>(())
    /// ```
    pub fn stack(figures: &[Figure]) -> Result<Figure> {
        if figures.is_empty() {
            bail!("Figure::stack: no figures to stack");
        }
        let (mut width, mut height, mut body) = (0.0f64, 0.0f64, String::new());
        for (i, figure) in figures.iter().enumerate() {
            let svg = &figure.svg;
            let root = svg
                .find("<svg")
                .and_then(|start| Some((start, start + svg[start..].find('>')?)))
                .with_context(|| format!("Figure::stack: figure {i} is not an SVG document"))?;
            let tag = &svg[root.0..root.1];
            let size = |name: &str| -> Result<f64> {
                let key = format!(" {name}=\"");
                let at = tag.find(&key).map(|a| a + key.len());
                at.and_then(|a| tag[a..].split('"').next()?.parse().ok())
                    .with_context(|| format!("Figure::stack: figure {i} has no {name}"))
            };
            let (w, h) = (size("width")?, size("height")?);
            // The figure's own root, placed below the ones before it; its closing tag follows.
            body.push_str(&format!(
                "<svg x=\"0\" y=\"{height}\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">"
            ));
            body.push_str(svg[root.1 + 1..].trim_end());
            body.push('\n');
            width = width.max(w);
            height += h;
        }
        Ok(Figure {
            svg: format!(
                "<svg width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\n{body}</svg>\n"
            ),
        })
    }

    /// Shows the figure inline in an evcxr notebook as `image/svg+xml`.
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.svg
        );
    }
}

/// Figure size in pixels.
const SIZE: (u32, u32) = (720, 400);

/// Title font size, and the width of a character at it, for wrapping (sans-serif averages a
/// little over half the size).
const TITLE_FONT: u32 = 17;
const TITLE_CHAR_PX: f64 = 0.56 * TITLE_FONT as f64;

/// Legend font size.
const LEGEND_FONT: u32 = 13;

/// The Okabe–Ito palette: distinguishable for colour-blind readers.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(240, 228, 66),
    RGBColor(0, 0, 0),
];

/// Grey: the `other` points of a scatter plot and the reference lines.
const GREY: RGBColor = RGBColor(150, 150, 150);

/// What both charts share: the columns, the grouping and the decorations.
#[derive(Debug, Clone)]
struct Spec {
    title: String,
    x: String,
    y: String,
    by: Option<String>,
    log_y: bool,
    ordered: bool,
    references: Vec<Reference>,
}

impl Spec {
    fn new(title: &str, x: &str, y: &str) -> Self {
        Self {
            title: title.into(),
            x: x.into(),
            y: y.into(),
            by: None,
            log_y: false,
            ordered: false,
            references: Vec::new(),
        }
    }
}

/// A reference line drawn dashed and grey behind the data, named in the legend.
#[derive(Debug, Clone)]
enum Reference {
    /// y = x.
    Diagonal,
    /// y = the value, with its label.
    Horizontal(f64, String),
}

/// A line chart of one numeric column against another, one line per group.
///
/// The x column may hold text (method names, say): its values are then placed in order of first
/// appearance and named on the axis. Columns of whole numbers (layers, counts) get whole-number
/// ticks. The legend sits to the right of the plot, outside the data.
///
/// ```
/// use isotropy_lab::notebook::plot::LineChart;
/// use polars::prelude::*;
///
/// let df = df!("layer" => [0, 1, 2, 0, 1, 2],
///              "dominant" => [3, 5, 8, 2, 2, 3],
///              "model" => ["a", "a", "a", "b", "b", "b"])?;
/// let fig = LineChart::new("Dominant directions", "layer", "dominant").by("model").draw(&df)?;
/// assert!(fig.svg().contains("Dominant directions"));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LineChart(Spec);

impl LineChart {
    /// A chart of column `y` against column `x`.
    pub fn new(title: &str, x: &str, y: &str) -> Self {
        Self(Spec::new(title, x, y))
    }

    /// One line per distinct value of column `by` (in order of first appearance); the legend
    /// names a numeric column's values `by = value` (`layer = 3`).
    pub fn by(mut self, by: &str) -> Self {
        self.0.by = Some(by.into());
        self
    }

    /// The groups have an order (layers, steps): colours run along a sequential palette (viridis)
    /// instead of being told apart.
    pub fn ordered(mut self, yes: bool) -> Self {
        self.0.ordered = yes;
        self
    }

    /// Plots log10(y) (the axis says so); useful for I(W), which spans orders of magnitude.
    pub fn log_y(mut self, yes: bool) -> Self {
        self.0.log_y = yes;
        self
    }

    /// A dashed horizontal line at `y` (in the column's units, before any log), named `label` in
    /// the legend.
    pub fn hline(mut self, y: f64, label: &str) -> Self {
        self.0
            .references
            .push(Reference::Horizontal(y, label.into()));
        self
    }

    /// Draws the chart from `df`.
    pub fn draw(&self, df: &DataFrame) -> Result<Figure> {
        draw(&self.0, df, Marks::Lines, "line chart")
    }
}

/// A scatter plot of one numeric column against another, points coloured by a category column
/// (the first 7 categories in order of appearance get their own colour; the rest are drawn grey
/// as `other`). Few points are drawn large, many small and translucent.
///
/// ```
/// use isotropy_lab::notebook::plot::ScatterChart;
/// use polars::prelude::*;
///
/// let df = df!("before" => [4.0, 6.0], "after" => [9.0, 12.0], "task" => ["sst2", "mrpc"])?;
/// let fig = ScatterChart::new("After against before", "before", "after")
///     .by("task")
///     .diagonal()
///     .draw(&df)?;
/// assert!(fig.svg().contains("y = x"));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ScatterChart(Spec);

impl ScatterChart {
    /// A scatter plot of column `y` against column `x`.
    pub fn new(title: &str, x: &str, y: &str) -> Self {
        Self(Spec::new(title, x, y))
    }

    /// Colours the points by the values of column `by` (a numeric column's are named
    /// `by = value` in the legend).
    pub fn by(mut self, by: &str) -> Self {
        self.0.by = Some(by.into());
        self
    }

    /// The dashed line y = x ("no change" when x and y are before and after).
    pub fn diagonal(mut self) -> Self {
        self.0.references.push(Reference::Diagonal);
        self
    }

    /// Draws the chart from `df`.
    pub fn draw(&self, df: &DataFrame) -> Result<Figure> {
        draw(&self.0, df, Marks::Points, "scatter chart")
    }
}

/// Named groups of (x, y) points, in order of first appearance.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// The points of a chart, and the names of its x values when the x column holds text.
struct Points {
    series: Series,
    x_names: Option<Vec<String>>,
}

/// Points of column `y` against column `x`, grouped by column `by` in order of first appearance;
/// rows with a missing or non-finite value are skipped. A text `x` column becomes the positions
/// 0, 1, … of its values in order of first appearance.
fn points(df: &DataFrame, spec: &Spec, what: &str) -> Result<Points> {
    let num = |name: &str| column_numbers(df, name).with_context(|| what.to_string());
    let texts = |name: &str| column_texts(df, name).with_context(|| what.to_string());
    let (xs, x_names) = match column_numbers(df, &spec.x) {
        Ok(xs) => (xs, None),
        Err(_) => {
            let mut names: Vec<String> = Vec::new();
            let xs = texts(&spec.x)?
                .into_iter()
                .map(|v| {
                    let i = names.iter().position(|n| *n == v).unwrap_or_else(|| {
                        names.push(v);
                        names.len() - 1
                    });
                    i as f64
                })
                .collect();
            (xs, Some(names))
        }
    };
    let ys = num(&spec.y)?;
    let groups = match &spec.by {
        // A number alone says nothing in a legend: name it ("lambda = -5", "layer = 3").
        Some(b) => match column_numbers(df, b) {
            Ok(values) => values.into_iter().map(|v| format!("{b} = {v}")).collect(),
            Err(_) => texts(b)?,
        },
        None => vec![spec.y.clone(); df.height()],
    };
    let mut series: Series = Vec::new();
    for ((x, y), g) in xs.iter().zip(&ys).zip(&groups) {
        let (x, mut y) = (*x, *y);
        if spec.log_y {
            if y <= 0.0 {
                continue;
            }
            y = y.log10();
        }
        if !x.is_finite() || !y.is_finite() {
            continue;
        }
        match series.iter_mut().find(|(name, _)| name == g) {
            Some((_, pts)) => pts.push((x, y)),
            None => series.push((g.clone(), vec![(x, y)])),
        }
    }
    if series.is_empty() {
        bail!("{what}: no finite points to draw");
    }
    Ok(Points { series, x_names })
}

/// An axis tick label: at most 4 decimals without trailing zeros, scientific when tiny or huge.
fn tick(x: f64) -> String {
    let a = x.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        return format!("{x:.1e}");
    }
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".into()
    } else {
        s.into()
    }
}

/// At most `max` evenly spaced ticks inside `lo..=hi` at a round step (1, 2, 2.5 or 5 times a
/// power of ten); whole numbers only when `whole`.
fn ticks(lo: f64, hi: f64, max: usize, whole: bool) -> Vec<f64> {
    let raw = (hi - lo) / (max.max(2) - 1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let mut step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * magnitude);
    if whole {
        step = step.max(1.0).round();
    }
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// A linear axis over `range` with ticks exactly at `ticks` (whole numbers for counts, the
/// positions of the names on a text axis). plotters' own key-point binding loses the f64
/// formatter the mesh needs; the labels come from the chart's formatters.
struct Axis {
    range: std::ops::Range<f64>,
    ticks: Vec<f64>,
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let span = self.range.end - self.range.start;
        let at = if span > 0.0 {
            (value - self.range.start) / span
        } else {
            0.5
        };
        limit.0 + (at * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

/// How a chart marks its points.
#[derive(Clone, Copy, PartialEq)]
enum Marks {
    /// Lines through the points, with a dot on each.
    Lines,
    /// Dots only.
    Points,
}

/// The colour of group `i` of `n`.
fn colour(i: usize, n: usize, name: &str, ordered: bool, marks: Marks) -> RGBColor {
    if name == "other" && marks == Marks::Points {
        GREY
    } else if ordered {
        ViridisRGB::get_color(0.85 * i as f64 / (n.max(2) - 1) as f64)
    } else {
        PALETTE[i % PALETTE.len()]
    }
}

/// `text` broken at spaces into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

/// Draws a chart: the title (wrapped to the figure's width), the plot, and the legend to its
/// right. Long because plotters' chart builder is one chain of settings (axes, mesh, labels,
/// series) over one drawing area.
fn draw(spec: &Spec, df: &DataFrame, marks: Marks, what: &str) -> Result<Figure> {
    let Points {
        mut series,
        x_names,
    } = points(df, spec, what)?;
    if marks == Marks::Points && series.len() > PALETTE.len() - 1 {
        let rest: Vec<(f64, f64)> = series
            .drain(PALETTE.len() - 1..)
            .flat_map(|(_, pts)| pts)
            .collect();
        series.push(("other".into(), rest));
    }
    let all = || series.iter().flat_map(|(_, pts)| pts.iter().copied());
    let n_points = all().count();
    let whole = |v: &dyn Fn((f64, f64)) -> f64| all().all(|p| v(p).fract() == 0.0);
    let (whole_x, whole_y) = (whole(&|p| p.0), !spec.log_y && whole(&|p| p.1));
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all() {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    for r in &spec.references {
        if let Reference::Horizontal(y, _) = r {
            let y = if spec.log_y { y.log10() } else { *y };
            if y.is_finite() {
                (y0, y1) = (y0.min(y), y1.max(y));
            }
        }
    }
    if spec
        .references
        .iter()
        .any(|r| matches!(r, Reference::Diagonal))
    {
        (x0, x1) = (x0.min(y0), x1.max(y1));
        (y0, y1) = (x0, x1);
    }
    let pad = |lo: f64, hi: f64, whole: bool| {
        let m = if hi > lo { (hi - lo) * 0.08 } else { 0.5 };
        let m = if whole { m.max(0.4) } else { m };
        (lo - m, hi + m)
    };
    let (x0, x1) = pad(x0, x1, whole_x);
    let (y0, y1) = pad(y0, y1, whole_y);
    let x_ticks = match &x_names {
        Some(names) => (0..names.len()).map(|i| i as f64).collect(),
        None => ticks(x0, x1, 12, whole_x),
    };
    let y_ticks = ticks(y0, y1, 8, whole_y);
    let y_desc = if spec.log_y {
        format!("log10({})", spec.y)
    } else {
        spec.y.clone()
    };

    let mut labels: Vec<(String, RGBColor, bool)> = Vec::new(); // name, colour, is a line
    let legend = spec.by.is_some() || !spec.references.is_empty();
    let legend_px = if legend {
        let longest = series
            .iter()
            .map(|(name, _)| name.chars().count())
            .chain(spec.references.iter().map(|r| match r {
                Reference::Diagonal => 5,
                Reference::Horizontal(_, l) => l.chars().count(),
            }))
            .max()
            .unwrap_or(0);
        (44 + longest as u32 * 7).clamp(90, 240)
    } else {
        0
    };
    let title = wrap(&spec.title, ((SIZE.0 - 24) as f64 / TITLE_CHAR_PX) as usize);
    let title_px = 10 + title.len() as u32 * (TITLE_FONT + 5);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let (top, rest) = root.split_vertically(title_px);
        let title_style = TextStyle::from(("sans-serif", TITLE_FONT).into_font())
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (i, line) in title.iter().enumerate() {
            let y = 8 + i as i32 * (TITLE_FONT as i32 + 5);
            top.draw_text(line, &title_style, (SIZE.0 as i32 / 2, y))?;
        }
        let (plot, key) = rest.split_horizontally(SIZE.0 - legend_px);
        let mut chart = ChartBuilder::on(&plot)
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(
                Axis {
                    range: x0..x1,
                    ticks: x_ticks,
                },
                Axis {
                    range: y0..y1,
                    ticks: y_ticks,
                },
            )?;
        let x_fmt = |x: &f64| match &x_names {
            Some(names) => names.get(x.round() as usize).cloned().unwrap_or_default(),
            None => tick(*x),
        };
        let y_fmt = |y: &f64| tick(*y);
        chart
            .configure_mesh()
            .x_desc(spec.x.as_str())
            .y_desc(y_desc.as_str())
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .bold_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for r in &spec.references {
            let (ends, name) = match r {
                Reference::Diagonal => {
                    let (a, b) = (x0.max(y0), x1.min(y1));
                    ([(a, a), (b, b)], "y = x".to_string())
                }
                Reference::Horizontal(y, label) => {
                    let y = if spec.log_y { y.log10() } else { *y };
                    ([(x0, y), (x1, y)], label.clone())
                }
            };
            chart.draw_series(DashedLineSeries::new(ends, 6, 4, GREY.stroke_width(2)))?;
            labels.push((name, GREY, true));
        }
        let (radius, alpha) = match (marks, n_points) {
            (Marks::Lines, _) => (3, 1.0),
            (Marks::Points, 0..=60) => (5, 0.85),
            (Marks::Points, 61..=600) => (3, 0.7),
            (Marks::Points, _) => (2, 0.6),
        };
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = colour(i, series.len(), name, spec.ordered, marks);
            if marks == Marks::Lines {
                chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
            }
            chart.draw_series(
                pts.iter()
                    .map(|&p| Circle::new(p, radius, color.mix(alpha).filled())),
            )?;
            labels.push((name.clone(), color, marks == Marks::Lines));
        }
        if legend {
            draw_legend(&key, &labels)?;
        }
        root.present()?;
    }
    Ok(Figure { svg })
}

/// The legend in its own area to the right of the plot: one row per series and reference line,
/// as many as fit (the rest counted in a last row).
fn draw_legend(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    labels: &[(String, RGBColor, bool)],
) -> Result<()> {
    let row = LEGEND_FONT as i32 + 7;
    let fits = ((area.dim_in_pixel().1 as i32 - 24) / row).max(1) as usize;
    let style = TextStyle::from(("sans-serif", LEGEND_FONT).into_font())
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, color, line)) in labels.iter().enumerate() {
        let y = 24 + i as i32 * row;
        if i + 1 == fits && labels.len() > fits {
            area.draw_text(&format!("… {} more", labels.len() - i), &style, (6, y))?;
            break;
        }
        if *line {
            area.draw(&PathElement::new(
                vec![(4, y), (26, y)],
                color.stroke_width(2),
            ))?;
        } else {
            area.draw(&Circle::new((15, y), 5, color.filled()))?;
        }
        area.draw_text(name, &style, (32, y))?;
    }
    Ok(())
}

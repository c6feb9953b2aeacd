//! Figures as SVG (plotters), shown inline in notebooks and saved as files.

use crate::util::frame::Fresh;
use anyhow::{bail, Context, Result};
use plotters::prelude::*;
use polars::prelude::{DataFrame, DataType};
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

/// A line chart of one numeric column against another, one line per group.
#[derive(Debug, Clone)]
pub struct LineChart {
    title: String,
    x: String,
    y: String,
    by: Option<String>,
    log_y: bool,
}

impl LineChart {
    /// A chart of column `y` against column `x`.
    pub fn new(title: &str, x: &str, y: &str) -> Self {
        Self {
            title: title.into(),
            x: x.into(),
            y: y.into(),
            by: None,
            log_y: false,
        }
    }

    /// One line per distinct value of column `by` (in order of first appearance).
    pub fn by(mut self, by: &str) -> Self {
        self.by = Some(by.into());
        self
    }

    /// Plots log10(y) (the axis says so); useful for I(W), which spans orders of magnitude.
    pub fn log_y(mut self, yes: bool) -> Self {
        self.log_y = yes;
        self
    }

    /// Draws the chart from `df`.
    pub fn draw(&self, df: &DataFrame) -> Result<Figure> {
        let series = series(
            df,
            &self.x,
            &self.y,
            self.by.as_deref(),
            self.log_y,
            "line chart",
        )?;
        let y_desc = if self.log_y {
            format!("log10({})", self.y)
        } else {
            self.y.clone()
        };
        draw(
            &self.title,
            &self.x,
            &y_desc,
            &series,
            self.by.is_some(),
            Marks::Lines,
        )
    }
}

/// A scatter plot of one numeric column against another, points coloured by a category column
/// (the first 7 categories in order of appearance get their own colour; the rest are drawn grey
/// as `other`).
#[derive(Debug, Clone)]
pub struct ScatterChart {
    title: String,
    x: String,
    y: String,
    by: Option<String>,
}

impl ScatterChart {
    /// A scatter plot of column `y` against column `x`.
    pub fn new(title: &str, x: &str, y: &str) -> Self {
        Self {
            title: title.into(),
            x: x.into(),
            y: y.into(),
            by: None,
        }
    }

    /// Colours the points by the values of column `by`.
    pub fn by(mut self, by: &str) -> Self {
        self.by = Some(by.into());
        self
    }

    /// Draws the chart from `df`.
    pub fn draw(&self, df: &DataFrame) -> Result<Figure> {
        let mut series = series(
            df,
            &self.x,
            &self.y,
            self.by.as_deref(),
            false,
            "scatter chart",
        )?;
        if series.len() > PALETTE.len() - 1 {
            let rest: Vec<(f64, f64)> = series
                .drain(PALETTE.len() - 1..)
                .flat_map(|(_, pts)| pts)
                .collect();
            series.push(("other".into(), rest));
        }
        draw(
            &self.title,
            &self.x,
            &self.y,
            &series,
            self.by.is_some(),
            Marks::Points,
        )
    }
}

/// Points of column `y` against column `x`, grouped by column `by` in order of first appearance;
/// rows with a missing or non-finite value are skipped.
fn series(
    df: &DataFrame,
    x: &str,
    y: &str,
    by: Option<&str>,
    log_y: bool,
    what: &str,
) -> Result<Series> {
    let df = &df.fresh();
    let num = |name: &str| -> Result<Vec<Option<f64>>> {
        let c = df
            .column(name)
            .with_context(|| format!("{what}: no column '{name}'"))?;
        let c = c
            .cast(&DataType::Float64)
            .with_context(|| format!("{what}: column '{name}' is not numeric"))?;
        Ok(c.f64()?.iter().collect())
    };
    let xs = num(x)?;
    let ys = num(y)?;
    let groups: Vec<String> = match by {
        Some(b) => {
            let c = df
                .column(b)
                .with_context(|| format!("{what}: no column '{b}'"))?;
            let c = c.cast(&DataType::String)?;
            c.str()?
                .iter()
                .map(|v| v.unwrap_or("").to_string())
                .collect()
        }
        None => vec![y.to_string(); df.height()],
    };
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for ((x, y), g) in xs.iter().zip(&ys).zip(&groups) {
        let (Some(x), Some(mut y)) = (*x, *y) else {
            continue;
        };
        if log_y {
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
    Ok(series)
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

/// Named groups of (x, y) points, in order of first appearance.
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// How a chart marks its points.
#[derive(Clone, Copy, PartialEq)]
enum Marks {
    /// Lines through the points, with a dot on each.
    Lines,
    /// Small translucent dots only.
    Points,
}

/// Draws series on one pair of axes. Long because plotters' chart builder is one chain of
/// settings (axes, mesh, labels, series, legend) over one drawing area.
fn draw(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(String, Vec<(f64, f64)>)],
    legend: bool,
    marks: Marks,
) -> Result<Figure> {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (_, pts) in series {
        for &(x, y) in pts {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    let pad = |lo: f64, hi: f64| {
        let m = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
        (lo - m, hi + m)
    };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    let legend_at = quietest_corner(series, (x0, x1), (y0, y1));
    let integer_x = marks == Marks::Lines
        && series
            .iter()
            .all(|(_, pts)| pts.iter().all(|p| p.0.fract() == 0.0));

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let x_fmt = |x: &f64| {
            if integer_x {
                format!("{x:.0}")
            } else {
                tick(*x)
            }
        };
        let y_fmt = |y: &f64| tick(*y);
        let mut mesh = chart.configure_mesh();
        mesh.x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .light_line_style(WHITE.mix(0.0));
        if integer_x {
            mesh.x_labels(((x1 - x0).round() as usize + 1).min(12));
        }
        mesh.draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = if name == "other" && marks == Marks::Points {
                RGBColor(160, 160, 160)
            } else {
                PALETTE[i % PALETTE.len()]
            };
            match marks {
                Marks::Lines => {
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                        });
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
                }
                Marks::Points => {
                    chart
                        .draw_series(
                            pts.iter()
                                .map(|&p| Circle::new(p, 2, color.mix(0.6).filled())),
                        )?
                        .label(name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
                }
            }
        }
        if legend {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(legend_at)
                .draw()?;
        }
        root.present()?;
    }
    Ok(Figure { svg })
}

/// The corner of the plot with the fewest points, where the legend hides the least.
fn quietest_corner(
    series: &[(String, Vec<(f64, f64)>)],
    x: (f64, f64),
    y: (f64, f64),
) -> SeriesLabelPosition {
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let count = |right: bool, upper: bool| {
        series
            .iter()
            .flat_map(|(_, pts)| pts.iter())
            .filter(|(px, py)| {
                let fx = (px - x.0) / (x.1 - x.0);
                let fy = (py - y.0) / (y.1 - y.0);
                (if right { fx > 0.6 } else { fx < 0.4 })
                    && (if upper { fy > 0.6 } else { fy < 0.4 })
            })
            .count()
    };
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| count(right, upper))
        .map(|(pos, _, _)| pos)
        .unwrap_or(SeriesLabelPosition::UpperRight)
}

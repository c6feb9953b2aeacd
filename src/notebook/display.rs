//! DataFrames in evcxr notebooks, shown as HTML tables; and the key numbers the notebook tests
//! read, printed only for them.
//!
//! evcxr shows a value through its `evcxr_display` method. polars' `DataFrame` has none, so
//! [`EvcxrDisplay`] adds one; it must be in scope, which `use isotropy_lab::prelude::*;` (the
//! notebooks' evcxr prelude) does. Frames stay usable from cell to cell through
//! [`crate::util::frame::Fresh`].

use polars::prelude::*;
use std::fmt::Write;

/// Rows shown before a table is cut (the rest is counted in a caption).
const MAX_ROWS: usize = 40;

/// Displays a value inline in an evcxr notebook.
pub trait EvcxrDisplay {
    /// Prints the value in evcxr's rich-output protocol.
    fn evcxr_display(&self);
}

impl EvcxrDisplay for DataFrame {
    fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
            html_table(self)
        );
    }
}

/// A table with a paragraph under it (the protocol it was made with, say), shown together.
///
/// ```
/// use isotropy_lab::notebook::display::Captioned;
/// use polars::prelude::*;
///
/// let t = Captioned::new(&df!("x" => [1.0])?, "made with care");
/// assert!(t.html().contains("made with care"));
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Captioned {
    /// The table.
    pub frame: DataFrame,
    /// The paragraph under it.
    pub caption: String,
}

impl Captioned {
    /// `frame` with `caption` under it.
    pub fn new(frame: &DataFrame, caption: impl Into<String>) -> Captioned {
        Captioned {
            frame: frame.clone(),
            caption: caption.into(),
        }
    }

    /// The table and its caption as HTML.
    pub fn html(&self) -> String {
        format!(
            "{}\n<p style=\"font-family:sans-serif;font-size:12px;color:#444;max-width:60em\">{}</p>",
            html_table(&self.frame),
            escape(&self.caption)
        )
    }
}

impl EvcxrDisplay for Captioned {
    fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT",
            self.html()
        );
    }
}

/// Formats a number for reading: 4 significant digits, scientific notation when very small or
/// very large.
pub fn format_number(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x == 0.0 || x.is_infinite() {
        return x.to_string();
    }
    let a = x.abs();
    if !(1e-3..1e6).contains(&a) {
        format!("{x:.3e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{x:.decimals$}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn cell(v: &AnyValue) -> String {
    match v {
        AnyValue::Null => String::new(),
        AnyValue::String(s) => escape(s),
        AnyValue::StringOwned(s) => escape(s),
        AnyValue::Float32(x) => format_number(f64::from(*x)),
        AnyValue::Float64(x) => format_number(*x),
        other => escape(&other.to_string()),
    }
}

/// An HTML table of the first rows of a DataFrame, numbers right-aligned and rounded for reading.
pub fn html_table(df: &DataFrame) -> String {
    // The wrapper scrolls a table wider than the page instead of clipping it.
    let mut out = String::from(
        "<div style=\"overflow-x:auto;max-width:100%\"><table class=\"isolab\" style=\"border-collapse:collapse;font-family:sans-serif;font-size:13px\">\n<thead><tr>",
    );
    for name in df.get_column_names() {
        let _ = write!(
            out,
            "<th style=\"border-bottom:1px solid #444;padding:2px 8px\">{}</th>",
            escape(name)
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let shown = df.height().min(MAX_ROWS);
    for i in 0..shown {
        out.push_str("<tr>");
        for col in df.columns() {
            let v = col.get(i).unwrap_or(AnyValue::Null);
            let align = if col.dtype().is_primitive_numeric() {
                "right"
            } else {
                "left"
            };
            let _ = write!(
                out,
                "<td style=\"padding:2px 8px;text-align:{align}\">{}</td>",
                cell(&v)
            );
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>");
    if df.height() > shown {
        let _ = write!(
            out,
            "<caption style=\"caption-side:bottom\">{} of {} rows shown</caption>",
            shown,
            df.height()
        );
    }
    out.push_str("</table></div>");
    out
}

/// Records a notebook's key number for the notebook tests: prints `key number NAME = VALUE` when
/// `ISOLAB_KEY_NUMBERS` is `1` and nothing otherwise, so a reader in the lab never sees it.
/// scripts/run_notebooks.py sets the variable for the kernels it starts, checks each number
/// against its range in notebooks/key_numbers.json, keeps the numbers in the executed notebook's
/// metadata and removes the lines from the outputs before it writes the notebook and its page.
pub fn key_number(name: &str, value: f64) {
    if std::env::var("ISOLAB_KEY_NUMBERS").is_ok_and(|v| v == "1") {
        println!("key number {name} = {value:?}");
    }
}

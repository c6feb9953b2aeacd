//! Progress for long work: a bar on a terminal, periodic lines elsewhere (notebooks, logs).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Reports progress of `total` units of work.
///
/// On a terminal it draws an indicatif bar on stderr. Otherwise (a notebook cell, a log file) it
/// prints a line to stdout at most every few seconds, and one at the end, so a reader sees that a
/// long cell is alive.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last_line: Instant,
    message: String,
}

/// How often a notebook or log gets a progress line.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// Starts reporting `total` units of `label` work.
    pub fn new(label: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
                    .expect("static progress template is valid")
                    .progress_chars("=> "),
            );
            bar.set_message(label.to_string());
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            label: label.to_string(),
            total,
            done: 0,
            start: now,
            last_line: now,
            message: String::new(),
        }
    }

    /// Records `n` more units done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        match &self.bar {
            Some(bar) => bar.inc(n),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                let sep = if self.message.is_empty() { "" } else { "; " };
                println!(
                    "{}: {}/{} ({:.0}%, {:.1} s){sep}{}",
                    self.label,
                    self.done,
                    self.total,
                    100.0 * self.done as f64 / self.total.max(1) as f64,
                    self.start.elapsed().as_secs_f64(),
                    self.message
                );
            }
            None => {}
        }
    }

    /// Sets a status shown beside the count (for example the current loss).
    pub fn set_message(&mut self, message: &str) {
        self.message = message.to_string();
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{}: {message}", self.label));
        }
    }

    /// Ends the report with the elapsed time, and an extra remark when given.
    pub fn finish(self, remark: &str) {
        let secs = self.start.elapsed().as_secs_f64();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let sep = if remark.is_empty() { "" } else { "; " };
        if self.bar.is_some() {
            eprintln!(
                "{}: {} done in {secs:.1} s{sep}{remark}",
                self.label, self.done
            );
        } else {
            println!(
                "{}: {} done in {secs:.1} s{sep}{remark}",
                self.label, self.done
            );
        }
    }
}

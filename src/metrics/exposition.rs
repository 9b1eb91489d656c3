//! The Prometheus text exposition format, version 0.0.4, written by hand: `# HELP` and `# TYPE` once
//! per family, then its samples, with label values and help text escaped as the format asks.
//!
//! Format: <https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format>.

use std::fmt::Write;

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The most label pairs one sample may carry here (a bound, not a format rule).
pub const MAX_LABELS: usize = 8;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts); names end in `_total`.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets (`_bucket{le=...}`), `_sum` and `_count`.
    Histogram,
    /// `_sum` and `_count` (no quantiles here).
    Summary,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
            Kind::Summary => "summary",
        }
    }
}

/// A page being written. Families must each be declared once with [`Page::family`] before their
/// samples; the writer does not reorder.
#[derive(Debug, Default)]
pub struct Page {
    text: String,
}

impl Page {
    /// An empty page.
    pub fn new() -> Page {
        Page::default()
    }

    /// Starts a family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut Page {
        debug_assert!(valid_name(name), "metric name {name:?}");
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
        self
    }

    /// One sample: `name{labels} value`. At most [`MAX_LABELS`] labels are written; more is a bug of
    /// the caller and is cut.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) -> &mut Page {
        debug_assert!(valid_name(name), "metric name {name:?}");
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().take(MAX_LABELS).enumerate() {
                debug_assert!(valid_label(label), "label name {label:?}");
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&number(value));
        self.text.push('\n');
        self
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) -> &mut Page {
        self.family(name, kind, help).sample(name, &[], value)
    }

    /// The page.
    pub fn finish(self) -> String {
        self.text
    }
}

/// A float as the format writes it: `+Inf`, `-Inf`, `NaN`, or Rust's shortest round-trip decimal.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// A label value: backslash, double quote and line feed escaped.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text: backslash and line feed escaped.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__` (reserved).
fn valid_label(name: &str) -> bool {
    let mut chars = name.chars();
    !name.starts_with("__")
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escaping() {
        let mut page = Page::new();
        page.family("zj_things_total", Kind::Counter, "Things.\nWith a back\\slash.")
            .sample("zj_things_total", &[("terminal", "T\"0\\1\n")], 3.0)
            .sample("zj_things_total", &[], 0.25);
        page.single("zj_up", Kind::Gauge, "Up.", 1.0);
        assert_eq!(
            page.finish(),
            "# HELP zj_things_total Things.\\nWith a back\\\\slash.\n\
             # TYPE zj_things_total counter\n\
             zj_things_total{terminal=\"T\\\"0\\\\1\\n\"} 3\n\
             zj_things_total 0.25\n\
             # HELP zj_up Up.\n\
             # TYPE zj_up gauge\n\
             zj_up 1\n"
        );
    }

    #[test]
    fn numbers() {
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(12.0), "12");
        assert_eq!(number(0.0015), "0.0015");
        assert_eq!(number(1e-9), "0.000000001");
    }

    #[test]
    fn names() {
        assert!(valid_name("zhengjiao_payments") && valid_name("a:b_c1"));
        assert!(!valid_name("1abc") && !valid_name("a-b") && !valid_name(""));
        assert!(valid_label("terminal") && !valid_label("__name") && !valid_label("a b"));
    }
}

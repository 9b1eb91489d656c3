//! Readable summaries of the API's answers, and where the client's output and messages go.

use std::fmt::Write as _;

use serde_json::Value;

use super::http::Failure;
use super::model::{Line, Lookup, Payment, PaymentState, Payments, Reversal, Settlement, Terminals};
use super::Exit;

/// Where a verb's output goes: the summary or the JSON on standard output, messages on standard error.
pub(crate) struct Out {
    verb: &'static str,
    json: bool,
}

impl Out {
    pub(crate) fn new(verb: &'static str, json: bool) -> Out {
        Out { verb, json }
    }

    /// Prints the API's JSON (re-indented, as it came) with `--json`, else the summary.
    pub(crate) fn answer(&self, text: &str, summary: impl FnOnce() -> String) {
        if self.json {
            println!("{}", super::json::pretty(text));
        } else {
            print!("{}", summary());
        }
    }

    /// A progress line: on standard output, or on standard error with `--json` (which keeps standard
    /// output to the JSON).
    pub(crate) fn notice(&self, line: &str) {
        if self.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }

    /// A message about something that went wrong, on standard error.
    pub(crate) fn error(&self, message: &str) {
        eprintln!("zhengjiao {}: {}", self.verb, clean(message));
    }

    /// Reports a failed request and gives its exit status: 2 when the API could not be reached, 1 when
    /// it refused or answered something undocumented.
    pub(crate) fn failure(&self, failure: &Failure) -> Exit {
        self.error(&failure.to_string());
        match failure {
            Failure::Unreachable { .. } | Failure::NoAnswer { .. } | Failure::Request(_) => Exit::Usage,
            Failure::Refused { error, .. } => {
                for (key, value) in &error.extra {
                    match value {
                        Value::String(s) => eprintln!("  {key}: {}", clean(s)),
                        Value::Array(items) if items.iter().all(Value::is_string) => {
                            eprintln!("  {key}:");
                            for item in items.iter().filter_map(Value::as_str) {
                                eprintln!("    {}", clean(item));
                            }
                        }
                        other => eprintln!("  {key}: {}", clean(&other.to_string())),
                    }
                }
                Exit::Refused
            }
            Failure::BadBody { .. } => Exit::Refused,
        }
    }
}

/// A payment: one line with its state and message, then the slip when it was approved, then its
/// reversals and, when `history` is set and the answer has one, its history.
pub(crate) fn payment(p: &Payment, history: bool) -> String {
    let mut out = format!("{}  {}  {}\n", clean(&p.id), p.state.as_str(), clean(&p.message));
    if matches!(p.state, PaymentState::Approved | PaymentState::Forwarded) {
        if let Some(slip) = &p.slip {
            let fields = [
                ("payer name", slip.payer_name.clone()),
                ("payer id", slip.payer_id.clone()),
                ("insurance", slip.insurance.clone()),
                ("year", slip.year.to_string()),
                ("serial", slip.serial.clone()),
                ("amount", slip.amount.clone()),
                ("card", opt(&slip.card)),
                ("terminal id", opt(&slip.terminal_id)),
                ("batch", opt(&slip.batch)),
                ("trace", opt(&slip.trace)),
                ("rrn", opt(&slip.rrn)),
                ("auth", opt(&slip.auth)),
            ];
            for (name, value) in fields {
                let _ = writeln!(out, "  {name:<12} {}", clean(&value));
            }
        }
    }
    for r in &p.reversals {
        out.push_str(&reversal(r));
    }
    if history && !p.history.is_empty() {
        out.push_str("  history:\n");
        for h in &p.history {
            let mut line = format!("    {}  {} -> {}", clean(&h.at), h.from.as_deref().unwrap_or("-"), h.to);
            for extra in [&h.code, &h.text, &h.note].into_iter().flatten() {
                line.push_str("  ");
                line.push_str(extra);
            }
            let _ = writeln!(out, "{}", clean(&line));
        }
    }
    if !p.state.is_final() {
        let _ = writeln!(
            out,
            "the outcome of payment {} is still unknown: the daemon keeps asking the terminal; check with `zhengjiao query {}`",
            clean(&p.id),
            clean(&p.id)
        );
    }
    out
}

/// A reversal: one line with its kind, state, amount and message.
pub(crate) fn reversal(r: &Reversal) -> String {
    format!(
        "  {} {}  {}  {}  {}\n",
        r.kind.as_str(),
        clean(&r.id),
        r.state.as_str(),
        clean(&r.amount),
        clean(&r.message)
    )
}

/// A void or refund: the reversal's line, then the payment.
pub(crate) fn reversal_answer(payment: &Payment, r: &Reversal) -> String {
    let mut out = format!("{} {}  {}  {}\n", r.kind.as_str(), clean(&r.id), r.state.as_str(), clean(&r.message));
    if !r.state.is_final() {
        let _ = writeln!(
            out,
            "the outcome of {} {} is still unknown: check with `zhengjiao query {}`",
            r.kind.as_str(),
            clean(&r.id),
            clean(&payment.id)
        );
    }
    out.push_str("payment:\n");
    // The reversal was shown above: the payment's line and slip only.
    let mut shown = payment.clone();
    shown.reversals.clear();
    out.push_str(&self::payment(&shown, false));
    out
}

/// The lines found, and how many more are at other collection points.
pub(crate) fn lookup(l: &Lookup) -> String {
    let rows = l.lines.iter().map(line_row).collect();
    let mut out = if l.lines.is_empty() {
        "no lines at your collection point\n".to_owned()
    } else {
        table(&["serial", "insurance", "year", "name", "id", "amount due", "hardship", "status", "paid by"], rows)
    };
    if l.elsewhere > 0 {
        let _ = writeln!(out, "{} more lines at other collection points", l.elsewhere);
    }
    out
}

fn line_row(l: &Line) -> Vec<String> {
    vec![
        l.serial.clone(),
        l.insurance.clone(),
        l.year.to_string(),
        l.name.clone(),
        l.id_number.clone(),
        l.amount_due.clone().unwrap_or_else(|| "(tier)".to_owned()),
        l.hardship.clone(),
        l.status.clone(),
        match &l.paid_by {
            None | Some(Value::Null) => "-".to_owned(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        },
    ]
}

/// A table of payments and a count.
pub(crate) fn payments(p: &Payments) -> String {
    let rows = p
        .payments
        .iter()
        .map(|p| {
            vec![
                p.id.clone(),
                p.state.as_str().to_owned(),
                short_time(&p.created_at),
                format!("{} {} {}", p.line.year, p.line.insurance, p.line.serial),
                p.amount.clone(),
                p.terminal.clone(),
                p.pos.as_ref().and_then(|pos| pos.code.clone()).unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let mut out = String::new();
    if !p.payments.is_empty() {
        out = table(&["id", "state", "created", "line", "amount", "terminal", "code"], rows);
    }
    let n = p.payments.len();
    let _ = writeln!(out, "{n} payment{}", if n == 1 { "" } else { "s" });
    out
}

/// A table of terminals.
pub(crate) fn terminals(t: &Terminals) -> String {
    let rows = t
        .terminals
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                t.collection_point.clone(),
                t.state.clone(),
                opt(&t.terminal_id),
                opt(&t.batch),
                t.queued.to_string(),
                t.unknown.to_string(),
                opt(&t.last_error),
            ]
        })
        .collect();
    if t.terminals.is_empty() {
        return "no terminals\n".to_owned();
    }
    table(&["name", "point", "state", "terminal id", "batch", "queued", "unknown", "last error"], rows)
}

/// A settlement: the two sides' totals side by side, the differences, and the verdict.
pub(crate) fn settlement(s: &Settlement) -> String {
    let mut out = format!(
        "settlement {} of terminal {} ({}) batch {} at {}\n",
        s.id,
        clean(&s.terminal),
        clean(&opt(&s.terminal_id)),
        clean(&opt(&s.batch)),
        clean(&s.at)
    );
    let rows = s
        .terminal_totals
        .rows()
        .into_iter()
        .zip(s.journal_totals.rows())
        .map(|((what, terminal), (_, journal))| {
            let mark = if terminal == journal { "" } else { "differs" };
            vec![format!("  {what}"), terminal, journal, mark.to_owned()]
        })
        .collect();
    out.push_str(&table(&["", "terminal", "journal", ""], rows));
    if !s.differences.is_empty() {
        out.push_str("differences:\n");
        for d in &s.differences {
            let _ = writeln!(
                out,
                "  {}: terminal {}, journal {}",
                clean(&d.what),
                clean(&value_text(&d.terminal)),
                clean(&value_text(&d.journal))
            );
        }
    }
    out.push_str(if s.balanced { "balanced\n" } else { "NOT balanced\n" });
    out
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

/// `2020-10-21T09:15:02.123456+08:00` as `2020-10-21 09:15:02` (the API's times are UTC+8); anything
/// else as it came.
fn short_time(t: &str) -> String {
    match (t.get(..10), t.get(10..11), t.get(11..19)) {
        (Some(date), Some("T"), Some(time)) => format!("{date} {time}"),
        _ => t.to_owned(),
    }
}

/// Text from the API with control characters blanked, so an answer cannot steer the terminal.
pub(crate) fn clean(s: &str) -> String {
    s.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect()
}

/// Columns padded to their widest cell (CJK characters count two), two spaces apart, a header line
/// first; the last column is not padded.
fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let rows: Vec<Vec<String>> = std::iter::once(headers.iter().map(|h| (*h).to_owned()).collect())
        .chain(rows.into_iter().map(|r| r.iter().map(|c| clean(c).replace('\n', " ")).collect()))
        .collect();
    let columns = headers.len();
    let widths: Vec<usize> =
        (0..columns).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| width(c)).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(width(cell));
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Display width in a terminal: East Asian wide characters take two columns.
fn width(s: &str) -> usize {
    s.chars().map(|c| if is_wide(c) { 2 } else { 1 }).sum()
}

fn is_wide(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6
            | 0x20000..=0x3FFFD
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_wide_characters() {
        let t = table(
            &["name", "id"],
            vec![vec!["张三".to_owned(), "1".to_owned()], vec!["Li Si Long".to_owned(), "2".to_owned()]],
        );
        assert_eq!(t, "name        id\n张三        1\nLi Si Long  2\n");
    }

    #[test]
    fn control_characters_are_blanked() {
        assert_eq!(clean("a\u{1b}[31mb"), "a [31mb");
    }

    #[test]
    fn times_are_shortened() {
        assert_eq!(short_time("2020-10-21T09:15:02.123456+08:00"), "2020-10-21 09:15:02");
        assert_eq!(short_time("..."), "...");
    }
}

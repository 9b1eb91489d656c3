//! The ledger verbs (`ledger status`, `ledger dead-letters`, `ledger retry`) and `reconcile`: their
//! requests, the objects they read, their summaries and exit statuses (docs/api.md, "CLI").

use std::fmt::Write as _;

use serde::Deserialize;

use super::args::{LedgerCommand, ReconcileArgs};
use super::http::{parse, Api};
use super::render::{clean, Out};
use super::Exit;

/// LEDGER_STATUS, the fields the summary shows.
#[derive(Debug, Deserialize)]
struct Status {
    endpoint: String,
    state: String,
    backlog: u64,
    held: u64,
    oldest_unsent: Option<String>,
    oldest_unsent_age_secs: Option<i64>,
    dead_letters: u64,
    forwarded: u64,
    last_error: Option<LastError>,
    consecutive_failures: u32,
    next_attempt_in_ms: Option<u64>,
    last_success_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LastError {
    at: String,
    kind: String,
    message: String,
}

/// An outbox entry as the API shows it.
#[derive(Debug, Deserialize)]
struct Entry {
    entry_id: String,
    kind: String,
    state: String,
    reason: Option<String>,
    amount: Option<String>,
    insurance: Option<String>,
    collection_point: Option<String>,
    occurred_at: Option<String>,
    attempts: u32,
}

#[derive(Debug, Deserialize)]
struct DeadLetters {
    dead_letters: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Retried {
    entry: Entry,
}

#[derive(Debug, Deserialize)]
struct Totals {
    payments: u64,
    payment_total: String,
    reversals: u64,
    reversal_total: String,
}

#[derive(Debug, Deserialize)]
struct Line {
    collection_point: String,
    insurance: String,
    journal: Totals,
    ledger: Totals,
    agrees: bool,
}

#[derive(Debug, Deserialize)]
struct PointSettlement {
    collection_point: String,
    settlements: Vec<serde_json::Value>,
    terminal_net: String,
    journal_net: String,
    unsettled_entries: Vec<String>,
    agrees: bool,
}

#[derive(Debug, Deserialize)]
struct Difference {
    what: String,
    collection_point: String,
    insurance: Option<String>,
    field: String,
    journal: String,
    other: String,
}

#[derive(Debug, Deserialize)]
struct Missing {
    entry_id: String,
    kind: String,
    amount: String,
    journal_state: String,
    note: String,
}

#[derive(Debug, Deserialize)]
struct Surplus {
    collection_point: String,
    insurance: String,
    payments: i64,
    payment_total: String,
    reversals: i64,
    reversal_total: String,
}

#[derive(Debug, Deserialize)]
struct Lookups {
    truncated: bool,
    limit: usize,
}

/// RECONCILIATION.
#[derive(Debug, Deserialize)]
struct Reconciliation {
    date: String,
    balanced: bool,
    lines: Vec<Line>,
    terminals: Vec<PointSettlement>,
    differences: Vec<Difference>,
    missing_at_ledger: Vec<Missing>,
    unknown_to_journal: Vec<Surplus>,
    lookups: Lookups,
}

/// `zhengjiao ledger ...`.
pub(crate) async fn ledger(api: &Api, command: &LedgerCommand, out: &Out) -> Exit {
    match command {
        LedgerCommand::Status { .. } => {
            let answer = match api.get(api.url(&["v1", "ledger", "status"], &[])).await {
                Ok(a) => a,
                Err(f) => return out.failure(&f),
            };
            match parse::<Status>(&answer) {
                Ok(s) => {
                    out.answer(&answer.text, || status(&s));
                    Exit::Done
                }
                Err(f) => out.failure(&f),
            }
        }
        LedgerCommand::DeadLetters { limit, .. } => {
            let query: Vec<(&str, String)> = limit.iter().map(|l| ("limit", l.to_string())).collect();
            let answer = match api.get(api.url(&["v1", "ledger", "dead-letters"], &query)).await {
                Ok(a) => a,
                Err(f) => return out.failure(&f),
            };
            match parse::<DeadLetters>(&answer) {
                Ok(list) => {
                    out.answer(&answer.text, || dead_letters(&list.dead_letters));
                    Exit::Done
                }
                Err(f) => out.failure(&f),
            }
        }
        LedgerCommand::Retry { entry, .. } => {
            let url = api.url(&["v1", "ledger", "dead-letters", entry, "retry"], &[]);
            let answer = match api.post(url, None).await {
                Ok(a) => a,
                Err(f) => return out.failure(&f),
            };
            match parse::<Retried>(&answer) {
                Ok(r) => {
                    out.answer(&answer.text, || {
                        format!(
                            "{}  requeued ({}); the forwarder sends it again with the same id\n",
                            clean(&r.entry.entry_id),
                            clean(&r.entry.state)
                        )
                    });
                    Exit::Done
                }
                Err(f) => out.failure(&f),
            }
        }
    }
}

/// `zhengjiao reconcile`: exit 0 only when everything agrees to the fen, else 5.
pub(crate) async fn reconcile(api: &Api, args: &ReconcileArgs, out: &Out) -> Exit {
    let mut query = vec![("date", args.date.clone())];
    if let Some(point) = &args.collection_point {
        query.push(("collection_point", point.clone()));
    }
    let answer = match api.get(api.url(&["v1", "reconcile"], &query)).await {
        Ok(a) => a,
        Err(f) => return out.failure(&f),
    };
    match parse::<Reconciliation>(&answer) {
        Ok(r) => {
            out.answer(&answer.text, || reconciliation(&r));
            if r.balanced {
                Exit::Done
            } else {
                Exit::NotBalanced
            }
        }
        Err(f) => out.failure(&f),
    }
}

fn status(s: &Status) -> String {
    let mut out = format!("ledger {}  {}\n", clean(&s.endpoint), clean(&s.state));
    let _ = writeln!(out, "  backlog      {} (held reversals: {})", s.backlog, s.held);
    if let (Some(id), Some(age)) = (&s.oldest_unsent, s.oldest_unsent_age_secs) {
        let _ = writeln!(out, "  oldest       {} ({age} s old)", clean(id));
    }
    let _ = writeln!(out, "  forwarded    {}", s.forwarded);
    let _ = writeln!(out, "  dead letters {}", s.dead_letters);
    if let Some(at) = &s.last_success_at {
        let _ = writeln!(out, "  last success {}", clean(at));
    }
    if let Some(e) = &s.last_error {
        let _ = writeln!(
            out,
            "  last error   {} {}: {} ({} in a row)",
            clean(&e.at),
            clean(&e.kind),
            clean(&e.message),
            s.consecutive_failures
        );
    }
    if let Some(ms) = s.next_attempt_in_ms {
        let _ = writeln!(out, "  next attempt in {ms} ms");
    }
    out
}

fn dead_letters(list: &[Entry]) -> String {
    if list.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let mut out = String::new();
    for e in list {
        let opt = |v: &Option<String>| clean(v.as_deref().unwrap_or("-"));
        let _ = writeln!(
            out,
            "{}  {} {} {} {} {}  attempts {}  {}: {}",
            clean(&e.entry_id),
            clean(&e.kind),
            opt(&e.amount),
            opt(&e.insurance),
            opt(&e.collection_point),
            opt(&e.occurred_at),
            e.attempts,
            clean(&e.state),
            opt(&e.reason)
        );
    }
    let _ = writeln!(out, "replay one once its cause is fixed: zhengjiao ledger retry ENTRY");
    out
}

fn reconciliation(r: &Reconciliation) -> String {
    let mut out = format!("{}  {}\n", clean(&r.date), if r.balanced { "balanced" } else { "NOT balanced" });
    for l in &r.lines {
        let _ = writeln!(
            out,
            "  {} {}  journal {} / {} - {} / {}  ledger {} / {} - {} / {}  {}",
            clean(&l.collection_point),
            clean(&l.insurance),
            l.journal.payments,
            clean(&l.journal.payment_total),
            l.journal.reversals,
            clean(&l.journal.reversal_total),
            l.ledger.payments,
            clean(&l.ledger.payment_total),
            l.ledger.reversals,
            clean(&l.ledger.reversal_total),
            if l.agrees { "agree" } else { "DIFFER" }
        );
    }
    for t in &r.terminals {
        let _ = writeln!(
            out,
            "  {} terminals  {} batch(es) settled, net {}  journal net {}  {}",
            clean(&t.collection_point),
            t.settlements.len(),
            clean(&t.terminal_net),
            clean(&t.journal_net),
            if t.agrees { "agree" } else { "DIFFER" }
        );
        if !t.unsettled_entries.is_empty() {
            let _ = writeln!(out, "    entries of batches not settled that day: {}", t.unsettled_entries.len());
        }
    }
    for d in &r.differences {
        let _ = writeln!(
            out,
            "  difference {} {}{} {}: journal {} other {}",
            clean(&d.what),
            clean(&d.collection_point),
            d.insurance.as_deref().map(|i| format!(" {}", clean(i))).unwrap_or_default(),
            clean(&d.field),
            clean(&d.journal),
            clean(&d.other)
        );
    }
    for m in &r.missing_at_ledger {
        let _ = writeln!(
            out,
            "  missing at the ledger: {} ({} {}, {}): {}",
            clean(&m.entry_id),
            clean(&m.kind),
            clean(&m.amount),
            clean(&m.journal_state),
            clean(&m.note)
        );
    }
    for s in &r.unknown_to_journal {
        let _ = writeln!(
            out,
            "  the ledger holds more than the journal at {} {}: {} payment(s) {}, {} reversal(s) {}",
            clean(&s.collection_point),
            clean(&s.insurance),
            s.payments,
            clean(&s.payment_total),
            s.reversals,
            clean(&s.reversal_total)
        );
    }
    if r.lookups.truncated {
        let _ = writeln!(out, "  only the first {} entries were looked up at the ledger", r.lookups.limit);
    }
    out
}

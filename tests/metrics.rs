#![allow(clippy::unwrap_used)]
//! `GET /metrics` end to end: the real daemon against the terminal simulator, a few collections (with a
//! decline and a noisy line), then the page is parsed here as the Prometheus text format 0.0.4 (a small
//! parser of our own, strict about HELP/TYPE) and its figures checked against what the test did.
//!
//! The daemon's ledger endpoint is a closed port (the harness's configuration), so every approval stays
//! in the outbox and the forwarder counts `connection` failures.
#![allow(missing_docs)]

mod daemon_support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use daemon_support::*;
use serde_json::json;

/// One sample: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// A parsed page: the families' types and help, and the samples in order.
#[derive(Debug, Default)]
struct Page {
    types: HashMap<String, String>,
    help: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Page {
    /// The value of the one sample `name` whose labels include every pair of `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v)))
            .collect();
        assert_eq!(found.len(), 1, "{name}{labels:?}: expected one sample, found {found:?}");
        found[0].value
    }

    fn all(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }
}

/// Parses the text format, failing on anything the format does not allow: a sample before its family's
/// TYPE, a family declared twice, a bad label block, a bad value, a counter not ending in `_total`.
fn parse(text: &str) -> Page {
    let mut page = Page::default();
    assert!(text.ends_with('\n'), "the page ends with a line feed");
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(page.help.insert(name.to_owned(), unescape(help, false)).is_none(), "HELP twice: {}", at());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or_else(|| panic!("{}", at()));
            assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind), "unknown type: {}", at());
            assert!(page.help.contains_key(name), "TYPE before HELP (we always write both): {}", at());
            if kind == "counter" {
                assert!(name.ends_with("_total"), "a counter's name ends in _total: {}", at());
            }
            assert!(page.types.insert(name.to_owned(), kind.to_owned()).is_none(), "TYPE twice: {}", at());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment: {}", at());
        let (name, rest) = match line.find(['{', ' ']) {
            Some(i) => (&line[..i], &line[i..]),
            None => panic!("no value: {}", at()),
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name: {}",
            at()
        );
        let (labels, rest) = if let Some(after) = rest.strip_prefix('{') {
            parse_labels(after).unwrap_or_else(|e| panic!("{e}: {}", at()))
        } else {
            (Vec::new(), rest)
        };
        let value = rest.strip_prefix(' ').unwrap_or_else(|| panic!("no space before the value: {}", at()));
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {}", at())),
        };
        let family = family_of(&page, name).unwrap_or_else(|| panic!("sample before its family's TYPE: {}", at()));
        let kind = &page.types[&family];
        if kind == "histogram" && name.ends_with("_bucket") {
            assert!(labels.iter().any(|(k, _)| k == "le"), "a bucket has le: {}", at());
        }
        page.samples.push(Sample { name: name.to_owned(), labels, value });
    }
    page
}

/// The family a sample name belongs to: itself, or without `_sum`/`_count`/`_bucket` for summaries and
/// histograms.
fn family_of(page: &Page, name: &str) -> Option<String> {
    if page.types.contains_key(name) {
        return Some(name.to_owned());
    }
    for suffix in ["_sum", "_count", "_bucket"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if let Some(kind) = page.types.get(base) {
                if kind == "histogram" || (kind == "summary" && suffix != "_bucket") {
                    return Some(base.to_owned());
                }
            }
        }
    }
    None
}

/// Label pairs, in order.
type Labels = Vec<(String, String)>;

/// `a="x",b="y\"z"}` then the rest of the line.
fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = s;
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("bad label name {key:?}"));
        }
        let body = rest[eq + 1..].strip_prefix('"').ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = body.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((i, '"')) => break i,
                Some((_, '\n')) => return Err("raw line feed in a label value".to_owned()),
                Some((_, c)) => value.push(c),
                None => return Err("label value not closed".to_owned()),
            }
        };
        labels.push((key.to_owned(), value));
        rest = &body[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn unescape(s: &str, _quoted: bool) -> String {
    s.replace("\\n", "\n").replace("\\\\", "\\")
}

/// `GET /metrics` without a token: 200, the text format's content type, the page parsed.
async fn scrape(d: &Daemon) -> Page {
    let resp = reqwest::Client::new().get(format!("{}/metrics", d.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "GET /metrics needs no token");
    let ctype = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "content type {ctype:?}");
    parse(&resp.text().await.unwrap())
}

#[test]
fn the_parser_refuses_what_the_format_does_not_allow() {
    let ok = "# HELP a_total A \\\\ b.\n# TYPE a_total counter\na_total{t=\"x\\\"y\\\\z\\n\"} 2\n";
    let page = parse(ok);
    assert_eq!(page.get("a_total", &[("t", "x\"y\\z\n")]), 2.0);
    assert_eq!(page.help["a_total"], "A \\ b.");
    for bad in [
        "a 1\n",                                                           // no TYPE
        "# HELP a A.\n# TYPE a counter\na 1\n",                            // counter without _total
        "# HELP a A.\n# TYPE a gauge\na{t=\"x} 1\n",                       // unclosed
        "# HELP a A.\n# TYPE a gauge\na{t=x} 1\n",                         // unquoted
        "# HELP a A.\n# TYPE a gauge\na one\n",                            // not a number
        "# HELP a A.\n# TYPE a gauge\n# HELP a A.\n# TYPE a gauge\na 1\n", // twice
    ] {
        assert!(std::panic::catch_unwind(|| parse(bad)).is_err(), "accepted {bad:?}");
    }
}

#[tokio::test]
async fn metrics_after_a_few_collections() {
    let w = World::simple().await;
    let d = &w.daemon;

    // Three approvals, a decline, then an approval through a noisy line.
    for i in 1..=3 {
        d.collect_approved(&medical(i), "T01").await;
    }
    w.sim.next_sale(0, "51").await;
    let (status, p) = d.collect(json!({"serial": medical(4), "terminal": "T01", "wait_ms": 20_000})).await;
    assert_eq!((status, p["state"].as_str()), (200, Some("declined")), "{p}");
    w.sim.faults(0, json!({"noise": 1.0})).await;
    d.collect_approved(&medical(5), "T01").await;
    w.sim.faults(0, json!({"noise": 0.0})).await;

    // The forwarder fails against the closed port: wait until it has counted a failure.
    let deadline = Instant::now() + BOUND;
    let page = loop {
        let page = scrape(d).await;
        if page.get("zhengjiao_ledger_errors_total", &[("kind", "connection")]) > 0.0 {
            break page;
        }
        assert!(Instant::now() < deadline, "no ledger connection failure counted after {BOUND:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Every family has help; every sample belongs to a declared family (the parser checked).
    for name in page.types.keys() {
        assert!(name.starts_with("zhengjiao_"), "{name}");
        assert!(!page.help[name].is_empty(), "{name} has help");
    }
    assert_eq!(page.get("zhengjiao_journal_up", &[]), 1.0);
    assert_eq!(page.types["zhengjiao_payments"], "gauge");

    // Payments and reversals by state, from the journal.
    assert_eq!(page.get("zhengjiao_payments", &[("state", "approved")]), 4.0);
    assert_eq!(page.get("zhengjiao_payments", &[("state", "declined")]), 1.0);
    for state in ["created", "sent", "unknown", "not_charged", "forwarded", "voided", "refunded"] {
        assert_eq!(page.get("zhengjiao_payments", &[("state", state)]), 0.0, "{state}");
    }
    assert_eq!(page.all("zhengjiao_payments").len(), 9, "every state listed");
    assert_eq!(page.all("zhengjiao_reversals").len(), 12, "every kind and state listed");
    assert_eq!(page.get("zhengjiao_reversals", &[("kind", "void"), ("state", "approved")]), 0.0);

    // The terminal link.
    assert_eq!(page.get("zhengjiao_terminal_link_state", &[("terminal", "T01"), ("state", "ready")]), 1.0);
    for state in ["connecting", "signing_in", "down"] {
        assert_eq!(page.get("zhengjiao_terminal_link_state", &[("terminal", "T01"), ("state", state)]), 0.0);
    }
    let t01 = [("terminal", "T01")];
    // Sign-in and five sales at least, each a request and a response.
    assert!(page.get("zhengjiao_terminal_frames_sent_total", &t01) >= 6.0);
    assert!(page.get("zhengjiao_terminal_frames_received_total", &t01) >= 6.0);
    assert!(page.get("zhengjiao_terminal_noise_bytes_total", &t01) > 0.0, "the noisy sale's noise was counted");
    assert!(page.get("zhengjiao_terminal_connects_total", &t01) >= 1.0);
    for short in ["naks_sent", "naks_received", "resends", "broken_frames", "stale_responses", "probes_sent"] {
        let name = format!("zhengjiao_terminal_{short}_total");
        assert_eq!(page.types[&name], "counter", "{name}");
        assert!(page.get(&name, &t01) >= 0.0, "{name}");
    }
    assert_eq!(page.get("zhengjiao_terminal_queued_requests", &t01), 0.0);

    // The journal writer: commit latency and writes per commit.
    assert_eq!(page.types["zhengjiao_journal_commit_seconds"], "summary");
    let commits = page.get("zhengjiao_journal_commit_seconds_count", &[]);
    assert!(commits >= 10.0, "every payment step is a commit: {commits}");
    assert!(page.get("zhengjiao_journal_commit_seconds_sum", &[]) > 0.0);
    assert_eq!(page.types["zhengjiao_journal_batch_writes"], "histogram");
    let buckets = page.all("zhengjiao_journal_batch_writes_bucket");
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value), "cumulative buckets: {buckets:?}");
    let inf = buckets.last().unwrap();
    assert_eq!(inf.labels, vec![("le".to_owned(), "+Inf".to_owned())]);
    assert_eq!(inf.value, page.get("zhengjiao_journal_batch_writes_count", &[]));
    assert_eq!(inf.value, commits, "one batch per commit");
    assert!(page.get("zhengjiao_journal_batch_writes_sum", &[]) >= commits);
    assert_eq!(page.get("zhengjiao_journal_failed_batches_total", &[]), 0.0);

    // The outbox: the four approvals wait, none forwarded, no dead letter.
    assert_eq!(page.get("zhengjiao_ledger_outbox_backlog", &[]), 4.0);
    assert!(page.get("zhengjiao_ledger_oldest_unsent_age_seconds", &[]) >= 0.0);
    assert_eq!(page.get("zhengjiao_ledger_dead_letters", &[]), 0.0);
    assert_eq!(page.get("zhengjiao_ledger_forwarded", &[]), 0.0);
    assert_eq!(page.get("zhengjiao_ledger_entries_acknowledged_total", &[]), 0.0);
    assert!(page.get("zhengjiao_ledger_consecutive_failures", &[]) >= 1.0);
    assert_eq!(page.types["zhengjiao_ledger_errors_total"], "counter");
    for kind in ["unauthorized", "unavailable", "server_error", "refused", "timeout", "bad_answer"] {
        assert_eq!(page.get("zhengjiao_ledger_errors_total", &[("kind", kind)]), 0.0, "{kind}");
    }
    let states = page.all("zhengjiao_ledger_forwarder_state");
    assert_eq!(states.iter().map(|s| s.value).sum::<f64>(), 1.0, "one forwarder state: {states:?}");

    // The page tells nothing about payers: no ID number, name or serial.
    let text = reqwest::get(format!("{}/metrics", d.base)).await.unwrap().text().await.unwrap();
    for i in 1..=5 {
        assert!(!text.contains(&medical_id(i)) && !text.contains(&medical(i)), "payer data in /metrics");
    }
}

//! The ledger forwarder, its status, dead letters and the daily reconciliation, against the in-process
//! ledger simulator over real HTTP on loopback (and a tiny stand-in server for answers that break the
//! contract). No test sleeps to synchronise: each waits on the forwarder's status (or the simulator's
//! counters) with a bound.
//!
//! The kill test re-runs this test binary as a child (`current_exe()` with `--exact`), selected by the
//! environment variable [`CHILD`], as `tests/journal_kill.rs` does.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journal_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use journal_support::*;
use serde_json::{json, Value};
use time::macros::{date, datetime};
use tokio::sync::Notify;
use zhengjiao::clock::Clock;
use zhengjiao::domain::{CollectionPointCode, Fen, StaffNumber};
use zhengjiao::journal::{
    BatchTotals, ForwardError, JournalOptions, NewReversal, PaymentState, ReversalKind, SqliteStore, Store,
};
use zhengjiao::ledger::sign::SigningSecret;
use zhengjiao::ledger::{reconcile, Backoff, ClientSettings, Forwarder, ForwarderSettings, LedgerClient, LedgerStatus};
use zhengjiao_protocol::message::{Batch, TerminalId};
use zhengjiao_simulator::ledger::{LedgerConfig, LedgerFaults, LedgerHandle, LedgerSim, Secret};

const KEY_ID: &str = "district-1";
const SECRET: &str = "s3cret";
/// The business day of every test payment.
const DAY: time::Date = date!(2020 - 10 - 21);
/// Most time any one wait of a test may take.
const WAIT: Duration = Duration::from_secs(30);

/// Selects the child's part.
const CHILD: &str = "ZJ_LEDGER_CHILD";
const CHILD_PATH: &str = "ZJ_LEDGER_PATH";
const CHILD_URL: &str = "ZJ_LEDGER_URL";

fn clock() -> Clock {
    Clock::starting_at(datetime!(2020-10-21 10:00 +8))
}

async fn open_journal(path: &Path) -> SqliteStore {
    SqliteStore::open(path, JournalOptions { clock: clock(), ..options() }).await.unwrap()
}

/// The payment id of test payment `i`.
fn pid(i: u32) -> String {
    format!("P{i:05}")
}

/// A journal at `path` with `n` approved payments (their entries in the outbox).
async fn journal_with(path: &Path, n: u32) -> SqliteStore {
    let store = open_journal(path).await;
    store.import_roster(lines(0..n), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let store = store.clone();
        tasks.spawn(async move {
            let id = reference(&pid(i));
            store.record_payment_created(new_payment(&pid(i), &line(i))).await.unwrap();
            store.transition(&id, PaymentState::Sent, Default::default()).await.unwrap();
            store.transition(&id, PaymentState::Approved, approved(MEDICAL_FEN, u64::from(i) + 1)).await.unwrap();
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    store
}

/// Approves a reversal of payment `i` with its own reference.
async fn reverse(store: &SqliteStore, i: u32, kind: ReversalKind, trace: u64) {
    let suffix = if kind == ReversalKind::Void { "V1" } else { "R1" };
    let id = reference(&format!("{}-{suffix}", pid(i)));
    store
        .record_reversal_created(NewReversal {
            id,
            payment: reference(&pid(i)),
            kind,
            amount: Fen::from_fen(MEDICAL_FEN),
            terminal: TerminalId::new(TERMINAL).unwrap(),
            operator: StaffNumber::parse("0001").unwrap(),
        })
        .await
        .unwrap();
    store.transition_reversal(&id, PaymentState::Sent, Default::default()).await.unwrap();
    store.transition_reversal(&id, PaymentState::Approved, approved(MEDICAL_FEN, trace)).await.unwrap();
}

async fn ledger() -> LedgerHandle {
    LedgerSim::start(LedgerConfig::new(KEY_ID, Secret::new(SECRET))).await.unwrap()
}

fn client(url: &str, secret: &str, timeout: Duration) -> LedgerClient {
    let settings = ClientSettings { connect_timeout: Duration::from_secs(2), request_timeout: timeout };
    LedgerClient::new(url, KEY_ID, SigningSecret::new(secret), settings).unwrap()
}

/// Small batches, two in flight, short backoffs: the tests see many batches and retries quickly.
fn settings() -> ForwarderSettings {
    ForwarderSettings {
        batch_size: 40,
        in_flight: 2,
        backoff: Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(400) },
    }
}

fn start(store: &SqliteStore, client: LedgerClient) -> Forwarder {
    Forwarder::start(store.clone(), client, clock(), Arc::new(Notify::new()), settings())
}

async fn wait(f: &Forwarder, what: &str, done: impl FnMut(&LedgerStatus) -> bool) -> LedgerStatus {
    match f.wait_until(WAIT, done).await.unwrap() {
        Ok(status) => status,
        Err(status) => panic!("timed out waiting for {what}; status: {status:#?}"),
    }
}

async fn drained(f: &Forwarder) -> LedgerStatus {
    wait(f, "the backlog to drain", |s| s.backlog == 0 && s.in_flight == 0).await
}

/// Every entry of the journal is in the ledger exactly once, under the voucher the journal recorded,
/// and every payment is `forwarded`.
async fn exactly_once(store: &SqliteStore, ledger: &LedgerHandle, entries: &[String]) {
    assert_eq!(ledger.entry_count().await.unwrap(), entries.len() as u64, "the ledger holds each entry once");
    for id in entries {
        let mine = store.outbox_entry(id).await.unwrap().unwrap();
        let theirs = ledger.entry(id).await.unwrap().unwrap_or_else(|| panic!("the ledger lacks {id}"));
        assert_eq!(mine.tax_voucher_no.as_deref(), Some(theirs.tax_voucher_no.as_str()), "voucher of {id}");
        assert!(mine.forwarded_at.is_some());
    }
}

fn ids(n: u32) -> Vec<String> {
    (0..n).map(pid).collect()
}

#[tokio::test]
async fn drains_wakes_on_the_signal_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 100).await;
    let ledger = ledger().await;
    let signal = Arc::new(Notify::new());
    let f = Forwarder::start(
        store.clone(),
        client(&ledger.url(), SECRET, Duration::from_secs(5)),
        clock(),
        Arc::clone(&signal),
        settings(),
    );
    let s = drained(&f).await;
    assert_eq!((s.forwarded, s.dead_letters, s.state), (100, 0, "idle"));
    assert!(s.last_error.is_none() && s.oldest_unsent.is_none());
    exactly_once(&store, &ledger, &ids(100)).await;
    assert_eq!(store.payment(&reference(&pid(0))).await.unwrap().unwrap().state, PaymentState::Forwarded);

    // A new outbox row and the signal: forwarded without any polling.
    store.import_roster(lines(100..101), false).await.unwrap();
    let id = reference(&pid(100));
    store.record_payment_created(new_payment(&pid(100), &line(100))).await.unwrap();
    store.transition(&id, PaymentState::Sent, Default::default()).await.unwrap();
    store.transition(&id, PaymentState::Approved, approved(MEDICAL_FEN, 500)).await.unwrap();
    signal.notify_one();
    wait(&f, "the new entry", |s| s.forwarded == 101).await;
    f.shutdown().await;
    assert_eq!(f.status().await.unwrap().state, "stopped");
}

#[tokio::test]
async fn an_outage_then_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 60).await;
    let ledger = ledger().await;
    ledger.down_for(Duration::from_secs(1));
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_secs(5)));
    let s = wait(&f, "the outage to show", |s| s.last_error.is_some()).await;
    let e = s.last_error.unwrap();
    assert_eq!(e.kind, "unavailable");
    assert_eq!(e.retry_after_secs, Some(1));
    assert_eq!(s.forwarded, 0);
    assert_eq!(s.backlog, 60);
    drained(&f).await;
    exactly_once(&store, &ledger, &ids(60)).await;
    assert!(ledger.counters().faults.outage >= 1);
}

#[tokio::test]
async fn a_503_with_retry_after_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 10).await;
    let ledger = ledger().await;
    ledger.set_faults(LedgerFaults { unavailable_rate: 1.0, retry_after_secs: 1, ..LedgerFaults::default() }).unwrap();
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_secs(5)));
    let first = wait(&f, "a 503", |s| s.consecutive_failures >= 1).await;
    let t1 = tokio::time::Instant::now();
    let e = first.last_error.unwrap();
    assert_eq!((e.kind.as_str(), e.retry_after_secs), ("unavailable", Some(1)));
    assert!(e.message.contains("Retry-After 1 s"), "{}", e.message);
    assert_eq!(first.state, "backing_off");
    // The backoff alone would retry within 400 ms; the ledger asked for 1 s.
    wait(&f, "a second 503", |s| s.consecutive_failures >= 2).await;
    assert!(t1.elapsed() >= Duration::from_millis(900), "retried after {:?}, before Retry-After", t1.elapsed());
    ledger.set_faults(LedgerFaults::default()).unwrap();
    drained(&f).await;
    exactly_once(&store, &ledger, &ids(10)).await;
}

#[tokio::test]
async fn server_errors_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 200).await;
    let ledger = LedgerSim::start(LedgerConfig {
        faults: LedgerFaults { error_rate: 0.5, ..LedgerFaults::default() },
        seed: 3,
        ..LedgerConfig::new(KEY_ID, Secret::new(SECRET))
    })
    .await
    .unwrap();
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_secs(5)));
    let s = drained(&f).await;
    assert!(ledger.counters().faults.error > 0);
    assert!(s.last_error.is_none(), "a batch went through since");
    assert!(s.recent_errors.iter().any(|e| e.kind == "server_error"), "{s:#?}");
    exactly_once(&store, &ledger, &ids(200)).await;
}

#[tokio::test]
async fn slow_answers_time_out_and_are_resent_with_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 120).await;
    let ledger = LedgerSim::start(LedgerConfig {
        faults: LedgerFaults { slow_rate: 0.5, slow_ms: 1500, ..LedgerFaults::default() },
        seed: 5,
        ..LedgerConfig::new(KEY_ID, Secret::new(SECRET))
    })
    .await
    .unwrap();
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_millis(300)));
    let s = drained(&f).await;
    assert!(s.recent_errors.iter().any(|e| e.kind == "timeout"), "{s:#?}");
    let c = ledger.counters();
    assert!(c.faults.slow > 0 && c.entries_exists > 0, "{c:?}");
    exactly_once(&store, &ledger, &ids(120)).await;
}

#[tokio::test]
async fn stored_then_dropped_connections_end_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 200).await;
    let ledger = LedgerSim::start(LedgerConfig {
        faults: LedgerFaults { drop_rate: 0.5, ..LedgerFaults::default() },
        seed: 11,
        ..LedgerConfig::new(KEY_ID, Secret::new(SECRET))
    })
    .await
    .unwrap();
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_secs(5)));
    let s = drained(&f).await;
    let c = ledger.counters();
    assert!(c.faults.dropped > 0 && c.entries_exists > 0, "{c:?}");
    assert_eq!(c.entries_created, 200);
    assert!(s.recent_errors.iter().any(|e| e.kind == "connection"), "{s:#?}");
    exactly_once(&store, &ledger, &ids(200)).await;
}

#[tokio::test]
async fn a_wrong_secret_keeps_entries_queued_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 30).await;
    let ledger = ledger().await;
    let f = start(&store, client(&ledger.url(), "not-the-secret", Duration::from_secs(5)));
    let s = wait(&f, "two 401s", |s| s.consecutive_failures >= 2).await;
    let e = s.last_error.clone().unwrap();
    assert_eq!(e.kind, "unauthorized");
    assert!(e.message.contains("401") && e.message.contains("secret"), "{}", e.message);
    assert!(e.message.contains("bad_signature"), "{}", e.message);
    assert_eq!((s.backlog, s.forwarded), (30, 0));
    assert_eq!(ledger.entry_count().await.unwrap(), 0);
    let entry = store.outbox_entry(&pid(0)).await.unwrap().unwrap();
    assert!(entry.attempts >= 1 && entry.last_error.as_deref().is_some_and(|m| m.contains("401")));
    f.shutdown().await;

    // With the right secret, the same entries go through.
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_secs(5)));
    drained(&f).await;
    exactly_once(&store, &ledger, &ids(30)).await;
}

#[tokio::test]
async fn a_rejected_entry_is_a_dead_letter_until_replayed_and_holds_its_reversal() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 5).await;
    reverse(&store, 1, ReversalKind::Void, 900).await;
    let ledger = ledger().await;
    let c = client(&ledger.url(), SECRET, Duration::from_secs(5));
    // The ledger holds P00001 with other content already: the daemon's entry will be rejected.
    let mut conflicting = store.outbox_entry(&pid(1)).await.unwrap().unwrap().payload;
    conflicting["amount"] = json!("1.00");
    let body = serde_json::to_vec(&json!({"entries": [conflicting]})).unwrap();
    let first = c.post_entries(&[pid(1).as_str()], body).await.unwrap();
    assert!(matches!(first[0].verdict, zhengjiao::journal::LedgerVerdict::Holds { .. }));

    let f = start(&store, c.clone());
    let s = wait(&f, "the dead letter", |s| s.dead_letters == 1 && s.backlog == 1 && s.in_flight == 0).await;
    assert_eq!(s.held, 1, "the void waits for its payment entry: {s:#?}");
    assert_eq!(s.forwarded, 4);
    let dead = f.dead_letters(100).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].entry_id, pid(1));
    assert_eq!(dead[0].dead_letter.as_deref(), Some("exists_with_different_content"));
    let reversal_id = format!("{}-reversal", pid(1));
    assert!(ledger.entry(&reversal_id).await.unwrap().is_none(), "no reversal before its payment");

    // Not a dead letter, or unknown: refused.
    assert!(matches!(f.retry(&pid(0)).await, Err(ForwardError::NotDeadLettered { .. })));
    assert!(matches!(f.retry("nope").await, Err(ForwardError::UnknownEntry { .. })));

    // The cause fixed (the ledger drops its wrong entry), the operator replays it.
    assert!(ledger.remove_entry(&pid(1)).await.unwrap());
    f.retry(&pid(1)).await.unwrap();
    let s = wait(&f, "the replay", |s| s.backlog == 0 && s.dead_letters == 0 && s.in_flight == 0).await;
    assert_eq!(s.forwarded, 6);
    let mut all = ids(5);
    all.push(reversal_id);
    exactly_once(&store, &ledger, &all).await;
}

/// Five payments; P00000 voided, P00001 refunded; the terminal's batch settled.
async fn day_of_collection(path: &Path) -> SqliteStore {
    let store = journal_with(path, 5).await;
    reverse(&store, 0, ReversalKind::Void, 901).await;
    reverse(&store, 1, ReversalKind::Refund, 902).await;
    let totals = BatchTotals {
        sale_count: 5,
        sale_fen: 5 * MEDICAL_FEN,
        void_count: 1,
        void_fen: MEDICAL_FEN,
        refund_count: 1,
        refund_fen: MEDICAL_FEN,
    };
    let terminal = TerminalId::new(TERMINAL).unwrap();
    let batch = Batch::new("000001").unwrap();
    assert_eq!(store.batch_totals(&terminal, &batch).await.unwrap(), totals);
    store.record_settlement(&terminal, &batch, totals, totals).await.unwrap();
    store
}

#[tokio::test]
async fn reversals_are_netted_out_by_the_ledger_and_the_day_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let store = day_of_collection(&dir.path().join("j.sqlite")).await;
    let ledger = ledger().await;
    let c = client(&ledger.url(), SECRET, Duration::from_secs(5));
    let f = start(&store, c.clone());
    let s = drained(&f).await;
    assert_eq!((s.forwarded, s.dead_letters), (7, 0));
    assert_eq!(ledger.counters().entries_rejected, 0, "no reversal went before its payment");

    let summary = ledger.summary(DAY, Some(POINT)).await.unwrap();
    assert_eq!(summary.lines.len(), 1);
    let line = &summary.lines[0];
    assert_eq!((line.payments, line.reversals), (5, 2));
    assert_eq!(line.payment_total.to_string(), "1400.00");
    assert_eq!(line.reversal_total.to_string(), "560.00");

    // Balanced: terminals 1400 - 280 - 280 = 840, journal and ledger the same.
    let r = reconcile(&store, &c, DAY, None).await.unwrap();
    assert!(r.balanced, "{r:#?}");
    assert_eq!(r.terminals[0].terminal_net, "840.00");
    assert_eq!(r.lines[0].journal.net, "840.00");

    // The ledger loses an entry (through its control surface): reported missing, by id.
    let url = format!("{}/control/entries/{}", ledger.url(), pid(3));
    let removed = reqwest::Client::new().delete(url).send().await.unwrap();
    assert_eq!(removed.status(), 200);
    let r = reconcile(&store, &c, DAY, Some(&CollectionPointCode::parse(POINT).unwrap())).await.unwrap();
    assert!(!r.balanced);
    assert_eq!(r.missing_at_ledger.len(), 1, "{r:#?}");
    let m = &r.missing_at_ledger[0];
    assert_eq!((m.entry_id.as_str(), m.journal_state, m.amount.as_str()), (pid(3).as_str(), "forwarded", "280.00"));
    assert!(r.differences.iter().any(|d| d.what == "journal_vs_ledger"
        && d.field == "payment_total"
        && d.journal == "1400.00"
        && d.other == "1120.00"));
    assert!(r.unknown_to_journal.is_empty());
    assert!(r.terminals[0].agrees, "the terminals still agree with the journal");

    // The ledger holds an entry the journal never wrote: a surplus, in counts and amounts.
    let mut extra = store.outbox_entry(&pid(4)).await.unwrap().unwrap().payload;
    extra["entry_id"] = json!("FOREIGN-1");
    extra["collection_serial"] = json!("ZJ-9999999");
    let body = serde_json::to_vec(&json!({"entries": [extra]})).unwrap();
    c.post_entries(&["FOREIGN-1"], body).await.unwrap();
    let r = reconcile(&store, &c, DAY, None).await.unwrap();
    assert_eq!(r.unknown_to_journal.len(), 1, "{r:#?}");
    assert_eq!((r.unknown_to_journal[0].payments, r.unknown_to_journal[0].payment_total.as_str()), (1, "280.00"));
    assert_eq!(r.missing_at_ledger.len(), 1);
}

#[tokio::test]
async fn terminals_that_disagree_with_the_journal_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 3).await;
    let terminal = TerminalId::new(TERMINAL).unwrap();
    let batch = Batch::new("000001").unwrap();
    let journal = store.batch_totals(&terminal, &batch).await.unwrap();
    // The terminal counted one sale more than the journal knows.
    let said = BatchTotals { sale_count: 4, sale_fen: 4 * MEDICAL_FEN, ..journal };
    store.record_settlement(&terminal, &batch, said, journal).await.unwrap();
    let ledger = ledger().await;
    let c = client(&ledger.url(), SECRET, Duration::from_secs(5));
    let f = start(&store, c.clone());
    drained(&f).await;
    let r = reconcile(&store, &c, DAY, None).await.unwrap();
    assert!(!r.balanced);
    assert!(r.lines.iter().all(|l| l.agrees), "journal and ledger agree: {r:#?}");
    assert!(r
        .differences
        .iter()
        .any(|d| d.what == "terminals_vs_journal" && d.journal == "840.00" && d.other == "1120.00"));
    assert!(r.differences.iter().any(|d| d.what == "settlement_not_balanced"));
}

/// How the stand-in ledger answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    WrongCount,
    OutOfOrder,
    UnknownStatus,
    InvalidJson,
    WrongShape,
    Correct,
    /// `400` to any batch holding entry P00007, echoing a (made-up) payer ID number.
    RefuseOne,
}

/// A stand-in for the ledger that answers `POST /v1/entries` as `mode` says (no signature check).
async fn stand_in(mode: Arc<Mutex<Mode>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/entries",
        axum::routing::post(move |body: axum::body::Bytes| {
            let mode = *mode.lock().unwrap();
            async move {
                let sent: Value = serde_json::from_slice(&body).unwrap();
                let ids: Vec<String> =
                    sent["entries"].as_array().unwrap().iter().map(|e| e["entry_id"].as_str().unwrap().to_owned()).collect();
                if mode == Mode::RefuseOne && ids.iter().any(|i| i == "P00007") {
                    let body = json!({"error": "invalid_field:payer_id 11010519491231002X"}).to_string();
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    );
                }
                let result = |id: &str, status: &str| {
                    json!({"entry_id": id, "status": status, "tax_voucher_no": format!("V-{id}"), "reason": null})
                };
                let text = match mode {
                    Mode::WrongCount => json!({"results": ids.iter().skip(1).map(|i| result(i, "created")).collect::<Vec<_>>()}).to_string(),
                    Mode::OutOfOrder => json!({"results": ids.iter().rev().map(|i| result(i, "created")).collect::<Vec<_>>()}).to_string(),
                    Mode::UnknownStatus => json!({"results": ids.iter().map(|i| result(i, "accepted")).collect::<Vec<_>>()}).to_string(),
                    Mode::InvalidJson => "{\"results\": [".to_owned(),
                    Mode::WrongShape => json!({"entries": ids}).to_string(),
                    Mode::Correct | Mode::RefuseOne => {
                        json!({"results": ids.iter().map(|i| result(i, "created")).collect::<Vec<_>>()}).to_string()
                    }
                };
                (axum::http::StatusCode::OK, [(axum::http::header::CONTENT_TYPE, "application/json")], text)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn answers_that_break_the_contract_never_mark_anything_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 20).await;
    let mode = Arc::new(Mutex::new(Mode::WrongCount));
    let url = stand_in(Arc::clone(&mode)).await;
    let f = start(&store, client(&url, SECRET, Duration::from_secs(5)));
    let cases = [
        (Mode::WrongCount, "results for"),
        (Mode::OutOfOrder, "was sent there"),
        (Mode::UnknownStatus, "unknown status \"accepted\""),
        (Mode::InvalidJson, "not JSON"),
        (Mode::WrongShape, "not {\"results\""),
    ];
    let mut failures = 0;
    for (m, cause) in cases {
        *mode.lock().unwrap() = m;
        let s = wait(&f, &format!("{m:?} to be refused"), |s| {
            s.consecutive_failures > failures
                && s.last_error.as_ref().is_some_and(|e| e.kind == "bad_answer" && e.message.contains(cause))
        })
        .await;
        failures = s.consecutive_failures;
        assert_eq!((s.forwarded, s.backlog), (0, 20), "{m:?}: nothing marked forwarded");
    }
    assert!(store.payments_in(&[PaymentState::Forwarded]).await.unwrap().is_empty());
    *mode.lock().unwrap() = Mode::Correct;
    let s = drained(&f).await;
    assert_eq!(s.forwarded, 20);
    let e = store.outbox_entry(&pid(7)).await.unwrap().unwrap();
    assert_eq!(e.tax_voucher_no.as_deref(), Some("V-P00007"));
}

#[tokio::test]
async fn an_entry_the_ledger_refuses_alone_becomes_a_dead_letter_and_does_not_block_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 20).await;
    let url = stand_in(Arc::new(Mutex::new(Mode::RefuseOne))).await;
    let f = start(&store, client(&url, SECRET, Duration::from_secs(5)));
    // The batch holding P00007 is halved until P00007 goes alone and is refused alone.
    let s = wait(&f, "everything but P00007 forwarded", |s| s.forwarded == 19 && s.dead_letters == 1).await;
    assert_eq!(s.backlog, 0);
    let e = store.outbox_entry(&pid(7)).await.unwrap().unwrap();
    let reason = e.dead_letter.expect("a dead letter");
    assert!(reason.contains("refused alone") && reason.contains("400"), "{reason}");
    assert!(!reason.contains("11010519491231002X"), "the ledger's text is kept masked: {reason}");
    let status = serde_json::to_string(&f.status().await.unwrap()).unwrap();
    assert!(!status.contains("11010519491231002X"), "the status is masked: {status}");
}

#[tokio::test]
async fn a_summary_that_is_not_amounts_in_fen_fails_the_reconciliation() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 2).await;
    for total in ["-280.00", "280.001", "99999999999999999999.00"] {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let body = json!({"date": "2020-10-21", "lines": [
            {"collection_point": "WD-01", "insurance": "medical", "channel": "pos",
             "payments": 1, "payment_total": total, "reversals": 0, "reversal_total": "0.00"},
            {"collection_point": "WD-01", "insurance": "medical", "channel": "pos",
             "payments": 1, "payment_total": total, "reversals": 0, "reversal_total": "0.00"}
        ]})
        .to_string();
        let app = axum::Router::new().route(
            "/v1/summary",
            axum::routing::get(move || {
                let body = body.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], body) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let c = client(&url, SECRET, Duration::from_secs(5));
        let result = reconcile(&store, &c, DAY, None).await;
        // Never a panic, never a sum that wraps into something that could look balanced.
        assert!(result.is_err(), "{total}: {result:?}");
    }
}

/// In a child: which part it plays and on which file and ledger.
fn child_role(role: &str) -> Option<(PathBuf, String)> {
    (std::env::var(CHILD).ok()? == role).then(|| {
        (PathBuf::from(std::env::var_os(CHILD_PATH).unwrap_or_default()), std::env::var(CHILD_URL).unwrap_or_default())
    })
}

#[test]
fn child_forwards_until_killed() {
    let Some((path, url)) = child_role("forward") else { return };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let store = open_journal(&path).await;
        let settings = ForwarderSettings { batch_size: 100, in_flight: 1, ..settings() };
        let _f = Forwarder::start(
            store,
            client(&url, SECRET, Duration::from_secs(60)),
            clock(),
            Arc::new(Notify::new()),
            settings,
        );
        let mut out = std::io::stdout().lock();
        writeln!(out, "STARTED").unwrap();
        out.flush().unwrap();
        drop(out);
        // Killed by the parent; never outlives it for long.
        tokio::time::sleep(Duration::from_secs(60)).await;
        std::process::exit(3);
    });
}

#[tokio::test]
async fn the_forwarder_killed_mid_batch_resends_on_restart() {
    const N: u32 = 300;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j.sqlite");
    let store = journal_with(&path, N).await;
    store.close().await;
    // Every answer is held back after the entries are committed: the child is killed while it waits.
    let ledger = ledger().await;
    ledger.set_faults(LedgerFaults { slow_rate: 1.0, slow_ms: 20_000, ..LedgerFaults::default() }).unwrap();

    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--exact", "child_forwards_until_killed", "--nocapture", "--test-threads=1"])
        .env(CHILD, "forward")
        .env(CHILD_PATH, &path)
        .env(CHILD_URL, ledger.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let started = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("STARTED"))
    });
    assert!(tokio::time::timeout(WAIT, started).await.unwrap().unwrap(), "the child did not start");
    let deadline = tokio::time::Instant::now() + WAIT;
    while ledger.counters().entries_created < 100 {
        assert!(tokio::time::Instant::now() < deadline, "the child never sent its first batch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL, mid-batch: committed at the ledger, never answered.
    child.wait().unwrap();
    ledger.set_faults(LedgerFaults::default()).unwrap();

    let store = open_journal(&path).await;
    let before = store.outbox_counts().await.unwrap();
    assert_eq!((before.backlog, before.forwarded), (u64::from(N), 0), "nothing was answered before the kill");
    let f = start(&store, client(&ledger.url(), SECRET, Duration::from_secs(5)));
    drained(&f).await;
    let c = ledger.counters();
    assert_eq!(c.entries_created, u64::from(N));
    assert!(c.entries_exists >= 100, "the batch in flight was sent again: {c:?}");
    exactly_once(&store, &ledger, &ids(N)).await;
}

// ---- The API routes and the CLI verbs, against the in-process API ----

const ADMIN_TOKEN: &str = "admin-token";
const COLLECTOR_TOKEN: &str = "collector-token";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs `zhengjiao ARGS` against the API with `token`; (exit code, stdout, stderr).
async fn cli(api: &str, token: &str, args: &[&str]) -> (i32, String, String) {
    let (api, token) = (api.to_owned(), token.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_zhengjiao"))
            .args(&args)
            .env("ZHENGJIAO_API", api)
            .env("ZHENGJIAO_TOKEN", token)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_api_and_the_cli_show_status_dead_letters_retry_and_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let store = day_of_collection(&dir.path().join("journal.sqlite")).await;
    let ledger = ledger().await;
    // P00002 will be rejected: the ledger holds it with other content.
    let c = client(&ledger.url(), SECRET, Duration::from_secs(5));
    let mut conflicting = store.outbox_entry(&pid(2)).await.unwrap().unwrap().payload;
    conflicting["amount"] = json!("2.00");
    c.post_entries(&[pid(2).as_str()], serde_json::to_vec(&json!({"entries": [conflicting]})).unwrap()).await.unwrap();

    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/2020-weidong.toml");
    let config_path = dir.path().join("zhengjiao.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {data:?}\npolicy = {policy:?}\nclock = \"2020-10-21T10:00:00+08:00\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n\
             [ledger]\nendpoint = {url:?}\nkey_id = {KEY_ID:?}\nsecret = {SECRET:?}\n\n\
             [[operators]]\ntoken_sha256 = {admin:?}\nstaff_no = \"9001\"\nrole = \"admin\"\n\n\
             [[operators]]\ntoken_sha256 = {collector:?}\nstaff_no = \"1001\"\ncollection_point = \"WD-OTHER\"\nrole = \"collector\"\n",
            data = dir.path().display().to_string(),
            policy = policy.display().to_string(),
            url = ledger.url(),
            admin = sha256_hex(ADMIN_TOKEN),
            collector = sha256_hex(COLLECTOR_TOKEN),
        ),
    )
    .unwrap();
    let config = zhengjiao::config::Config::load(&config_path).unwrap();
    let collection =
        zhengjiao::collect::Collection::start(&config, store.clone(), clock(), Default::default()).await.unwrap();
    let f = Forwarder::start(
        store.clone(),
        LedgerClient::from_config(&config.ledger, ClientSettings::default()).unwrap(),
        clock(),
        collection.outbox_signal(),
        settings(),
    );
    let app = zhengjiao::api::router(zhengjiao::api::ApiState::new(collection, f.clone(), &config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    wait(&f, "the dead letter", |s| s.dead_letters == 1 && s.backlog == 0 && s.in_flight == 0).await;

    let (code, out, err) = cli(&api, ADMIN_TOKEN, &["ledger", "status"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("backlog      0 (held reversals: 0)") && out.contains("dead letters 1"), "{out}");
    let (code, out, _) = cli(&api, ADMIN_TOKEN, &["ledger", "status", "--json"]).await;
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((status["backlog"].as_u64(), status["forwarded"].as_u64()), (Some(0), Some(6)));
    assert_eq!((status["dead_letters"].as_u64(), status["state"].as_str()), (Some(1), Some("idle")));

    let (code, out, _) = cli(&api, ADMIN_TOKEN, &["ledger", "dead-letters"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("P00002") && out.contains("exists_with_different_content"), "{out}");
    assert!(!out.contains(&id_number(2).as_str()[..10]), "no payer ID number in the listing: {out}");
    let (code, out, _) = cli(&api, COLLECTOR_TOKEN, &["ledger", "dead-letters"]).await;
    assert_eq!((code, out.as_str()), (0, "no dead letters\n"), "another point's dead letters are not shown");

    // The day does not balance while P00002 is a dead letter.
    let (code, out, _) = cli(&api, ADMIN_TOKEN, &["reconcile", "--date", "2020-10-21"]).await;
    assert_eq!(code, 5, "{out}");
    assert!(out.contains("NOT balanced") && out.contains("missing at the ledger: P00002"), "{out}");
    assert!(out.contains("dead_letter"), "{out}");

    // Only an admin replays; a second replay is refused.
    let (code, _, err) = cli(&api, COLLECTOR_TOKEN, &["ledger", "retry", &pid(2)]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("forbidden"), "{err}");
    assert!(ledger.remove_entry(&pid(2)).await.unwrap());
    let (code, out, err) = cli(&api, ADMIN_TOKEN, &["ledger", "retry", &pid(2)]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("requeued"), "{out}");
    wait(&f, "the replay", |s| s.backlog == 0 && s.in_flight == 0 && s.dead_letters == 0).await;
    let (code, _, err) = cli(&api, ADMIN_TOKEN, &["ledger", "retry", &pid(2)]).await;
    assert_eq!(code, 1);
    assert!(err.contains("not a dead letter"), "{err}");

    let (code, out, err) = cli(&api, ADMIN_TOKEN, &["reconcile", "--date", "2020-10-21"]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("2020-10-21  balanced"), "{out}");
    let (code, out, _) = cli(&api, ADMIN_TOKEN, &["reconcile", "--date", "2020-10-21", "--json"]).await;
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["balanced"], json!(true));
    assert_eq!(r["lines"][0]["ledger"]["net"], json!("840.00"));
    // A collector reconciles their own point only.
    let (code, _, err) =
        cli(&api, COLLECTOR_TOKEN, &["reconcile", "--date", "2020-10-21", "--collection-point", POINT]).await;
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = cli(&api, COLLECTOR_TOKEN, &["reconcile", "--date", "2020-10-21", "--json"]).await;
    assert_eq!(code, 0);
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["collection_point"], json!("WD-OTHER"));
    let (code, _, _) = cli(&api, ADMIN_TOKEN, &["reconcile", "--date", "2020-13-01"]).await;
    assert_eq!(code, 2);
}

#[tokio::test]
async fn a_trickle_of_payments_goes_in_few_requests() {
    let dir = tempfile::tempdir().unwrap();
    let store = journal_with(&dir.path().join("j.sqlite"), 0).await;
    let n = 30;
    store.import_roster(lines(0..n), false).await.unwrap();
    let ledger = ledger().await;
    let signal = Arc::new(Notify::new());
    let f = Forwarder::start(
        store.clone(),
        client(&ledger.url(), SECRET, Duration::from_secs(5)),
        clock(),
        Arc::clone(&signal),
        settings(),
    );
    // One approval after another, each signalled, as a collection point's payments come.
    let started = std::time::Instant::now();
    for i in 0..n {
        let id = reference(&pid(i));
        store.record_payment_created(new_payment(&pid(i), &line(i))).await.unwrap();
        store.transition(&id, PaymentState::Sent, Default::default()).await.unwrap();
        store.transition(&id, PaymentState::Approved, approved(MEDICAL_FEN, u64::from(i) + 1)).await.unwrap();
        signal.notify_one();
    }
    wait(&f, "the trickle", |s| s.forwarded == u64::from(n) && s.in_flight == 0).await;
    let elapsed = started.elapsed();
    exactly_once(&store, &ledger, &ids(n)).await;
    // After a request that drained the outbox the next waits 20 ms: at most one request per 20 ms
    // (and the first), however fast or slow the approvals came. One request per payment would break it
    // whenever the payments came faster than one per 20 ms, as they do here.
    let requests = ledger.counters().requests;
    let bound = 1 + elapsed.as_millis() / 20;
    assert!(requests as u128 <= bound, "{requests} requests in {elapsed:?} for {n} payments (at most {bound})");
    f.shutdown().await;
}

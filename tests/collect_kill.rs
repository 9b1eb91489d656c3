#![allow(clippy::unwrap_used)]
//! The daemon killed (SIGKILL) in the middle of payments, then started again on the same journal: every
//! payment ends with the terminal's word (wire-protocol.md §4 rule 7; architecture.md "Payment states"),
//! without any operator action, nothing is charged twice, and no outcome stays unknown.
#![allow(missing_docs)]

mod daemon_support;

use daemon_support::*;
use serde_json::json;

/// Link timings for these tests: a SALE may wait at the card for as long as the test needs.
fn timeouts() -> Timeouts {
    Timeouts { money_ms: 60_000, ..Timeouts::default() }
}

/// Polls the payment (without waiting for an outcome) until it is in `state`.
async fn wait_state(d: &Daemon, id: &str, state: &str) {
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let p = d.payment(id, None).await;
        if p["state"] == state {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "payment {id} not {state} after {BOUND:?}: {p}");
        tokio::time::sleep(POLL).await;
    }
}

/// (a) A SALE at the card (`sent`) and (b) one queued behind it (`created`, never sent) when the daemon
/// is killed. The terminal then completes A (the card is presented), its response lost with the
/// connection. After the restart, A is approved (found by QUERY) and B not charged (QUERY: 25), both
/// on the daemon's own, and the terminal saw exactly one SALE.
#[tokio::test]
async fn killed_with_a_sale_at_the_card_and_one_queued() {
    let sim = SimOptions { card_delay_ms: 60_000, ..SimOptions::default() };
    let mut w = World::start(sim, &[POINT], CLOCK, timeouts()).await;
    let (a_line, b_line) = (medical(1), medical(2));

    let (status, a) = w.daemon.collect(json!({"serial": a_line, "terminal": "T01", "wait_ms": 300})).await;
    assert_eq!(status, 202, "A waits at the card: {a}");
    let a_id = a["id"].as_str().unwrap().to_owned();
    wait_state(&w.daemon, &a_id, "sent").await;

    let (status, b) = w.daemon.collect(json!({"serial": b_line, "terminal": "T01", "wait_ms": 300})).await;
    assert_eq!(status, 202, "B queued behind A: {b}");
    let b_id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b["state"], "created", "B is queued, not sent: {b}");
    let (status, line) = w.daemon.get(&format!("/v1/lookup/{a_line}")).await;
    assert_eq!(status, 200, "{line}");
    assert_eq!(line["lines"][0]["status"], "under_way", "{line}");
    // A second payment for a line under way is refused (409 under way, or 422 already_paid: docs/api.md
    // names both for it).
    let (status, again) = w.daemon.collect(json!({"serial": a_line, "terminal": "T01", "wait_ms": 300})).await;
    assert!(status == 409 || status == 422, "a second payment while A is under way: {status} {again}");

    w.daemon.kill().await;
    // The cardholder presents the card: the terminal completes A and stores it; its response has no
    // one to go to.
    w.sim.card_delay(0, 0).await;
    w.sim.wait_counter(0, "/engine/sales_approved", 1).await;

    let d = Daemon::start(&w.config).await;
    let a = d.wait_final(&a_id, BOUND).await;
    assert_approved(&a, "A after the restart");
    assert!(went_through(&a, "unknown"), "A was under way at the crash, so unknown until the QUERY: {a}");
    let b = d.wait_final(&b_id, BOUND).await;
    assert_eq!(b["state"], "not_charged", "B was never sent: {b}");
    assert!(went_through(&b, "unknown"), "B was recorded before the crash, so unknown until the QUERY: {b}");
    let line = d.line(&a_line).await;
    assert_eq!((line["status"].as_str(), line["paid_by"].as_str()), (Some("paid"), Some(a_id.as_str())), "{line}");
    let line = d.line(&b_line).await;
    assert_eq!(line["status"], "unpaid", "{line}");

    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 1, "one sale approved at the terminal");
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 1, "B's SALE never reached the terminal");
    d.assert_consistent().await;

    // B's line is collected now, once.
    let p = d.collect_approved(&b_line, "T01").await;
    assert_eq!(d.line(&b_line).await["paid_by"], p["id"]);
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 2);
    d.assert_consistent().await;
}

/// (c) The terminal approved and stored the SALE, its response held back (delay fault), when the
/// daemon is killed. After the restart the payment ends approved by QUERY; the terminal approved
/// exactly one sale; a second collection of the line is refused as already paid.
#[tokio::test]
async fn killed_while_the_response_is_held_back() {
    let mut w = World::start(SimOptions::default(), &[POINT], CLOCK, timeouts()).await;
    let serial = medical(3);
    w.sim.faults(0, json!({"delay_ms": 30_000})).await;
    let (status, p) = w.daemon.collect(json!({"serial": serial, "terminal": "T01", "wait_ms": 500})).await;
    assert_eq!(status, 202, "the response is held back: {p}");
    let id = p["id"].as_str().unwrap().to_owned();
    // The terminal has approved and stored it (before its response, which waits).
    w.sim.wait_counter(0, "/engine/sales_approved", 1).await;
    wait_state(&w.daemon, &id, "sent").await;

    w.daemon.kill().await;
    w.sim.faults(0, json!({"delay_ms": 0})).await;

    let d = Daemon::start(&w.config).await;
    let p = d.wait_final(&id, BOUND).await;
    assert_approved(&p, "after the restart");
    assert!(went_through(&p, "unknown"), "unknown until the QUERY: {p}");
    let line = d.line(&serial).await;
    assert_eq!(line["paid_by"], id, "{line}");
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 1, "one sale approved at the terminal");
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 1, "one SALE sent");

    d.wait_ready(&["T01"]).await;
    let (status, body) = d.collect(json!({"serial": serial, "terminal": "T01", "wait_ms": 5000})).await;
    assert_eq!(status, 422, "paid already: {body}");
    assert_eq!(body["rule"], "already_paid", "{body}");
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 1, "nothing charged twice");
    d.assert_consistent().await;
}

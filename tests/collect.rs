#![allow(clippy::unwrap_used)]
//! The collection flow end to end (docs/api.md): the real daemon (`zhengjiao serve`) against the real
//! terminal simulator (`zhengjiao-sim terminal`) over TCP and over a pseudo-terminal, driven through the
//! HTTP API: approvals, declines, every terminal fault, policy refusals, void, refund and settlement.
//!
//! Each test has its own simulator, data directory and daemon; scenarios that can share a daemon run
//! in sequence within one test. Terminal link timings are short (`money_ms` 3 s, `query_ms` 2 s,
//! `t_ack_ms` 200 ms) so the faults that end in an unknown outcome take seconds, not minutes.
#![allow(missing_docs)]

mod daemon_support;

use daemon_support::*;
use serde_json::{json, Value};

/// The rule of a 422 policy refusal.
fn assert_policy(answer: &Answer, rule: &str, what: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 422, "{what}: expected 422 policy/{rule}: {body}");
    assert_eq!(body["code"], "policy", "{what}: {body}");
    assert_eq!(body["rule"], rule, "{what}: {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: an error has a message: {body}");
}

/// A 400 naming `field`.
fn assert_bad_request(answer: &Answer, field: Option<&str>, what: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 400, "{what}: expected 400 bad_request: {body}");
    assert_eq!(body["code"], "bad_request", "{what}: {body}");
    if let Some(field) = field {
        assert_eq!(body["field"], field, "{what}: {body}");
    }
}

/// A payment whose outcome is still open after its wait ran out: 202 (or 200) with state `unknown`.
fn assert_unknown(answer: &Answer, what: &str) -> String {
    let (status, p) = answer;
    assert!(*status == 202 || *status == 200, "{what}: expected 202 with an unknown outcome: {status} {p}");
    assert_eq!(p["state"], "unknown", "{what}: {p}");
    assert_eq!(p["final"], false, "{what}: {p}");
    p["id"].as_str().unwrap().to_owned()
}

/// Checks the parts of an approved medical payment a collector relies on: the PAYMENT object of
/// docs/api.md.
fn assert_medical_payment(p: &Value, serial: &str, terminal: &str) {
    assert_approved(p, serial);
    assert!(p["id"].as_str().is_some_and(|id| !id.is_empty()), "{p}");
    assert_eq!(p["line"]["serial"], serial, "{p}");
    assert_eq!(p["line"]["insurance"], "medical", "{p}");
    assert_eq!(p["line"]["year"], 2020, "{p}");
    assert_eq!(p["amount"], "280.00", "{p}");
    assert_eq!(p["terminal"], terminal, "{p}");
    assert_eq!(p["operator"], "1001", "{p}");
    assert_eq!(p["pos"]["amount"], "280.00", "{p}");
    assert!(p["pos"]["card"].as_str().is_some_and(|c| c.contains('*')), "a masked card: {p}");
    let slip = &p["slip"];
    assert_eq!(slip["serial"], serial, "{p}");
    assert_eq!(slip["insurance"], "medical", "{p}");
    assert_eq!(slip["year"], 2020, "{p}");
    assert_eq!(slip["collection_point"], POINT, "{p}");
    assert_eq!(slip["operator"], "1001", "{p}");
    assert_eq!(slip["card"], p["pos"]["card"], "{p}");
    assert_eq!(slip["rrn"], p["pos"]["rrn"], "{p}");
    let payer_id = slip["payer_id"].as_str().unwrap_or_else(|| panic!("slip without payer_id: {p}"));
    assert_eq!(payer_id.chars().count(), 18, "{p}");
    assert_eq!(&payer_id[6..14], "********", "payer_id masked, first 6 and last 4 shown: {p}");
    assert!(slip["payer_name"].as_str().is_some_and(|n| !n.is_empty()), "{p}");
    assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
}

/// A line as lookup shows it: paid by `id`, or unpaid.
async fn assert_line(d: &Daemon, serial: &str, paid_by: Option<&str>) {
    let line = d.line(serial).await;
    match paid_by {
        Some(id) => {
            assert_eq!(line["status"], "paid", "{serial}: {line}");
            assert_eq!(line["paid_by"], id, "{serial}: {line}");
        }
        None => {
            assert_eq!(line["status"], "unpaid", "{serial}: {line}");
            assert!(line["paid_by"].is_null(), "{serial}: {line}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Approvals
// ---------------------------------------------------------------------------------------------------

/// Over TCP: a medical and a pension payment at one point, a medical payment at another point by its
/// own collector on its own terminal; lookups by serial and by ID number before and after.
#[tokio::test]
async fn happy_path_over_tcp() {
    let w = World::start(
        SimOptions { terminals: 2, ..SimOptions::default() },
        &[POINT, OTHER_POINT],
        CLOCK,
        Timeouts::default(),
    )
    .await;
    let d = &w.daemon;

    // The terminals as the API shows them.
    let (status, body) = d.get("/v1/terminals").await;
    assert_eq!(status, 200, "{body}");
    let t01 = body["terminals"].as_array().unwrap().iter().find(|t| t["name"] == "T01").unwrap().clone();
    assert_eq!(t01["collection_point"], POINT, "{t01}");
    assert_eq!(t01["terminal_id"], "41000001", "{t01}");
    assert_eq!(t01["state"], "ready", "{t01}");
    assert_eq!(t01["unknown"], 0, "{t01}");

    // Lookup by ID number before: unpaid, the ID masked.
    let (status, found) = d.get_as(Some(COLLECTOR), &format!("/v1/lookup/{}", medical_id(1))).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["lines"].as_array().map(Vec::len), Some(1), "{found}");
    let line = &found["lines"][0];
    assert_eq!(line["serial"], medical(1), "{found}");
    assert_eq!(line["status"], "unpaid", "{found}");
    assert_eq!(line["amount_due"], "280.00", "{found}");
    assert_eq!(line["collection_point"], POINT, "{found}");
    assert_eq!(found["elsewhere"], 0, "{found}");

    // Medical, by serial.
    let (status, p) = d.collect(json!({"serial": medical(1), "terminal": "T01", "wait_ms": 20_000})).await;
    assert_eq!(status, 200, "{p}");
    assert_medical_payment(&p, &medical(1), "T01");
    let id = p["id"].as_str().unwrap().to_owned();
    assert_line(d, &medical(1), Some(&id)).await;
    let one = d.payment(&id, None).await;
    assert_eq!(one["state"], p["state"], "{one}");
    let history = one["history"].as_array().unwrap_or_else(|| panic!("a single payment has its history: {one}"));
    assert_eq!(history.first().map(|h| &h["to"]), Some(&json!("created")), "{one}");
    assert!(went_through(&one, "approved"), "{one}");
    // With no card to wait for, `sent` and the approval are written together; the history still
    // shows each step, in order, in the answer to the collection itself.
    for answer in [&p, &one] {
        let steps: Vec<&str> =
            answer["history"].as_array().into_iter().flatten().filter_map(|h| h["to"].as_str()).collect();
        assert!(steps.starts_with(&["created", "sent", "approved"]), "{answer}");
    }
    // The answer to the collection was read by the journal's writer with the approval: it is what a
    // read finds (which may have gone on to `forwarded` since).
    let history = |v: &Value| v["history"].as_array().cloned().unwrap_or_default();
    assert!(history(&one).starts_with(&history(&p)), "{p}\n{one}");
    assert_eq!(p["line"], one["line"], "{p}\n{one}");
    assert_eq!(p["slip"], one["slip"], "{p}\n{one}");

    // Medical, by ID number and insurance.
    let (status, p) = d
        .collect(json!({"id_number": medical_id(2), "insurance": "medical", "terminal": "T01", "wait_ms": 20_000}))
        .await;
    assert_eq!(status, 200, "{p}");
    assert_medical_payment(&p, &medical(2), "T01");
    // References drawn one after the other count up in their last six hex digits (the journal's
    // indexes on them grow at their end).
    let suffix = |r: &str| u32::from_str_radix(r.rsplit('-').next().unwrap_or_default(), 16).unwrap();
    let next = p["id"].as_str().unwrap();
    assert_eq!(suffix(next), (suffix(&id) + 1) % 0x0100_0000, "{id} then {next}");

    // Pension, a tier given as a number.
    let (status, p) = d.collect(json!({"serial": pension(1), "tier": 300, "terminal": "T01", "wait_ms": 20_000})).await;
    assert_eq!(status, 200, "{p}");
    assert_approved(&p, "pension 300");
    assert_eq!(p["amount"], "300.00", "{p}");
    assert_eq!(p["line"]["insurance"], "pension", "{p}");
    assert_line(d, &pension(1), p["id"].as_str()).await;

    // Another point: its collector on its terminal.
    let (status, p) = d
        .post_as(Some(OTHER), "/v1/collect", &json!({"serial": other_point(1), "terminal": "T02", "wait_ms": 20_000}))
        .await;
    assert_eq!(status, 200, "{p}");
    assert_approved(&p, "other point");
    assert_eq!(p["operator"], "2001", "{p}");
    assert_eq!(p["slip"]["collection_point"], OTHER_POINT, "{p}");

    // A collector sees the other point's line only as a count.
    let (status, found) = d.get_as(Some(COLLECTOR), &format!("/v1/lookup/{}", other_point_id(1))).await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["lines"].as_array().map(Vec::len), Some(0), "{found}");
    assert_eq!(found["elsewhere"], 1, "{found}");
    let (status, found) = d.get_as(Some(COLLECTOR), "/v1/lookup/ZJ-NOSUCH").await;
    assert_eq!(status, 404, "{found}");

    // The terminals' own count.
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 3);
    assert_eq!(w.sim.counter(1, "/engine/sales_approved").await, 1);
    // A collector lists their point only.
    let (status, mine) = d.get_as(Some(COLLECTOR), "/v1/payments").await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["payments"].as_array().map(Vec::len), Some(3), "{mine}");
    assert_eq!(d.payments("").await.len(), 4);
    d.assert_consistent().await;
}

/// The same over a pseudo-terminal (`serial:/dev/pts/N`).
#[tokio::test]
async fn happy_path_over_a_pty() {
    let w = World::start(SimOptions { pty: true, ..SimOptions::default() }, &[POINT], CLOCK, Timeouts::default()).await;
    let d = &w.daemon;
    let (status, p) = d.collect(json!({"serial": medical(1), "terminal": "T01", "wait_ms": 20_000})).await;
    assert_eq!(status, 200, "{p}");
    assert_medical_payment(&p, &medical(1), "T01");
    assert_line(d, &medical(1), p["id"].as_str()).await;
    // A second one on the same device.
    let p = d.collect_approved(&medical(2), "T01").await;
    assert_line(d, &medical(2), p["id"].as_str()).await;
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 2);
    d.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------------
// Declines
// ---------------------------------------------------------------------------------------------------

/// Every decline the simulator can produce (queued through its control endpoint: the tiers and the
/// medical amount never end in .51 and the like): 200 declined with the terminal's code; the line stays
/// unpaid and is then collected.
#[tokio::test]
async fn declines_leave_the_line_unpaid() {
    let w = World::simple().await;
    let d = &w.daemon;
    let serial = medical(5);
    let codes = ["51", "05", "61", "T1", "T2"];
    let mut ids = Vec::new();
    for code in codes {
        w.sim.next_sale(0, code).await;
        let (status, p) = d.collect(json!({"serial": serial, "terminal": "T01", "wait_ms": 20_000})).await;
        assert_eq!(status, 200, "decline {code}: {p}");
        assert_eq!(p["state"], "declined", "decline {code}: {p}");
        assert_eq!(p["final"], true, "decline {code}: {p}");
        assert_eq!(p["pos"]["code"], code, "decline {code}: {p}");
        assert!(p["slip"].is_null(), "a declined payment has no slip: {p}");
        assert!(p["message"].as_str().is_some_and(|m| !m.is_empty()), "a message in words: {p}");
        assert_line(d, &serial, None).await;
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let p = d.collect_approved(&serial, "T01").await;
    assert_line(d, &serial, p["id"].as_str()).await;
    let line = d.line(&serial).await;
    assert_eq!(line["payments"].as_array().map(Vec::len), Some(codes.len() + 1), "{line}");
    assert_eq!(d.payments("state=declined").await.len(), codes.len());
    assert_eq!(w.sim.counter(0, "/engine/sales_declined").await, codes.len() as u64);
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 1);
    // A declined payment cannot be voided.
    let (status, body) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{}/void", ids[0]), &json!({})).await;
    assert_eq!(status, 409, "void of a declined payment: {body}");
    assert_eq!(body["code"], "conflict", "{body}");
    d.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------------
// Terminal faults
// ---------------------------------------------------------------------------------------------------

/// Faults the link must absorb (a broken check, noise before a frame, a duplicated response, a
/// swallowed ACK): each sale is approved exactly once, the fault was really exercised.
#[tokio::test]
async fn link_faults_are_absorbed_and_each_sale_is_approved_once() {
    let w = World::simple().await;
    let d = &w.daemon;
    for (k, fault) in ["corrupt_check", "noise", "duplicate", "swallow_ack"].into_iter().enumerate() {
        let serial = medical(10 + k as u32);
        let before = w.sim.counters(0).await;
        w.sim.faults(0, json!({ fault: 1.0 })).await;
        let (status, p) = d.collect(json!({"serial": serial, "terminal": "T01", "wait_ms": 20_000})).await;
        w.sim.faults(0, json!({ fault: 0.0 })).await;
        assert_eq!(status, 200, "{fault}: {p}");
        assert_approved(&p, fault);
        let after = w.sim.counters(0).await;
        let diff = |ptr: &str| {
            after.pointer(ptr).and_then(Value::as_u64).unwrap() - before.pointer(ptr).and_then(Value::as_u64).unwrap()
        };
        assert_eq!(diff("/engine/sales_approved"), 1, "{fault}: one sale approved at the terminal: {after}");
        assert_eq!(diff("/engine/requests/sale"), 1, "{fault}: one SALE processed at the terminal: {after}");
        assert!(diff(&format!("/faults/{fault}")) >= 1, "{fault} was not exercised: {after}");
        assert_line(d, &serial, p["id"].as_str()).await;
    }
    // The link is still good.
    d.wait_ready(&["T01"]).await;
    d.collect_approved(&medical(20), "T01").await;
    d.assert_consistent().await;
}

/// Faults that leave the outcome unknown, and how each is resolved by the terminal's answer only:
/// never_answer (QUERY after the fault: 25, not charged), approve_drop (approved, found by the QUERY
/// the daemon makes on its own after reconnecting), power_loss (not charged, likewise), a response
/// delayed past money_ms (QUERY: approved).
#[tokio::test]
async fn unknown_outcomes_are_resolved_by_query() {
    let w = World::simple().await;
    let d = &w.daemon;
    let approved = || async { w.sim.counter(0, "/engine/sales_approved").await };

    // never_answer: ACKed, never processed.
    let start = approved().await;
    w.sim.faults(0, json!({"never_answer": 1.0})).await;
    let answer = d.collect(json!({"serial": medical(21), "terminal": "T01", "wait_ms": 4500})).await;
    let id = assert_unknown(&answer, "never_answer");
    let (_, t) = d.get("/v1/terminals").await;
    assert_eq!(t["terminals"][0]["unknown"], 1, "the terminal has one open outcome: {t}");
    let listed = d.payments("state=unknown").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], id.as_str(), "{listed:?}");
    let (status, body) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{id}/void"), &json!({})).await;
    assert_eq!(status, 409, "no void while the outcome is unknown: {body}");
    let (status, again) = d.collect(json!({"serial": medical(21), "terminal": "T01", "wait_ms": 1000})).await;
    assert!(status == 409 || status == 422 || status == 503, "a second payment while one is unknown: {status} {again}");
    assert_eq!(d.line(&medical(21)).await["payments"].as_array().map(Vec::len), Some(1), "no second payment");
    // The terminal answers again: only its word (QUERY: 25) settles the outcome.
    w.sim.faults(0, json!({"never_answer": 0.0})).await;
    let p = d.query_until_final(&id).await;
    assert_eq!(p["state"], "not_charged", "never_answer, then QUERY: {p}");
    assert_line(d, &medical(21), None).await;
    assert_eq!(approved().await, start);

    // approve_drop: approved and stored, the connection dropped before the response.
    w.sim.faults(0, json!({"approve_drop": 1.0})).await;
    let (status, p) = d.collect(json!({"serial": medical(22), "terminal": "T01", "wait_ms": 1500})).await;
    w.sim.faults(0, json!({"approve_drop": 0.0})).await;
    assert!(status == 200 || status == 202, "approve_drop: {status} {p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let p = d.wait_final(&id, BOUND).await;
    assert_approved(&p, "approve_drop");
    assert!(went_through(&p, "unknown"), "approve_drop: the outcome was unknown first: {p}");
    assert_line(d, &medical(22), Some(&id)).await;
    assert_eq!(approved().await, start + 1);
    assert!(w.sim.counter(0, "/faults/approve_drop").await >= 1);

    // power_loss: not stored, the terminal comes back signed out.
    d.wait_ready(&["T01"]).await;
    w.sim.faults(0, json!({"power_loss": 1.0})).await;
    let (status, p) = d.collect(json!({"serial": medical(23), "terminal": "T01", "wait_ms": 1500})).await;
    w.sim.faults(0, json!({"power_loss": 0.0})).await;
    assert!(status == 200 || status == 202, "power_loss: {status} {p}");
    let id = p["id"].as_str().unwrap().to_owned();
    let p = d.wait_final(&id, BOUND).await;
    assert_eq!(p["state"], "not_charged", "power_loss: {p}");
    assert!(went_through(&p, "unknown"), "power_loss: the outcome was unknown first: {p}");
    assert_line(d, &medical(23), None).await;
    assert_eq!(approved().await, start + 1);
    // The daemon signs in again and the line can be collected.
    let p = d.collect_approved(&medical(23), "T01").await;
    assert_line(d, &medical(23), p["id"].as_str()).await;
    assert_eq!(approved().await, start + 2);

    // A response held back beyond money_ms: stored approved at the terminal, unknown at the daemon.
    d.wait_ready(&["T01"]).await;
    w.sim.faults(0, json!({"delay_ms": 6000})).await;
    let answer = d.collect(json!({"serial": medical(24), "terminal": "T01", "wait_ms": 4500})).await;
    w.sim.faults(0, json!({"delay_ms": 0})).await;
    let id = assert_unknown(&answer, "delay_ms 6000");
    let p = d.query_until_final(&id).await;
    assert_approved(&p, "delayed response, then QUERY");
    assert_line(d, &medical(24), Some(&id)).await;
    assert_eq!(approved().await, start + 3);

    d.wait_ready(&["T01"]).await;
    let (status, t) = d.get("/v1/terminals").await;
    assert_eq!(t["terminals"][0]["unknown"], 0, "{status} {t}");
    d.assert_consistent().await;
}

// ---------------------------------------------------------------------------------------------------
// Refusals
// ---------------------------------------------------------------------------------------------------

/// Policy refusals (422 with the rule), refusals by role and point, malformed requests (400 naming the
/// field), 401 and 404: none of them records a payment or sends anything to a terminal.
#[tokio::test]
async fn refusals_record_nothing() {
    let w = World::start(
        SimOptions { terminals: 2, ..SimOptions::default() },
        &[POINT, OTHER_POINT],
        CLOCK,
        Timeouts::default(),
    )
    .await;
    let d = &w.daemon;
    let c = |body: Value| d.collect(body);

    assert_policy(
        &c(json!({"serial": pension(2), "tier": "450", "terminal": "T01"})).await,
        "pension_tier",
        "tier 450",
    );
    assert_policy(
        &c(json!({"serial": pension(2), "tier": "300.50", "terminal": "T01"})).await,
        "pension_tier",
        "tier 300.50",
    );
    assert_policy(
        &c(json!({"serial": medical(30), "amount": "281.00", "terminal": "T01"})).await,
        "medical_amount",
        "medical 281.00",
    );
    assert_policy(
        &c(json!({"serial": dibao(1), "amount": "280.00", "terminal": "T01"})).await,
        "medical_amount",
        "低保 line due 100.00, asked 280.00",
    );
    assert_policy(&c(json!({"serial": TOO_OLD, "tier": "300", "terminal": "T01"})).await, "pension_age", "born 1955");
    assert_policy(
        &c(json!({"serial": TOO_YOUNG, "tier": "300", "terminal": "T01"})).await,
        "pension_age",
        "14 years old",
    );
    // The line of another point (docs/api.md: the line and the terminal must be the caller's point).
    assert_policy(
        &c(json!({"serial": other_point(2), "terminal": "T01"})).await,
        "collection_point",
        "another point's line",
    );
    // A terminal of another point: 403 forbidden; docs/api.md also lists this under the policy rule
    // collection_point, so that answer is taken too.
    let (status, body) = c(json!({"serial": medical(31), "terminal": "T02"})).await;
    assert!(
        status == 403 || (status == 422 && body["rule"] == "collection_point"),
        "a terminal of another point: {status} {body}"
    );
    let (status, body) = c(json!({"serial": medical(31), "terminal": "T99"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found", "{body}");
    assert_eq!(body["what"], "terminal", "{body}");
    let (status, body) = c(json!({"serial": "ZJ-NOSUCH", "terminal": "T01"})).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["code"], "not_found", "{body}");

    // Malformed requests.
    assert_bad_request(&d.post_raw(COLLECTOR, "/v1/collect", "{not json", "application/json").await, None, "not JSON");
    assert_bad_request(
        &c(json!({"serial": pension(2), "tier": "4x0", "terminal": "T01"})).await,
        Some("tier"),
        "tier 4x0",
    );
    assert_bad_request(&c(json!({"serial": medical(30)})).await, Some("terminal"), "no terminal");
    assert_bad_request(&c(json!({"serial": 12, "terminal": "T01"})).await, Some("serial"), "serial a number");
    assert_bad_request(
        &c(json!({"serial": medical(30), "terminal": "T01", "wait_ms": "soon"})).await,
        Some("wait_ms"),
        "wait_ms not a number",
    );
    assert_bad_request(
        &c(json!({"serial": medical(30), "terminal": "T01", "amount": "2x0"})).await,
        Some("amount"),
        "amount 2x0",
    );
    assert_bad_request(&c(json!({"terminal": "T01"})).await, None, "no line named");
    assert_bad_request(
        &c(json!({"id_number": medical_id(30), "terminal": "T01"})).await,
        Some("insurance"),
        "an ID number without the insurance",
    );
    assert_bad_request(&d.get("/v1/payments?state=bogus").await, Some("state"), "a bad state filter");

    // Authentication.
    let (status, body) = d.post_as(None, "/v1/collect", &json!({"serial": medical(30), "terminal": "T01"})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "unauthorized", "{body}");
    let (status, body) =
        d.post_as(Some("no-such-token"), "/v1/collect", &json!({"serial": medical(30), "terminal": "T01"})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = d.get_as(None, "/v1/payments").await;
    assert_eq!(status, 401, "{body}");
    // Admin-only: the imports.
    let (status, body) = d.post_raw(COLLECTOR, "/v1/imports/roster?format=csv", &roster_csv(), "text/csv").await;
    assert_eq!(status, 403, "a collector importing: {body}");
    assert_eq!(body["code"], "forbidden", "{body}");
    let (status, body) = d.get_as(None, "/v1/health").await;
    assert_eq!(status, 200, "health needs no token: {body}");
    let (status, body) = d.get("/v1/payments/P20201021000000-NOSUCH").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["what"], "payment", "{body}");

    // Nothing was recorded, nothing reached a terminal.
    assert_eq!(d.payments("").await, Vec::<Value>::new());
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 0);
    assert_eq!(w.sim.counter(1, "/engine/requests/sale").await, 0);

    // Already paid: the same line twice.
    let p = d.collect_approved(&medical(32), "T01").await;
    assert_policy(&c(json!({"serial": medical(32), "terminal": "T01"})).await, "already_paid", "paid twice");
    assert_line(d, &medical(32), p["id"].as_str()).await;
    assert_eq!(d.payments("").await.len(), 1);
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 1);
    d.assert_consistent().await;
}

/// Outside the collection phase (2020-12-05 is in the summary phase, which takes no payments): 422
/// window.
#[tokio::test]
async fn outside_the_collection_phase_is_refused() {
    let w = World::start(SimOptions::default(), &[POINT], "2020-12-05T09:00:00+08:00", Timeouts::default()).await;
    let d = &w.daemon;
    assert_policy(&d.collect(json!({"serial": medical(1), "terminal": "T01"})).await, "window", "2020-12-05");
    assert_policy(
        &d.collect(json!({"serial": pension(1), "tier": "300", "terminal": "T01"})).await,
        "window",
        "2020-12-05 pension",
    );
    assert_line(d, &medical(1), None).await;
    assert_eq!(d.payments("").await.len(), 0);
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 0);
}

// ---------------------------------------------------------------------------------------------------
// Void, refund, settlement
// ---------------------------------------------------------------------------------------------------

/// An approved payment voided in the open batch: the payment is voided, the reversal approved with
/// its own reference, the line unpaid again and collectable.
#[tokio::test]
async fn void_frees_the_line() {
    let w = World::simple().await;
    let d = &w.daemon;
    let p = d.collect_approved(&medical(40), "T01").await;
    let id = p["id"].as_str().unwrap().to_owned();

    // Not by a collector of another point.
    let (status, body) = d.post_as(Some(OTHER), &format!("/v1/payments/{id}/void"), &json!({})).await;
    assert_eq!(status, 403, "a void from another point: {body}");
    let (status, asked) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{id}/query"), &json!({})).await;
    assert_eq!(status, 200, "QUERY of an approved payment: {asked}");
    assert!(is_approved(&asked), "QUERY of an approved payment changes nothing: {asked}");
    let (status, body) =
        d.post_as(Some(COLLECTOR), &format!("/v1/payments/{id}/void"), &json!({"wait_ms": 20_000})).await;
    assert_eq!(status, 200, "void: {body}");
    assert_eq!(body["payment"]["state"], "voided", "{body}");
    assert_eq!(body["payment"]["final"], true, "{body}");
    let reversal = &body["reversal"];
    assert_eq!(reversal["kind"], "void", "{body}");
    assert_eq!(reversal["state"], "approved", "{body}");
    assert_eq!(reversal["id"], format!("{id}-V1"), "{body}");
    assert_eq!(reversal["amount"], "280.00", "{body}");
    assert_eq!(reversal["pos"]["code"], "00", "{body}");
    assert_eq!(body["payment"]["reversals"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(w.sim.counter(0, "/engine/voids_approved").await, 1);
    assert_line(d, &medical(40), None).await;

    // Asking the terminal about it again changes nothing.
    let (status, asked) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{id}/query"), &json!({})).await;
    assert_eq!((status, &asked["state"]), (200, &json!("voided")), "QUERY of a voided payment: {asked}");
    // Not twice.
    let (status, again) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{id}/void"), &json!({})).await;
    assert_eq!(status, 409, "a second void: {again}");
    assert_eq!(w.sim.counter(0, "/engine/requests/void").await, 1);

    // The line is collected again.
    let p = d.collect_approved(&medical(40), "T01").await;
    assert_line(d, &medical(40), p["id"].as_str()).await;
    d.assert_consistent().await;
}

/// A terminal that approves another amount than asked (280.00 asked, 281.00 approved): the daemon
/// voids that approval on its own (`-A1`, for the amount the terminal approved), the payment ends
/// `voided` with a message naming both amounts, the line stays unpaid and is collected again normally,
/// and the batch settles balanced with the wrong sale and its void in it.
#[tokio::test]
async fn an_approval_of_another_amount_is_voided_automatically() {
    let w = World::simple().await;
    let d = &w.daemon;
    let serial = medical(46);
    w.sim.next_sale_approved_for(0, 28_100).await;
    let (status, first) = d.collect(json!({"serial": serial, "terminal": "T01", "wait_ms": 20_000})).await;
    assert!(status == 200 || status == 202, "collect with an approval of another amount: {status} {first}");
    let id = first["id"].as_str().unwrap_or_else(|| panic!("no payment id: {first}")).to_owned();
    assert_eq!(first["amount"], "280.00", "{first}");
    assert!(
        !(first["state"] == "approved" && first["final"] == true),
        "an approval of another amount never stands approved and final: {first}"
    );

    let p = d.wait_final(&id, BOUND).await;
    assert_eq!(p["state"], "voided", "{p}");
    assert_eq!(p["final"], true, "{p}");
    assert_eq!(p["amount"], "280.00", "the amount asked: {p}");
    assert!(went_through(&p, "approved"), "approved by the terminal first: {p}");
    let message = p["message"].as_str().unwrap_or_default();
    for words in ["281.00", "280.00", "automatically"] {
        assert!(message.contains(words), "the message names {words:?}: {message:?} in {p}");
    }
    let reversals = p["reversals"].as_array().unwrap_or_else(|| panic!("no reversals: {p}"));
    assert_eq!(reversals.len(), 1, "one automatic reversal: {p}");
    let r = &reversals[0];
    assert_eq!(r["id"], format!("{id}-A1"), "{p}");
    assert_eq!(r["kind"], "void", "{p}");
    assert_eq!(r["state"], "approved", "{p}");
    assert_eq!(r["pos"]["code"], "00", "{p}");
    assert_eq!(r["amount"], "281.00", "the void takes back what the terminal approved: {p}");
    assert_line(d, &serial, None).await;

    // The terminal: one sale approved (for 281.00), one void approved.
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 1);
    assert_eq!(w.sim.counter(0, "/engine/voids_approved").await, 1);
    assert_eq!(w.sim.counter(0, "/engine/voids_refused").await, 0);
    assert_eq!(w.sim.counter(0, "/engine/requests/void").await, 1);

    // The line is collected again, normally.
    let again = d.collect_approved(&serial, "T01").await;
    assert_eq!(again["pos"]["amount"], "280.00", "{again}");
    assert_line(d, &serial, again["id"].as_str()).await;

    // The batch: 2 sales (the wrong one included) and its void, on both sides.
    let (status, s) = d.post_as(Some(COLLECTOR), "/v1/terminals/T01/settle", &json!({})).await;
    assert_eq!(status, 200, "settle: {s}");
    let totals = json!({"sale_count": 2, "sale_total": "561.00", "void_count": 1, "void_total": "281.00",
                        "refund_count": 0, "refund_total": "0.00"});
    assert_eq!(s["terminal_totals"], totals, "{s}");
    assert_eq!(s["journal_totals"], totals, "{s}");
    assert_eq!(s["balanced"], true, "{s}");
    assert_eq!(s["differences"], json!([]), "{s}");
    d.assert_consistent().await;
}

/// A sale whose outcome the daemon does not know, voided on the terminal itself while the daemon was
/// down: after the restart the daemon's QUERY finds it voided, and records the payment `voided` with the
/// terminal's reversal (`-T1`). How: the card is presented with approve_drop (approved and stored, the
/// connection dropped) and never_answer (the daemon's sign-in after reconnecting is never answered), so
/// the payment stays `unknown`; the daemon is killed; a VOID is sent straight to the simulator's TCP port
/// with its own reference, after a QUERY that tells its trace.
#[tokio::test]
async fn a_sale_voided_on_the_terminal_while_the_daemon_was_down_is_recorded_voided() {
    let sim = SimOptions { card_delay_ms: 60_000, ..SimOptions::default() };
    let timeouts = Timeouts { money_ms: 60_000, ..Timeouts::default() };
    let mut w = World::start(sim, &[POINT], CLOCK, timeouts).await;
    let serial = medical(47);
    let (status, p) = w.daemon.collect(json!({"serial": serial, "terminal": "T01", "wait_ms": 300})).await;
    assert_eq!(status, 202, "the SALE waits at the card: {p}");
    let id = p["id"].as_str().unwrap().to_owned();
    w.daemon.wait_state(&id, "sent").await;

    // The card is presented: approved and stored, the connection dropped before the response; the
    // daemon's requests from then on are never answered, so it cannot learn the outcome.
    w.sim.faults(0, json!({"approve_drop": 1.0, "never_answer": 1.0})).await;
    w.sim.card_delay(0, 0).await;
    w.sim.wait_counter(0, "/faults/approve_drop", 1).await;
    let p = w.daemon.wait_state(&id, "unknown").await;
    assert_eq!(p["final"], false, "{p}");
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 1);

    w.daemon.kill().await;
    w.sim.faults(0, json!({"approve_drop": 0.0, "never_answer": 0.0})).await;
    // Nobody holds the line now: at the terminal, the sale is voided with its own reference.
    let answers = direct_exchange(&w.sim.endpoints[0], vec![sign_in_request("601"), query_request("602", &id)]).await;
    assert_eq!(answers[0]["code"], "00", "direct SIGN_IN: {}", answers[0]);
    let found = &answers[1];
    assert_eq!(found["code"], "00", "direct QUERY: {found}");
    assert_eq!(found["amount_fen"], 28_000, "direct QUERY: {found}");
    let trace = found["trace"].as_str().unwrap_or_else(|| panic!("no trace: {found}")).to_owned();
    assert_ne!(trace, "000000", "an approved sale has a trace: {found}");
    let answers =
        direct_exchange(&w.sim.endpoints[0], vec![void_request("603", 28_000, &trace, "KEYPAD-VOID-1")]).await;
    assert_eq!(answers[0]["code"], "00", "direct VOID: {}", answers[0]);
    assert_eq!(w.sim.counter(0, "/engine/voids_approved").await, 1);

    let d = Daemon::start(&w.config).await;
    d.wait_final(&id, BOUND).await;
    // The daemon records the QUERY's answer as the approval first and the terminal's void right after
    // (collect/reversal.rs, record_terminal_reversal): in between, for a moment, the payment reads
    // approved and final with its `-T1` reversal `created`. Wait for the end state.
    let p = d.wait_state(&id, "voided").await;
    assert_eq!(p["final"], true, "{p}");
    assert!(went_through(&p, "unknown"), "unknown until the QUERY: {p}");
    let reversals = p["reversals"].as_array().unwrap_or_else(|| panic!("no reversals: {p}"));
    assert_eq!(reversals.len(), 1, "the terminal's void, recorded: {p}");
    let r = &reversals[0];
    assert_eq!(r["id"], format!("{id}-T1"), "{p}");
    assert_eq!(r["kind"], "void", "{p}");
    assert_eq!(r["state"], "approved", "{p}");
    assert_eq!(r["amount"], "280.00", "{p}");
    let notes: Vec<&str> = p["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {p}"))
        .iter()
        .filter_map(|h| h["note"].as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.contains("voided on the terminal") || n.contains("void on the terminal")),
        "a note says the sale was voided on the terminal: {notes:?} in {p}"
    );
    assert_line(&d, &serial, None).await;
    assert_eq!(w.sim.counter(0, "/engine/requests/sale").await, 1, "one SALE reached the terminal");
    assert_eq!(w.sim.counter(0, "/engine/requests/void").await, 1, "the daemon sent no VOID of its own");

    d.wait_ready(&["T01"]).await;
    let (status, s) = d.post_as(Some(ADMIN), "/v1/terminals/T01/settle", &json!({})).await;
    assert_eq!(status, 200, "settle: {s}");
    let totals = json!({"sale_count": 1, "sale_total": "280.00", "void_count": 1, "void_total": "280.00",
                        "refund_count": 0, "refund_total": "0.00"});
    assert_eq!(s["terminal_totals"], totals, "{s}");
    assert_eq!(s["journal_totals"], totals, "{s}");
    assert_eq!(s["balanced"], true, "{s}");
    d.assert_consistent().await;
}

/// Settlement of a batch with 2 approved sales, 1 declined and 1 voided: balanced, gross totals (3
/// sales including the voided one, 1 void). Then a refund of a payment of that closed batch, and the
/// next batch settles with it.
#[tokio::test]
async fn settlement_balances_then_refund() {
    let w = World::simple().await;
    let d = &w.daemon;
    let a = d.collect_approved(&medical(41), "T01").await;
    let b = d.collect_approved(&dibao(1), "T01").await;
    assert_eq!(b["amount"], "100.00", "{b}");
    w.sim.next_sale(0, "05").await;
    let (status, c) = d.collect(json!({"serial": medical(42), "terminal": "T01", "wait_ms": 20_000})).await;
    assert_eq!((status, &c["state"]), (200, &json!("declined")), "{c}");
    let v = d.collect_approved(&medical(43), "T01").await;
    let (status, body) =
        d.post_as(Some(COLLECTOR), &format!("/v1/payments/{}/void", v["id"].as_str().unwrap()), &json!({})).await;
    assert_eq!((status, &body["payment"]["state"]), (200, &json!("voided")), "{body}");

    // A refund in the open batch is not what REFUND is for (the terminal answers 25, 当批交易请撤销).
    let a_id = a["id"].as_str().unwrap().to_owned();

    let (status, s) = d.post_as(Some(COLLECTOR), "/v1/terminals/T01/settle", &json!({})).await;
    assert_eq!(status, 200, "settle: {s}");
    let totals = json!({"sale_count": 3, "sale_total": "660.00", "void_count": 1, "void_total": "280.00",
                        "refund_count": 0, "refund_total": "0.00"});
    assert_eq!(s["balanced"], true, "{s}");
    assert_eq!(s["terminal_totals"], totals, "{s}");
    assert_eq!(s["journal_totals"], totals, "{s}");
    assert_eq!(s["differences"], json!([]), "{s}");
    assert_eq!(s["terminal"], "T01", "{s}");
    assert_eq!(s["terminal_id"], "41000001", "{s}");
    let first_batch = s["batch"].clone();
    assert_eq!(w.sim.counter(0, "/engine/settlements").await, 1);

    // Refund of A, now in a closed batch.
    let (status, body) = d
        .post_as(
            Some(COLLECTOR),
            &format!("/v1/payments/{a_id}/refund"),
            &json!({"amount": "280.00", "wait_ms": 20_000}),
        )
        .await;
    assert_eq!(status, 200, "refund: {body}");
    assert_eq!(body["payment"]["state"], "refunded", "{body}");
    assert_eq!(body["reversal"]["kind"], "refund", "{body}");
    assert_eq!(body["reversal"]["state"], "approved", "{body}");
    assert_eq!(body["reversal"]["id"], format!("{a_id}-R1"), "{body}");
    assert_eq!(w.sim.counter(0, "/engine/refunds_approved").await, 1);
    // A refunded payment is neither voided nor refunded again.
    let (status, again) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{a_id}/refund"), &json!({})).await;
    assert_eq!(status, 409, "{again}");
    let (status, again) = d.post_as(Some(COLLECTOR), &format!("/v1/payments/{a_id}/void"), &json!({})).await;
    assert_eq!(status, 409, "{again}");
    // A refund of B with the wrong amount is refused before anything is sent.
    let (status, wrong) = d
        .post_as(
            Some(COLLECTOR),
            &format!("/v1/payments/{}/refund", b["id"].as_str().unwrap()),
            &json!({"amount": "50.00"}),
        )
        .await;
    assert!(status == 400 || status == 409 || status == 422, "a partial refund: {status} {wrong}");
    assert_eq!(w.sim.counter(0, "/engine/requests/refund").await, 1);

    let (status, s) = d.post_as(Some(COLLECTOR), "/v1/terminals/T01/settle", &json!({})).await;
    assert_eq!(status, 200, "second settle: {s}");
    let totals = json!({"sale_count": 0, "sale_total": "0.00", "void_count": 0, "void_total": "0.00",
                        "refund_count": 1, "refund_total": "280.00"});
    assert_eq!(s["balanced"], true, "{s}");
    assert_eq!(s["terminal_totals"], totals, "{s}");
    assert_eq!(s["journal_totals"], totals, "{s}");
    assert_ne!(s["batch"], first_batch, "{s}");

    let (status, list) = d.get("/v1/settlements?terminal=T01").await;
    assert_eq!(status, 200, "{list}");
    let list = list["settlements"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["batch"], s["batch"], "newest first: {list:?}");
    d.assert_consistent().await;
}

/// A terminal that approved a sale the journal does not know: settlement is not balanced and lists the
/// differences. How: the daemon is stopped (SIGKILL), a SALE is sent straight to the simulator's TCP
/// port over the wire protocol (as a second cash register would; nobody else holds the line, so there
/// is no race with the daemon's reconnects), and the daemon is started again on the same journal.
#[tokio::test]
async fn settlement_lists_a_sale_the_journal_does_not_know() {
    let mut w = World::simple().await;
    let p = w.daemon.collect_approved(&medical(50), "T01").await;
    assert_eq!(p["amount"], "280.00");

    w.daemon.kill().await;
    let answers = direct_exchange(
        &w.sim.endpoints[0],
        vec![sign_in_request("501"), sale_request("502", 28_000, "OUTSIDE-THE-JOURNAL-1")],
    )
    .await;
    assert_eq!(answers[0]["code"], "00", "direct SIGN_IN: {}", answers[0]);
    assert_eq!(answers[1]["code"], "00", "direct SALE: {}", answers[1]);
    assert_eq!(w.sim.counter(0, "/engine/sales_approved").await, 2);

    let restarted = Daemon::start(&w.config).await;
    restarted.wait_ready(&["T01"]).await;
    let (status, s) = restarted.post_as(Some(ADMIN), "/v1/terminals/T01/settle", &json!({})).await;
    assert_eq!(status, 200, "settle: {s}");
    assert_eq!(s["balanced"], false, "{s}");
    assert_eq!(s["terminal_totals"]["sale_count"], 2, "{s}");
    assert_eq!(s["terminal_totals"]["sale_total"], "560.00", "{s}");
    assert_eq!(s["journal_totals"]["sale_count"], 1, "{s}");
    assert_eq!(s["journal_totals"]["sale_total"], "280.00", "{s}");
    let differences = s["differences"].as_array().unwrap_or_else(|| panic!("{s}"));
    assert!(differences.contains(&json!({"what": "sale_count", "terminal": "2", "journal": "1"})), "differences: {s}");
    assert!(
        differences.contains(&json!({"what": "sale_total", "terminal": "560.00", "journal": "280.00"})),
        "differences: {s}"
    );
    assert_eq!(differences.len(), 2, "only the sales differ: {s}");
    // The journal's payment stands as it was.
    let again = restarted.payment(p["id"].as_str().unwrap(), None).await;
    assert!(is_approved(&again), "{again}");
    restarted.assert_consistent().await;
}

/// SETTLE does not close a batch over an open question: with an outcome the terminal does not answer
/// about, the settlement is refused (409 outcome_unknown; or 503 while the link is re-established) and
/// no SETTLE reaches the terminal. Once the terminal answers, the unknown payment is resolved first and
/// the batch settles balanced.
#[tokio::test]
async fn settlement_is_not_closed_over_an_unknown_outcome() {
    let w = World::simple().await;
    let d = &w.daemon;
    d.collect_approved(&medical(44), "T01").await;
    w.sim.faults(0, json!({"never_answer": 1.0})).await;
    let answer = d.collect(json!({"serial": medical(45), "terminal": "T01", "wait_ms": 4500})).await;
    let id = assert_unknown(&answer, "never_answer");
    let (status, body) = d.post_as(Some(COLLECTOR), "/v1/terminals/T01/settle", &json!({})).await;
    assert!(
        (status == 409 && body["reason"] == "outcome_unknown") || status == 503,
        "settle over an unknown outcome: {status} {body}"
    );
    assert_eq!(w.sim.counter(0, "/engine/settlements").await, 0, "no SETTLE was sent");
    w.sim.faults(0, json!({"never_answer": 0.0})).await;

    let deadline = std::time::Instant::now() + BOUND;
    let s = loop {
        let (status, s) = d.post_as(Some(COLLECTOR), "/v1/terminals/T01/settle", &json!({})).await;
        if status == 200 {
            break s;
        }
        assert!(status == 503 || status == 409, "settle once the terminal answers: {status} {s}");
        assert!(std::time::Instant::now() < deadline, "no settlement within {BOUND:?}: {status} {s}");
        d.wait_ready(&["T01"]).await;
    };
    assert_eq!(s["balanced"], true, "{s}");
    assert_eq!(s["terminal_totals"]["sale_count"], 1, "{s}");
    assert_eq!(s["terminal_totals"]["sale_total"], "280.00", "{s}");
    assert_eq!(d.payment(&id, None).await["state"], "not_charged");
    assert_eq!(w.sim.counter(0, "/engine/settlements").await, 1);
    d.assert_consistent().await;
}

/// A terminal that is gone: 503 terminal_unavailable, nothing recorded.
#[tokio::test]
async fn a_terminal_that_is_down_is_refused_with_503() {
    let mut w = World::simple().await;
    w.sim.kill().await;
    let d = &w.daemon;
    let deadline = std::time::Instant::now() + BOUND;
    loop {
        let (status, t) = d.get("/v1/terminals").await;
        assert_eq!(status, 200, "{t}");
        if t["terminals"][0]["state"] != "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "T01 still ready {BOUND:?} after the terminal went: {t}");
        tokio::time::sleep(POLL).await;
    }
    let (status, body) = d.collect(json!({"serial": medical(1), "terminal": "T01", "wait_ms": 5000})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "terminal_unavailable", "{body}");
    assert_eq!(d.payments("").await.len(), 0, "nothing was recorded");
    assert_line(d, &medical(1), None).await;
}

//! The tax-ledger simulator against ledger-api.md, over real HTTP on loopback.
//!
//! Requests are signed here with our own HMAC code, so the server's check is tested independently.
//! Servers listen on port 0 and are ready when `LedgerSim::start` returns; no test sleeps or asserts on
//! measured durations. Where an answer must NOT come (a slow answer, a connection beyond the bound),
//! the test gives up after a while: a correct server never answers, so that cannot fail spuriously.

// Tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zhengjiao_simulator::ledger::{
    LedgerConfig, LedgerCounters, LedgerFaults, LedgerHandle, LedgerSim, Secret, StartError, StoredEntry, Summary,
};

const KEY_ID: &str = "weidong-01";
const SECRET: &str = "correct horse battery staple";
/// A GB 11643 number with a correct check digit.
const PAYER_ID: &str = "11010519491231002X";
/// Another valid one.
const OTHER_PAYER_ID: &str = "110105198001010016";

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client of the contract: signs `<timestamp>\n<METHOD>\n<path>\n<body>` (path without query).
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    key_id: String,
    secret: Vec<u8>,
}

impl Client {
    fn new(ledger: &LedgerHandle) -> Client {
        Client::with_key(ledger, KEY_ID, SECRET)
    }

    fn with_key(ledger: &LedgerHandle, key_id: &str, secret: &str) -> Client {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        Client { http, base: ledger.url(), key_id: key_id.into(), secret: secret.as_bytes().to_vec() }
    }

    fn sign(&self, timestamp: i64, method: &Method, path: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).unwrap();
        mac.update(format!("{timestamp}\n{method}\n{path}\n").as_bytes());
        mac.update(body);
        hex(&mac.finalize().into_bytes())
    }

    /// A signed request, to send as it is or after adjusting it (a timeout, say).
    fn request(&self, timestamp: i64, method: Method, target: &str, body: Vec<u8>) -> reqwest::RequestBuilder {
        let path = target.split('?').next().unwrap();
        let signature = self.sign(timestamp, &method, path, &body);
        let mut request = self
            .http
            .request(method.clone(), format!("{}{target}", self.base))
            .header("X-ZJ-Key-Id", &self.key_id)
            .header("X-ZJ-Timestamp", timestamp.to_string())
            .header("X-ZJ-Signature", signature);
        if method == Method::POST {
            request = request.header("Content-Type", "application/json; charset=utf-8").body(body);
        }
        request
    }

    async fn send_at(
        &self,
        timestamp: i64,
        method: Method,
        target: &str,
        body: Vec<u8>,
    ) -> reqwest::Result<reqwest::Response> {
        self.request(timestamp, method, target, body).send().await
    }

    async fn send(&self, method: Method, target: &str, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
        self.send_at(unix_now(), method, target, body).await
    }

    /// POSTs raw bytes to /v1/entries; the status and the JSON answer.
    async fn post_raw(&self, body: Vec<u8>) -> (StatusCode, Value) {
        let response = self.send(Method::POST, "/v1/entries", body).await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn post(&self, entries: &[Value]) -> (StatusCode, Value) {
        self.post_raw(serde_json::to_vec(&json!({ "entries": entries })).unwrap()).await
    }

    /// POSTs entries that must all be answered; their results.
    async fn submit(&self, entries: &[Value]) -> Vec<Value> {
        let (status, answer) = self.post(entries).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let results = answer["results"].as_array().unwrap().clone();
        assert_eq!(results.len(), entries.len());
        for (result, entry) in results.iter().zip(entries) {
            assert_eq!(result["entry_id"], entry["entry_id"], "results keep request order");
        }
        results
    }

    async fn get(&self, target: &str) -> (StatusCode, Value) {
        let response = self.send(Method::GET, target, Vec::new()).await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn control(&self, method: Method, target: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{target}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }
}

async fn start() -> LedgerHandle {
    LedgerSim::start(LedgerConfig::new(KEY_ID, Secret::new(SECRET))).await.unwrap()
}

async fn start_with(faults: LedgerFaults, seed: u64) -> LedgerHandle {
    let mut config = LedgerConfig::new(KEY_ID, Secret::new(SECRET));
    config.faults = faults;
    config.seed = seed;
    LedgerSim::start(config).await.unwrap()
}

/// A POS pension payment of 280.00 at WD001 on 2020-10-21 10:15:30 (UTC+8).
fn payment(id: &str) -> Value {
    json!({
        "entry_id": id,
        "kind": "payment",
        "reverses": null,
        "collection_serial": "WD2020-000001",
        "insurance": "pension",
        "year": 2020,
        "payer_id": PAYER_ID,
        "payer_name": "张三",
        "amount": "280.00",
        "channel": "pos",
        "collection_point": "WD001",
        "collector": "0101",
        "terminal_id": "12345678",
        "merchant_id": "898330148160001",
        "batch": "000001",
        "trace": "000123",
        "rrn": "201021123456",
        "auth_code": "A1B2C3",
        "card_masked": "622202******1234",
        "occurred_at": "2020-10-21T10:15:30+08:00",
    })
}

fn cash_payment(id: &str) -> Value {
    let mut entry = payment(id);
    for field in ["terminal_id", "merchant_id", "batch", "trace", "rrn", "auth_code", "card_masked"] {
        entry[field] = Value::Null;
    }
    entry["channel"] = json!("cash");
    entry
}

/// A void of `payment`, for its whole amount.
fn reversal(id: &str, payment: &Value) -> Value {
    let mut entry = payment.clone();
    entry["entry_id"] = json!(id);
    entry["kind"] = json!("reversal");
    entry["reverses"] = payment["entry_id"].clone();
    entry["trace"] = json!("000124");
    entry
}

fn with(mut entry: Value, field: &str, value: Value) -> Value {
    entry[field] = value;
    entry
}

fn assert_result(result: &Value, status: &str, reason: Option<&str>) {
    assert_eq!(result["status"], status, "{result}");
    assert_eq!(result["reason"].as_str(), reason, "{result}");
}

fn voucher(result: &Value) -> String {
    let voucher = result["tax_voucher_no"].as_str().unwrap().to_owned();
    assert!(voucher.len() == 20 && voucher.bytes().all(|b| b.is_ascii_digit()), "{voucher}");
    voucher
}

#[tokio::test]
async fn created_then_exists_with_the_same_voucher() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let first = client.submit(&[payment("p-1")]).await;
    assert_result(&first[0], "created", None);
    let again = client.submit(&[payment("p-1")]).await;
    assert_result(&again[0], "exists", None);
    assert_eq!(voucher(&again[0]), voucher(&first[0]));

    // An absent nullable field is the same content as null.
    let mut sparse = payment("p-1");
    sparse.as_object_mut().unwrap().remove("reverses");
    assert_result(&client.submit(&[sparse]).await[0], "exists", None);

    let counters = ledger.counters();
    assert_eq!((counters.entries_created, counters.entries_exists), (1, 2));
    assert_eq!(ledger.entry_count().await.unwrap(), 1);
    ledger.shutdown().await;
}

#[tokio::test]
async fn an_id_reused_with_other_content_is_refused() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    client.submit(&[payment("p-1")]).await;
    let results = client.submit(&[with(payment("p-1"), "amount", json!("380.00"))]).await;
    assert_result(&results[0], "rejected", Some("exists_with_different_content"));
    assert!(results[0]["tax_voucher_no"].is_null());
    let (_, stored) = client.get("/v1/entries/p-1").await;
    assert_eq!(stored["entry"]["amount"], "280.00");
    assert_eq!(ledger.counters().entries_conflicting, 1);
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_reversal_of_an_unknown_payment_is_refused() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let results = client.submit(&[reversal("r-1", &payment("never-sent"))]).await;
    assert_result(&results[0], "rejected", Some("reversal_of_unknown_entry"));
    assert_eq!(client.get("/v1/entries/r-1").await.0, StatusCode::NOT_FOUND);

    // A reversal cannot reverse a reversal either.
    client.submit(&[payment("p-1"), reversal("r-2", &payment("p-1"))]).await;
    let results = client.submit(&[reversal("r-3", &reversal("r-2", &payment("p-1")))]).await;
    assert_result(&results[0], "rejected", Some("reversal_of_unknown_entry"));
    ledger.shutdown().await;
}

#[tokio::test]
async fn reversals_after_their_payment() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let p1 = payment("p-1");
    let p2 = with(payment("p-2"), "collection_serial", json!("WD2020-000002"));
    // Payment and its void in one request, in that order; a void before its payment is unknown.
    let results = client.submit(&[reversal("r-2", &p2), p1.clone(), reversal("r-1", &p1), p2.clone()]).await;
    assert_result(&results[0], "rejected", Some("reversal_of_unknown_entry"));
    assert_result(&results[1], "created", None);
    assert_result(&results[2], "created", None);
    assert_result(&results[3], "created", None);
    assert_ne!(voucher(&results[1]), voucher(&results[2]));

    // A second void of the same payment would cancel more than it paid.
    let results = client.submit(&[reversal("r-1b", &p1)]).await;
    assert_result(&results[0], "rejected", Some("reversal_exceeds_payment"));
    // Partial refunds are fine up to the amount paid.
    let refund = |id: &str, amount: &str| with(reversal(id, &p2), "amount", json!(amount));
    let results = client.submit(&[refund("r-2a", "200.00"), refund("r-2b", "80.00"), refund("r-2c", "0.01")]).await;
    assert_result(&results[0], "created", None);
    assert_result(&results[1], "created", None);
    assert_result(&results[2], "rejected", Some("reversal_exceeds_payment"));
    // A reversal must be of the same payer and line.
    let other_payer = with(reversal("r-x", &payment("p-3")), "payer_id", json!(OTHER_PAYER_ID));
    let results = client.submit(&[payment("p-3"), other_payer]).await;
    assert_result(&results[1], "rejected", Some("reversal_mismatch:payer_id"));
    ledger.shutdown().await;
}

#[tokio::test]
async fn invalid_fields_are_named() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let p = payment;
    let cases: Vec<(Value, &str)> = vec![
        (with(p("x"), "entry_id", json!("")), "entry_id"),
        (with(p("x"), "entry_id", json!("a".repeat(65))), "entry_id"),
        (with(p("bad-kind"), "kind", json!("refund")), "kind"),
        (with(p("payment-reversing"), "reverses", json!("p-0")), "reverses"),
        (with(p("bad-serial"), "collection_serial", json!("")), "collection_serial"),
        (with(p("bad-insurance"), "insurance", json!("dental")), "insurance"),
        (with(p("year-as-text"), "year", json!("2020")), "year"),
        (with(p("bad-check-digit"), "payer_id", json!("110105194912310021")), "payer_id"),
        (with(p("short-id"), "payer_id", json!("11010519491231002")), "payer_id"),
        (with(p("no-name"), "payer_name", json!("")), "payer_name"),
        (with(p("no-decimals"), "amount", json!("280")), "amount"),
        (with(p("one-decimal"), "amount", json!("280.0")), "amount"),
        (with(p("negative"), "amount", json!("-1.00")), "amount"),
        (with(p("zero"), "amount", json!("0.00")), "amount"),
        (with(p("number"), "amount", json!(280.0)), "amount"),
        (with(p("bad-channel"), "channel", json!("card")), "channel"),
        (with(p("no-point"), "collection_point", Value::Null), "collection_point"),
        (with(p("pos-without-terminal"), "terminal_id", Value::Null), "terminal_id"),
        (with(cash_payment("cash-with-rrn"), "rrn", json!("201021123456")), "rrn"),
        (with(p("bad-trace"), "trace", json!("12345")), "trace"),
        (with(p("full-pan"), "card_masked", json!("6222021234567891234")), "card_masked"),
        (with(p("no-offset"), "occurred_at", json!("2020-10-21T10:15:30")), "occurred_at"),
        (with(p("not-rfc3339"), "occurred_at", json!("2020-10-21 10:15")), "occurred_at"),
        (with(p("extra-field"), "note", json!("hello")), "note"),
    ];
    let mut entries: Vec<Value> = cases.iter().map(|(entry, _)| entry.clone()).collect();
    entries.push(cash_payment("fine"));
    let results = client.submit(&entries).await;
    for (result, (_, field)) in results.iter().zip(&cases) {
        assert_result(result, "rejected", Some(&format!("invalid_field:{field}")));
    }
    assert_result(&results[cases.len()], "created", None);
    assert_eq!(ledger.entry_count().await.unwrap(), 1);

    // Without an entry_id string, the result's entry_id is null; its place still tells which it is.
    let mut anonymous = payment("x");
    anonymous.as_object_mut().unwrap().remove("entry_id");
    let (status, answer) = client.post(&[anonymous]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(answer["results"][0]["entry_id"].is_null());
    assert_result(&answer["results"][0], "rejected", Some("invalid_field:entry_id"));
    ledger.shutdown().await;
}

#[tokio::test]
async fn bad_signatures_get_401_and_process_nothing() {
    let ledger = start().await;
    let body = serde_json::to_vec(&json!({ "entries": [payment("p-1")] })).unwrap();
    let good = Client::new(&ledger);
    // Offsets from the clock, read afresh for each request; stale ones are well beyond the 300 s
    // window, so a clock tick between signing and checking cannot bring them back within it.
    let attempts = [
        (Client::with_key(&ledger, KEY_ID, "wrong secret"), 0),
        (Client::with_key(&ledger, "unknown-key", SECRET), 0),
        (good.clone(), -310),
        (good.clone(), 310),
    ];
    for (client, offset) in &attempts {
        let timestamp = unix_now() + offset;
        let response = client.send_at(timestamp, Method::POST, "/v1/entries", body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "unauthorized");
    }
    // A signature over another path does not pass.
    let now = unix_now();
    let response = good
        .http
        .post(format!("{}/v1/entries", good.base))
        .header("X-ZJ-Key-Id", KEY_ID)
        .header("X-ZJ-Timestamp", now.to_string())
        .header("X-ZJ-Signature", good.sign(now, &Method::POST, "/v1/other", &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // Nor does a request without the headers.
    let response = good.http.post(format!("{}/v1/entries", good.base)).body(body.clone()).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // GETs are signed too.
    let response = attempts[0].0.send(Method::GET, "/v1/entries/p-1", Vec::new()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    assert_eq!(ledger.entry_count().await.unwrap(), 0);
    assert_eq!(ledger.counters().unauthorized, 7);
    assert_eq!(ledger.counters().entries_rejected, 0);
    // Within the window is fine, either way.
    for offset in [-290, 290] {
        let response = good.send_at(unix_now() + offset, Method::POST, "/v1/entries", body.clone()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{offset}");
    }
    ledger.shutdown().await;
}

#[tokio::test]
async fn at_most_500_entries_per_request() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let entries: Vec<Value> = (0..501).map(|i| payment(&format!("p-{i}"))).collect();
    let (status, answer) = client.post(&entries).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"], "too_many_entries");
    assert_eq!(ledger.entry_count().await.unwrap(), 0);

    let results = client.submit(&entries[..500]).await;
    assert!(results.iter().all(|r| r["status"] == "created"));
    assert_eq!(ledger.entry_count().await.unwrap(), 500);

    // A body over the byte limit is refused before anything is read into an entry.
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let (status, answer) = client.post_raw(huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer["error"], "body_too_large");
    ledger.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_400_with_a_reason() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let bodies: [&[u8]; 7] = [
        b"not json",
        b"{\"entries\": []}",
        b"{\"entries\": 5}",
        b"{\"entries\": [1]}",
        b"{\"entries\": [{}], \"extra\": true}",
        b"[]",
        b"",
    ];
    for body in bodies {
        let (status, answer) = client.post_raw(body.to_vec()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        assert_eq!(answer["error"], "malformed_body");
        assert!(!answer["reason"].as_str().unwrap().is_empty());
    }
    for target in ["/v1/summary", "/v1/summary?date=2020-13-01", "/v1/summary?date=2020-10-21&bogus=1"] {
        let (status, answer) = client.get(target).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}");
        assert_eq!(answer["error"], "malformed_query");
    }
    assert_eq!(ledger.entry_count().await.unwrap(), 0);
    assert_eq!(ledger.counters().bad_requests, 10);
    // Still serving.
    assert_eq!(client.submit(&[payment("p-1")]).await[0]["status"], "created");
    ledger.shutdown().await;
}

#[tokio::test]
async fn get_entry_answers_the_stored_entry_or_404() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let mut sent = payment("p/1 ?");
    sent.as_object_mut().unwrap().remove("reverses");
    let results = client.submit(&[sent.clone()]).await;
    assert_result(&results[0], "rejected", Some("invalid_field:entry_id"));

    let sent = with(sent, "entry_id", json!("p-1"));
    let created = voucher(&client.submit(&[sent]).await[0]);
    let (status, answer) = client.get("/v1/entries/p-1").await;
    assert_eq!(status, StatusCode::OK);
    let stored: StoredEntry = serde_json::from_value(answer).unwrap();
    assert_eq!(stored.entry, payment("p-1"), "canonical form: every field, absent ones as null");
    assert_eq!(stored.tax_voucher_no, created);
    let received = time::OffsetDateTime::parse(&stored.received_at, &time::format_description::well_known::Rfc3339);
    assert_eq!(received.unwrap().offset(), time::macros::offset!(+8));
    assert_eq!(ledger.entry("p-1").await.unwrap(), Some(stored));

    assert_eq!(client.get("/v1/entries/p-2").await.0, StatusCode::NOT_FOUND);
    assert_eq!(ledger.entry("p-2").await.unwrap(), None);
    ledger.shutdown().await;
}

#[tokio::test]
async fn summary_by_local_date_and_collection_point() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let at = |entry: Value, occurred_at: &str, amount: &str| {
        with(with(entry, "occurred_at", json!(occurred_at)), "amount", json!(amount))
    };
    let p1 = at(payment("p-1"), "2020-10-21T10:15:30+08:00", "280.00");
    let entries = [
        p1.clone(),
        // 23:59:59 on the 21st in UTC+8, written in UTC.
        at(payment("p-2"), "2020-10-21T15:59:59Z", "100.00"),
        // 00:00:00 on the 22nd in UTC+8.
        at(payment("p-3"), "2020-10-21T16:00:00Z", "50.00"),
        at(cash_payment("c-1"), "2020-10-21T09:00:00+08:00", "350.00"),
        with(at(cash_payment("c-2"), "2020-10-21T09:30:00+08:00", "350.00"), "insurance", json!("medical")),
        with(at(payment("o-1"), "2020-10-21T11:00:00+08:00", "180.00"), "collection_point", json!("WD002")),
        // The void of p-1 happens the next morning and counts on that day.
        at(reversal("r-1", &p1), "2020-10-22T09:00:00+08:00", "280.00"),
    ];
    assert!(client.submit(&entries).await.iter().all(|r| r["status"] == "created"));

    let line = |point: &str, insurance: &str, channel: &str, counts: (u64, &str, u64, &str)| {
        json!({
            "collection_point": point, "insurance": insurance, "channel": channel,
            "payments": counts.0, "payment_total": counts.1, "reversals": counts.2, "reversal_total": counts.3,
        })
    };
    let (status, day1) = client.get("/v1/summary?date=2020-10-21&collection_point=WD001").await;
    assert_eq!(status, StatusCode::OK, "{day1}");
    assert_eq!(
        day1,
        json!({ "date": "2020-10-21", "lines": [
            line("WD001", "medical", "cash", (1, "350.00", 0, "0.00")),
            line("WD001", "pension", "cash", (1, "350.00", 0, "0.00")),
            line("WD001", "pension", "pos", (2, "380.00", 0, "0.00")),
        ]})
    );
    let (_, all_points) = client.get("/v1/summary?date=2020-10-21").await;
    assert_eq!(all_points["lines"].as_array().unwrap().len(), 4);
    assert_eq!(all_points["lines"][3], line("WD002", "pension", "pos", (1, "180.00", 0, "0.00")));

    let (_, day2) = client.get("/v1/summary?date=2020-10-22").await;
    assert_eq!(day2["lines"], json!([line("WD001", "pension", "pos", (1, "50.00", 1, "280.00"))]));
    let (_, empty) = client.get("/v1/summary?date=2020-10-20").await;
    assert_eq!(empty, json!({ "date": "2020-10-20", "lines": [] }));

    let from_handle = ledger.summary(time::macros::date!(2020 - 10 - 22), Some("WD001")).await.unwrap();
    assert_eq!(from_handle, serde_json::from_value::<Summary>(day2).unwrap());
    ledger.shutdown().await;
}

#[tokio::test]
async fn a_restart_on_the_same_file_keeps_entries_and_vouchers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = LedgerConfig::new(KEY_ID, Secret::new(SECRET));
    config.db = Some(dir.path().join("ledger.sqlite"));

    let ledger = LedgerSim::start(config.clone()).await.unwrap();
    let results = Client::new(&ledger).submit(&[payment("p-1"), cash_payment("c-1")]).await;
    let before: Vec<String> = results.iter().map(voucher).collect();
    ledger.shutdown().await;

    let ledger = LedgerSim::start(config).await.unwrap();
    let client = Client::new(&ledger);
    let results = client.submit(&[payment("p-1"), cash_payment("c-1"), payment("p-2")]).await;
    assert_result(&results[0], "exists", None);
    assert_result(&results[1], "exists", None);
    assert_result(&results[2], "created", None);
    let after: Vec<String> = results.iter().map(voucher).collect();
    assert_eq!(after[..2], before[..]);
    assert!(!before.contains(&after[2]), "voucher numbers are never reused");
    let (status, stored) = client.get("/v1/entries/c-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["tax_voucher_no"], before[1]);
    ledger.shutdown().await;
}

#[tokio::test]
async fn fault_503_with_retry_after() {
    let ledger =
        start_with(LedgerFaults { unavailable_rate: 1.0, retry_after_secs: 7, ..LedgerFaults::default() }, 1).await;
    let client = Client::new(&ledger);
    let response = client
        .send(Method::POST, "/v1/entries", serde_json::to_vec(&json!({ "entries": [payment("p-1")] })).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(ledger.entry_count().await.unwrap(), 0);
    assert_eq!(ledger.counters().faults.unavailable, 1);
    // The control surface is never faulted.
    assert_eq!(client.control(Method::GET, "/control/counters", None).await.0, StatusCode::OK);
    ledger.shutdown().await;
}

#[tokio::test]
async fn fault_500() {
    let ledger = start().await;
    ledger.set_faults(LedgerFaults { error_rate: 1.0, ..LedgerFaults::default() }).unwrap();
    let client = Client::new(&ledger);
    let (status, answer) = client.post(&[payment("p-1")]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{answer}");
    assert_eq!(ledger.entry_count().await.unwrap(), 0);
    assert_eq!(ledger.counters().faults.error, 1);
    ledger.set_faults(LedgerFaults::default()).unwrap();
    assert_result(&client.submit(&[payment("p-1")]).await[0], "created", None);
    ledger.shutdown().await;
}

#[tokio::test]
async fn fault_slow_answer_is_stored_then_held_back() {
    let ledger = start_with(LedgerFaults { slow_rate: 1.0, slow_ms: 2000, ..LedgerFaults::default() }, 1).await;
    let client = Client::new(&ledger);
    let body = serde_json::to_vec(&json!({ "entries": [payment("p-1")] })).unwrap();
    // The answer is held back well beyond the client's patience: the client gives up, as it would on
    // any lost answer. (Without the delay the answer would arrive within the timeout.)
    let request = client.request(unix_now(), Method::POST, "/v1/entries", body).timeout(Duration::from_millis(500));
    let error = request.send().await.unwrap_err();
    assert!(error.is_timeout(), "the answer was held back: {error:?}");
    let faults = ledger.counters().faults;
    assert_eq!((faults.slow, faults.slow_ms), (1, 2000));

    // The entry was committed before the wait; the retry of the same entry finds it.
    ledger.set_faults(LedgerFaults::default()).unwrap();
    let stored = ledger.entry("p-1").await.unwrap().expect("stored before the answer was held back");
    let results = client.submit(&[payment("p-1")]).await;
    assert_result(&results[0], "exists", None);
    assert_eq!(voucher(&results[0]), stored.tax_voucher_no);
    ledger.shutdown().await;
}

#[tokio::test]
async fn fault_store_then_drop_the_connection() {
    let ledger = start_with(LedgerFaults { drop_rate: 1.0, ..LedgerFaults::default() }, 1).await;
    let client = Client::new(&ledger);
    let body = serde_json::to_vec(&json!({ "entries": [payment("p-1")] })).unwrap();
    let error = client.send(Method::POST, "/v1/entries", body).await.unwrap_err();
    assert!(
        error.is_request() && !error.is_timeout() && error.status().is_none(),
        "a broken connection, no HTTP answer: {error:?}"
    );
    assert_eq!(ledger.counters().faults.dropped, 1);
    let stored = ledger.entry("p-1").await.unwrap().unwrap();

    // GETs are not dropped; the retry of the same entry is answered once drops are off.
    let (status, answer) = client.get("/v1/entries/p-1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["tax_voucher_no"], stored.tax_voucher_no);
    ledger.set_faults(LedgerFaults::default()).unwrap();
    let results = client.submit(&[payment("p-1")]).await;
    assert_result(&results[0], "exists", None);
    assert_eq!(voucher(&results[0]), stored.tax_voucher_no);
    ledger.shutdown().await;
}

#[tokio::test]
async fn outage_window_through_the_control_surface() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let (status, _) = client.control(Method::POST, "/control/down?seconds=600", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ledger.is_down());
    let response = client.send(Method::GET, "/v1/entries/p-1", Vec::new()).await.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    let (status, _) = client.post(&[payment("p-1")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (status, _) = client.control(Method::POST, "/control/down?seconds=0", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_result(&client.submit(&[payment("p-1")]).await[0], "created", None);

    // The same through the handle.
    ledger.down_for(Duration::from_secs(600));
    assert_eq!(client.post(&[payment("p-2")]).await.0, StatusCode::SERVICE_UNAVAILABLE);
    ledger.down_for(Duration::ZERO);
    assert_result(&client.submit(&[payment("p-2")]).await[0], "created", None);
    assert_eq!(ledger.counters().faults.outage, 3);
    ledger.shutdown().await;
}

#[tokio::test]
async fn control_endpoint_counters_and_faults() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let (status, faults) = client.control(Method::GET, "/control/faults", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_value::<LedgerFaults>(faults).unwrap(), LedgerFaults::default());

    let (status, faults) = client.control(Method::POST, "/control/faults", Some(json!({ "error_rate": 1.0 }))).await;
    assert_eq!(status, StatusCode::OK);
    let expected = LedgerFaults { error_rate: 1.0, ..LedgerFaults::default() };
    assert_eq!(serde_json::from_value::<LedgerFaults>(faults).unwrap(), expected, "a partial update");
    assert_eq!(ledger.faults(), expected);
    assert_eq!(client.post(&[payment("p-1")]).await.0, StatusCode::INTERNAL_SERVER_ERROR);

    for bad in [json!({ "error_rate": 2.0 }), json!({ "bogus": 1 }), json!({ "slow_ms": 600_001 })] {
        let (status, answer) = client.control(Method::POST, "/control/faults", Some(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    assert_eq!(ledger.faults(), expected, "refused updates change nothing");
    client.control(Method::POST, "/control/faults", Some(json!({ "error_rate": 0 }))).await;
    client.submit(&[payment("p-1"), payment("p-1"), with(payment("p-1"), "amount", json!("1.00"))]).await;
    Client::with_key(&ledger, "nobody", SECRET).post(&[payment("p-2")]).await;

    let (status, counters) = client.control(Method::GET, "/control/counters", None).await;
    assert_eq!(status, StatusCode::OK);
    let counters: LedgerCounters = serde_json::from_value(counters).unwrap();
    assert_eq!(counters, ledger.counters());
    assert_eq!(counters.requests, 3);
    assert_eq!((counters.entries_created, counters.entries_exists, counters.entries_rejected), (1, 1, 1));
    assert_eq!((counters.entries_conflicting, counters.unauthorized, counters.faults.error), (1, 1, 1));
    assert_eq!(client.control(Method::POST, "/control/down?seconds=x", None).await.0, StatusCode::BAD_REQUEST);
    ledger.shutdown().await;
}

/// The statuses of `n` sequential GETs.
async fn statuses(ledger: &LedgerHandle, n: usize) -> Vec<u16> {
    let client = Client::new(ledger);
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(client.send(Method::GET, "/v1/entries/p-1", Vec::new()).await.unwrap().status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn seeded_fault_decisions_are_reproducible() {
    let faults = LedgerFaults { unavailable_rate: 0.3, error_rate: 0.3, ..LedgerFaults::default() };
    let mut runs = Vec::new();
    for seed in [42, 42, 43] {
        let ledger = start_with(faults.clone(), seed).await;
        runs.push(statuses(&ledger, 48).await);
        ledger.shutdown().await;
    }
    assert_eq!(runs[0], runs[1], "same seed, same faults");
    assert_ne!(runs[0], runs[2], "another seed, other faults");
    for status in [404, 500, 503] {
        assert!(runs[0].contains(&status), "{status} in {:?}", runs[0]);
    }
}

#[tokio::test]
async fn concurrent_retries_of_one_entry_create_it_once() {
    let ledger = start().await;
    let client = Client::new(&ledger);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.submit(&[payment("p-1")]).await.remove(0) })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    assert_eq!(results.iter().filter(|r| r["status"] == "created").count(), 1);
    assert_eq!(results.iter().filter(|r| r["status"] == "exists").count(), 15);
    let vouchers: std::collections::BTreeSet<String> = results.iter().map(voucher).collect();
    assert_eq!(vouchers.len(), 1);
    ledger.shutdown().await;
}

/// Sends `GET /control/counters` on a raw keep-alive connection.
async fn send_raw_get(stream: &mut TcpStream) {
    stream.write_all(b"GET /control/counters HTTP/1.1\r\nHost: ledger\r\n\r\n").await.unwrap();
}

/// Reads up to the end of the answer's status line.
async fn read_status_line(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before an answer: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    text.lines().next().unwrap().to_owned()
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_until_one_closes() {
    let mut config = LedgerConfig::new(KEY_ID, Secret::new(SECRET));
    config.max_connections = 0;
    let refused = LedgerSim::start(config.clone()).await.unwrap_err();
    assert!(matches!(refused, StartError::MaxConnections { value: 0, .. }), "{refused:?}");

    config.max_connections = 2;
    let ledger = LedgerSim::start(config).await.unwrap();
    // Two keep-alive connections, each answered once and left open: they hold both slots.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(ledger.addr()).await.unwrap();
        send_raw_get(&mut stream).await;
        assert_eq!(read_status_line(&mut stream).await, "HTTP/1.1 200 OK");
        held.push(stream);
    }
    // A third connects (the kernel queues it) but is not served while both slots are held. Were it
    // served, its answer would come at once; waiting a while for nothing cannot fail spuriously.
    let mut third = TcpStream::connect(ledger.addr()).await.unwrap();
    send_raw_get(&mut third).await;
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the bound: {early:?}");

    // Closing one held connection frees its slot: the third is served.
    drop(held.pop());
    let answer = tokio::time::timeout(Duration::from_secs(30), read_status_line(&mut third)).await.unwrap();
    assert_eq!(answer, "HTTP/1.1 200 OK");
    ledger.shutdown().await;
}

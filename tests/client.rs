#![allow(clippy::unwrap_used)]
//! The client verbs (docs/api.md, "CLI") run as the real binary against a fake API: an axum server on
//! 127.0.0.1:0 that checks the bearer token and answers canned, documented JSON.

use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{json, Value};

const TOKEN: &str = "test-token";

/// One request the fake API saw.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    uri: String,
    body: Option<Value>,
}

/// A fake API serving on its own thread; it lives until the test process ends.
struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn start() -> Fake {
        // Bound before the client starts, so its connections queue until the server accepts: no sleeps.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::clone(&seen);
        let app = axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&state);
            async move { answer(&state, &method, &uri, &headers, &body) }
        });
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Fake { base, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Runs `zhengjiao ARGS` against this API with the token in the environment.
    fn run(&self, args: &[&str]) -> Run {
        run(args, &[("ZHENGJIAO_API", &self.base), ("ZHENGJIAO_TOKEN", TOKEN)])
    }
}

/// What the binary did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zhengjiao"));
    command.args(args);
    for var in [
        "ZHENGJIAO_API",
        "ZHENGJIAO_TOKEN",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    let Output { status, stdout, stderr } = command.output().unwrap();
    Run {
        code: status.code().unwrap(),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn reply(status: StatusCode, body: &Value) -> (StatusCode, String) {
    (status, body.to_string())
}

/// A PAYMENT as docs/api.md shows it.
fn payment(id: &str, state: &str, message: &str) -> Value {
    let approved = matches!(state, "approved" | "voided" | "refunded");
    let final_ = !matches!(state, "created" | "sent" | "unknown");
    let slip = json!({"payer_name": "张三", "payer_id": "410402********1234", "insurance": "medical", "year": 2020,
        "serial": "ZJ-000123", "amount": "280.00", "card": "622848******1234", "merchant_id": "898410153990001",
        "terminal_id": "41000001", "batch": "000001", "trace": "000123", "rrn": "100100000001",
        "auth": "A1B2C3", "collection_point": "WD-DX-001", "operator": "1001"});
    json!({
        "id": id, "state": state, "final": final_,
        "line": {"serial": "ZJ-000123", "insurance": "medical", "year": 2020},
        "amount": "280.00", "terminal": "T01", "terminal_id": "41000001", "till": "01", "operator": "1001",
        "created_at": "2020-10-21T09:15:02.123456+08:00", "updated_at": "2020-10-21T09:15:04.004512+08:00",
        "pos": {"code": if state == "declined" { "51" } else { "00" }, "text": null, "card": "622848******1234",
                "amount": "280.00", "trace": "000123", "batch": "000001", "rrn": "100100000001", "auth": "A1B2C3"},
        "message": message,
        "slip": if approved { slip } else { Value::Null },
        "reversals": [],
        "history": [{"at": "2020-10-21T09:15:02.123456+08:00", "from": null, "to": "created", "code": null,
                     "text": null, "note": null}]
    })
}

fn settlement(balanced: bool) -> Value {
    let totals = |count: u32, total: &str| {
        json!({"sale_count": count, "sale_total": total, "void_count": 1, "void_total": "280.00",
               "refund_count": 0, "refund_total": "0.00"})
    };
    let (journal, differences) = if balanced {
        (totals(3, "840.00"), json!([]))
    } else {
        (
            totals(2, "560.00"),
            json!([{"what": "sale_count", "terminal": "3", "journal": "2"},
                   {"what": "sale_total", "terminal": "840.00", "journal": "560.00"}]),
        )
    };
    json!({"id": 1, "terminal": "T01", "terminal_id": "41000001", "batch": "000001", "balanced": balanced,
           "terminal_totals": totals(3, "840.00"), "journal_totals": journal, "differences": differences,
           "at": "2020-10-21T18:00:00.000000+08:00"})
}

fn payments_listing() -> Value {
    json!({"payments": [payment("P20201021091502-3FA2C1", "unknown", "outcome unknown, checking with the terminal"),
                        payment("P20201021091733-77AB01", "declined", "declined 51: 余额不足")]})
}

/// The fake API's routes.
fn answer(
    seen: &Mutex<Vec<Seen>>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, String) {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    seen.lock().unwrap().push(Seen { method: method.to_string(), uri: uri.to_string(), body: parsed.clone() });
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok());
    if bearer != Some(&format!("Bearer {TOKEN}")) {
        return reply(
            StatusCode::UNAUTHORIZED,
            &json!({"code": "unauthorized", "message": "no operator has this token"}),
        );
    }
    let body = parsed.unwrap_or(Value::Null);
    let polls = seen.lock().unwrap().iter().filter(|s| s.method == "GET" && s.uri.starts_with("/v1/payments/")).count();
    match (method.as_str(), uri.path()) {
        ("POST", "/v1/collect") => match body["serial"].as_str().unwrap_or("") {
            "ZJ-APPROVED" => reply(
                StatusCode::OK,
                &payment("P-APPROVED", "approved", "approved: 280.00 yuan for 2020 medical ZJ-000123"),
            ),
            "ZJ-DECLINED" => reply(StatusCode::OK, &payment("P-DECLINED", "declined", "declined 51: 余额不足")),
            "ZJ-LATE" => reply(StatusCode::ACCEPTED, &payment("P-LATE", "sent", "sent to the terminal")),
            "ZJ-LOST" => reply(
                StatusCode::ACCEPTED,
                &payment("P-LOST", "unknown", "outcome unknown, checking with the terminal"),
            ),
            "ZJ-TIER" => reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"code": "policy", "rule": "pension_tier",
                        "message": "tier 450.00 is not one of the 2020 tiers (200, 300, ...)"}),
            ),
            _ => reply(StatusCode::NOT_FOUND, &json!({"code": "not_found", "what": "line", "message": "no such line"})),
        },
        ("GET", "/v1/payments/P-LATE") if polls < 2 => {
            reply(StatusCode::OK, &payment("P-LATE", "unknown", "outcome unknown, checking with the terminal"))
        }
        ("GET", "/v1/payments/P-LATE") => {
            reply(StatusCode::OK, &payment("P-LATE", "approved", "approved: 280.00 yuan for 2020 medical ZJ-000123"))
        }
        ("GET", "/v1/payments/P-LOST") => {
            reply(StatusCode::OK, &payment("P-LOST", "unknown", "outcome unknown, checking with the terminal"))
        }
        ("POST", "/v1/payments/P-LOST/query") => {
            reply(StatusCode::OK, &payment("P-LOST", "unknown", "outcome unknown, checking with the terminal"))
        }
        ("POST", "/v1/payments/P-DECLINED/query") => {
            reply(StatusCode::OK, &payment("P-DECLINED", "declined", "declined 51: 余额不足"))
        }
        ("POST", "/v1/payments/P-APPROVED/void") => {
            let reversal = json!({"id": "P-APPROVED-V1", "kind": "void", "state": "approved", "amount": "280.00",
                "operator": "1001", "created_at": "2020-10-21T10:00:00.000000+08:00",
                "updated_at": "2020-10-21T10:00:01.000000+08:00", "pos": {"code": "00"}, "message": "void approved"});
            let mut p = payment("P-APPROVED", "voided", "voided: 280.00 yuan");
            p["reversals"] = json!([reversal.clone()]);
            reply(StatusCode::OK, &json!({"payment": p, "reversal": reversal}))
        }
        ("POST", "/v1/terminals/T01/settle") => reply(StatusCode::OK, &settlement(false)),
        ("POST", "/v1/terminals/T02/settle") => reply(StatusCode::OK, &settlement(true)),
        ("GET", "/v1/payments") => reply(StatusCode::OK, &payments_listing()),
        ("GET", "/v1/terminals") => reply(
            StatusCode::OK,
            &json!({"terminals": [{"name": "T01", "collection_point": "WD-DX-001", "transport": "tcp:127.0.0.1:9100",
                "state": "ready", "terminal_id": "41000001", "merchant_id": "898410153990001", "batch": "000001",
                "last_error": null, "queued": 0, "in_flight": null, "unknown": 1}]}),
        ),
        ("GET", "/v1/lookup/41040219900101123X") => reply(
            StatusCode::OK,
            &json!({"lines": [
                {"serial": "ZJ-000123", "insurance": "medical", "year": 2020, "name": "张三",
                 "id_number": "410402********123X", "amount_due": "280.00", "hardship": "none",
                 "collection_point": "WD-DX-001", "street": null, "community": null,
                 "status": "unpaid", "paid_by": null, "payments": []},
                {"serial": "ZJ-000456", "insurance": "pension", "year": 2020, "name": "张三",
                 "id_number": "410402********123X", "amount_due": null, "hardship": "low_income",
                 "collection_point": "WD-DX-001", "street": null, "community": null,
                 "status": "paid", "paid_by": "P20201001080000-000001", "payments": []}],
                "elsewhere": 2}),
        ),
        ("GET", "/v1/lookup/GARBAGE") => (StatusCode::OK, "<html>proxy error</html>".to_owned()),
        _ => reply(StatusCode::NOT_FOUND, &json!({"code": "not_found", "what": "route", "message": "no such route"})),
    }
}

#[test]
fn collect_approved_prints_the_slip() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-APPROVED", "--terminal", "T01"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("P-APPROVED  approved  approved: 280.00 yuan"), "{r:?}");
    for slip in ["张三", "410402********1234", "622848******1234", "41000001", "000123", "100100000001", "A1B2C3"] {
        assert!(r.stdout.contains(slip), "{slip} missing: {r:?}");
    }
    let seen = api.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, Some(json!({"serial": "ZJ-APPROVED", "terminal": "T01", "wait_ms": 100_000})));
}

#[test]
fn collect_sends_tier_as_typed_and_the_id_number_variant() {
    let api = Fake::start();
    let r = api.run(&[
        "collect",
        "41040219900101123X",
        "--id-number",
        "--insurance",
        "pension",
        "--tier",
        "300.0",
        "--year",
        "2020",
        "--terminal",
        "T01",
        "--wait",
        "5",
    ]);
    assert_eq!(r.code, 1, "{r:?}"); // the fake knows no such line
    assert!(r.stderr.contains("not_found") && r.stderr.contains("what: line"), "{r:?}");
    assert_eq!(
        api.seen()[0].body,
        Some(json!({"id_number": "41040219900101123X", "insurance": "pension", "tier": "300.0", "year": 2020,
                    "terminal": "T01", "wait_ms": 5000}))
    );
}

#[test]
fn collect_declined_exits_3() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-DECLINED", "--terminal", "T01"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stdout.contains("declined 51: 余额不足"), "{r:?}");
    assert!(!r.stdout.contains("A1B2C3"), "no slip for a decline: {r:?}");
}

#[test]
fn collect_accepted_then_polled_to_approved() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-LATE", "--terminal", "T01", "--wait", "60"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("outcome unknown, checking with the terminal: payment P-LATE"), "{r:?}");
    assert!(r.stdout.contains("P-LATE  approved") && r.stdout.contains("A1B2C3"), "{r:?}");
    let polls: Vec<Seen> = api.seen().into_iter().filter(|s| s.method == "GET").collect();
    assert_eq!(polls.len(), 2, "{polls:?}");
    for poll in &polls {
        let wait_ms: u64 = poll.uri.split("wait_ms=").nth(1).unwrap().parse().unwrap();
        assert!(poll.uri.starts_with("/v1/payments/P-LATE?wait_ms=") && wait_ms <= 10_000, "{poll:?}");
    }
}

#[test]
fn collect_still_unknown_when_the_wait_runs_out() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-LOST", "--terminal", "T01", "--wait", "1"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stdout.contains("P-LOST"), "{r:?}");
    assert!(r.stdout.contains("zhengjiao query P-LOST"), "{r:?}");
    let all = format!("{}{}", r.stdout, r.stderr).to_lowercase();
    assert!(!all.contains("fail"), "{r:?}");
}

#[test]
fn collect_json_prints_the_final_answer() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-LATE", "--terminal", "T01", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body["state"], "approved");
    assert!(r.stderr.contains("outcome unknown, checking with the terminal: payment P-LATE"), "{r:?}");
}

#[test]
fn policy_refusal_exits_1_with_rule_and_message() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-TIER", "--tier", "450", "--terminal", "T01"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("policy"), "{r:?}");
    assert!(r.stderr.contains("rule: pension_tier"), "{r:?}");
    assert!(r.stderr.contains("tier 450.00 is not one of the 2020 tiers"), "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
}

#[test]
fn a_bad_amount_is_a_usage_error_naming_the_flag() {
    let api = Fake::start();
    let r = api.run(&["collect", "ZJ-APPROVED", "--tier", "4x0", "--terminal", "T01"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--tier"), "{r:?}");
    let r = api.run(&["refund", "P-APPROVED", "--amount", "280.001"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--amount"), "{r:?}");
    let r = api.run(&["collect", "41040219900101123X", "--id-number", "--terminal", "T01"]);
    assert_eq!(r.code, 2, "--id-number needs --insurance: {r:?}");
    assert!(api.seen().is_empty());
}

#[test]
fn missing_token_is_a_usage_error() {
    let api = Fake::start();
    let r = run(&["terminals"], &[("ZHENGJIAO_API", &api.base)]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--token") && r.stderr.contains("ZHENGJIAO_TOKEN"), "{r:?}");
    assert!(api.seen().is_empty());
}

#[test]
fn a_wrong_token_is_refused_by_the_api() {
    let api = Fake::start();
    let r = api.run(&["terminals", "--token", "not-the-token"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("unauthorized"), "{r:?}");
}

#[test]
fn unreachable_api_exits_2_and_names_the_address() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let r = run(&["collect", "ZJ-APPROVED", "--terminal", "T01", "--api", &address, "--token", TOKEN], &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains(&format!("cannot reach the API at {address}")), "{r:?}");
}

#[test]
fn an_undocumented_body_is_an_error_not_a_panic() {
    let api = Fake::start();
    let r = api.run(&["lookup", "GARBAGE"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("not the documented JSON"), "{r:?}");
    assert!(!r.stderr.contains("panicked"), "{r:?}");
}

#[test]
fn settle_not_balanced_exits_5() {
    let api = Fake::start();
    let r = api.run(&["settle", "T01"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stdout.contains("NOT balanced"), "{r:?}");
    assert!(r.stdout.contains("sale_total: terminal 840.00, journal 560.00"), "{r:?}");
    let sale_total = r.stdout.lines().find(|l| l.trim_start().starts_with("sale_total")).unwrap();
    assert!(sale_total.contains("840.00") && sale_total.contains("560.00") && sale_total.contains("differs"));
    assert_eq!(api.seen()[0].method, "POST");

    let r = api.run(&["settle", "T02"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.lines().any(|l| l == "balanced"), "{r:?}");
}

#[test]
fn payments_json_passes_the_answer_through() {
    let api = Fake::start();
    let r = api.run(&["payments", "--state", "unknown", "--terminal", "T01", "--date", "2020-10-21", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let body: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(body, payments_listing());
    assert_eq!(api.seen()[0].uri, "/v1/payments?date=2020-10-21&state=unknown&terminal=T01");
}

#[test]
fn payments_table_and_count() {
    let api = Fake::start();
    let r = api.run(&["payments"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("id "), "{r:?}");
    assert!(r.stdout.contains("P20201021091733-77AB01") && r.stdout.contains("2020 medical ZJ-000123"), "{r:?}");
    assert!(r.stdout.contains("2020-10-21 09:15:02"), "{r:?}");
    assert!(r.stdout.ends_with("2 payments\n"), "{r:?}");
}

#[test]
fn lookup_table_with_lines_elsewhere() {
    let api = Fake::start();
    let r = api.run(&["lookup", "41040219900101123X"]);
    assert_eq!(r.code, 0, "{r:?}");
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("serial") && lines[0].contains("amount due") && lines[0].contains("paid by"));
    assert!(lines[1].contains("ZJ-000123") && lines[1].contains("280.00") && lines[1].contains("unpaid"), "{r:?}");
    assert!(lines[2].contains("ZJ-000456") && lines[2].contains("(tier)"), "{r:?}");
    assert!(lines[2].contains("P20201001080000-000001"), "{r:?}");
    assert_eq!(lines[3], "2 more lines at other collection points");
}

#[test]
fn terminals_table() {
    let api = Fake::start();
    let r = api.run(&["terminals"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.lines().next().unwrap().starts_with("name"), "{r:?}");
    assert!(r.stdout.contains("T01") && r.stdout.contains("ready") && r.stdout.contains("41000001"), "{r:?}");
}

#[test]
fn void_approved_exits_0() {
    let api = Fake::start();
    let r = api.run(&["void", "P-APPROVED", "--wait", "20"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.starts_with("void P-APPROVED-V1  approved"), "{r:?}");
    assert!(r.stdout.contains("P-APPROVED  voided"), "{r:?}");
    assert_eq!(api.seen()[0].body, Some(json!({"wait_ms": 20_000})));
}

#[test]
fn query_shows_history_and_exits_by_state() {
    let api = Fake::start();
    let r = api.run(&["query", "P-LOST"]);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stdout.contains("history:") && r.stdout.contains("- -> created"), "{r:?}");
    assert!(!r.stdout.to_lowercase().contains("fail"), "{r:?}");
    let r = api.run(&["query", "P-DECLINED"]);
    assert_eq!(r.code, 3, "{r:?}");
    let seen = api.seen();
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("POST", "/v1/payments/P-LOST/query"));
}

//! `zhengjiao-sim ledger` as a process: first stdout line is the address, it serves signed requests,
//! fault flags take effect, ctrl-c (SIGINT) ends it with status 0, bad flags are usage errors
//! (status 2).

// Tests: a failed unwrap is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_zhengjiao-sim");
/// Longest wait for the process to print its address or to exit.
const PROCESS_WAIT: Duration = Duration::from_secs(30);
const KEY_ID: &str = "cli-key";
const SECRET: &str = "cli-secret";

fn sign(secret: &str, timestamp: u64, method: &str, path: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}\n{method}\n{path}\n").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts `zhengjiao-sim ledger` with the test key and `extra` flags; the child and its base URL.
async fn spawn(extra: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["ledger", "--listen", "127.0.0.1:0", "--key-id", KEY_ID, "--secret", SECRET])
        .args(extra)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    tokio::time::timeout(PROCESS_WAIT, stdout.read_line(&mut first)).await.unwrap().unwrap();
    let base = first.trim_end().to_owned();
    assert!(base.starts_with("http://127.0.0.1:"), "{first:?}");
    (child, base)
}

/// Interrupts the child with SIGINT; it must exit 0.
async fn interrupt(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(PROCESS_WAIT, child.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
}

/// A cash medical payment as the body of `POST /v1/entries`.
fn one_entry() -> Vec<u8> {
    serde_json::to_vec(&json!({ "entries": [{
        "entry_id": "cli-1", "kind": "payment", "reverses": null, "collection_serial": "WD2020-000009",
        "insurance": "medical", "year": 2020, "payer_id": "110105198001010016", "payer_name": "李四",
        "amount": "350.00", "channel": "cash", "collection_point": "WD001", "collector": "0102",
        "terminal_id": null, "merchant_id": null, "batch": null, "trace": null, "rrn": null,
        "auth_code": null, "card_masked": null, "occurred_at": "2020-10-21T09:00:00+08:00",
    }]}))
    .unwrap()
}

/// `POST /v1/entries` with `body`, signed now with the test key.
async fn signed_post(base: &str, body: Vec<u8>) -> reqwest::Response {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    reqwest::Client::new()
        .post(format!("{base}/v1/entries"))
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-ZJ-Key-Id", KEY_ID)
        .header("X-ZJ-Timestamp", now.to_string())
        .header("X-ZJ-Signature", sign(SECRET, now, "POST", "/v1/entries", &body))
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The first result of a `200` answer to `POST /v1/entries`.
async fn first_result(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    answer["results"][0].clone()
}

#[tokio::test]
async fn serves_until_interrupted() {
    let (child, base) = spawn(&["--seed", "9"]).await;
    let result = first_result(signed_post(&base, one_entry()).await).await;
    assert_eq!(result["status"], "created", "{result}");
    interrupt(child).await;
}

#[tokio::test]
async fn down_for_answers_503_until_the_outage_is_ended() {
    let (child, base) = spawn(&["--down-for", "3600"]).await;
    let response = signed_post(&base, one_entry()).await;
    assert_eq!(response.status(), 503);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");

    let ended = reqwest::Client::new().post(format!("{base}/control/down?seconds=0")).send().await.unwrap();
    assert_eq!(ended.status(), 200);
    let result = first_result(signed_post(&base, one_entry()).await).await;
    assert_eq!(result["status"], "created", "{result}");
    interrupt(child).await;
}

#[tokio::test]
async fn error_rate_flag_answers_500() {
    let (child, base) = spawn(&["--error-rate", "1"]).await;
    let response = signed_post(&base, one_entry()).await;
    assert_eq!(response.status(), 500);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["error"], "internal_error", "{answer}");

    let counters: Value =
        reqwest::Client::new().get(format!("{base}/control/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!((&counters["faults"]["error"], &counters["entries_created"]), (&json!(1), &json!(0)), "{counters}");
    interrupt(child).await;
}

#[tokio::test]
async fn bad_flags_are_usage_errors() {
    let runs = [
        vec!["ledger", "--key-id", "k"],
        vec!["ledger", "--key-id", "k", "--secret", "s", "--error-rate", "1.5"],
        vec!["ledger", "--key-id", "k", "--secret", "s", "--listen", "nowhere"],
        vec!["ledger", "--key-id", "k", "--secret", "s", "--max-connections", "0"],
        vec!["ledger", "--key-id", "k", "--secret", "s", "--down-for", "604801"],
    ];
    for args in runs {
        let output = Command::new(BIN).args(&args).output();
        let output = tokio::time::timeout(PROCESS_WAIT, output).await.unwrap().unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

//! `zhengjiao demo --short`: the one-command demo in its CI form. It must exit 0 with the day reconciled
//! (balanced), show approved payments, a decline, a void, a refund and a lost answer resolved by QUERY,
//! and never print a full ID number of the roster it generated.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// The `demo result:` line's `key=value` pairs.
fn result_line(stdout: &str) -> BTreeMap<String, String> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo result: "))
        .unwrap_or_else(|| panic!("no `demo result:` line in the output:\n{stdout}"));
    line.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn count(result: &BTreeMap<String, String>, key: &str) -> u64 {
    result.get(key).unwrap_or_else(|| panic!("no {key} in {result:?}")).parse().unwrap()
}

fn run_demo(dir: &std::path::Path) -> (std::process::ExitStatus, String, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_zhengjiao"))
        .args(["demo", "--short", "--dir"])
        .arg(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("the zhengjiao binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status, stdout, stderr, started.elapsed())
}

#[test]
fn short_demo_balances_and_masks_payers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let (status, stdout, stderr, took) = run_demo(&dir);
    assert!(status.success(), "demo exited {status} after {took:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");

    let result = result_line(&stdout);
    assert_eq!(result.get("reconciliation").map(String::as_str), Some("balanced"), "{stdout}");
    assert!(stdout.contains("reconciliation: balanced"), "{stdout}");
    assert!(count(&result, "approved") > 0, "{result:?}");
    assert!(count(&result, "declined") > 0, "{result:?}");
    assert!(count(&result, "voided") > 0, "{result:?}");
    assert!(count(&result, "refunded") > 0, "{result:?}");
    assert!(count(&result, "resolved_by_query") > 0, "{result:?}");
    // Three terminals at the end of the day, T01 also at midday; each balanced.
    assert!(count(&result, "settlements") >= 4, "{result:?}");
    assert!(!stdout.contains("NOT balanced"), "{stdout}");

    // No full ID number of the generated roster (or of the collector register) in the output.
    let mut ids = Vec::new();
    for (file, column) in [("roster.csv", "身份证号"), ("collectors.csv", "身份证号")] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == column).unwrap();
        ids.extend(lines.map(|l| l.split(',').nth(at).unwrap().to_owned()));
    }
    assert!(ids.len() >= 200, "{} ID numbers read", ids.len());
    for id in &ids {
        assert_eq!(id.len(), 18, "{id:?}");
        assert!(!stdout.contains(id.as_str()) && !stderr.contains(id.as_str()), "a full ID number was printed");
    }
    // Masked payers are shown (first 6, last 4).
    let masked = format!("{}********", &ids[0][..6]);
    assert!(stdout.contains(&masked), "no masked ID number in the output:\n{stdout}");

    // Run again on the same directory: it starts fresh and is as good.
    let (status, stdout, stderr, took) = run_demo(&dir);
    assert!(status.success(), "second run exited {status} after {took:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("emptied"), "{stdout}");
    assert_eq!(result_line(&stdout).get("reconciliation").map(String::as_str), Some("balanced"), "{stdout}");
}

#[test]
fn refuses_a_directory_that_is_not_the_demos() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("precious.txt"), "keep me").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_zhengjiao"))
        .args(["demo", "--short", "--dir"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a demo directory"), "{out:?}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(), "keep me");
}

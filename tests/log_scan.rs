#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The log scan of issue 7 item 4: a whole scenario at the most verbose level, then every byte the
//! system wrote is searched for payer data that must not be there.
//!
//! Scenario: the ledger simulator (`zhengjiao-sim ledger`), the terminal simulator, the roster imported
//! with `zhengjiao roster import`, the daemon (`serve --log-format json`, `RUST_LOG=trace`) driven with
//! the CLI verbs: lookups (by ID number and serial), collections by serial and by ID number, a decline,
//! a void, an approval whose response is lost (unknown) resolved by `zhengjiao query`, a settlement, a
//! refund, the listings, the ledger's status and dead letters, the reconciliation once everything is
//! forwarded, `/metrics`, and `zhengjiao backup` of the live journal. Then the daemon is killed and
//! started again with the human format (still `trace`), which recovers and answers once more.
//!
//! The scan:
//! - no full ID number (any 18-character GB 11643 number with a correct check character, and every ID
//!   number of the roster by value) in the daemon's logs, any command's output, or the API's answers;
//! - no unmasked card number anywhere, the journal and the backup included: no run of 13 to 19 digits
//!   passing the Luhn check, and no card-like token of digits and `*` other than the masked 6 + `*` + 4;
//! - no payer name in a log line above `debug`;
//! - the journal does hold the full ID numbers (the ledger needs them) and is mode 0600, as is the
//!   backup;
//! - the JSON log is one JSON object per line.
//!
//! `the_scanner_finds_planted_leaks` proves the scanner can fail.
#![allow(missing_docs)]

mod daemon_support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use daemon_support::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

// ---------------------------------------------------------------------------------------------------
// The scanner
// ---------------------------------------------------------------------------------------------------

/// True when `b` is part of a word: a digit run inside a word (a hex digest, `P20201021090000-...`)
/// is not a number on its own.
fn wordy(b: Option<&u8>) -> bool {
    b.is_some_and(u8::is_ascii_alphanumeric)
}

/// 17 digits and the GB 11643 check character.
fn is_id_number(s: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    if s.len() != 18 || !s[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = s[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    s[17].to_ascii_uppercase() == b"10X98765432"[(sum % 11) as usize]
}

fn luhn(s: &[u8]) -> bool {
    let sum: u32 = s
        .iter()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d = d * 2;
                if d > 9 {
                    d - 9
                } else {
                    d
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Every full ID number in `bytes` (an 18-character token with a correct check character).
fn full_id_numbers(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || wordy(i.checked_sub(1).and_then(|p| bytes.get(p))) {
            i += 1;
            continue;
        }
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut end = i + digits;
        if digits == 17 && matches!(bytes.get(end), Some(b'X' | b'x')) {
            end += 1;
        }
        if !wordy(bytes.get(end)) && is_id_number(&bytes[i..end]) {
            found.push(String::from_utf8_lossy(&bytes[i..end]).into_owned());
        }
        i = end.max(i + 1);
    }
    found
}

/// Every unmasked card number in `bytes`: a digit run of 13 to 19 that passes Luhn (full ID numbers
/// excepted when `ids_allowed`: the journal holds them, and one in 10 passes Luhn by chance), or a
/// card-like token of digits and `*` (13 to 19 characters, at least one `*`) that is not 6 digits,
/// `*`s, 4 digits. One context is not a number of the daemon's: mio's `Token(N)` at trace level is a
/// registration key made from a pointer (15 digits, one in ten passes Luhn).
fn unmasked_cards(bytes: &[u8], ids_allowed: bool) -> Vec<String> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let starts = bytes[i].is_ascii_digit() || bytes[i] == b'*';
        if !starts || wordy(i.checked_sub(1).and_then(|p| bytes.get(p))) || i > 0 && bytes[i - 1] == b'*' {
            i += 1;
            continue;
        }
        let len = bytes[i..].iter().take_while(|b| b.is_ascii_digit() || **b == b'*').count();
        let end = i + len;
        // Stars around digits are not part of a card (a star next to digits in binary data).
        let lead = bytes[i..end].iter().take_while(|b| **b == b'*').count();
        let trail = bytes[i + lead..end].iter().rev().take_while(|b| **b == b'*').count();
        let token = &bytes[i + lead..end - trail];
        let len = token.len();
        if !wordy(bytes.get(end)) && (13..=19).contains(&len) {
            let text = String::from_utf8_lossy(token).into_owned();
            if token.contains(&b'*') {
                let stars = token.iter().filter(|b| **b == b'*').count();
                let masked = token[..6].iter().all(u8::is_ascii_digit)
                    && token[len - 4..].iter().all(u8::is_ascii_digit)
                    && stars == len - 10;
                if !masked && token.iter().filter(|b| b.is_ascii_digit()).count() > 10 {
                    found.push(text);
                }
            } else if luhn(token) && !(ids_allowed && is_id_number(token)) && !bytes[..i].ends_with(b"Token(") {
                found.push(text);
            }
        }
        i = end.max(i + 1);
    }
    found
}

#[test]
fn the_scanner_finds_planted_leaks() {
    let id = medical_id(7);
    let masked_id = format!("{}********{}", &id[..6], &id[14..]);
    // 6222021234567890128 passes Luhn; so does 4111111111111111.
    let planted = format!(
        "{{\"level\":\"INFO\",\"fields\":{{\"payer\":\"{id}\",\"card\":\"6222021234567890128\"}}}}\n\
         card=4111111111111111 shown=6222021234*****0128"
    );
    assert_eq!(full_id_numbers(planted.as_bytes()), vec![id.clone()]);
    assert_eq!(
        unmasked_cards(planted.as_bytes(), false),
        vec!["6222021234567890128".to_owned(), "4111111111111111".to_owned(), "6222021234*****0128".to_owned()]
    );
    // An ID number with an X, inside binary bytes.
    let x = id_number("110105", "19491231", 2);
    assert!(x.ends_with('X'), "{x}");
    let mut bin = vec![0u8, 7, 0x1f];
    bin.extend_from_slice(x.as_bytes());
    bin.push(0);
    assert_eq!(full_id_numbers(&bin), vec![x]);
    // What is allowed: masked forms, a payment id, a voucher number, a hex digest, RFC 3339 times.
    let clean = format!(
        "{masked_id} 622202*********0128 P20201021090000-A1B2C3 20201021000000000001 \
         ab6222021234567890128ef 2020-10-21T09:00:00+08:00"
    );
    assert!(full_id_numbers(clean.as_bytes()).is_empty());
    assert!(unmasked_cards(clean.as_bytes(), false).is_empty(), "{:?}", unmasked_cards(clean.as_bytes(), false));
    // The journal may hold full ID numbers, even one that happens to pass Luhn.
    let luhn_id = (1..400).map(adult_id).find(|i| luhn(i.as_bytes())).expect("some ID passes Luhn");
    assert!(unmasked_cards(luhn_id.as_bytes(), true).is_empty());
    assert_eq!(unmasked_cards(luhn_id.as_bytes(), false), vec![luhn_id]);
    // mio's pointer-sized token at trace level; the same digits elsewhere are found.
    assert!(unmasked_cards(b"registering token=Token(140071567171584), interests=READABLE", false).is_empty());
    assert_eq!(unmasked_cards(b"id=140071567171584", false), vec!["140071567171584".to_owned()]);
    // The scan of a transcript fails on a planted ID number of the roster.
    let mut t = Transcript::default();
    t.add("planted", planted.clone().into_bytes());
    assert!(std::panic::catch_unwind(|| t.assert_clean(&roster_ids())).is_err());
}

/// The ID numbers and names of the roster the daemon imports.
fn roster_ids() -> Vec<String> {
    roster_column(2)
}

fn roster_names() -> Vec<String> {
    roster_column(3)
}

fn roster_column(i: usize) -> Vec<String> {
    roster_csv().lines().skip(1).map(|l| l.split(',').nth(i).unwrap().to_owned()).collect()
}

/// Everything the scenario printed or answered, by where it came from.
#[derive(Default)]
struct Transcript {
    parts: Vec<(String, Vec<u8>)>,
}

impl Transcript {
    fn add(&mut self, what: &str, bytes: Vec<u8>) {
        self.parts.push((what.to_owned(), bytes));
    }

    /// No full ID number (of the roster or any other) and no unmasked card number.
    fn assert_clean(&self, roster_ids: &[String]) {
        for (what, bytes) in &self.parts {
            let ids = full_id_numbers(bytes);
            assert!(ids.is_empty(), "{what}: full ID numbers {ids:?}");
            let text = String::from_utf8_lossy(bytes);
            for id in roster_ids {
                assert!(!text.contains(id.as_str()), "{what}: the roster's ID number {id}");
            }
            let cards = unmasked_cards(bytes, false);
            assert!(cards.is_empty(), "{what}: unmasked card numbers {cards:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The processes
// ---------------------------------------------------------------------------------------------------

/// `zhengjiao-sim ledger`: its URL (first line of stdout).
async fn start_ledger(dir: &Path, key_id: &str, secret: &str) -> (Child, String) {
    let mut child = Command::new(sim_binary())
        .args(["ledger", "--key-id", key_id, "--secret", secret, "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("ledger.stderr")).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = tokio::time::timeout(BOUND, lines.next_line()).await.expect("ledger URL in time").unwrap().unwrap();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    assert!(url.starts_with("http://"), "{url}");
    (child, url.trim().to_owned())
}

/// `zhengjiao serve` at `RUST_LOG=trace` with its stderr in `log`; its base URL.
async fn start_daemon(config: &Path, format: &str, log: &Path) -> (Child, String) {
    let mut child = Command::new(daemon_binary())
        .args(["serve", "--config"])
        .arg(config)
        .args(["--log-format", format])
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await;
    let line = match first {
        Ok(Ok(Some(line))) => line,
        other => panic!("no listening line: {other:?}\n{}", tail(log, 60)),
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let base = line.trim().strip_prefix("listening ").unwrap_or_else(|| panic!("{line}")).to_owned();
    (child, base)
}

/// The CLI and the API, every answer kept for the scan.
struct Ops {
    base: String,
    http: reqwest::Client,
    transcript: Transcript,
    n: usize,
}

/// A CLI verb's exit code and standard output.
struct Ran {
    code: i32,
    stdout: String,
}

impl Ops {
    /// Runs `zhengjiao ARGS` against the daemon as `token`; keeps its stdout and stderr.
    async fn cli(&mut self, token: &str, args: &[&str]) -> Ran {
        let out = Command::new(daemon_binary())
            .args(args)
            .env("ZHENGJIAO_API", &self.base)
            .env("ZHENGJIAO_TOKEN", token)
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        self.n += 1;
        let what = format!("#{} zhengjiao {}", self.n, args.join(" "));
        self.transcript.add(&format!("{what} (stdout)"), out.stdout.clone());
        self.transcript.add(&format!("{what} (stderr)"), out.stderr.clone());
        Ran { code: out.status.code().unwrap_or(-1), stdout: String::from_utf8_lossy(&out.stdout).into_owned() }
    }

    /// A verb's `--json` answer.
    async fn cli_json(&mut self, token: &str, args: &[&str]) -> (i32, Value) {
        let mut all = args.to_vec();
        all.push("--json");
        let ran = self.cli(token, &all).await;
        let v =
            serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", ran.stdout));
        (ran.code, v)
    }

    /// `GET path` as the admin; the answer is kept.
    async fn get(&mut self, path: &str) -> (u16, String) {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        self.transcript.add(&format!("GET {path}"), text.clone().into_bytes());
        (status, text)
    }

    async fn get_json(&mut self, path: &str) -> Value {
        let (status, text) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + BOUND;
        loop {
            let t = self.get_json("/v1/terminals").await;
            if t["terminals"][0]["state"] == "ready" {
                return;
            }
            assert!(Instant::now() < deadline, "T01 not ready: {t}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Collects `serial` on T01 with the CLI (JSON answer): exit code and the PAYMENT.
    async fn collect(&mut self, serial: &str) -> (i32, Value) {
        self.cli_json(COLLECTOR, &["collect", serial, "--terminal", "T01", "--wait", "20"]).await
    }
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The journal's files (the database, and its WAL and shared memory when present).
fn journal_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".db") || n.contains("journal")))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn no_id_number_or_card_number_leaks_at_trace_level() {
    let keep = std::env::var_os("E2E_KEEP").is_some();
    let dir = tempfile::Builder::new().prefix("zhengjiao-logscan-").disable_cleanup(keep).tempdir().unwrap();
    let dir = dir.path().to_owned();
    if keep {
        eprintln!("E2E_KEEP: {}", dir.display());
    }
    let (_ledger, ledger_url) = start_ledger(&dir, "scan-key", "scan-secret").await;
    let sim = Sim::start(&dir, &SimOptions::default()).await;
    let spec = TerminalSpec { name: "T01".into(), point: POINT.into(), transport: sim.transport(0) };
    let config = write_config(&dir, CLOCK, &[spec], Timeouts::default());
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("endpoint = \"http://127.0.0.1:9\"", &format!("endpoint = \"{ledger_url}\""))
        .replace("key_id = \"e2e-tests\"", "key_id = \"scan-key\"")
        .replace("secret = \"e2e-secret\"", "secret = \"scan-secret\"");
    assert!(text.contains(&ledger_url), "the ledger section was rewritten:\n{text}");
    std::fs::write(&config, text).unwrap();

    let mut ops = Ops {
        base: String::new(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        transcript: Transcript::default(),
        n: 0,
    };

    // The roster, imported with the CLI (its output is scanned too).
    let roster = dir.join("roster.csv");
    std::fs::write(&roster, roster_csv()).unwrap();
    let config_arg = config.to_str().unwrap().to_owned();
    let ran = ops.cli(ADMIN, &["roster", "import", roster.to_str().unwrap(), "--config", &config_arg]).await;
    assert_eq!(ran.code, 0, "roster import: {}", ran.stdout);

    // The daemon, JSON logs at trace.
    let json_log = dir.join("daemon-json.stderr");
    let (mut daemon, base) = start_daemon(&config, "json", &json_log).await;
    ops.base = base;
    ops.wait_ready().await;

    // Lookups: by ID number (as a collector would type it), by serial.
    let ran = ops.cli(COLLECTOR, &["lookup", &medical_id(1)]).await;
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    ops.cli(COLLECTOR, &["lookup", &medical_id(1), "--json"]).await;
    ops.cli(COLLECTOR, &["lookup", &medical(2)]).await;
    ops.get(&format!("/v1/lookup/{}", medical_id(2))).await;

    // Collections: by serial, by ID number, human and JSON output.
    let (code, refunded) = ops.collect(&medical(1)).await;
    assert_eq!((code, refunded["state"].as_str()), (0, Some("approved")), "{refunded}");
    let refunded = refunded["id"].as_str().unwrap().to_owned();
    let ran = ops
        .cli(COLLECTOR, &["collect", &medical_id(2), "--id-number", "--insurance", "medical", "--terminal", "T01"])
        .await;
    assert_eq!(ran.code, 0, "{}", ran.stdout);
    let ran = ops.cli(COLLECTOR, &["collect", &pension(1), "--tier", "300", "--terminal", "T01"]).await;
    assert_eq!(ran.code, 0, "{}", ran.stdout);

    // A decline.
    sim.next_sale(0, "51").await;
    let (code, p) = ops.collect(&medical(3)).await;
    assert_eq!((code, p["state"].as_str()), (3, Some("declined")), "{p}");

    // A void.
    let (_, p) = ops.collect(&medical(4)).await;
    let voided = p["id"].as_str().unwrap().to_owned();
    let ran = ops.cli(COLLECTOR, &["void", &voided, "--wait", "20"]).await;
    assert_eq!(ran.code, 0, "void: {}", ran.stdout);

    // An approval whose response is lost: unknown until a QUERY settles it.
    sim.faults(0, json!({"approve_drop": 1.0})).await;
    let (_, p) = ops.cli_json(COLLECTOR, &["collect", &medical(5), "--terminal", "T01", "--wait", "1"]).await;
    sim.faults(0, json!({"approve_drop": 0.0})).await;
    let lost = p["id"].as_str().unwrap_or_else(|| panic!("{p}")).to_owned();
    ops.cli(ADMIN, &["payments", "--state", "unknown"]).await;
    let deadline = Instant::now() + BOUND;
    loop {
        let (code, p) = ops.cli_json(ADMIN, &["query", &lost]).await;
        if code == 0 && is_approved(&p) {
            assert!(went_through(&p, "unknown"), "{p}");
            break;
        }
        assert!(Instant::now() < deadline, "the lost approval is not settled by QUERY: {code} {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Settle, then refund a payment of the closed batch.
    let ran = ops.cli(COLLECTOR, &["settle", "T01"]).await;
    assert_eq!(ran.code, 0, "settle: {}", ran.stdout);
    let ran = ops.cli(COLLECTOR, &["refund", &refunded, "--amount", "280.00", "--wait", "20"]).await;
    assert_eq!(ran.code, 0, "refund: {}", ran.stdout);

    // Everything forwarded to the ledger.
    let deadline = Instant::now() + BOUND;
    loop {
        let s = ops.get_json("/v1/ledger/status").await;
        if s["backlog"] == 0 && s["forwarded"].as_u64().is_some_and(|n| n >= 6) {
            break;
        }
        assert!(Instant::now() < deadline, "not all forwarded: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The listings and reports, human and JSON.
    for args in [
        vec!["payments"],
        vec!["payments", "--json"],
        vec!["terminals"],
        vec!["ledger", "status"],
        vec!["ledger", "dead-letters"],
        vec!["reconcile", "--date", "2020-10-21"],
        vec!["reconcile", "--date", "2020-10-21", "--json"],
        vec!["query", &refunded],
        vec!["query", &voided, "--json"],
    ] {
        ops.cli(ADMIN, &args).await;
    }
    for path in [
        format!("/v1/payments/{refunded}"),
        format!("/v1/payments/{lost}"),
        "/v1/payments?limit=1000".to_owned(),
        "/v1/settlements".to_owned(),
        "/v1/ledger/dead-letters".to_owned(),
        "/metrics".to_owned(),
    ] {
        ops.get(&path).await;
    }
    let one = ops.get_json(&format!("/v1/payments/{refunded}")).await;
    let card = one["pos"]["card"].as_str().unwrap_or_else(|| panic!("{one}")).to_owned();
    assert!(card.contains('*') && card.len() >= 13, "a masked card: {one}");

    // The online backup of the live journal.
    let backup = dir.join("journal-backup.db");
    let ran = ops.cli(ADMIN, &["backup", "--config", &config_arg, backup.to_str().unwrap()]).await;
    assert_eq!(ran.code, 0, "backup: {}", ran.stdout);
    assert_eq!(mode(&backup), 0o600, "the backup holds full ID numbers: mode 0600");
    let again = ops.cli(ADMIN, &["backup", "--config", &config_arg, backup.to_str().unwrap()]).await;
    assert_eq!(again.code, 1, "a backup never overwrites a file");

    // Killed, then started again with the human format.
    daemon.kill().await.unwrap();
    let human_log = dir.join("daemon-human.stderr");
    let (mut daemon, base) = start_daemon(&config, "human", &human_log).await;
    ops.base = base;
    ops.wait_ready().await;
    ops.cli(ADMIN, &["payments"]).await;
    ops.get(&format!("/v1/payments/{lost}")).await;
    daemon.kill().await.unwrap();

    // --- The scan -----------------------------------------------------------------------------------
    let ids = roster_ids();
    let json_text = std::fs::read(&json_log).unwrap();
    let human_text = std::fs::read(&human_log).unwrap();
    ops.transcript.add("daemon stderr (json)", json_text.clone());
    ops.transcript.add("daemon stderr (human)", human_text.clone());

    // The logs are at trace, and the JSON one is one object per line.
    let json_text = String::from_utf8(json_text).unwrap();
    let mut levels = std::collections::BTreeSet::new();
    let names = roster_names();
    for line in json_text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        let level = v["level"].as_str().unwrap_or_else(|| panic!("no level: {line}")).to_owned();
        assert!(v["fields"].is_object() && v["target"].is_string(), "{line}");
        if matches!(level.as_str(), "INFO" | "WARN" | "ERROR") {
            for name in &names {
                assert!(!line.contains(name.as_str()), "a payer name above debug: {line}");
            }
        }
        levels.insert(level);
    }
    assert!(
        levels.contains("TRACE") || levels.contains("DEBUG"),
        "the scenario ran at the most verbose level: {levels:?}"
    );
    let human_text = String::from_utf8_lossy(&human_text).into_owned();
    for line in human_text.lines().filter(|l| [" INFO ", " WARN ", " ERROR "].iter().any(|lv| l.contains(lv))) {
        for name in &names {
            assert!(!line.contains(name.as_str()), "a payer name above debug: {line}");
        }
    }

    // Logs, every command's output, every API answer.
    ops.transcript.assert_clean(&ids);

    // The journal's files are mode 0600. Its values (read with SQLite, each on its own: in the file,
    // the text columns of one record lie side by side, so raw bytes would join a terminal id and a
    // batch number into one long number) hold the full ID numbers and no card number; so does the
    // backup's.
    let data = dir.join("data");
    let files = journal_files(&data);
    assert!(!files.is_empty(), "no journal in {}", data.display());
    let scratch = dir.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} is mode {:o}", file.display(), mode(file));
        std::fs::copy(file, scratch.join(file.file_name().unwrap())).unwrap();
    }
    let main = files.iter().find(|f| f.extension().is_some_and(|e| e == "sqlite" || e == "db")).unwrap();
    for (what, db) in [("journal", scratch.join(main.file_name().unwrap())), ("backup", backup.clone())] {
        let values = sqlite_values(&db);
        let all: String = values.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>().join("\n");
        for id in &ids {
            assert!(all.contains(id.as_str()), "the {what} holds the roster's ID number {id}");
        }
        assert!(all.contains(&card), "the {what} holds the masked card {card}");
        for (place, value) in &values {
            let cards = unmasked_cards(value.as_bytes(), true);
            assert!(cards.is_empty(), "{what} {place}: unmasked card numbers {cards:?}");
        }
    }
}

/// Every text (and blob, as text) value of every table: `(table.column, value)`.
fn sqlite_values(db: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = Vec::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
        let mut rows = stmt.query([]).unwrap();
        while let Some(row) = rows.next().unwrap() {
            for (i, column) in columns.iter().enumerate() {
                let text = match row.get_ref(i).unwrap() {
                    rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                        String::from_utf8_lossy(t).into_owned()
                    }
                    rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                    _ => continue,
                };
                out.push((format!("{table}.{column}"), text));
            }
        }
    }
    out
}

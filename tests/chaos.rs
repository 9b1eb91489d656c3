#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The chaos test of issue 8 item 1: "nothing lost, nothing charged twice" under every fault at once.
//!
//! Twenty simulated terminals over TCP (one `zhengjiao-sim terminal --terminals 20` process) and one
//! over a pseudo-terminal (a second simulator process with `--pty`), every terminal fault of the
//! simulator at a few percent (corrupt check, swallowed ACK, never answered, approved then dropped,
//! power loss, noise, duplicates) plus drawn declines, response delays switched on and off on random
//! terminals while the run goes (some past the daemon's response timeout, so the answer comes stale),
//! and now and then a terminal approving another amount than asked (voided automatically). The ledger
//! simulator answers `503`, `500`, drops connections after storing, answers slowly, and goes down
//! once (an outage). A roster of a few thousand lines at two collection points, some persons listed
//! twice for the same insurance and year, is collected through the HTTP API by 48 concurrent clients
//! spread over the terminals, with a few voids; at 30% and 60% of the run three random terminals are
//! settled and some payments of the closed batch refunded. Meanwhile the daemon is killed with SIGKILL
//! at seeded random moments (16 times by default) and started again each time. What was in flight at a
//! kill is abandoned by the client; a line is tried again later only when the daemon says it is unpaid.
//! Kills are held off only while a mid-run SETTLE is on the wire (a SETTLE whose answer is lost closes
//! the batch with totals nobody can ask for again: `settle_outcome_unknown`, a limit of the protocol).
//!
//! Then every fault is switched off, every open outcome is asked about until none is left, every
//! terminal is settled, and the ledger backlog is waited out. The checks, each printed with its
//! figures:
//! - every sale the terminals approved and did not void (their state files, `--state`) is a payment
//!   of the daemon, approved, for the same amount, bound to exactly one line, and in the ledger exactly
//!   once with that amount and no reversal; the daemon has no approved payment the terminals do not;
//!   what the terminals voided or refunded the daemon has voided or refunded, and the ledger nets it out;
//! - no person is charged twice for the same insurance and year (the terminals' standing sales mapped
//!   through the ECR reference, memo 0F01, to the daemon's payments and the roster's lines);
//! - no payment or reversal is left `created`, `sent` or `unknown`; no dead letter;
//! - every settlement balanced; the terminals' own books, the settlement totals the terminals sent
//!   (summed over settlements), the journal's daily report and the ledger's `/v1/summary` agree to the
//!   fen; the daemon's reconciliation is balanced.
//!
//! Environment: `CHAOS_SEED=n` replays a seed (printed at the start: the roster, the plan, the
//! simulators' fault draws and the kill moments follow from it; thread timing does not, so a replay is
//! close, not identical); `CHAOS_SOAK=1` runs the long variant (12000 collections, 50 kills),
//! `CHAOS_COLLECTIONS=N` and `CHAOS_KILLS=N` set the sizes (default 4000 and 16); `E2E_KEEP=1` keeps
//! the directory (journal, logs, state files). See the figures with
//! `cargo test --test chaos -- --nocapture`. The soak stays below 1000 transactions per terminal: the
//! simulator keeps only the open and the previous batch plus the newest 1000 transactions, and its
//! state files are the terminals' side of the books.

mod daemon_support;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use daemon_support::{daemon_binary, id_number, sim_binary, tail, write_config, TerminalSpec, Timeouts};
use daemon_support::{ADMIN, CLOCK, COLLECTOR, OTHER, OTHER_POINT, POINT};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// The business day of the whole run (the daemon's clock starts at [`CLOCK`] on every start).
const DAY: &str = "2020-10-21";
const LEDGER_KEY: &str = "chaos-key";
const LEDGER_SECRET: &str = "chaos-secret";
/// TCP terminals (one simulator process); one more runs over a pseudo-terminal.
const TCP_TERMINALS: usize = 20;
/// Pause between two polls of a condition (a poll interval, not a synchronisation).
const POLL: Duration = Duration::from_millis(100);
/// The terminals' `--never-answer` rate.
const NEVER_ANSWER: f64 = 0.015;
/// The 2020 pension tiers in yuan (policy/2020-weidong.toml).
const TIERS: [u64; 15] = [200, 300, 400, 500, 600, 700, 800, 900, 1000, 1500, 2000, 2500, 3000, 4000, 5000];

// ---------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Params {
    seed: u64,
    /// Collections to start (payments created, or abandoned at a kill).
    collections: usize,
    /// SIGKILLs of the daemon.
    kills: usize,
    /// Persons in the roster (each with a medical line; some with a pension line, some listed twice).
    persons: usize,
    /// Concurrent clients.
    clients: usize,
    /// Chance that an approved payment is voided by its collector right away.
    void_rate: f64,
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|e| panic!("{name}={v:?}: {e}")))
}

impl Params {
    fn from_env() -> Params {
        let seed = match std::env::var("CHAOS_SEED") {
            Ok(s) => s.trim().parse().unwrap_or_else(|e| panic!("CHAOS_SEED={s:?}: {e}")),
            Err(_) => fastrand::u64(..1_000_000_000),
        };
        let soak = std::env::var("CHAOS_SOAK").is_ok_and(|v| !v.is_empty() && v != "0");
        let collections = env_usize("CHAOS_COLLECTIONS").unwrap_or(if soak { 12_000 } else { 4_000 });
        let kills = env_usize("CHAOS_KILLS").unwrap_or(if soak { 50 } else { 16 });
        Params { seed, collections, kills, persons: collections.max(100), clients: 48, void_rate: 0.03 }
    }
}

// ---------------------------------------------------------------------------------------------------
// The roster
// ---------------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Line {
    serial: String,
    insurance: &'static str,
    /// Index of the person (see [`person_id`]).
    person: usize,
    /// 0: [`POINT`], 1: [`OTHER_POINT`].
    point: usize,
}

/// The ID number of person `k`: born 1965..=2002 (pension age holds on 2020-10-21), unique per `k`.
fn person_id(k: usize) -> String {
    let per_region = 28 * 12 * 38;
    let region = format!("4104{:02}", 2 + k / per_region);
    let r = k % per_region;
    let birth = format!("{}{:02}{:02}", 1965 + r / (28 * 12), 1 + (r / 28) % 12, 1 + r % 28);
    id_number(&region, &birth, u32::try_from(k % 997).unwrap())
}

fn person_name(k: usize) -> String {
    const SURNAMES: [&str; 8] = ["张", "王", "李", "赵", "刘", "陈", "杨", "黄"];
    const GIVEN: [&str; 12] = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳"];
    format!("{}{}{}", SURNAMES[k % 8], GIVEN[(k / 8) % 12], GIVEN[(k / 96) % 12])
}

/// Each person has a medical line (280.00, or 100.00 for a 低保 payer); two in five a pension line;
/// one in twenty is listed a second time for medical 2020 under another serial (the same person,
/// insurance and year: only one of the two may ever be paid).
fn roster(persons: usize) -> (Vec<Line>, String) {
    let mut lines = Vec::new();
    let mut csv =
        String::from("collection_serial,insurance,id_number,name,year,amount_due,hardship,collection_point\n");
    for k in 0..persons {
        let point = k % 2;
        let point_code = [POINT, OTHER_POINT][point];
        let (id, name) = (person_id(k), person_name(k));
        let (amount, hardship) = if k % 10 == 3 { ("100", "低保") } else { ("280", "") };
        let mut add = |serial: String, insurance: &'static str, amount: &str, hardship: &str| {
            csv.push_str(&format!("{serial},{insurance},{id},{name},2020,{amount},{hardship},{point_code}\n"));
            lines.push(Line { serial, insurance, person: k, point });
        };
        add(format!("CH{k:05}-M"), "medical", amount, hardship);
        if k % 5 == 0 || k % 5 == 2 {
            add(format!("CH{k:05}-P"), "pension", "", "");
        }
        if k % 20 == 7 {
            add(format!("CH{k:05}-M2"), "medical", amount, hardship);
        }
    }
    (lines, csv)
}

// ---------------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------------

/// A child process with its standard error in a file; its tail is printed if the test panics.
struct Proc {
    what: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` (stdout piped) and reads its standard output until `want` returns true for a line
    /// (within `bound`); the lines read, then the rest drained in the background.
    async fn spawn(
        what: &str,
        mut cmd: Command,
        log: PathBuf,
        bound: Duration,
        mut want: impl FnMut(&str) -> bool,
    ) -> (Proc, Vec<String>) {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(bound, async {
            while let Ok(Some(line)) = out.next_line().await {
                let done = want(&line);
                seen.push(line);
                if done {
                    return true;
                }
            }
            false
        })
        .await;
        assert!(
            found == Ok(true),
            "{what}: did not print what was expected within {bound:?}; stdout: {seen:?}\n--- stderr ---\n{}",
            tail(&log, 60)
        );
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        (Proc { what: what.to_owned(), child: Some(child), log }, seen)
    }

    /// SIGKILL, and wait for the process to end.
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("--- {} stderr ({}), last lines ---\n{}", self.what, self.log.display(), tail(&self.log, 60));
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// A `zhengjiao-sim terminal` process: its endpoints and its control URL.
struct TermSim {
    /// Kept for its lifetime (killed on drop) and its log.
    _proc: Proc,
    endpoints: Vec<String>,
    control: String,
    pty: bool,
    state: PathBuf,
}

impl TermSim {
    async fn start(dir: &Path, name: &str, terminals: usize, pty: bool, terminal_id: &str, seed: u64) -> TermSim {
        let state = dir.join(format!("{name}.json"));
        let mut cmd = Command::new(sim_binary());
        cmd.arg("terminal")
            .args(["--terminals", &terminals.to_string()])
            .args(["--terminal-id", terminal_id])
            .args(["--control", "127.0.0.1:0"])
            .arg("--state")
            .arg(&state)
            .args(["--seed", &seed.to_string()])
            .args(["--decline", "51=0.03,05=0.01,T1=0.01"])
            // Every fault at a few percent; `--delay-ms` is switched at run time (`delay_chaos`).
            .args(["--corrupt-check", "0.03", "--swallow-ack", "0.02"])
            .args(["--never-answer", &NEVER_ANSWER.to_string(), "--card-delay-ms", "40"])
            .args(["--approve-drop", "0.02", "--power-loss", "0.01", "--noise", "0.03", "--duplicate", "0.03"])
            .env("RUST_LOG", "warn");
        if pty {
            cmd.arg("--pty");
        }
        let log = dir.join(format!("{name}.stderr"));
        let (proc, lines) = Proc::spawn(name, cmd, log, Duration::from_secs(30), |l| l.starts_with("control ")).await;
        let control = lines.last().unwrap().strip_prefix("control ").unwrap().trim().to_owned();
        let endpoints: Vec<String> = lines[..lines.len() - 1].iter().map(|l| l.trim().to_owned()).collect();
        assert_eq!(endpoints.len(), terminals, "{name} printed {lines:?}");
        TermSim { _proc: proc, endpoints, control, pty, state }
    }

    fn transport(&self, i: usize) -> String {
        if self.pty {
            format!("serial:{}?baud=9600", self.endpoints[i])
        } else {
            format!("tcp:{}", self.endpoints[i])
        }
    }

    /// The state file of terminal `i` (`FILE`, then `FILE.i`).
    fn state_file(&self, i: usize) -> PathBuf {
        if i == 0 {
            self.state.clone()
        } else {
            PathBuf::from(format!("{}.{i}", self.state.display()))
        }
    }
}

/// The daemon process: `zhengjiao serve`.
async fn start_daemon(config: &Path, n: usize) -> (Proc, String) {
    let log = config.parent().unwrap().join(format!("daemon-{n:02}.stderr"));
    let mut cmd = Command::new(daemon_binary());
    cmd.arg("serve").arg("--config").arg(config).env("RUST_LOG", "info");
    let mut base = String::new();
    let (proc, _) = Proc::spawn(&format!("zhengjiao serve #{n}"), cmd, log, Duration::from_secs(30), |line| match line
        .trim()
        .strip_prefix("listening ")
    {
        Some(url) => {
            base = url.trim_end_matches('/').to_owned();
            true
        }
        None => false,
    })
    .await;
    (proc, base)
}

// ---------------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------------

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

/// Status and JSON body (`Null` when not JSON), or the transport error.
async fn send(req: reqwest::RequestBuilder) -> Result<(u16, Value), reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// The simulators' control endpoints (unsigned, loopback).
async fn control_post(http: &reqwest::Client, url: &str, body: Value) -> Value {
    let (status, answer) = send(http.post(url).json(&body)).await.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    assert!(status == 200 || status == 204, "POST {url} {body}: {status} {answer}");
    answer
}

/// A signed `GET` of the ledger (ledger-api.md: HMAC-SHA256 over `ts\nGET\npath\n`, path without query).
async fn ledger_get(http: &reqwest::Client, base: &str, path_and_query: &str) -> (u16, Value) {
    let path = path_and_query.split('?').next().unwrap();
    let ts = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let mut mac = Hmac::<Sha256>::new_from_slice(LEDGER_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}\nGET\n{path}\n").as_bytes());
    let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let req = http
        .get(format!("{base}{path_and_query}"))
        .header("X-ZJ-Key-Id", LEDGER_KEY)
        .header("X-ZJ-Timestamp", ts.to_string())
        .header("X-ZJ-Signature", sig);
    send(req).await.unwrap_or_else(|e| panic!("ledger GET {path_and_query}: {e}"))
}

/// Yuan with two decimals (`"280.00"`, `"-3.50"`) in fen.
fn fen(v: &Value) -> i64 {
    let s = match v {
        Value::String(s) => s.as_str(),
        other => panic!("not a money string: {other}"),
    };
    let (neg, s) = s.strip_prefix('-').map_or((false, s), |r| (true, r));
    let (int, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<2}");
    let n = int.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap();
    if neg {
        -n
    } else {
        n
    }
}

fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", fen.abs() / 100, fen.abs() % 100)
}

// ---------------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------------

/// One configured terminal: our name, its point (0 or 1), which simulator (0 TCP, 1 pty) and index.
#[derive(Debug, Clone)]
struct Term {
    name: String,
    point: usize,
    sim: usize,
    index: usize,
}

/// What the clients share.
struct Ctx {
    params: Params,
    lines: Vec<Line>,
    terms: Vec<Term>,
    /// The daemon's base URL while it runs; `None` while it is down.
    base: watch::Receiver<Option<String>>,
    /// Collections started: a payment created (200/202) or a request lost at a kill.
    started: AtomicUsize,
    stop: AtomicBool,
    plan: Mutex<Plan>,
    stats: Mutex<BTreeMap<&'static str, u64>>,
    /// Answers the API must never give under chaos.
    anomalies: Mutex<Vec<String>>,
    http: reqwest::Client,
    /// Held (read) across a mid-run SETTLE, taken (write) by the killer for a kill: a SETTLE whose
    /// answer is lost closes the terminal's batch with totals nobody can ask for again (docs/api.md,
    /// `settle_outcome_unknown`), which no daemon can recover, so kills do not land on one.
    settling: tokio::sync::RwLock<()>,
    /// Settlements made during the run (batch numbers per terminal).
    mid_settlements: Mutex<Vec<(String, String)>>,
}

/// The lines still to collect: the first pass in a seeded order, and lines to try again later.
struct Plan {
    fresh: VecDeque<usize>,
    later: VecDeque<(usize, Instant)>,
}

impl Ctx {
    fn count(&self, what: &'static str) {
        *self.stats.lock().unwrap().entry(what).or_default() += 1;
    }

    fn anomaly(&self, what: String) {
        eprintln!("ANOMALY: {what}");
        self.anomalies.lock().unwrap().push(what);
    }

    fn later(&self, line: usize, rng: &mut fastrand::Rng) {
        let due = Instant::now() + Duration::from_millis(rng.u64(500..3000));
        self.plan.lock().unwrap().later.push_back((line, due));
    }

    /// The next line to try, and whether it is a retry (looked up first).
    fn next(&self, rng: &mut fastrand::Rng) -> Option<(usize, bool)> {
        let mut plan = self.plan.lock().unwrap();
        let due = plan.later.front().is_some_and(|(_, at)| *at <= Instant::now());
        if due && (plan.fresh.is_empty() || rng.f64() < 0.3) {
            return plan.later.pop_front().map(|(l, _)| (l, true));
        }
        plan.fresh.pop_front().map(|l| (l, false))
    }

    /// Waits while the daemon is down.
    async fn base(&self) -> String {
        let mut rx = self.base.clone();
        loop {
            if let Some(b) = rx.borrow_and_update().clone() {
                return b;
            }
            if rx.changed().await.is_err() {
                panic!("the daemon supervisor ended");
            }
        }
    }

    fn token(&self, point: usize) -> &'static str {
        [COLLECTOR, OTHER][point]
    }
}

async fn client_loop(ctx: Arc<Ctx>, n: usize) {
    let mut rng =
        fastrand::Rng::with_seed(ctx.params.seed ^ (0x5151_0000 + n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    while !ctx.stop.load(Ordering::Relaxed) && ctx.started.load(Ordering::Relaxed) < ctx.params.collections {
        let Some((li, retry)) = ctx.next(&mut rng) else {
            // Nothing due yet: lines under way wait for their outcome.
            tokio::time::sleep(POLL).await;
            continue;
        };
        let line = &ctx.lines[li];
        let base = ctx.base().await;
        if retry {
            // Tried again only when the daemon says the line is unpaid.
            let req = ctx.http.get(format!("{base}/v1/lookup/{}", line.serial)).bearer_auth(ADMIN);
            match send(req).await {
                Ok((200, body)) => {
                    let status = body["lines"]
                        .as_array()
                        .and_then(|ls| ls.iter().find(|l| l["serial"] == line.serial.as_str()))
                        .map(|l| l["status"].as_str().unwrap_or("?").to_owned())
                        .unwrap_or_default();
                    match status.as_str() {
                        "unpaid" => {}
                        "paid" => {
                            ctx.count("retry: paid meanwhile");
                            continue;
                        }
                        "under_way" => {
                            ctx.count("retry: still under way");
                            ctx.later(li, &mut rng);
                            continue;
                        }
                        other => {
                            ctx.anomaly(format!("lookup {}: status {other:?}: {body}", line.serial));
                            continue;
                        }
                    }
                }
                Ok((status, body)) => {
                    ctx.anomaly(format!("lookup {}: {status} {body}", line.serial));
                    continue;
                }
                Err(_) => {
                    ctx.later(li, &mut rng);
                    continue;
                }
            }
        }
        collect_once(&ctx, &mut rng, li, &base).await;
    }
}

/// One collection of line `li` on a random terminal of its point, and what follows from its answer.
async fn collect_once(ctx: &Ctx, rng: &mut fastrand::Rng, li: usize, base: &str) {
    let line = &ctx.lines[li];
    let terms: Vec<&Term> = ctx.terms.iter().filter(|t| t.point == line.point).collect();
    let term = terms[rng.usize(..terms.len())];
    let mut body = json!({"serial": line.serial, "insurance": line.insurance, "terminal": term.name, "wait_ms": 8000});
    if line.insurance == "pension" {
        body["tier"] = json!(TIERS[rng.usize(..TIERS.len())].to_string());
    }
    let token = ctx.token(line.point);
    let answer = send(ctx.http.post(format!("{base}/v1/collect")).bearer_auth(token).json(&body)).await;
    let (status, p) = match answer {
        Ok(a) => a,
        Err(e) => {
            if e.is_timeout() {
                ctx.anomaly(format!("collect {body}: no answer within the client's timeout: {e}"));
            }
            // The daemon was killed under it (or is being): abandoned; the line waits.
            ctx.started.fetch_add(1, Ordering::Relaxed);
            ctx.count("collect: abandoned (connection lost)");
            ctx.later(li, rng);
            return;
        }
    };
    match status {
        200 | 202 => {
            ctx.started.fetch_add(1, Ordering::Relaxed);
            let p = if status == 202 { follow(ctx, base, &p).await } else { Some(p) };
            match p {
                Some(p) => settled(ctx, rng, li, base, &p).await,
                None => {
                    ctx.count("collect: still open, left to the daemon");
                    ctx.later(li, rng);
                }
            }
        }
        409 if matches!(p["reason"].as_str(), Some("payment_under_way" | "outcome_unknown")) => {
            ctx.count("collect: refused, a payment under way");
            ctx.later(li, rng);
        }
        422 if p["rule"] == "already_paid" => ctx.count("collect: refused, already paid"),
        503 if p["code"] == "terminal_unavailable" => {
            ctx.count("collect: terminal unavailable");
            ctx.later(li, rng);
            tokio::time::sleep(Duration::from_millis(rng.u64(20..200))).await;
        }
        _ => {
            ctx.anomaly(format!("collect {body}: {status} {p}"));
            ctx.later(li, rng);
        }
    }
}

/// Polls an open payment for a while (`wait_ms`); `None` when it is still open (the daemon resolves
/// it on its own; the client goes on with other lines).
async fn follow(ctx: &Ctx, base: &str, p: &Value) -> Option<Value> {
    let id = p["id"].as_str()?;
    for _ in 0..3 {
        let req = ctx.http.get(format!("{base}/v1/payments/{id}?wait_ms=3000")).bearer_auth(ADMIN);
        match send(req).await {
            Ok((200, p)) if p["final"] == true => return Some(p),
            Ok((200, p)) if !matches!(p["state"].as_str(), Some("created" | "sent" | "unknown")) => {
                // An automatic reversal under way: `wait_ms` does not wait for it.
                tokio::time::sleep(POLL).await;
            }
            Ok((200, _)) => {}
            Ok((status, body)) => {
                ctx.anomaly(format!("GET /v1/payments/{id}: {status} {body}"));
                return None;
            }
            Err(_) => return None,
        }
    }
    None
}

/// A final PAYMENT of line `li`.
async fn settled(ctx: &Ctx, rng: &mut fastrand::Rng, li: usize, base: &str, p: &Value) {
    match p["state"].as_str() {
        Some("approved" | "forwarded") => {
            ctx.count("collect: approved");
            if rng.f64() < ctx.params.void_rate {
                void(ctx, rng, li, base, p).await;
            }
        }
        Some("declined") => {
            ctx.count("collect: declined");
            if rng.f64() < 0.7 {
                ctx.later(li, rng);
            }
        }
        Some("not_charged") => {
            ctx.count("collect: not charged");
            ctx.later(li, rng);
        }
        Some("voided" | "refunded") => {
            ctx.count("collect: approval reversed automatically");
            ctx.later(li, rng);
        }
        other => ctx.anomaly(format!("collect answered a final payment in state {other:?}: {p}")),
    }
}

/// The collector voids an approved payment (the payer changed their mind); once voided the line is
/// collected again later.
async fn void(ctx: &Ctx, rng: &mut fastrand::Rng, li: usize, base: &str, p: &Value) {
    let id = p["id"].as_str().unwrap();
    let token = ctx.token(ctx.lines[li].point);
    let req = ctx.http.post(format!("{base}/v1/payments/{id}/void")).bearer_auth(token).json(&json!({"wait_ms": 8000}));
    match send(req).await {
        Ok((200, v)) => match v["reversal"]["state"].as_str() {
            Some("approved") => {
                ctx.count("void: approved");
                ctx.later(li, rng);
            }
            _ => ctx.count("void: refused by the terminal"),
        },
        Ok((202, _)) => ctx.count("void: still open"),
        Ok((409, _)) => ctx.count("void: conflict"),
        Ok((503, _)) => ctx.count("void: terminal unavailable"),
        Ok((status, body)) => ctx.anomaly(format!("void {id}: {status} {body}")),
        Err(_) => ctx.count("void: abandoned (connection lost)"),
    }
}

/// Switches response delays on and off on random terminals while the run goes: most short, some past
/// the daemon's money timeout (3 s) so a response arrives stale.
async fn delay_chaos(ctx: Arc<Ctx>, sims: [String; 2], seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0xDE1A_7000);
    let http = client(Duration::from_secs(10));
    while !ctx.stop.load(Ordering::Relaxed) {
        let t = &ctx.terms[rng.usize(..ctx.terms.len())];
        let ms = [150, 400, 1200, 3500][rng.usize(..4)];
        let url = format!("{}/terminals/{}/faults", sims[t.sim], t.index);
        control_post(&http, &url, json!({"delay_ms": ms})).await;
        tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
        control_post(&http, &url, json!({"delay_ms": 0})).await;
        ctx.count("chaos: response delay switched on");
        if rng.f64() < 0.2 {
            // A misbehaving terminal: its next SALE is approved for another amount (the daemon voids
            // it automatically, binds nothing and sends nothing to the ledger).
            let t = &ctx.terms[rng.usize(..ctx.terms.len())];
            let url = format!("{}/terminals/{}/next-sale", sims[t.sim], t.index);
            control_post(&http, &url, json!({"code": "00", "amount_fen": 12_345})).await;
            ctx.count("chaos: next sale approved for another amount");
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(100..800))).await;
    }
}

/// Settles a few random terminals at two moments of the run (as a collection point does at midday),
/// then refunds (退货) some of the closed batch's payments; a refunded line is collected again later.
async fn settler(ctx: Arc<Ctx>, sims: [String; 2]) {
    let mut rng = fastrand::Rng::with_seed(ctx.params.seed ^ 0x5E77_1E00);
    let http = client(Duration::from_secs(10));
    let n = ctx.params.collections;
    for mark in [n * 3 / 10, n * 6 / 10] {
        while ctx.started.load(Ordering::Relaxed) < mark {
            if ctx.stop.load(Ordering::Relaxed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut picks: Vec<usize> = (0..ctx.terms.len()).collect();
        rng.shuffle(&mut picks);
        for &ti in &picks[..3] {
            let t = &ctx.terms[ti];
            // A SETTLE never answered is the one fault that loses data for good (see `settling`).
            let faults = format!("{}/terminals/{}/faults", sims[t.sim], t.index);
            control_post(&http, &faults, json!({"never_answer": 0.0})).await;
            let batch = settle_mid_run(&ctx, &t.name).await;
            control_post(&http, &faults, json!({"never_answer": NEVER_ANSWER})).await;
            let Some(batch) = batch else { continue };
            ctx.mid_settlements.lock().unwrap().push((t.name.clone(), batch.clone()));
            refund_some(&ctx, &mut rng, t, &batch).await;
        }
    }
}

/// `POST /v1/terminals/{name}/settle` until it is answered 200 (the batch number), while the run goes.
async fn settle_mid_run(ctx: &Ctx, name: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    // Longer than the daemon's wait for money in flight (120 s): the guard must cover the whole SETTLE.
    let http = client(Duration::from_secs(180));
    // Goes on after the collections ended (the run waits for this task), so every pick is settled.
    while Instant::now() < deadline {
        let base = ctx.base().await;
        let guard = ctx.settling.read().await;
        let req = http.post(format!("{base}/v1/terminals/{name}/settle")).bearer_auth(ADMIN).json(&json!({}));
        let answer = send(req).await;
        drop(guard);
        match answer {
            Ok((200, s)) => {
                ctx.count("settle mid-run: done");
                if s["balanced"] != true {
                    ctx.anomaly(format!("mid-run settlement of {name} not balanced: {s}"));
                }
                return s["batch"].as_str().map(str::to_owned);
            }
            Ok((409 | 503, body))
                if matches!(
                    body["reason"].as_str().or(body["code"].as_str()),
                    Some("outcome_unknown" | "money_in_flight" | "terminal_unavailable")
                ) =>
            {
                ctx.count("settle mid-run: asked again");
            }
            Ok((status, body)) => {
                ctx.anomaly(format!("mid-run settle {name}: {status} {body}"));
                return None;
            }
            Err(_) => ctx.count("settle mid-run: connection lost"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    ctx.anomaly(format!("mid-run settle {name}: not done within 120 s"));
    None
}

/// Refunds about one in six of the approved payments of `batch` on terminal `t`.
async fn refund_some(ctx: &Ctx, rng: &mut fastrand::Rng, t: &Term, batch: &str) {
    let mut listed = None;
    for _ in 0..20 {
        let base = ctx.base().await;
        let req = ctx.http.get(format!("{base}/v1/payments?terminal={}&limit=100000", t.name)).bearer_auth(ADMIN);
        match send(req).await {
            Ok((200, body)) => {
                listed = Some(body);
                break;
            }
            Ok((status, body)) => {
                ctx.anomaly(format!("GET /v1/payments?terminal={}: {status} {body}", t.name));
                return;
            }
            // Killed under it: ask the next daemon.
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
    let Some(body) = listed else { return };
    let closed: Vec<Value> = body["payments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| matches!(p["state"].as_str(), Some("approved" | "forwarded")) && p["pos"]["batch"] == batch)
        .cloned()
        .collect();
    let picked: Vec<&Value> = closed.iter().filter(|_| rng.f64() < 0.17).collect();
    for p in picked {
        let id = p["id"].as_str().unwrap();
        let serial = p["line"]["serial"].as_str().unwrap();
        let Some(li) = ctx.lines.iter().position(|l| l.serial == serial) else {
            ctx.anomaly(format!("payment {id} names a line not in the roster: {p}"));
            continue;
        };
        let base = ctx.base().await;
        let body = json!({"amount": p["amount"], "wait_ms": 8000});
        let req = ctx.http.post(format!("{base}/v1/payments/{id}/refund")).bearer_auth(ctx.token(t.point)).json(&body);
        match send(req).await {
            Ok((200, v)) if v["reversal"]["state"] == "approved" => {
                ctx.count("refund: approved");
                ctx.later(li, rng);
            }
            Ok((200, _)) => ctx.count("refund: refused by the terminal"),
            Ok((202, _)) => ctx.count("refund: still open"),
            Ok((409 | 503, _)) => ctx.count("refund: conflict or terminal unavailable"),
            Ok((status, v)) => ctx.anomaly(format!("refund {id}: {status} {v}")),
            Err(_) => ctx.count("refund: abandoned (connection lost)"),
        }
    }
}

/// Kills the daemon at seeded random moments spread over the run and starts it again each time.
async fn killer(
    ctx: Arc<Ctx>,
    tx: watch::Sender<Option<String>>,
    config: PathBuf,
    mut daemon: Proc,
    ledger: String,
) -> (Proc, Vec<Proc>, Vec<Duration>) {
    let mut rng = fastrand::Rng::with_seed(ctx.params.seed ^ 0x0000_C1AA);
    let http = client(Duration::from_secs(10));
    let (n, kills) = (ctx.params.collections, ctx.params.kills);
    let mut old = Vec::new();
    let mut restarts = Vec::new();
    let outage_at = n / 2;
    let mut outage_done = false;
    for k in 0..kills {
        let at = (k + 1) * n / (kills + 1);
        while ctx.started.load(Ordering::Relaxed) < at && !ctx.stop.load(Ordering::Relaxed) {
            if !outage_done && ctx.started.load(Ordering::Relaxed) >= outage_at {
                // The ledger goes down for a few seconds (every /v1 request 503 with Retry-After).
                control_post(&http, &format!("{ledger}/control/down?seconds=4"), json!({})).await;
                ctx.count("chaos: ledger outage (4 s)");
                outage_done = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if ctx.stop.load(Ordering::Relaxed) {
            break;
        }
        // A random moment past the mark.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..600))).await;
        let guard = ctx.settling.write().await;
        tx.send_replace(None);
        daemon.kill().await;
        drop(guard);
        ctx.count("chaos: daemon SIGKILLed");
        old.push(daemon);
        let t0 = Instant::now();
        let (d, base) = start_daemon(&config, k + 1).await;
        restarts.push(t0.elapsed());
        daemon = d;
        tx.send_replace(Some(base));
    }
    (daemon, old, restarts)
}

// ---------------------------------------------------------------------------------------------------
// The end: settle everything and look
// ---------------------------------------------------------------------------------------------------

struct Admin {
    http: reqwest::Client,
    base: String,
}

impl Admin {
    async fn get(&self, path: &str) -> Value {
        let (status, body) = send(self.http.get(format!("{}{path}", self.base)).bearer_auth(ADMIN))
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    async fn post(&self, path: &str) -> (u16, Value) {
        send(self.http.post(format!("{}{path}", self.base)).bearer_auth(ADMIN).json(&json!({})))
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    async fn payments(&self) -> Vec<Value> {
        self.get("/v1/payments?limit=100000").await["payments"].as_array().unwrap().clone()
    }
}

fn is_open_state(s: &Value) -> bool {
    matches!(s.as_str(), Some("created" | "sent" | "unknown"))
}

/// A payment whose own outcome, or a reversal's, is open.
fn is_open(p: &Value) -> bool {
    p["final"] != true
        || is_open_state(&p["state"])
        || p["reversals"].as_array().is_some_and(|rs| rs.iter().any(|r| is_open_state(&r["state"])))
}

/// Asks the terminals about every open outcome until none is left.
async fn resolve_all(admin: &Admin, bound: Duration) -> usize {
    let deadline = Instant::now() + bound;
    let mut asked = 0;
    loop {
        let open: Vec<Value> = admin.payments().await.into_iter().filter(is_open).collect();
        if open.is_empty() {
            return asked;
        }
        assert!(
            Instant::now() < deadline,
            "{} payments still have an open outcome after {bound:?} with every fault off: {:?}",
            open.len(),
            open.iter().take(5).collect::<Vec<_>>()
        );
        for p in &open {
            let id = p["id"].as_str().unwrap();
            let (status, body) = admin.post(&format!("/v1/payments/{id}/query")).await;
            assert!(matches!(status, 200 | 503), "POST /v1/payments/{id}/query: {status} {body}");
            asked += 1;
        }
        tokio::time::sleep(POLL * 3).await;
    }
}

/// Settles one terminal, asking again while an outcome is open or it is not ready.
async fn settle(admin: &Admin, name: &str, bound: Duration) -> Value {
    let deadline = Instant::now() + bound;
    loop {
        let (status, body) = admin.post(&format!("/v1/terminals/{name}/settle")).await;
        if status == 200 {
            return body;
        }
        let retry = status == 503
            || (status == 409 && matches!(body["reason"].as_str(), Some("outcome_unknown" | "money_in_flight")));
        assert!(retry, "settle {name}: {status} {body}");
        assert!(Instant::now() < deadline, "settle {name}: still {status} {body} after {bound:?}");
        tokio::time::sleep(POLL * 3).await;
    }
}

/// Counts and totals in fen.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Books {
    sales: (i64, i64),
    voids: (i64, i64),
    refunds: (i64, i64),
}

impl Books {
    fn net(&self) -> i64 {
        self.sales.1 - self.voids.1 - self.refunds.1
    }

    fn row(&self, what: &str) -> String {
        format!(
            "{what:<42} {:>6} {:>12} {:>6} {:>12} {:>6} {:>12} {:>13}",
            self.sales.0,
            yuan(self.sales.1),
            self.voids.0,
            yuan(self.voids.1),
            self.refunds.0,
            yuan(self.refunds.1),
            yuan(self.net())
        )
    }
}

/// What a terminal holds in its state file.
#[derive(Debug, Clone)]
struct TxView {
    terminal: String,
    amount: i64,
    voided: bool,
    refunded: i64,
}

/// Reads every terminal's state file: its approved sales by ECR reference, and its books.
fn terminal_view(sims: &[&TermSim; 2], terms: &[Term]) -> (BTreeMap<String, TxView>, Books, Vec<String>) {
    let mut sales = BTreeMap::new();
    let mut books = Books::default();
    let mut problems = Vec::new();
    for t in terms {
        let file = sims[t.sim].state_file(t.index);
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let state: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(state["version"], 1, "{}", file.display());
        for tx in state["transactions"].as_array().unwrap() {
            if tx["code"] != "00" {
                continue;
            }
            let amount = tx["amount_fen"].as_i64().unwrap();
            let reference = tx["reference"].as_str().unwrap().to_owned();
            match tx["kind"].as_str() {
                Some("00") => {
                    books.sales.0 += 1;
                    books.sales.1 += amount;
                    let view = TxView {
                        terminal: t.name.clone(),
                        amount,
                        voided: tx["voided"] == true,
                        refunded: tx["refunded_fen"].as_i64().unwrap_or(0),
                    };
                    if let Some(other) = sales.insert(reference.clone(), view) {
                        problems.push(format!(
                            "ECR reference {reference} approved twice: on {} and {}",
                            other.terminal, t.name
                        ));
                    }
                }
                Some("01") => {
                    books.voids.0 += 1;
                    books.voids.1 += amount;
                }
                Some("02") => {
                    books.refunds.0 += 1;
                    books.refunds.1 += amount;
                }
                other => problems.push(format!("{}: transaction kind {other:?}", file.display())),
            }
        }
    }
    (sales, books, problems)
}

// ---------------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let params = Params::from_env();
    let seed = params.seed;
    println!(
        "chaos seed {seed} (replay: CHAOS_SEED={seed}); {} collections, {} kills, {} persons, {} clients",
        params.collections, params.kills, params.persons, params.clients
    );
    eprintln!("chaos seed {seed} (replay: CHAOS_SEED={seed})");
    let started_at = Instant::now();
    let keep = std::env::var_os("E2E_KEEP").is_some();
    let tmp = tempfile::Builder::new().prefix("zhengjiao-chaos-").disable_cleanup(keep).tempdir().unwrap();
    let dir = tmp.path().to_owned();
    if keep {
        eprintln!("E2E_KEEP: {}", dir.display());
    }

    // --- The simulators ---------------------------------------------------------------------------
    let mut cmd = Command::new(sim_binary());
    cmd.args(["ledger", "--key-id", LEDGER_KEY, "--secret", LEDGER_SECRET, "--listen", "127.0.0.1:0"])
        .arg("--db")
        .arg(dir.join("ledger.sqlite"))
        .args(["--seed", &seed.to_string()])
        .args(["--unavailable-rate", "0.04", "--retry-after", "1", "--error-rate", "0.04"])
        .args(["--slow-rate", "0.04", "--slow-ms", "400", "--drop-rate", "0.03"])
        .env("RUST_LOG", "warn");
    let (mut ledger_proc, out) =
        Proc::spawn("ledger simulator", cmd, dir.join("ledger.stderr"), Duration::from_secs(30), |_| true).await;
    let ledger = out[0].trim().to_owned();
    assert!(ledger.starts_with("http://"), "{out:?}");

    let tcp = TermSim::start(&dir, "tcp-terminals", TCP_TERMINALS, false, "41000001", seed).await;
    let pty = TermSim::start(&dir, "pty-terminal", 1, true, "41000101", seed.wrapping_add(1)).await;
    let mut terms: Vec<Term> = (0..TCP_TERMINALS)
        .map(|i| Term { name: format!("T{:02}", i + 1), point: usize::from(i >= TCP_TERMINALS / 2), sim: 0, index: i })
        .collect();
    terms.push(Term { name: format!("T{:02}", TCP_TERMINALS + 1), point: 0, sim: 1, index: 0 });
    let sims = [&tcp, &pty];
    let specs: Vec<TerminalSpec> = terms
        .iter()
        .map(|t| TerminalSpec {
            name: t.name.clone(),
            point: [POINT, OTHER_POINT][t.point].to_owned(),
            transport: sims[t.sim].transport(t.index),
        })
        .collect();

    // --- The daemon's configuration and roster ----------------------------------------------------
    let config = write_config(&dir, CLOCK, &specs, Timeouts::default());
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("endpoint = \"http://127.0.0.1:9\"", &format!("endpoint = \"{ledger}\""))
        .replace("key_id = \"e2e-tests\"", &format!("key_id = \"{LEDGER_KEY}\""))
        .replace("secret = \"e2e-secret\"", &format!("secret = \"{LEDGER_SECRET}\""));
    assert!(text.contains(&ledger), "the ledger section was rewritten:\n{text}");
    std::fs::write(&config, text).unwrap();
    let (lines, csv) = roster(params.persons);
    let roster_file = dir.join("roster.csv");
    std::fs::write(&roster_file, csv).unwrap();
    let out = Command::new(daemon_binary())
        .args(["roster", "import"])
        .arg(&roster_file)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "roster import: {}", String::from_utf8_lossy(&out.stderr));

    let (daemon, base) = start_daemon(&config, 0).await;
    let (tx, rx) = watch::channel(Some(base.clone()));

    // --- The run ------------------------------------------------------------------------------------
    let mut order: Vec<usize> = (0..lines.len()).collect();
    fastrand::Rng::with_seed(seed).shuffle(&mut order);
    let ctx = Arc::new(Ctx {
        params: params.clone(),
        lines: lines.clone(),
        terms: terms.clone(),
        base: rx,
        started: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        plan: Mutex::new(Plan { fresh: order.into(), later: VecDeque::new() }),
        stats: Mutex::new(BTreeMap::new()),
        anomalies: Mutex::new(Vec::new()),
        http: client(Duration::from_secs(30)),
        settling: tokio::sync::RwLock::new(()),
        mid_settlements: Mutex::new(Vec::new()),
    });
    let controls = [tcp.control.clone(), pty.control.clone()];
    let delays = tokio::spawn(delay_chaos(ctx.clone(), controls.clone(), seed));
    let settler = tokio::spawn(settler(ctx.clone(), controls.clone()));
    let killer = tokio::spawn(killer(ctx.clone(), tx, config.clone(), daemon, ledger.clone()));
    let collecting_since = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..params.clients {
        clients.spawn(client_loop(ctx.clone(), n));
    }
    // A watchdog: the run must make progress.
    let mut last = (0, Instant::now());
    while !clients.is_empty() {
        tokio::select! {
            done = clients.join_next() => {
                if let Some(Err(e)) = done {
                    ctx.stop.store(true, Ordering::Relaxed);
                    panic!("a client failed: {e}");
                }
            }
            () = tokio::time::sleep(Duration::from_millis(500)) => {
                let now = ctx.started.load(Ordering::Relaxed);
                if now != last.0 {
                    last = (now, Instant::now());
                }
                if last.1.elapsed() > Duration::from_secs(60) {
                    ctx.stop.store(true, Ordering::Relaxed);
                    panic!("no collection started for 60 s (at {now}); stats {:?}", ctx.stats.lock().unwrap());
                }
            }
        }
    }
    ctx.stop.store(true, Ordering::Relaxed);
    let (daemon, old_daemons, restarts) = killer.await.unwrap();
    delays.await.unwrap();
    settler.await.unwrap();
    let run_time = collecting_since.elapsed();
    eprintln!("collection phase over after {run_time:.1?}");

    // --- Faults off, everything resolved, settled and forwarded ------------------------------------
    let http = client(Duration::from_secs(120));
    let off = json!({"corrupt_check": 0.0, "swallow_ack": 0.0, "never_answer": 0.0, "approve_drop": 0.0,
                     "power_loss": 0.0, "noise": 0.0, "duplicate": 0.0, "delay_ms": 0});
    for control in &controls {
        control_post(&http, &format!("{control}/faults"), off.clone()).await;
    }
    control_post(
        &http,
        &format!("{ledger}/control/faults"),
        json!({"unavailable_rate": 0.0, "error_rate": 0.0, "slow_rate": 0.0, "drop_rate": 0.0}),
    )
    .await;
    control_post(&http, &format!("{ledger}/control/down?seconds=0"), json!({})).await;
    let admin = Admin { http: http.clone(), base: ctx.base.borrow().clone().unwrap() };

    let names: Vec<String> = terms.iter().map(|t| t.name.clone()).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = admin.get("/v1/terminals").await;
        let ready = t["terminals"].as_array().unwrap().iter().filter(|t| t["state"] == "ready").count();
        if ready == names.len() {
            break;
        }
        assert!(Instant::now() < deadline, "terminals not all ready 60 s after the faults stopped: {t}");
        tokio::time::sleep(POLL).await;
    }
    let asked = resolve_all(&admin, Duration::from_secs(90)).await;
    let mut settlements_now = Vec::new();
    let mut settles = tokio::task::JoinSet::new();
    for name in &names {
        let admin = Admin { http: http.clone(), base: admin.base.clone() };
        let name = name.clone();
        settles.spawn(async move { settle(&admin, &name, Duration::from_secs(90)).await });
    }
    while let Some(s) = settles.join_next().await {
        settlements_now.push(s.unwrap());
    }
    let deadline = Instant::now() + Duration::from_secs(150);
    let ledger_status = loop {
        let s = admin.get("/v1/ledger/status").await;
        if s["backlog"] == 0 && s["held"] == 0 {
            break s;
        }
        assert!(Instant::now() < deadline, "the ledger backlog is not 0 after 150 s with every fault off: {s}");
        tokio::time::sleep(POLL * 2).await;
    };

    // --- The views ----------------------------------------------------------------------------------
    let mut problems: Vec<String> = ctx.anomalies.lock().unwrap().clone();
    if old_daemons.len() < params.kills {
        problems.push(format!("the daemon was killed {} times, not {}", old_daemons.len(), params.kills));
    }
    let (term_sales, term_books, p) = terminal_view(&sims, &terms);
    problems.extend(p);
    let payments = admin.payments().await;
    let by_id: HashMap<&str, &Value> = payments.iter().map(|p| (p["id"].as_str().unwrap(), p)).collect();
    let settlements = admin.get("/v1/settlements").await["settlements"].as_array().unwrap().clone();
    let daily = admin.get(&format!("/v1/reports/daily?date={DAY}")).await;
    let reconcile = admin.get(&format!("/v1/reconcile?date={DAY}")).await;
    let (status, summary) = ledger_get(&http, &ledger, &format!("/v1/summary?date={DAY}")).await;
    assert_eq!(status, 200, "ledger summary: {summary}");
    let line_by_serial: HashMap<&str, &Line> = lines.iter().map(|l| (l.serial.as_str(), l)).collect();

    // No open outcome, no dead letter.
    let open: Vec<&Value> = payments.iter().filter(|p| is_open(p)).collect();
    if !open.is_empty() {
        problems.push(format!("{} payments with an open outcome: {:?}", open.len(), &open[..open.len().min(5)]));
    }
    if ledger_status["dead_letters"] != 0 {
        problems.push(format!("dead letters at the end: {ledger_status}"));
    }

    // The terminals' standing sales against the daemon's payments.
    let standing: BTreeMap<String, TxView> =
        term_sales.iter().filter(|(_, t)| !t.voided && t.refunded == 0).map(|(r, t)| (r.clone(), t.clone())).collect();
    let daemon_standing: BTreeSet<&str> = payments
        .iter()
        .filter(|p| matches!(p["state"].as_str(), Some("approved" | "forwarded")))
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    let mut persons: HashMap<(usize, &str), Vec<&str>> = HashMap::new();
    let mut bound_lines: HashMap<&str, &str> = HashMap::new();
    for (reference, t) in &standing {
        let Some(p) = by_id.get(reference.as_str()) else {
            problems.push(format!(
                "{} approved {reference} for {} and the daemon has no such payment",
                t.terminal,
                yuan(t.amount)
            ));
            continue;
        };
        if !daemon_standing.contains(reference.as_str()) {
            problems.push(format!(
                "{} approved {reference} (standing) but the daemon has it {}: {p}",
                t.terminal, p["state"]
            ));
        }
        if fen(&p["amount"]) != t.amount || p["terminal"] != t.terminal.as_str() {
            problems.push(format!("{reference}: the terminal {} says {}, the daemon {p}", t.terminal, yuan(t.amount)));
        }
        let serial = p["line"]["serial"].as_str().unwrap();
        if let Some(other) = bound_lines.insert(serial, reference.as_str()) {
            problems.push(format!("line {serial} is bound to two standing sales: {other} and {reference}"));
        }
        let line = line_by_serial[serial];
        persons.entry((line.person, line.insurance)).or_default().push(reference.as_str());
    }
    for id in &daemon_standing {
        if !standing.contains_key(*id) {
            problems.push(format!("the daemon holds {id} approved but no terminal has it standing: {}", by_id[id]));
        }
    }
    let charged_twice: Vec<_> = persons.iter().filter(|(_, refs)| refs.len() > 1).collect();
    for ((person, insurance), refs) in &charged_twice {
        problems.push(format!(
            "person {} charged {} times for {insurance} 2020: {refs:?}",
            person_id(*person),
            refs.len()
        ));
    }
    // What the terminals voided or refunded, the daemon has voided or refunded (whole).
    for (reference, t) in term_sales.iter().filter(|(_, t)| t.voided || t.refunded > 0) {
        let want = if t.voided { "voided" } else { "refunded" };
        match by_id.get(reference.as_str()) {
            Some(p) if p["state"] == want && (t.voided || t.refunded == t.amount) => {}
            other => problems.push(format!(
                "{} {want} {reference} ({} of {}); the daemon: {other:?}",
                t.terminal,
                yuan(t.refunded),
                yuan(t.amount)
            )),
        }
    }

    // Every line of the roster as the daemon sees it: each standing sale is `paid_by` of exactly the
    // line it names and of no other; no line is paid by anything else.
    let mut lookups = tokio::task::JoinSet::new();
    let serials: Vec<String> = lines.iter().map(|l| l.serial.clone()).collect();
    for chunk in serials.chunks(serials.len().div_ceil(8).max(1)) {
        let chunk = chunk.to_vec();
        let admin = Admin { http: http.clone(), base: admin.base.clone() };
        lookups.spawn(async move {
            let mut paid = Vec::new();
            for serial in chunk {
                let body = admin.get(&format!("/v1/lookup/{serial}")).await;
                let found: Vec<&Value> =
                    body["lines"].as_array().unwrap().iter().filter(|l| l["serial"] == serial.as_str()).collect();
                assert_eq!(found.len(), 1, "lookup {serial}: {body}");
                paid.push((serial, found[0]["status"].clone(), found[0]["paid_by"].clone()));
            }
            paid
        });
    }
    let mut paid_lines: HashMap<String, Vec<String>> = HashMap::new();
    let mut line_states: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(chunk) = lookups.join_next().await {
        for (serial, status, paid_by) in chunk.unwrap() {
            *line_states.entry(status.as_str().unwrap_or("?").to_owned()).or_default() += 1;
            match (status.as_str(), paid_by.as_str()) {
                (Some("paid"), Some(by)) => paid_lines.entry(by.to_owned()).or_default().push(serial),
                (Some("unpaid"), None) => {}
                other => problems.push(format!("line {serial} at the end: {other:?}")),
            }
        }
    }
    for (serial, reference) in &bound_lines {
        match paid_lines.get(*reference) {
            Some(ls) if ls.len() == 1 && ls[0] == *serial => {}
            other => {
                problems.push(format!("standing sale {reference} names line {serial}; lines paid by it: {other:?}"))
            }
        }
    }
    for (by, ls) in &paid_lines {
        if !standing.contains_key(by.as_str()) {
            problems.push(format!("lines {ls:?} are paid by {by}, which no terminal has standing"));
        }
    }

    // The ledger: each bound payment exactly once with its amount, reversals for the voided ones.
    let mut expect_ledger = Books::default();
    let mut ledger_checks = Vec::new();
    for p in &payments {
        let id = p["id"].as_str().unwrap().to_owned();
        let amount = fen(&p["amount"]);
        let reversals = p["reversals"].as_array().cloned().unwrap_or_default();
        let automatic = reversals.iter().any(|r| r["id"].as_str().is_some_and(|i| i.ends_with("-A1")));
        let bound = match p["state"].as_str() {
            Some("approved" | "forwarded") => true,
            Some("voided" | "refunded") => !automatic,
            _ => false,
        };
        if bound {
            expect_ledger.sales.0 += 1;
            expect_ledger.sales.1 += amount;
            let reversed = matches!(p["state"].as_str(), Some("voided" | "refunded"));
            if reversed {
                expect_ledger.voids.0 += 1;
                expect_ledger.voids.1 += amount;
            }
            ledger_checks.push((id, amount, reversed));
        }
    }
    let mut gets = tokio::task::JoinSet::new();
    for chunk in ledger_checks.chunks(ledger_checks.len().div_ceil(8).max(1)) {
        let chunk = chunk.to_vec();
        let (http, ledger) = (http.clone(), ledger.clone());
        gets.spawn(async move {
            let mut bad = Vec::new();
            for (id, amount, reversed) in chunk {
                let (status, e) = ledger_get(&http, &ledger, &format!("/v1/entries/{id}")).await;
                if status != 200 || e["entry"]["kind"] != "payment" || fen(&e["entry"]["amount"]) != amount {
                    bad.push(format!("ledger entry {id} ({}): {status} {e}", yuan(amount)));
                }
                let rid = format!("{id}-reversal");
                let (status, e) = ledger_get(&http, &ledger, &format!("/v1/entries/{rid}")).await;
                let ok = if reversed {
                    status == 200 && e["entry"]["kind"] == "reversal" && fen(&e["entry"]["amount"]) == amount
                } else {
                    status == 404
                };
                if !ok {
                    bad.push(format!("ledger entry {rid} (reversed: {reversed}): {status} {e}"));
                }
            }
            bad
        });
    }
    while let Some(bad) = gets.join_next().await {
        problems.extend(bad.unwrap());
    }

    // The books: terminals (state files), their settlement totals, the journal, the ledger.
    let mut settled_books = Books::default();
    for s in &settlements {
        let t = &s["terminal_totals"];
        settled_books.sales.0 += t["sale_count"].as_i64().unwrap();
        settled_books.sales.1 += fen(&t["sale_total"]);
        settled_books.voids.0 += t["void_count"].as_i64().unwrap();
        settled_books.voids.1 += fen(&t["void_total"]);
        settled_books.refunds.0 += t["refund_count"].as_i64().unwrap();
        settled_books.refunds.1 += fen(&t["refund_total"]);
        if s["balanced"] != true {
            problems.push(format!("settlement not balanced: {s}"));
        }
    }
    let field =
        |key: &str| daily["summary"].as_array().unwrap().iter().find(|f| f["key"] == key).unwrap()["value"].clone();
    let journal_books = Books {
        sales: (field("approved_count").as_i64().unwrap(), fen(&field("approved_total"))),
        voids: (field("void_count").as_i64().unwrap(), fen(&field("void_total"))),
        refunds: (field("refund_count").as_i64().unwrap(), fen(&field("refund_total"))),
    };
    let mut ledger_books = Books::default();
    for l in summary["lines"].as_array().unwrap() {
        ledger_books.sales.0 += l["payments"].as_i64().unwrap();
        ledger_books.sales.1 += fen(&l["payment_total"]);
        ledger_books.voids.0 += l["reversals"].as_i64().unwrap();
        ledger_books.voids.1 += fen(&l["reversal_total"]);
    }
    let standing_total: i64 = standing.values().map(|t| t.amount).sum();
    if settled_books != term_books {
        problems
            .push(format!("the terminals' settlement totals {settled_books:?} differ from their books {term_books:?}"));
    }
    if journal_books != term_books {
        problems.push(format!(
            "the journal's daily report {journal_books:?} differs from the terminals' books {term_books:?}"
        ));
    }
    if ledger_books != expect_ledger {
        problems.push(format!(
            "the ledger's summary {ledger_books:?} differs from the journal's bound payments {expect_ledger:?}"
        ));
    }
    for (what, net) in [
        ("terminals' books", term_books.net()),
        ("settlement totals", settled_books.net()),
        ("journal", journal_books.net()),
        ("ledger", ledger_books.net()),
    ] {
        if net != standing_total {
            problems.push(format!("net of the {what} {} != the standing sales {}", yuan(net), yuan(standing_total)));
        }
    }
    if reconcile["balanced"] != true {
        problems.push(format!(
            "the daemon's reconciliation is not balanced: differences {}, missing at the ledger {}, unknown to the \
             journal {}",
            reconcile["differences"], reconcile["missing_at_ledger"], reconcile["unknown_to_journal"]
        ));
    }

    // How the open outcomes ended (the journal's history, read beside the running daemon).
    let journal = rusqlite::Connection::open_with_flags(
        dir.join("data").join("journal.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut went_unknown: BTreeMap<String, usize> = BTreeMap::new();
    let mut stmt =
        journal.prepare("SELECT DISTINCT payment_id FROM payment_transitions WHERE to_state = 'unknown'").unwrap();
    for id in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        let id = id.unwrap();
        let state = by_id.get(id.as_str()).map_or("?", |p| p["state"].as_str().unwrap_or("?"));
        *went_unknown.entry(state.to_owned()).or_default() += 1;
    }
    let reversals_unknown: i64 = journal
        .query_row("SELECT COUNT(DISTINCT reversal_id) FROM reversal_transitions WHERE to_state = 'unknown'", [], |r| {
            r.get(0)
        })
        .unwrap();
    drop(stmt);
    drop(journal);

    // --- The figures --------------------------------------------------------------------------------
    let stats = ctx.stats.lock().unwrap().clone();
    let by_state = payments.iter().fold(BTreeMap::<String, usize>::new(), |mut m, p| {
        *m.entry(p["state"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        m
    });
    let mut counters: BTreeMap<String, u64> = BTreeMap::new();
    for (sim, n) in [(&tcp, TCP_TERMINALS), (&pty, 1)] {
        for i in 0..n {
            let (_, c) = send(http.get(format!("{}/terminals/{i}/counters", sim.control))).await.unwrap();
            for (k, v) in c["faults"].as_object().unwrap() {
                *counters.entry(format!("terminal fault {k}")).or_default() += v.as_u64().unwrap_or(0);
            }
            for k in ["sales_approved", "sales_declined"] {
                *counters.entry(format!("terminal {k}")).or_default() += c["engine"][k].as_u64().unwrap_or(0);
            }
        }
    }
    let (_, lc) = send(http.get(format!("{ledger}/control/counters"))).await.unwrap();
    println!("\n=== chaos seed {seed}: figures ===");
    println!("collection phase {run_time:.1?}; total so far {:.1?}", started_at.elapsed());
    println!(
        "roster lines {} ({} persons); collections started {}",
        lines.len(),
        params.persons,
        ctx.started.load(Ordering::Relaxed)
    );
    println!(
        "daemon SIGKILLs {}; restarts took {:?}",
        old_daemons.len(),
        restarts.iter().map(|d| format!("{:.1?}", d)).collect::<Vec<_>>()
    );
    for (k, v) in &stats {
        println!("  client: {k:<44} {v}");
    }
    for (k, v) in &counters {
        println!("  simulator: {k:<41} {v}");
    }
    println!("  ledger simulator counters: {lc}");
    println!("payments by state at the end: {by_state:?}");
    println!("payments once unknown, by how they ended: {went_unknown:?}; reversals once unknown: {reversals_unknown}");
    println!("roster lines by status at the end: {line_states:?}");
    println!(
        "queries asked at the end: {asked}; settlements {} (mid-run {:?}, final {})",
        settlements.len(),
        ctx.mid_settlements.lock().unwrap(),
        settlements_now.len()
    );
    println!(
        "{:<42} {:>6} {:>12} {:>6} {:>12} {:>6} {:>12} {:>13}",
        "books (count, yuan)", "sales", "", "voids", "", "refund", "", "net"
    );
    println!("{}", term_books.row("terminals' state files"));
    println!("{}", settled_books.row("terminals' settlement totals (sum)"));
    println!("{}", journal_books.row("journal (daily report)"));
    println!("{}", expect_ledger.row("journal: payments bound, and reversed"));
    println!("{}", ledger_books.row("ledger /v1/summary (payments, reversals)"));
    println!(
        "standing sales (approved, not voided): {} for {} yuan; bound to {} lines; in the ledger once each: {}",
        standing.len(),
        yuan(standing_total),
        bound_lines.len(),
        ledger_checks.len()
    );
    println!("persons charged twice for one insurance and year: {}", charged_twice.len());
    println!("payments or reversals left open: {}; dead letters: {}", open.len(), ledger_status["dead_letters"]);
    println!("reconciliation balanced: {}", reconcile["balanced"]);
    println!("total time {:.1?}", started_at.elapsed());

    assert!(problems.is_empty(), "chaos seed {seed}: {} problems:\n{}", problems.len(), problems.join("\n"));
    drop(daemon);
    ledger_proc.kill().await;
}

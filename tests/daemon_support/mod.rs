//! End-to-end support: the real `zhengjiao` daemon and the real `zhengjiao-sim` terminal simulator as
//! child processes, a roster with valid ID numbers, a daemon configuration in a temporary directory, and
//! HTTP helpers for the daemon's API (docs/api.md) and the simulator's control endpoint.
//!
//! Nothing here sleeps to synchronise: processes are followed by the lines they print, and state by
//! polling with a bound ([`BOUND`]); a bound that runs out fails the test with what was awaited. When a
//! test panics, every [`Daemon`] and [`Sim`] still alive prints the tail of its standard error.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// The longest any awaited condition may take before the test fails.
pub const BOUND: Duration = Duration::from_secs(20);
/// Pause between two polls of a condition (a poll interval, not a synchronisation).
pub const POLL: Duration = Duration::from_millis(50);

/// Bearer token of a collector at [`POINT`] (staff number 1001).
pub const COLLECTOR: &str = "collector-token";
/// Bearer token of a collector at [`OTHER_POINT`] (staff number 2001).
pub const OTHER: &str = "other-token";
/// Bearer token of an admin (staff number 9001).
pub const ADMIN: &str = "admin-token";
/// The main collection point.
pub const POINT: &str = "WD-DX-001";
/// Another collection point.
pub const OTHER_POINT: &str = "WD-JP-002";
/// The business clock of most tests: inside the collection phase of the 2020 policy.
pub const CLOCK: &str = "2020-10-21T09:00:00+08:00";

// ---------------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------------

/// The daemon binary, built by cargo for this test.
pub fn daemon_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_zhengjiao"))
}

/// The simulator binary next to the daemon's (same target directory and profile). It belongs to
/// another package of the workspace, so cargo does not build it for this test: it is built here once
/// per test process (`cargo build -p zhengjiao-simulator --bin zhengjiao-sim`, a no-op when it is up to
/// date, so a stale binary is never used). When that build fails (e.g. the simulator is being edited)
/// an existing binary is used, with a warning.
pub fn sim_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let daemon = daemon_binary();
        let profile_dir = daemon.parent().expect("the daemon binary has a directory").to_path_buf();
        let sim = profile_dir.join(format!("zhengjiao-sim{}", std::env::consts::EXE_SUFFIX));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut cmd = std::process::Command::new(cargo);
        cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
            "build",
            "--quiet",
            "-p",
            "zhengjiao-simulator",
            "--bin",
            "zhengjiao-sim",
        ]);
        // The same profile as this test's binaries: target/<profile>/ (or target/<triple>/<profile>/).
        let profile = profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_owned();
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        // The same target directory, unless the environment already names one.
        if std::env::var_os("CARGO_TARGET_DIR").is_none() {
            if let Some(target) = profile_dir.parent() {
                let target = if target.join("CACHEDIR.TAG").exists() {
                    Some(target.to_path_buf())
                } else {
                    // target/<triple>/<profile>: the target directory is one further up.
                    target.parent().filter(|t| t.join("CACHEDIR.TAG").exists()).map(Path::to_path_buf)
                };
                if let Some(target) = target {
                    cmd.arg("--target-dir").arg(target);
                }
            }
        }
        match cmd.status() {
            Ok(status) if status.success() => {}
            Ok(status) if sim.exists() => {
                eprintln!("warning: building zhengjiao-sim failed ({status}); using the existing {}", sim.display())
            }
            Ok(status) => panic!("building zhengjiao-sim failed ({status}) and {} does not exist", sim.display()),
            Err(e) if sim.exists() => {
                eprintln!("warning: cannot run cargo ({e}); using the existing {}", sim.display())
            }
            Err(e) => panic!("cannot run cargo to build zhengjiao-sim ({e}) and {} does not exist", sim.display()),
        }
        assert!(sim.exists(), "zhengjiao-sim was built but is not at {}", sim.display());
        sim
    })
}

/// The last `n` lines of a log file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A fresh number for log file names within one process.
fn next_seq() -> usize {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Reads lines from a child's standard output until `want` says it has what it needs (returns
/// `Some`), the output ends, or [`BOUND`] (times `factor`) runs out. The rest of the output is
/// drained in the background so the child never blocks on a full pipe.
async fn read_stdout_until<T>(
    stdout: ChildStdout,
    what: &str,
    log: &Path,
    bound: Duration,
    mut want: impl FnMut(&str) -> Option<T>,
) -> T {
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(bound, async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(t) = want(&line) {
                        return Some(t);
                    }
                    seen.push(line);
                }
                Ok(None) | Err(_) => return None,
            }
        }
    })
    .await;
    match found {
        Ok(Some(t)) => {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            t
        }
        Ok(None) => panic!(
            "{what}: its standard output ended before it printed what was expected; stdout so far: {seen:?}\n\
             --- its stderr ({}) ---\n{}",
            log.display(),
            tail(log, 80)
        ),
        Err(_) => panic!(
            "{what}: nothing expected on its standard output within {bound:?}; stdout so far: {seen:?}\n\
             --- its stderr ({}) ---\n{}",
            log.display(),
            tail(log, 80)
        ),
    }
}

// ---------------------------------------------------------------------------------------------------
// The terminal simulator
// ---------------------------------------------------------------------------------------------------

/// How to start `zhengjiao-sim terminal`.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Terminals to run (`--terminals`).
    pub terminals: usize,
    /// Pseudo-terminals instead of TCP (`--pty`).
    pub pty: bool,
    /// `--seed`.
    pub seed: u64,
    /// `--card-delay-ms`.
    pub card_delay_ms: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { terminals: 1, pty: false, seed: 7, card_delay_ms: 0 }
    }
}

/// A running `zhengjiao-sim terminal` with its control endpoint.
pub struct Sim {
    child: Child,
    /// Each terminal's endpoint as printed: a TCP address or a pty device path.
    pub endpoints: Vec<String>,
    /// Whether the terminals are on pseudo-terminals.
    pub pty: bool,
    /// `http://127.0.0.1:PORT` of the control endpoint.
    pub control: String,
    /// Its standard error.
    pub log: PathBuf,
    http: reqwest::Client,
}

impl Sim {
    /// Starts the simulator with its state file in `dir`; returns once it printed its endpoints and
    /// its control endpoint answers.
    pub async fn start(dir: &Path, opts: &SimOptions) -> Sim {
        let log = dir.join(format!("sim-{}.stderr", next_seq()));
        let mut cmd = Command::new(sim_binary());
        cmd.arg("terminal")
            .args(["--terminals", &opts.terminals.to_string()])
            .args(["--control", "127.0.0.1:0"])
            .arg("--state")
            .arg(dir.join("terminals.json"))
            .args(["--seed", &opts.seed.to_string()])
            .args(["--card-delay-ms", &opts.card_delay_ms.to_string()])
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        if opts.pty {
            cmd.arg("--pty");
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", sim_binary().display()));
        let stdout = child.stdout.take().unwrap();
        let want = opts.terminals + 1;
        let mut got = Vec::new();
        let control = read_stdout_until(stdout, "zhengjiao-sim", &log, BOUND, |line| {
            if let Some(url) = line.strip_prefix("control ") {
                return Some(url.trim().to_owned());
            }
            got.push(line.trim().to_owned());
            None
        })
        .await;
        assert_eq!(got.len(), want - 1, "zhengjiao-sim printed {got:?} before its control line");
        let sim = Sim {
            child,
            endpoints: got,
            pty: opts.pty,
            control,
            log,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
        };
        let listed = sim.control_get("/terminals").await;
        assert_eq!(listed.as_array().map(Vec::len), Some(opts.terminals), "simulator terminals: {listed}");
        sim
    }

    /// Stops the simulator (SIGKILL) and waits for it: every terminal goes away at once.
    pub async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// The daemon configuration's `transport` of terminal `i`.
    pub fn transport(&self, i: usize) -> String {
        if self.pty {
            format!("serial:{}?baud=9600", self.endpoints[i])
        } else {
            format!("tcp:{}", self.endpoints[i])
        }
    }

    async fn control_get(&self, path: &str) -> Value {
        let resp = self.http.get(format!("{}{path}", self.control)).send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "simulator GET {path}: {body}");
        body
    }

    async fn control_post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self.http.post(format!("{}{path}", self.control)).json(&body).send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Changes the fields of terminal `i`'s faults named in `patch` (e.g. `{"noise": 1.0}`).
    pub async fn faults(&self, i: usize, patch: Value) -> Value {
        let (status, body) = self.control_post(&format!("/terminals/{i}/faults"), patch.clone()).await;
        assert_eq!(status, 200, "simulator faults {patch}: {body}");
        body
    }

    /// The next SALE on terminal `i` answers `code`.
    pub async fn next_sale(&self, i: usize, code: &str) {
        let (status, body) = self.control_post(&format!("/terminals/{i}/next-sale"), json!({ "code": code })).await;
        assert_eq!(status, 204, "simulator next-sale {code}: {body}");
    }

    /// The next SALE on terminal `i` is approved (`00`) for `amount_fen` whatever it asks, and the
    /// terminal keeps and reports that amount (a misbehaving terminal).
    pub async fn next_sale_approved_for(&self, i: usize, amount_fen: u64) {
        let body = json!({ "code": "00", "amount_fen": amount_fen });
        let (status, answer) = self.control_post(&format!("/terminals/{i}/next-sale"), body).await;
        assert_eq!(status, 204, "simulator next-sale 00 for {amount_fen} fen: {answer}");
    }

    /// The SALE card wait of terminal `i` from now on (a sale already waiting follows the change).
    pub async fn card_delay(&self, i: usize, ms: u64) {
        let (status, body) = self.control_post(&format!("/terminals/{i}/card-delay"), json!({ "ms": ms })).await;
        assert_eq!(status, 204, "simulator card-delay {ms}: {body}");
    }

    /// Terminal `i`'s counters.
    pub async fn counters(&self, i: usize) -> Value {
        self.control_get(&format!("/terminals/{i}/counters")).await
    }

    /// A counter of terminal `i` by JSON pointer, e.g. `/engine/sales_approved`.
    pub async fn counter(&self, i: usize, pointer: &str) -> u64 {
        let c = self.counters(i).await;
        c.pointer(pointer).and_then(Value::as_u64).unwrap_or_else(|| panic!("no counter {pointer} in {c}"))
    }

    /// Waits until a counter of terminal `i` reaches `at_least`.
    pub async fn wait_counter(&self, i: usize, pointer: &str, at_least: u64) {
        let deadline = Instant::now() + BOUND;
        loop {
            let n = self.counter(i, pointer).await;
            if n >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "simulator terminal {i}: counter {pointer} is {n}, still below {at_least} after {BOUND:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- zhengjiao-sim stderr ({}), last lines ---\n{}", self.log.display(), tail(&self.log, 40));
        }
        let _ = self.child.start_kill();
    }
}

// ---------------------------------------------------------------------------------------------------
// Roster
// ---------------------------------------------------------------------------------------------------

/// An 18-character ID number (GB 11643): `region` (6 digits), `birth` (YYYYMMDD), `seq` (3 digits) and
/// the ISO 7064 MOD 11-2 check character.
pub fn id_number(region: &str, birth: &str, seq: u32) -> String {
    let body = format!("{region}{birth}{seq:03}");
    assert_eq!(body.len(), 17, "{body}");
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    format!("{body}{}", char::from(check))
}

/// Medical lines of [`POINT`], 280.00 due each: `ZJ-M001` ..= `ZJ-M060`.
pub const MEDICAL_LINES: u32 = 60;
/// Medical lines of [`POINT`] for 低保 payers, 100.00 due: `ZJ-L001` ..= `ZJ-L005`.
pub const DIBAO_LINES: u32 = 5;
/// Pension lines of [`POINT`] (no amount due): `ZJ-P001` ..= `ZJ-P020`.
pub const PENSION_LINES: u32 = 20;
/// Medical lines of [`OTHER_POINT`]: `ZJ-J001` ..= `ZJ-J005`.
pub const OTHER_POINT_LINES: u32 = 5;
/// A pension line of a payer born 1955-06-01 (older than the policy allows).
pub const TOO_OLD: &str = "ZJ-P-OLD";
/// A pension line of a payer born 2006-01-01 (14 on 2020-10-21; the policy wants 16).
pub const TOO_YOUNG: &str = "ZJ-P-YOUNG";

pub fn medical(i: u32) -> String {
    assert!((1..=MEDICAL_LINES).contains(&i));
    format!("ZJ-M{i:03}")
}
pub fn dibao(i: u32) -> String {
    assert!((1..=DIBAO_LINES).contains(&i));
    format!("ZJ-L{i:03}")
}
pub fn pension(i: u32) -> String {
    assert!((1..=PENSION_LINES).contains(&i));
    format!("ZJ-P{i:03}")
}
pub fn other_point(i: u32) -> String {
    assert!((1..=OTHER_POINT_LINES).contains(&i));
    format!("ZJ-J{i:03}")
}

/// The ID number of an adult payer number `k` (each line has its own payer), born in 1980.
pub fn adult_id(k: u32) -> String {
    id_number("410402", &format!("1980{:02}{:02}", 1 + k % 12, 1 + k % 28), k)
}
/// The payer of `medical(i)`.
pub fn medical_id(i: u32) -> String {
    adult_id(i)
}
/// The payer of `other_point(i)`.
pub fn other_point_id(i: u32) -> String {
    adult_id(300 + i)
}

fn name(k: u32) -> String {
    const SURNAMES: [&str; 6] = ["张", "王", "李", "赵", "刘", "陈"];
    const GIVEN: [&str; 10] = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋"];
    format!("{}{}", SURNAMES[(k % 6) as usize], GIVEN[((k / 6) % 10) as usize])
}

/// The roster CSV (English headers, UTF-8).
pub fn roster_csv() -> String {
    let mut out =
        String::from("collection_serial,insurance,id_number,name,year,amount_due,hardship,collection_point\n");
    let mut line = |serial: &str, insurance: &str, id: &str, name: &str, amount: &str, hardship: &str, point: &str| {
        out.push_str(&format!("{serial},{insurance},{id},{name},2020,{amount},{hardship},{point}\n"));
    };
    for i in 1..=MEDICAL_LINES {
        line(&medical(i), "medical", &medical_id(i), &name(i), "280", "", POINT);
    }
    for i in 1..=DIBAO_LINES {
        line(&dibao(i), "medical", &adult_id(100 + i), &name(100 + i), "100", "低保", POINT);
    }
    for i in 1..=PENSION_LINES {
        line(&pension(i), "pension", &adult_id(200 + i), &name(200 + i), "", "", POINT);
    }
    for i in 1..=OTHER_POINT_LINES {
        line(&other_point(i), "medical", &other_point_id(i), &name(300 + i), "280", "", OTHER_POINT);
    }
    line(TOO_OLD, "pension", &id_number("410402", "19550601", 900), "孙老", "", "", POINT);
    line(TOO_YOUNG, "pension", &id_number("410402", "20060101", 901), "周小", "", "", POINT);
    out
}

// ---------------------------------------------------------------------------------------------------
// Daemon configuration
// ---------------------------------------------------------------------------------------------------

/// Link timings of the configured terminals (`[terminals.timeouts]`), short for tests.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub t_ack_ms: u64,
    pub money_ms: u64,
    pub query_ms: u64,
    pub sign_in_ms: u64,
    pub settle_ms: u64,
    pub status_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts { t_ack_ms: 200, money_ms: 3000, query_ms: 2000, sign_in_ms: 2000, settle_ms: 10_000, status_ms: 2000 }
    }
}

/// One configured terminal: our name, its collection point and its transport.
#[derive(Debug, Clone)]
pub struct TerminalSpec {
    pub name: String,
    pub point: String,
    pub transport: String,
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes `zhengjiao.toml` into `dir` and returns its path.
pub fn write_config(dir: &Path, clock: &str, terminals: &[TerminalSpec], t: Timeouts) -> PathBuf {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/2020-weidong.toml");
    let mut text = format!(
        "data_dir = '{data}'\npolicy = '{policy}'\nclock = \"{clock}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n\
         [ledger]\nendpoint = \"http://127.0.0.1:9\"\nkey_id = \"e2e-tests\"\nsecret = \"e2e-secret\"\n",
        data = dir.join("data").display(),
        policy = policy.display(),
    );
    for term in terminals {
        text.push_str(&format!(
            "\n[[terminals]]\nid = \"{}\"\ncollection_point = \"{}\"\ntill = \"01\"\ntransport = \"{}\"\n\
             [terminals.timeouts]\nt_ack_ms = {}\nmoney_ms = {}\nquery_ms = {}\nsign_in_ms = {}\nsettle_ms = {}\n\
             status_ms = {}\n",
            term.name,
            term.point,
            term.transport,
            t.t_ack_ms,
            t.money_ms,
            t.query_ms,
            t.sign_in_ms,
            t.settle_ms,
            t.status_ms
        ));
    }
    for (token, staff, point, role) in [
        (COLLECTOR, "1001", Some(POINT), "collector"),
        (OTHER, "2001", Some(OTHER_POINT), "collector"),
        (ADMIN, "9001", None, "admin"),
    ] {
        text.push_str(&format!("\n[[operators]]\ntoken_sha256 = \"{}\"\nstaff_no = \"{staff}\"\n", sha256_hex(token)));
        if let Some(point) = point {
            text.push_str(&format!("collection_point = \"{point}\"\n"));
        }
        text.push_str(&format!("role = \"{role}\"\n"));
    }
    let path = dir.join("zhengjiao.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes the roster into `dir` and imports it with `zhengjiao roster import FILE --config CFG` (the
/// daemon must not be running).
pub async fn import_roster(dir: &Path, config: &Path) {
    let file = dir.join("roster.csv");
    std::fs::write(&file, roster_csv()).unwrap();
    let out = Command::new(daemon_binary())
        .args(["roster", "import"])
        .arg(&file)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "roster import failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------------

/// A `zhengjiao serve` process and an HTTP client for its API.
pub struct Daemon {
    child: Option<Child>,
    /// `http://ADDR` from its `listening` line.
    pub base: String,
    /// Its standard error (`RUST_LOG=debug`).
    pub log: PathBuf,
    http: reqwest::Client,
}

/// An answer of the API: status and JSON body (`Null` when the body is not JSON).
pub type Answer = (u16, Value);

impl Daemon {
    /// Starts `zhengjiao serve --config CFG`; returns once it printed `listening http://ADDR` and
    /// `GET /v1/health` answers 200.
    pub async fn start(config: &Path) -> Daemon {
        let dir = config.parent().unwrap();
        let log = dir.join(format!("daemon-{}.stderr", next_seq()));
        let mut child = Command::new(daemon_binary())
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let base = read_stdout_until(stdout, "zhengjiao serve", &log, Duration::from_secs(30), |line| {
            line.trim().strip_prefix("listening ").map(|url| url.trim_end_matches('/').to_owned())
        })
        .await;
        assert!(base.starts_with("http://"), "the listening line names {base:?}, not an http:// address");
        let daemon = Daemon {
            child: Some(child),
            base,
            log,
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        let deadline = Instant::now() + BOUND;
        loop {
            match daemon.http.get(format!("{}/v1/health", daemon.base)).send().await {
                Ok(r) if r.status().as_u16() == 200 => {
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    assert_eq!(body["status"], "ok", "GET /v1/health: {body}");
                    break;
                }
                other => assert!(
                    Instant::now() < deadline,
                    "GET /v1/health did not answer 200 within {BOUND:?}: {:?}",
                    other.map(|r| r.status())
                ),
            }
            tokio::time::sleep(POLL).await;
        }
        daemon
    }

    /// SIGKILL (what `Child::kill` sends on Unix), and waits for the process to end. The object stays,
    /// so its log is still printed if the test fails later.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// The tail of its standard error, for messages.
    pub fn stderr_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> Answer {
        let resp = req.send().await.unwrap_or_else(|e| {
            panic!("{what}: no answer from the daemon: {e}\n--- daemon stderr ---\n{}", self.stderr_tail(60))
        });
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body =
            serde_json::from_str(&text).unwrap_or(if text.is_empty() { Value::Null } else { Value::String(text) });
        (status, body)
    }

    /// `GET path` with `token` (none when `None`).
    pub async fn get_as(&self, token: Option<&str>, path: &str) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        self.send(req, &format!("GET {path}")).await
    }

    /// `GET path` as the admin.
    pub async fn get(&self, path: &str) -> Answer {
        self.get_as(Some(ADMIN), path).await
    }

    /// `POST path` with a JSON body.
    pub async fn post_as(&self, token: Option<&str>, path: &str, body: &Value) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        self.send(req, &format!("POST {path} {body}")).await
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(&self, token: &str, path: &str, body: &str, content_type: &str) -> Answer {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_owned());
        self.send(req, &format!("POST {path} {body:?}")).await
    }

    /// `POST /v1/collect` as the collector of [`POINT`].
    pub async fn collect(&self, body: Value) -> Answer {
        self.post_as(Some(COLLECTOR), "/v1/collect", &body).await
    }

    /// Collects `serial` (a medical line) on `terminal` and expects it approved: the PAYMENT.
    pub async fn collect_approved(&self, serial: &str, terminal: &str) -> Value {
        let (status, p) = self.collect(json!({"serial": serial, "terminal": terminal, "wait_ms": 20_000})).await;
        assert_eq!(status, 200, "collect {serial} on {terminal}: {p}");
        assert_approved(&p, &format!("collect {serial} on {terminal}"));
        p
    }

    /// `GET /v1/payments/{id}[?wait_ms=N]`, expecting 200.
    pub async fn payment(&self, id: &str, wait_ms: Option<u64>) -> Value {
        let path = match wait_ms {
            Some(ms) => format!("/v1/payments/{id}?wait_ms={ms}"),
            None => format!("/v1/payments/{id}"),
        };
        let (status, p) = self.get(&path).await;
        assert_eq!(status, 200, "GET {path}: {p}");
        p
    }

    /// Polls the payment with `wait_ms` until it is final (not `created`, `sent` or `unknown`), without
    /// asking for anything: what the daemon does on its own.
    pub async fn wait_final(&self, id: &str, bound: Duration) -> Value {
        let deadline = Instant::now() + bound;
        loop {
            let p = self.payment(id, Some(1000)).await;
            if p["final"] == true {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "payment {id} is not final after {bound:?} (the daemon was to resolve it on its own): {p}"
            );
            if !matches!(p["state"].as_str(), Some("created" | "sent" | "unknown")) {
                // `wait_ms` waits for an open outcome only: an approval being reversed automatically
                // answers at once, so pause between polls.
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Polls the payment (without waiting for an outcome) until it is in `state`.
    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + BOUND;
        loop {
            let p = self.payment(id, None).await;
            if p["state"] == state {
                return p;
            }
            assert!(Instant::now() < deadline, "payment {id} not {state} after {BOUND:?}: {p}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// `POST /v1/payments/{id}/query` until the payment is final: a 503 (terminal not ready yet) or a
    /// QUERY that did not get an answer are asked again, within [`BOUND`].
    pub async fn query_until_final(&self, id: &str) -> Value {
        let deadline = Instant::now() + BOUND;
        let mut answers = Vec::new();
        loop {
            let (status, p) = self.post_as(Some(ADMIN), &format!("/v1/payments/{id}/query"), &json!({})).await;
            if status == 200 && p["final"] == true {
                return p;
            }
            assert!(
                status == 200 || status == 503,
                "POST /v1/payments/{id}/query: {status} {p} (200, or 503 while the terminal is not ready)"
            );
            answers.push(format!("{status} {}", p["state"]));
            assert!(
                Instant::now() < deadline,
                "payment {id} is not final after asking for {BOUND:?}: {answers:?}; {p}"
            );
            // Whatever resolves it meanwhile (an automatic QUERY) ends this wait early.
            let p = self.payment(id, Some(500)).await;
            if p["final"] == true {
                return p;
            }
        }
    }

    /// The line with this serial, as the admin sees it.
    pub async fn line(&self, serial: &str) -> Value {
        let (status, body) = self.get(&format!("/v1/lookup/{serial}")).await;
        assert_eq!(status, 200, "GET /v1/lookup/{serial}: {body}");
        let lines = body["lines"].as_array().unwrap_or_else(|| panic!("lookup {serial}: no lines array: {body}"));
        let found: Vec<&Value> = lines.iter().filter(|l| l["serial"] == serial).collect();
        assert_eq!(found.len(), 1, "lookup {serial}: {body}");
        found[0].clone()
    }

    /// `GET /v1/payments?QUERY` as the admin: the payments.
    pub async fn payments(&self, query: &str) -> Vec<Value> {
        let (status, body) = self.get(&format!("/v1/payments?{query}")).await;
        assert_eq!(status, 200, "GET /v1/payments?{query}: {body}");
        body["payments"].as_array().unwrap_or_else(|| panic!("GET /v1/payments?{query}: {body}")).clone()
    }

    /// Waits until every named terminal is `ready` in `GET /v1/terminals`.
    pub async fn wait_ready(&self, names: &[&str]) {
        let deadline = Instant::now() + BOUND;
        loop {
            let (status, body) = self.get("/v1/terminals").await;
            assert_eq!(status, 200, "GET /v1/terminals: {body}");
            let ready = names.iter().all(|name| {
                body["terminals"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|t| t["name"] == *name && t["state"] == "ready"))
            });
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "terminals {names:?} not all ready after {BOUND:?}: {body}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// No payment is `unknown`, and no line has more than one payment standing (approved or forwarded).
    pub async fn assert_consistent(&self) {
        let unknown = self.payments("state=unknown").await;
        assert!(unknown.is_empty(), "payments still unknown: {unknown:?}");
        let all = self.payments("limit=100000").await;
        let mut standing: Vec<String> = all
            .iter()
            .filter(|p| p["state"] == "approved" || p["state"] == "forwarded")
            .map(|p| p["line"]["serial"].as_str().unwrap_or("?").to_owned())
            .collect();
        standing.sort();
        let before = standing.len();
        standing.dedup();
        assert_eq!(before, standing.len(), "a line is paid more than once: {all:?}");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- zhengjiao serve stderr ({}), last lines ---\n{}", self.log.display(), tail(&self.log, 150));
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Whether a PAYMENT stands approved (forwarded to the ledger is approved too).
pub fn is_approved(p: &Value) -> bool {
    p["state"] == "approved" || p["state"] == "forwarded"
}

/// A PAYMENT approved by the terminal, with its slip.
pub fn assert_approved(p: &Value, what: &str) {
    assert!(is_approved(p), "{what}: expected approved: {p}");
    assert_eq!(p["final"], true, "{what}: {p}");
    assert_eq!(p["pos"]["code"], "00", "{what}: {p}");
    assert!(p["slip"].is_object(), "{what}: an approved payment has a slip: {p}");
    assert_eq!(p["slip"]["amount"], p["amount"], "{what}: {p}");
}

/// Whether a PAYMENT's history has a transition to `state`.
pub fn went_through(p: &Value, state: &str) -> bool {
    p["history"].as_array().is_some_and(|h| h.iter().any(|t| t["to"] == state))
}

// ---------------------------------------------------------------------------------------------------
// A whole setup
// ---------------------------------------------------------------------------------------------------

/// A temporary directory with a simulator, a configuration, the roster imported and a daemon.
pub struct World {
    pub daemon: Daemon,
    pub sim: Sim,
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
}

impl World {
    /// Terminal `i` of the simulator is configured as `T0{i+1}` at `points[i]`.
    pub async fn start(sim: SimOptions, points: &[&str], clock: &str, timeouts: Timeouts) -> World {
        assert_eq!(sim.terminals, points.len());
        // E2E_KEEP=1 keeps the directory (journal, logs, simulator state) for a look afterwards.
        let keep = std::env::var_os("E2E_KEEP").is_some();
        let dir = tempfile::Builder::new().prefix("zhengjiao-e2e-").disable_cleanup(keep).tempdir().unwrap();
        if keep {
            eprintln!("E2E_KEEP: {}", dir.path().display());
        }
        let sim = Sim::start(dir.path(), &sim).await;
        let terminals: Vec<TerminalSpec> = points
            .iter()
            .enumerate()
            .map(|(i, point)| TerminalSpec {
                name: terminal_name(i),
                point: (*point).to_owned(),
                transport: sim.transport(i),
            })
            .collect();
        let config = write_config(dir.path(), clock, &terminals, timeouts);
        import_roster(dir.path(), &config).await;
        let daemon = Daemon::start(&config).await;
        let names: Vec<String> = (0..points.len()).map(terminal_name).collect();
        daemon.wait_ready(&names.iter().map(String::as_str).collect::<Vec<_>>()).await;
        World { daemon, sim, config, dir }
    }

    /// One TCP terminal `T01` at [`POINT`], the test clock and short timeouts.
    pub async fn simple() -> World {
        World::start(SimOptions::default(), &[POINT], CLOCK, Timeouts::default()).await
    }
}

/// Our name of simulator terminal `i`.
pub fn terminal_name(i: usize) -> String {
    format!("T{:02}", i + 1)
}

// ---------------------------------------------------------------------------------------------------
// Talking to a terminal directly (as another ECR would)
// ---------------------------------------------------------------------------------------------------

/// Sends each request (canonical JSON, wire-protocol.md §6) to the TCP terminal at `addr` over one
/// connection, the way an ECR does (frame, wait for ACK and the response, ACK it), and returns the
/// responses in canonical JSON. For a terminal nobody else is connected to (the daemon stopped): the
/// simulator gives a new connection the line, so a running daemon would take it back.
pub async fn direct_exchange(addr: &str, requests: Vec<Value>) -> Vec<Value> {
    let addr = addr.to_owned();
    tokio::task::spawn_blocking(move || direct_exchange_blocking(&addr, &requests)).await.unwrap()
}

fn direct_exchange_blocking(addr: &str, requests: &[Value]) -> Vec<Value> {
    use std::io::{Read, Write};
    use zhengjiao_protocol::frame::{encode_frame, Event, FrameDecoder};
    use zhengjiao_protocol::json::Line;
    use zhengjiao_protocol::{Check, Control, FrameConfig, Response};

    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut decoder = FrameDecoder::new(FrameConfig::new(Check::Lrc));
    let mut answers = Vec::new();
    for request in requests {
        let Line::Request(req) = Line::from_value(request.clone()).unwrap() else {
            panic!("not a request: {request}");
        };
        let frame = encode_frame(&req.encode().unwrap(), Check::Lrc).unwrap();
        stream.write_all(&frame).unwrap();
        let deadline = Instant::now() + BOUND;
        let mut acked = false;
        let data = 'response: loop {
            assert!(Instant::now() < deadline, "no response from {addr} to {request} within {BOUND:?}");
            let mut buf = [0u8; 1024];
            match stream.read(&mut buf) {
                Ok(0) => panic!("{addr} closed the connection before answering {request}"),
                Ok(n) => decoder.push(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    if !acked {
                        // T_ack ran out: resend the identical bytes (§4 rule 3).
                        stream.write_all(&frame).unwrap();
                    }
                    continue;
                }
                Err(e) => panic!("reading from {addr}: {e}"),
            }
            while let Some(event) = decoder.next_event() {
                match event {
                    Event::Control { control: Control::Ack, .. } => acked = true,
                    Event::Control { .. } => {}
                    Event::Frame { data, .. } => {
                        stream.write_all(&[Control::Ack.byte()]).unwrap();
                        break 'response data;
                    }
                    Event::Broken { .. } => stream.write_all(&[Control::Nak.byte()]).unwrap(),
                }
            }
        };
        let response = Response::decode(&data).unwrap();
        answers.push(serde_json::from_str(&Line::Response(response).to_json()).unwrap());
    }
    answers
}

/// A canonical SIGN_IN request.
pub fn sign_in_request(token: &str) -> Value {
    json!({"dir": "request", "token": token, "type": "sign_in", "till": "99", "operator": "9999",
           "amount_fen": 0, "orig_trace": null, "orig_date": null, "orig_rrn": null, "memo": {}})
}

/// A canonical SALE request (medical) with ECR reference `reference`.
pub fn sale_request(token: &str, amount_fen: u64, reference: &str) -> Value {
    json!({"dir": "request", "token": token, "type": "sale", "till": "99", "operator": "9999",
           "amount_fen": amount_fen, "orig_trace": null, "orig_date": null, "orig_rrn": null,
           "memo": {"0F01": reference, "0F02": "02"}})
}

/// A canonical QUERY request for the transaction with ECR reference `reference`.
pub fn query_request(token: &str, reference: &str) -> Value {
    json!({"dir": "request", "token": token, "type": "query", "till": "99", "operator": "9999",
           "amount_fen": 0, "orig_trace": null, "orig_date": null, "orig_rrn": null,
           "memo": {"0F01": reference}})
}

/// A canonical VOID request of the sale with trace `orig_trace`, with its own ECR reference `reference`.
pub fn void_request(token: &str, amount_fen: u64, orig_trace: &str, reference: &str) -> Value {
    json!({"dir": "request", "token": token, "type": "void", "till": "99", "operator": "9999",
           "amount_fen": amount_fen, "orig_trace": orig_trace, "orig_date": null, "orig_rrn": null,
           "memo": {"0F01": reference}})
}

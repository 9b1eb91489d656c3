//! The end-to-end load benchmark: simulated TCP terminals (no card delay) drive collections through
//! the real daemon ([`Daemon::start`]: the journal with `synchronous=FULL`, the collection service, the
//! terminal links, the ledger forwarder, the API) against the ledger simulator, in five phases of one
//! run:
//!
//! 1. **memory**: the daemon with 5,000 configured terminals, every one connected, signed in and idle;
//!    this process's `VmRSS` before the daemon starts and once every terminal is ready, per terminal.
//!    Measured first, while nothing else has grown the heap;
//! 2. **journal ceiling**: the journal bench's group commit (64 submitters recording payments
//!    `created` through the writer) on a fresh journal in the same directory;
//! 3. **load** (throughput): 200 terminals, one collector each (one collection in flight per terminal,
//!    as at a real till), calling [`Collection::collect`] in a closed loop for a warm-up and then a
//!    measured window: confirmed payments per second (approved and bound to their line) and the latency
//!    of each call, which at saturation is mostly queueing (Little's law: collections in flight divided
//!    by the rate);
//! 4. **paced** (latency): a fresh daemon and journal, the same terminals, each starting a collection at
//!    a fixed interval (open loop) so that together they offer `ZJ_LOAD_PACED_RATE` collections per
//!    second (half the rate phase 3 reached, unless set). Latency counts from when a collection was due;
//! 5. **simulator baseline**: the daemon stopped, a protocol-crate ECR per terminal connects straight to
//!    the same simulated terminals and runs SALEs paced at phase 4's rate: the simulator's own time per
//!    exchange (the time from the request to its answer, what the daemon's link also waits for). The
//!    latency added by the daemon is phase 4's percentile minus this one.
//!
//! The simulators (every terminal and the ledger) run in a child process, this same executable started
//! again with `ZJ_LOAD_CHILD` set, so this process holds only the daemon's side (and the collectors of
//! phase 3): its RSS is the daemon's and a profile of it (`perf record -g -p PID`) shows the daemon only.
//! Both processes share this machine's cores.
//!
//! Run: `cargo bench --bench load`. Environment: `ZJ_LOAD_TERMINALS` (200), `ZJ_LOAD_SECONDS` (10, the
//! measured window; 3 s of warm-up before it), `ZJ_LOAD_IDLE_TERMINALS` (5000; 0 skips phase 1),
//! `ZJ_LOAD_PER_TERMINAL` (1 collection in flight per terminal in phase 3), `ZJ_LOAD_LINES` (roster
//! lines, 250000), `ZJ_LOAD_PACED_RATE` (collections/s offered in phase 4).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/journal_support/mod.rs"]
mod journal_support;

use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journal_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zhengjiao::api::Daemon;
use zhengjiao::collect::{CollectRequest, Collection, LineChoice, Operator};
use zhengjiao::config::{Config, Role};
use zhengjiao::domain::{CollectionPointCode, CollectionSerial, Insurance, StaffNumber};
use zhengjiao::journal::{JournalOptions, PaymentState, SqliteStore, Store};
use zhengjiao::link::LinkState;
use zhengjiao_protocol::link::{Ecr, EcrConfig, EcrEvent};
use zhengjiao_protocol::message::{OperatorId, Till};
use zhengjiao_protocol::{Amount, EcrReference, Memo, Request, RequestBody, Token};
use zhengjiao_simulator::ledger::{LedgerConfig, LedgerSim, Secret};
use zhengjiao_simulator::terminal::{TerminalSim, TerminalSimConfig};

const KEY_ID: &str = "load-bench";
const SECRET: &str = "load-bench-secret";
const CLOCK: &str = "2020-10-21T09:00:00+08:00";
/// The paced run's business day: its references (time-stamped) never meet the first run's at the ledger.
const PACED_CLOCK: &str = "2020-10-22T09:00:00+08:00";
/// Terminals per simulator instance in the child (the simulator takes at most 1024).
const SIM_CHUNK: usize = 1000;
const WARM_UP: Duration = Duration::from_secs(3);
/// Payments recorded for the journal ceiling, by this many submitters (as `benches/journal.rs`).
const CEILING_PAYMENTS: u32 = 20_000;
const CEILING_SUBMITTERS: u32 = 64;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// User plus system CPU time of a process so far (`/proc/PID/stat` fields 14 and 15).
fn cpu_time(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // Fields 14 and 15 of the line are 11 and 12 after the name (state is field 3).
    let clk_tck = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / clk_tck)
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------------
// The child: the simulators.

/// The child process: the ledger simulator and `terminals` simulated terminals; prints the ledger's
/// URL, then one terminal address per line, then `ready`; ends when its standard input closes.
fn child(terminals: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let ledger = LedgerSim::start(LedgerConfig::new(KEY_ID, Secret::new(SECRET))).await.unwrap();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", ledger.url()).unwrap();
        let mut sims = Vec::new();
        let mut first = 0;
        while first < terminals {
            let n = SIM_CHUNK.min(terminals - first);
            let id = format!("{:08}", 41_000_001 + first);
            let cfg = TerminalSimConfig {
                terminals: n,
                seed: first as u64,
                terminal_id: zhengjiao_protocol::message::TerminalId::new(&id).unwrap(),
                ..TerminalSimConfig::default()
            };
            let sim = TerminalSim::start(cfg).await.unwrap();
            for a in sim.addrs() {
                writeln!(out, "{a}").unwrap();
            }
            sims.push(sim);
            first += n;
        }
        writeln!(out, "ready").unwrap();
        out.flush().unwrap();
        drop(out);
        // Until the parent closes our stdin.
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {}
        })
        .await
        .unwrap();
        std::process::exit(0);
    });
}

/// The simulators in a child process.
struct Sims {
    child: Child,
    stdin: Option<ChildStdin>,
    ledger_url: String,
    addrs: Vec<String>,
}

impl Sims {
    fn start(terminals: usize) -> Sims {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("ZJ_LOAD_CHILD", terminals.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ledger_url = lines.next().unwrap().unwrap();
        let mut addrs = Vec::with_capacity(terminals);
        for line in lines {
            let line = line.unwrap();
            if line == "ready" {
                break;
            }
            addrs.push(line);
        }
        assert_eq!(addrs.len(), terminals, "the simulator child did not start every terminal");
        Sims { child, stdin, ledger_url, addrs }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------------
// The daemon.

fn write_config(dir: &Path, sims: &Sims, terminals: usize, clock: &str) -> Config {
    use std::fmt::Write as _;
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/2020-weidong.toml");
    let mut text = format!(
        "data_dir = '{}'\npolicy = '{}'\nclock = \"{clock}\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n\
         [ledger]\nendpoint = \"{}\"\nkey_id = \"{KEY_ID}\"\nsecret = \"{SECRET}\"\n",
        dir.join("data").display(),
        policy.display(),
        sims.ledger_url
    );
    for (i, addr) in sims.addrs.iter().take(terminals).enumerate() {
        let _ = write!(
            text,
            "\n[[terminals]]\nid = \"T{i:05}\"\ncollection_point = \"{POINT}\"\ntill = \"01\"\ntransport = \"tcp:{addr}\"\n"
        );
    }
    // The benchmark calls the service in-process; the API still needs an operator to start.
    let _ = write!(
        text,
        "\n[[operators]]\ntoken_sha256 = \"{}\"\nstaff_no = \"1001\"\ncollection_point = \"{POINT}\"\nrole = \"collector\"\n",
        "0".repeat(64)
    );
    let path = dir.join("zhengjiao.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::create_dir_all(dir.join("data")).unwrap();
    Config::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until every terminal is ready (signed in and recorded); returns how long that took.
async fn all_ready(collection: &Collection, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let statuses = collection.terminals();
        let ready = statuses.iter().filter(|(_, s)| s.state == LinkState::Ready).count();
        if ready == statuses.len() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "only {ready} of {} terminals ready after {limit:?}", statuses.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------------
// Phase 1: memory per idle connected terminal.

struct Memory {
    terminals: usize,
    before_kib: u64,
    after_kib: u64,
    connect_time: Duration,
}

async fn memory_phase(terminals: usize) -> Memory {
    let sims = Sims::start(terminals);
    let dir = tempfile::Builder::new().prefix("load-bench-mem").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = write_config(dir.path(), &sims, terminals, CLOCK);
    let before_kib = rss_kib();
    let daemon = Daemon::start(&config).await.unwrap();
    let connect_time = all_ready(&daemon.collection, Duration::from_secs(300)).await;
    // Idle: let the sign-ins' allocations settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_kib = rss_kib();
    daemon.shutdown().await.unwrap();
    sims.stop();
    Memory { terminals, before_kib, after_kib, connect_time }
}

// ---------------------------------------------------------------------------------------------------
// Phase 2: the journal's raw batched-commit ceiling (as benches/journal.rs, group commit).

struct Ceiling {
    per_second: f64,
    mean_batch: f64,
    commit_ms: f64,
}

async fn journal_ceiling() -> Ceiling {
    let dir = tempfile::Builder::new().prefix("load-bench-ceiling").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let store = SqliteStore::open(dir.path().join("journal.db"), JournalOptions::default()).await.unwrap();
    store.import_roster(lines(0..CEILING_PAYMENTS), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let before = store.metrics();
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CEILING_SUBMITTERS {
        let (store, next) = (store.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= CEILING_PAYMENTS {
                    break;
                }
                store.record_payment_created(new_payment(&format!("B-{n}"), &line(n))).await.unwrap();
            }
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let elapsed = started.elapsed();
    let after = store.metrics();
    store.close().await;
    let batches = (after.batches_committed - before.batches_committed).max(1);
    Ceiling {
        per_second: f64::from(CEILING_PAYMENTS) / elapsed.as_secs_f64(),
        mean_batch: (after.writes_committed - before.writes_committed) as f64 / batches as f64,
        commit_ms: (after.commit_time - before.commit_time).as_secs_f64() * 1000.0 / batches as f64,
    }
}

// ---------------------------------------------------------------------------------------------------
// Phase 3: collections through the daemon.

struct Load {
    terminals: usize,
    per_terminal: usize,
    window: Duration,
    confirmed: u64,
    not_confirmed: u64,
    errors: u64,
    latencies_us: Vec<u32>,
    writes_per_payment: f64,
    mean_batch: f64,
    commit_ms: f64,
    /// The longest single COMMIT since the daemon started (warm-up included).
    commit_max_ms: f64,
    backlog_at_end: u64,
    forwarded_after: Duration,
    ledger_created: u64,
    rss_kib: u64,
    /// CPU time of this process (the daemon side) and of the simulators over the window.
    daemon_cpu: Duration,
    sims_cpu: Duration,
}

fn operator() -> Operator {
    Operator {
        staff_no: StaffNumber::parse("1001").unwrap(),
        collection_point: Some(CollectionPointCode::parse(POINT).unwrap()),
        role: Role::Collector,
    }
}

/// How the collectors of a load run start their collections.
#[derive(Clone, Copy)]
enum Pace {
    /// Closed loop: the next collection as soon as the last one returned (the most the daemon does).
    Closed,
    /// Open loop: each terminal starts one every `terminals / rate` seconds (its first at an offset,
    /// so the terminals are spread over one interval). A collection due while the last is still running
    /// starts when it returns, and its latency counts from when it was due: time spent queued behind a
    /// slow one is latency, not left out.
    Rate(f64),
}

async fn load_phase(
    sims: &Sims,
    terminals: usize,
    per_terminal: usize,
    window: Duration,
    roster: u32,
    pace: Pace,
) -> Load {
    let dir = tempfile::Builder::new().prefix("load-bench-run").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let clock = if matches!(pace, Pace::Closed) { CLOCK } else { PACED_CLOCK };
    let config = write_config(dir.path(), sims, terminals, clock);
    // The roster goes in before the daemon starts, through the journal's import (as `roster import`).
    {
        let options = JournalOptions { clock: config.clock.start(), ..JournalOptions::default() };
        let store = SqliteStore::open(zhengjiao::import::journal_path(&config.data_dir), options).await.unwrap();
        for chunk in (0..roster).step_by(50_000).map(|s| s..(s + 50_000).min(roster)) {
            store.import_roster(lines(chunk), false).await.unwrap();
        }
        store.close().await;
    }
    let daemon = Daemon::start(&config).await.unwrap();
    let collection = daemon.collection.clone();
    all_ready(&collection, Duration::from_secs(60)).await;
    let who = operator();
    let next_line = Arc::new(AtomicU32::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let confirmed = Arc::new(AtomicU64::new(0));
    let not_confirmed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..terminals {
        for _ in 0..per_terminal {
            let (collection, who) = (collection.clone(), who.clone());
            let (next_line, measuring, stop) = (Arc::clone(&next_line), Arc::clone(&measuring), Arc::clone(&stop));
            let (confirmed, not_confirmed, errors) =
                (Arc::clone(&confirmed), Arc::clone(&not_confirmed), Arc::clone(&errors));
            tasks.spawn(async move {
                let mut latencies = Vec::with_capacity(4096);
                let interval = match pace {
                    Pace::Closed => None,
                    Pace::Rate(rate) => Some(Duration::from_secs_f64(terminals as f64 / rate.max(1.0))),
                };
                let spread = interval.map(|i| i.mul_f64(t as f64 / terminals as f64)).unwrap_or_default();
                let mut due = tokio::time::Instant::now() + spread;
                while !stop.load(Ordering::Relaxed) {
                    if interval.is_some() {
                        tokio::time::sleep_until(due).await;
                    } else {
                        due = tokio::time::Instant::now();
                    }
                    let n = next_line.fetch_add(1, Ordering::Relaxed);
                    if n >= roster {
                        break;
                    }
                    let req = CollectRequest {
                        line: LineChoice::Serial {
                            serial: CollectionSerial::parse(&format!("ZJ-{n:07}")).unwrap(),
                            insurance: Some(Insurance::Medical),
                        },
                        year: None,
                        tier: None,
                        amount: None,
                        terminal: format!("T{t:05}"),
                        wait: Some(Duration::from_secs(30)),
                    };
                    let result = collection.collect(&who, req).await;
                    // From when it was due (its start, in the closed loop).
                    let took = due.elapsed();
                    if let Some(interval) = interval {
                        due += interval;
                    }
                    if !measuring.load(Ordering::Relaxed) {
                        continue;
                    }
                    match result {
                        Ok(v)
                            if v.is_bound()
                                && matches!(v.payment.state, PaymentState::Approved | PaymentState::Forwarded) =>
                        {
                            confirmed.fetch_add(1, Ordering::Relaxed);
                            latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                        }
                        Ok(_) => {
                            not_confirmed.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            if errors.fetch_add(1, Ordering::Relaxed) < 5 {
                                eprintln!("collect failed: {e}");
                            }
                        }
                    }
                }
                latencies
            });
        }
    }
    tokio::time::sleep(WARM_UP).await;
    let store = collection.store().clone();
    let m0 = store.metrics();
    let sims_pid = sims.pid().to_string();
    let (daemon0, sims0) = (cpu_time("self"), cpu_time(&sims_pid));
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(window).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let (daemon_cpu, sims_cpu) = (cpu_time("self") - daemon0, cpu_time(&sims_pid) - sims0);
    let m1 = store.metrics();
    let rss = rss_kib();
    stop.store(true, Ordering::Relaxed);
    let mut latencies_us = Vec::new();
    while let Some(t) = tasks.join_next().await {
        latencies_us.extend(t.unwrap());
    }
    let confirmed = confirmed.load(Ordering::Relaxed);
    let backlog_at_end = daemon.forwarder.status().await.map(|s| s.backlog).unwrap_or(0);
    let drain = Instant::now();
    let _ = daemon.forwarder.wait_until(Duration::from_secs(120), |s| s.backlog == 0 && s.in_flight == 0).await;
    let forwarded_after = drain.elapsed();
    let ledger_created = daemon.forwarder.status().await.map(|s| s.forwarded).unwrap_or(0);
    daemon.shutdown().await.unwrap();
    let batches = (m1.batches_committed - m0.batches_committed).max(1);
    let writes = m1.writes_committed - m0.writes_committed;
    Load {
        terminals,
        per_terminal,
        window: elapsed,
        confirmed,
        not_confirmed: not_confirmed.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        latencies_us,
        writes_per_payment: writes as f64 / confirmed.max(1) as f64,
        mean_batch: writes as f64 / batches as f64,
        commit_ms: (m1.commit_time - m0.commit_time).as_secs_f64() * 1000.0 / batches as f64,
        commit_max_ms: m1.commit_time_max.as_secs_f64() * 1000.0,
        backlog_at_end,
        forwarded_after,
        ledger_created,
        rss_kib: rss,
        daemon_cpu,
        sims_cpu,
    }
}

// ---------------------------------------------------------------------------------------------------
// Phase 4: the simulator's own time, with a protocol-crate ECR per terminal and no daemon.

/// One ECR over TCP: the driver contract of `zhengjiao_protocol::link`.
struct Direct {
    ecr: Ecr,
    io: TcpStream,
    buf: Vec<u8>,
}

impl Direct {
    async fn connect(addr: &str) -> Direct {
        let io = TcpStream::connect(addr).await.unwrap();
        io.set_nodelay(true).unwrap();
        let cfg = EcrConfig { first_token: Token::new(fastrand::u16(100..=999)).unwrap(), ..EcrConfig::default() };
        Direct { ecr: Ecr::new(cfg), io, buf: vec![0; 4096] }
    }

    /// One exchange, from handing the request to the ECR to its answer; panics unless answered.
    async fn exchange(&mut self, body: RequestBody, memo: Memo) -> Duration {
        let request = Request {
            token: Token::MIN,
            till: Till::new("01").unwrap(),
            operator: OperatorId::new("1001").unwrap(),
            body,
            memo,
        };
        let started = tokio::time::Instant::now();
        self.ecr.start(started.into_std(), request).unwrap();
        loop {
            while let Some(event) = self.ecr.poll_event() {
                match event {
                    EcrEvent::Answered { response, .. } => {
                        let took = started.elapsed();
                        assert!(response.code.is_approved(), "the simulator answered {}", response.code);
                        // The ACK of the response goes out before the next request, as the daemon does.
                        self.flush().await;
                        return took;
                    }
                    EcrEvent::OutcomeUnknown { reason, .. } | EcrEvent::Failed { reason, .. } => {
                        panic!("direct exchange failed: {reason}")
                    }
                    _ => {}
                }
            }
            self.flush().await;
            let deadline = self.ecr.poll_timeout().map(tokio::time::Instant::from_std);
            tokio::select! {
                read = self.io.read(&mut self.buf) => match read {
                    Ok(0) | Err(_) => panic!("the simulated terminal closed the connection"),
                    Ok(n) => self.ecr.handle_input(tokio::time::Instant::now().into_std(), &self.buf[..n]),
                },
                () = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    self.ecr.handle_timeout(tokio::time::Instant::now().into_std());
                }
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(bytes) = self.ecr.poll_transmit() {
            self.io.write_all(&bytes).await.unwrap();
        }
    }
}

async fn simulator_baseline(sims: &Sims, terminals: usize, rate: f64, window: Duration) -> (Vec<u32>, f64) {
    let interval = Duration::from_secs_f64(terminals as f64 / rate.max(1.0));
    let stop_at = tokio::time::Instant::now() + WARM_UP.min(Duration::from_secs(1)) + window;
    let measure_from = tokio::time::Instant::now() + WARM_UP.min(Duration::from_secs(1));
    let count = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for (t, addr) in sims.addrs.iter().take(terminals).enumerate() {
        let addr = addr.clone();
        let count = Arc::clone(&count);
        tasks.spawn(async move {
            let mut direct = Direct::connect(&addr).await;
            direct.exchange(RequestBody::SignIn, Memo::new()).await;
            let mut latencies = Vec::new();
            // Spread the terminals over one interval.
            let mut due = tokio::time::Instant::now() + interval.mul_f64(t as f64 / terminals as f64);
            let mut n = 0u32;
            while due < stop_at {
                tokio::time::sleep_until(due).await;
                due += interval;
                n += 1;
                let reference = EcrReference::new(&format!("D{t:05}-{n}")).unwrap();
                let body = RequestBody::Sale { amount: Amount::from_fen(28_000).unwrap() };
                let took = direct.exchange(body, Memo::with_reference(reference)).await;
                if tokio::time::Instant::now() >= measure_from {
                    latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(t) = tasks.join_next().await {
        all.extend(t.unwrap());
    }
    let achieved = count.load(Ordering::Relaxed) as f64 / window.as_secs_f64();
    (all, achieved)
}

// ---------------------------------------------------------------------------------------------------

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn main() {
    if let Ok(n) = std::env::var("ZJ_LOAD_CHILD") {
        child(n.parse().unwrap());
        return;
    }
    let terminals = env_usize("ZJ_LOAD_TERMINALS", 200);
    let idle = env_usize("ZJ_LOAD_IDLE_TERMINALS", 5000);
    let window = Duration::from_secs(env_usize("ZJ_LOAD_SECONDS", 10) as u64);
    let per_terminal = env_usize("ZJ_LOAD_PER_TERMINAL", 1).max(1);
    let roster = u32::try_from(env_usize("ZJ_LOAD_LINES", 250_000)).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    println!(
        "load: pid {} (the daemon side); {} cores",
        std::process::id(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let memory = (idle > 0).then(|| rt.block_on(memory_phase(idle)));
    if let Some(m) = &memory {
        let per = (m.after_kib.saturating_sub(m.before_kib)) as f64 / m.terminals as f64;
        println!(
            "memory: {} terminals connected, signed in and idle after {:.1} s; VmRSS {} KiB before the daemon started, \
             {} KiB after: {per:.1} KiB per terminal (goal <= 64 KiB)",
            m.terminals,
            m.connect_time.as_secs_f64(),
            m.before_kib,
            m.after_kib
        );
    }

    let ceiling = rt.block_on(journal_ceiling());
    println!(
        "journal ceiling: {:.0} payments/s recorded `created` by {CEILING_SUBMITTERS} submitters (group commit, mean {:.1} \
         per commit, {:.2} ms per COMMIT)",
        ceiling.per_second, ceiling.mean_batch, ceiling.commit_ms
    );

    let sims = Sims::start(terminals);
    println!("simulators: pid {} ({terminals} terminals and the ledger)", sims.pid());
    let load = rt.block_on(load_phase(&sims, terminals, per_terminal, window, roster, Pace::Closed));
    let rate = load.confirmed as f64 / load.window.as_secs_f64();
    println!(
        "load: {} terminals, {} collection(s) in flight per terminal (closed loop), {:.1} s measured after {} s of \
         warm-up",
        load.terminals,
        load.per_terminal,
        load.window.as_secs_f64(),
        WARM_UP.as_secs()
    );
    println!(
        "load: {} confirmed payments: {rate:.0} confirmed payments/s (goal >= 5000); {} not confirmed, {} refused",
        load.confirmed, load.not_confirmed, load.errors
    );
    report_costs("load", &load);
    let closed_lat = sorted(&load.latencies_us);
    println!(
        "load: collect() latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (all {} collections in \
         flight at once: queueing, by Little's law {:.1} ms)",
        percentile(&closed_lat, 0.50),
        percentile(&closed_lat, 0.90),
        percentile(&closed_lat, 0.99),
        percentile(&closed_lat, 1.0),
        terminals * per_terminal,
        (terminals * per_terminal) as f64 / rate.max(1.0) * 1000.0
    );

    // The latency the daemon adds, measured where it is not saturated: the same terminals, paced.
    let paced_rate = std::env::var("ZJ_LOAD_PACED_RATE").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(rate / 2.0);
    let paced = rt.block_on(load_phase(&sims, terminals, 1, window, roster, Pace::Rate(paced_rate)));
    let paced_achieved = paced.confirmed as f64 / paced.window.as_secs_f64();
    println!(
        "paced: {terminals} terminals each starting a collection every {:.1} ms ({paced_rate:.0} collections/s offered), \
         {:.1} s measured: {paced_achieved:.0} confirmed payments/s; {} not confirmed, {} refused",
        terminals as f64 / paced_rate.max(1.0) * 1000.0,
        paced.window.as_secs_f64(),
        paced.not_confirmed,
        paced.errors
    );
    report_costs("paced", &paced);
    let daemon_lat = sorted(&paced.latencies_us);
    println!(
        "paced: collect() latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&daemon_lat, 0.50),
        percentile(&daemon_lat, 0.90),
        percentile(&daemon_lat, 0.99),
        percentile(&daemon_lat, 1.0)
    );

    let (sim_lat, sim_rate) = rt.block_on(simulator_baseline(&sims, terminals, paced_rate, window));
    let sim_lat = sorted(&sim_lat);
    println!(
        "simulator alone: {sim_rate:.0} SALEs/s paced over {terminals} direct ECRs; exchange p50 {:.2} ms, p90 {:.2} ms, \
         p99 {:.2} ms",
        percentile(&sim_lat, 0.50),
        percentile(&sim_lat, 0.90),
        percentile(&sim_lat, 0.99)
    );
    sims.stop();
    println!(
        "added by the daemon at {paced_rate:.0}/s (paced collect() percentile minus the simulator's): p50 {:.2} ms, \
         p99 {:.2} ms (goal p99 <= 10 ms)",
        percentile(&daemon_lat, 0.50) - percentile(&sim_lat, 0.50),
        percentile(&daemon_lat, 0.99) - percentile(&sim_lat, 0.99)
    );
    println!(
        "ratio of throughput to the journal ceiling: {:.2} ({rate:.0} / {:.0} payments/s)",
        rate / ceiling.per_second,
        ceiling.per_second
    );
}

fn sorted(v: &[u32]) -> Vec<u32> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

/// The journal, CPU and forwarder figures of a load run.
fn report_costs(label: &str, load: &Load) {
    println!(
        "{label}: journal {:.2} writes per confirmed payment, mean {:.1} writes per commit, {:.2} ms per COMMIT \
         (longest {:.1} ms); VmRSS {} KiB",
        load.writes_per_payment, load.mean_batch, load.commit_ms, load.commit_max_ms, load.rss_kib
    );
    let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / load.confirmed.max(1) as f64;
    println!(
        "{label}: CPU per confirmed payment: {:.0} us in this process (daemon and collectors; {:.2} cores busy), {:.0} us \
         in the simulators ({:.2} cores); at this cost 2 idle cores would confirm at most {:.0} payments/s",
        per(load.daemon_cpu),
        load.daemon_cpu.as_secs_f64() / load.window.as_secs_f64(),
        per(load.sims_cpu),
        load.sims_cpu.as_secs_f64() / load.window.as_secs_f64(),
        2e6 / (per(load.daemon_cpu) + per(load.sims_cpu)).max(1.0)
    );
    println!(
        "{label}: forwarder backlog {} at the end of the window, drained {:.2} s later ({} entries forwarded in all)",
        load.backlog_at_end,
        load.forwarded_after.as_secs_f64(),
        load.ledger_created
    );
}

//! `zhengjiao demo`: the whole system on one machine with one command.
//!
//! With no configuration it makes a data directory (`./zhengjiao-demo/` unless `--dir`), starts in this
//! process the tax-ledger simulator and three simulated terminals (two over TCP, one over a
//! pseudo-terminal through the real serial stack), writes a configuration naming them (the business
//! clock pinned inside the 2020 window) and loads it as `serve` does, starts the daemon
//! ([`crate::api::Daemon`]), imports a generated roster of one collection point and its collector
//! register, and runs a collection day: collections on the three terminals a few at a time, declines,
//! a void, a lost answer resolved by QUERY, a midday settlement and a refund from the closed batch, a
//! ledger outage. Then it settles every terminal, waits until the forwarder has sent everything, and
//! prints the day's report and the reconciliation, which must balance (exit 5 otherwise).
//!
//! Everything goes to standard output; the progress bar to standard error when it is a terminal; the
//! logs of the daemon and the simulators to `demo.log` in the data directory. No full ID number and no
//! name is printed: payers appear masked (`李** 410403********1234`).

mod day;
mod dir;
mod roster;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zhengjiao_protocol::message::TerminalId;
use zhengjiao_simulator::ledger::{LedgerConfig, LedgerSim, Secret};
use zhengjiao_simulator::terminal::{TerminalSim, TerminalSimConfig, Transport as SimTransport};

use crate::api::Daemon;
use crate::collect::Operator;
use crate::config::{Config, Role};
use crate::domain::{CollectionPointCode, CollectionSerial, Insurance};
use crate::journal::Store;

/// Options of `zhengjiao demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its data. Created if missing; emptied first when it holds an earlier demo
    /// run (it is marked by a `.zhengjiao-demo` file); any other non-empty directory is refused.
    #[arg(long, default_value = "zhengjiao-demo")]
    pub dir: PathBuf,
    /// Roster lines to generate (default 3000, or 200 with --short).
    #[arg(long, value_parser = clap::value_parser!(u32).range(20..=200_000))]
    pub lines: Option<u32>,
    /// Collections to make during the day (default: three in ten lines, at most 900; 45 with --short).
    #[arg(long, value_parser = clap::value_parser!(u32).range(10..=100_000))]
    pub collections: Option<u32>,
    /// The short form for CI: 200 lines, fewer collections, a shorter ledger outage.
    #[arg(long)]
    pub short: bool,
    /// Leave the daemon and the simulators running afterwards, with the API address, tokens and example
    /// CLI commands printed, until ctrl-c.
    #[arg(long)]
    pub keep_running: bool,
}

/// Exit status when the reconciliation does not balance (as `zhengjiao reconcile`).
const NOT_BALANCED: u8 = 5;
/// Exit status for a directory the demo refuses to use.
const USAGE: u8 = 2;

/// The business clock of the demo: inside the 2020 plan's collection phase.
const CLOCK: &str = "2020-10-21T09:00:00+08:00";
/// The collection point of the demo.
const POINT: &str = "WD-DGH-001";
const POINT_NAME: &str = "东高皇街道社区卫生服务中心";
const LEDGER_KEY_ID: &str = "weidong-demo";
const LEDGER_SECRET: &str = "demo-shared-secret-not-for-production";
const ROSTER_FILE: &str = "roster.csv";
const COLLECTORS_FILE: &str = "collectors.csv";
const LOG_FILE: &str = "demo.log";
const TOKENS_FILE: &str = "tokens.txt";
const ROSTER_SEED: u64 = 20_201_021;

/// The sizes of a run.
struct Options {
    dir: PathBuf,
    lines: usize,
    collections: usize,
    decline_every: usize,
    outage: Duration,
    keep_running: bool,
}

impl Options {
    fn new(args: &DemoArgs) -> Options {
        let lines = args.lines.map_or(if args.short { 200 } else { 3000 }, |n| n as usize);
        let default_collections = if args.short { 45 } else { (lines * 3 / 10).clamp(10, 900) };
        let collections = args.collections.map_or(default_collections, |n| n as usize);
        Options {
            dir: args.dir.clone(),
            lines,
            collections,
            decline_every: if collections < 200 { 10 } else { 25 },
            outage: Duration::from_secs(if args.short { 2 } else { 3 }),
            keep_running: args.keep_running,
        }
    }
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> ExitCode {
    let opts = Options::new(&args);
    let prepared = match dir::prepare(&opts.dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("zhengjiao demo: {e}");
            return ExitCode::from(USAGE);
        }
    };
    if let Err(e) = init_logging(&opts.dir.join(LOG_FILE)) {
        eprintln!("zhengjiao demo: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("zhengjiao demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    println!("zhengjiao demo (征缴): one collection day at {POINT_NAME} ({POINT}), 平顶山市卫东区, 2020 plan");
    println!(
        "  data directory {} ({}); logs in {}",
        opts.dir.display(),
        match prepared {
            dir::Prepared::New => "new",
            dir::Prepared::Emptied => "emptied: an earlier demo run's files were removed",
        },
        opts.dir.join(LOG_FILE).display()
    );
    let result = runtime.block_on(session(&opts));
    let code = match result {
        Ok(true) => {
            println!("demo finished in {:.1} s", started.elapsed().as_secs_f64());
            ExitCode::SUCCESS
        }
        Ok(false) => {
            println!("demo finished in {:.1} s, but the day did not balance", started.elapsed().as_secs_f64());
            ExitCode::from(NOT_BALANCED)
        }
        Err(e) => {
            eprintln!("zhengjiao demo: {e}");
            ExitCode::FAILURE
        }
    };
    // Tasks of the daemon and simulators still running are stopped with the runtime.
    runtime.shutdown_timeout(Duration::from_secs(5));
    code
}

/// Logs of the daemon and the simulators go to a file in the demo directory (`RUST_LOG`, default
/// `info`), so the terminal shows the demo's own account.
fn init_logging(path: &Path) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .try_init()
        .map_err(|e| format!("cannot set up logging: {e}"))
}

/// A progress bar on standard error when it is a terminal, else hidden.
fn progress_bar(len: u64) -> ProgressBar {
    use std::io::IsTerminal;
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("  {spinner} collections [{bar:40}] {pos}/{len} ({elapsed})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

fn operator(config: &Config, staff_no: &str) -> Result<Operator, String> {
    config
        .operators
        .iter()
        .find(|o| o.staff_no.as_str() == staff_no)
        .map(Operator::from_config)
        .ok_or_else(|| format!("no operator {staff_no} in the demo configuration"))
}

/// The demo from the simulators to the reconciliation; true when the day balanced.
async fn session(opts: &Options) -> Result<bool, String> {
    let dir = opts.dir.as_path();
    // 1. The simulators.
    let mut ledger_config = LedgerConfig::new(LEDGER_KEY_ID, Secret::new(LEDGER_SECRET));
    ledger_config.db = Some(dir.join("ledger-sim.sqlite"));
    let ledger = LedgerSim::start(ledger_config).await.map_err(|e| e.to_string())?;
    let tcp = TerminalSim::start(TerminalSimConfig { terminals: 2, seed: 2020, ..TerminalSimConfig::default() })
        .await
        .map_err(|e| format!("terminal simulator (TCP): {e}"))?;
    let pty = TerminalSim::start(TerminalSimConfig {
        transport: SimTransport::Pty,
        terminals: 1,
        seed: 2021,
        terminal_id: TerminalId::new("41000003").map_err(|e| e.to_string())?,
        ..TerminalSimConfig::default()
    })
    .await
    .map_err(|e| format!("terminal simulator (pty): {e}"))?;
    let tcp_addr = |i: usize| tcp.addrs().get(i).map(|a| format!("tcp:{a}")).ok_or("no TCP terminal address");
    let pty_path = pty.pty_path().ok_or("no pseudo-terminal")?.display().to_string();
    let terminals = vec![
        dir::TerminalEntry { name: "T01".to_owned(), transport: tcp_addr(0)? },
        dir::TerminalEntry { name: "T02".to_owned(), transport: tcp_addr(1)? },
        dir::TerminalEntry { name: "T03".to_owned(), transport: format!("serial:{pty_path}?baud=9600") },
    ];
    println!("[1/6] simulators started in this process:");
    println!("      tax ledger (税务入库) {}", ledger.url());
    for t in &terminals {
        let kind = if t.transport.starts_with("serial:") { "pseudo-terminal, real serial stack" } else { "TCP" };
        println!("      terminal {} {} ({kind})", t.name, t.transport);
    }

    // 2. The configuration, loaded as `serve` loads it, and the daemon.
    let admin_token = dir::new_token("demo-admin");
    let collector_token = dir::new_token("demo-collector");
    let operators = vec![
        dir::OperatorEntry {
            token: collector_token.clone(),
            staff_no: "1001".to_owned(),
            point: Some(POINT.to_owned()),
            role: Role::Collector.code(),
        },
        dir::OperatorEntry {
            token: dir::new_token("demo-collector"),
            staff_no: "1002".to_owned(),
            point: Some(POINT.to_owned()),
            role: Role::Collector.code(),
        },
        dir::OperatorEntry {
            token: admin_token.clone(),
            staff_no: "9001".to_owned(),
            point: None,
            role: Role::Admin.code(),
        },
    ];
    let ledger_url = ledger.url();
    let config_path = dir::write_config(
        dir,
        &dir::ConfigSpec {
            clock: CLOCK,
            ledger_url: &ledger_url,
            key_id: LEDGER_KEY_ID,
            secret: LEDGER_SECRET,
            point: POINT,
            terminals: &terminals,
            operators: &operators,
        },
    )?;
    // As `serve` does: every problem printed, the data directory created (mode 0700).
    let config = crate::config::prepare_serve(&config_path)
        .map_err(|_| format!("{}: the demo configuration was refused", config_path.display()))?;
    let daemon = Daemon::start(&config).await?;
    let collection = daemon.collection.clone();
    let today = collection.clock().today();
    println!(
        "[2/6] daemon started from {}: API http://{}, journal {}, business clock pinned at {CLOCK}",
        config_path.display(),
        daemon.addr,
        crate::import::journal_path(&config.data_dir).display()
    );

    // 3. The roster and the collector register.
    let point = CollectionPointCode::parse(POINT).map_err(|e| e.to_string())?;
    let roster = roster::generate(opts.lines, ROSTER_SEED, &config.policy, POINT, today);
    let (collectors_csv, collectors) = roster::collectors(POINT, POINT_NAME, today);
    let roster_path = dir.join(ROSTER_FILE);
    let collectors_path = dir.join(COLLECTORS_FILE);
    dir::write_private(&roster_path, &roster.csv)?;
    dir::write_private(&collectors_path, &collectors_csv)?;
    let (roster_file, collectors_file) = {
        let (r, c) = (roster_path.clone(), collectors_path.clone());
        tokio::task::spawn_blocking(move || {
            (crate::import::read_roster(&r, None), crate::import::read_collectors(&c, None))
        })
        .await
        .map_err(|e| e.to_string())?
    };
    let roster_file = roster_file.map_err(|e| format!("{}: {e}", roster_path.display()))?;
    let collectors_file = collectors_file.map_err(|e| format!("{}: {e}", collectors_path.display()))?;
    let store = collection.store();
    let imported = crate::import::apply_roster(store, roster_file, false).await.map_err(|e| e.to_string())?;
    let registered = crate::import::apply_collectors(store, collectors_file, false).await.map_err(|e| e.to_string())?;
    println!(
        "[3/6] roster (参保底册) {}: {} lines for {} people — {} medical (医疗; {} 低保 and {} 特困 with reduced \
         amounts), {} pension (养老); {} inserted",
        roster_path.display(),
        roster.lines.len(),
        roster.people,
        roster.count(Insurance::Medical),
        roster.dibao,
        roster.tekun,
        roster.count(Insurance::Pension),
        imported.outcome.inserted
    );
    println!(
        "      collector register (工作人员登记表) {}: {} collectors ({} inserted)",
        collectors_path.display(),
        collectors.len(),
        registered.outcome.inserted
    );

    // 4. The collection day.
    day::wait_ready(&collection, Duration::from_secs(30)).await?;
    let world = day::World {
        collection: collection.clone(),
        forwarder: daemon.forwarder.clone(),
        tcp,
        pty,
        ledger,
        collectors: collectors.iter().map(|c| operator(&config, c.staff_no)).collect::<Result<_, _>>()?,
        admin: operator(&config, "9001")?,
        terminals: terminals.iter().map(|t| t.name.clone()).collect(),
    };
    let plan = day::plan(&roster, opts.collections, &config.policy, ROSTER_SEED + 1);
    println!("[4/6] collection day {today}: {} collections by collectors 1001 and 1002 on T01..T03", plan.jobs.len());
    let bar = progress_bar(plan.jobs.len() as u64);
    let settings = day::DaySettings { decline_every: opts.decline_every, outage: opts.outage };
    let log = day::run_day(&world, plan, &settings, &bar).await;
    bar.finish_and_clear();
    let log = log?;
    for p in log.problems.iter().take(10) {
        println!("      note: {p}");
    }

    // 5. Forwarding.
    let waited = world
        .forwarder
        .wait_until(Duration::from_secs(60), |s| s.backlog == 0)
        .await
        .map_err(|e| format!("ledger status: {e}"))?;
    let status = match waited {
        Ok(s) => s,
        Err(s) => {
            return Err(format!("the forwarder still has {} entries to send after 60 s ({})", s.backlog, s.state))
        }
    };
    let outage_errors = status.recent_errors.iter().filter(|e| e.kind == "unavailable").count();
    println!(
        "[5/6] tax ledger: {} entries forwarded, backlog {}, dead letters {}; during the outage the ledger refused {} \
         request(s) with 503, the forwarder backed off {} time(s) and caught up",
        status.forwarded,
        status.backlog,
        status.dead_letters,
        world.ledger.counters().faults.outage,
        outage_errors
    );

    // 6. The day's report and the reconciliation.
    println!("[6/6] the day's report and reconciliation");
    let summary = summary::day_summary(&collection, today, &point).await?;
    let tiers = match crate::report::daily(store, today, Some(&point)).await {
        Ok(report) => {
            print!("{}", report.to_text());
            false
        }
        Err(e) => {
            println!("  (the daily report could not be made: {e})");
            true
        }
    };
    summary::print_summary(&summary, POINT, today, config.policy.commission_per_person_time(), tiers);
    let reconciliation = crate::ledger::reconcile(store, world.forwarder.client(), today, Some(&point))
        .await
        .map_err(|e| format!("reconciliation: {e}"))?;
    summary::print_reconciliation(&reconciliation);
    let balanced = reconciliation.balanced && log.all_settled_balanced;
    println!(
        "demo result: approved={} declined={} voided={} refunded={} resolved_by_query={} settlements={} \
         reconciliation={}",
        summary.approved().count,
        summary.declines(),
        summary.voided.count,
        summary.refunded.count,
        summary.resolved_by_query,
        log.settlements.len(),
        if balanced { "balanced" } else { "not_balanced" }
    );

    if opts.keep_running {
        let example = unpaid_line(&collection, &roster).await.unwrap_or_else(|| "ZJ-M000001".to_owned());
        keep_running(dir, &daemon, &admin_token, &collector_token, today, &example)?;
        wait_for_ctrl_c().await;
        println!("stopping");
    }
    daemon.shutdown().await?;
    let day::World { tcp, pty, ledger, .. } = world;
    tcp.shutdown().await;
    pty.shutdown().await;
    ledger.shutdown().await;
    Ok(balanced)
}

/// A standard medical line nobody paid today, for the example commands.
async fn unpaid_line(collection: &crate::collect::Collection, roster: &roster::Roster) -> Option<String> {
    let year = collection.policy().year();
    for l in roster.lines.iter().filter(|l| l.insurance == Insurance::Medical) {
        let serial = CollectionSerial::parse(&l.serial).ok()?;
        if let Ok(Some(stored)) = collection.store().roster_line(&serial, Insurance::Medical, year).await {
            if stored.paid_by.is_none() && stored.line.hardship == crate::domain::Hardship::None {
                return Some(l.serial.clone());
            }
        }
    }
    None
}

fn keep_running(
    dir: &Path,
    daemon: &Daemon,
    admin: &str,
    collector: &str,
    today: time::Date,
    example: &str,
) -> Result<(), String> {
    let tokens = dir.join(TOKENS_FILE);
    dir::write_private(
        &tokens,
        &format!(
            "ZHENGJIAO_API=http://{}\nadmin (9001): {admin}\ncollector (1001, {POINT}): {collector}\n",
            daemon.addr
        ),
    )?;
    println!();
    println!("The daemon and the simulators keep running; ctrl-c stops them.");
    println!("  API              http://{}", daemon.addr);
    println!("  admin token      {admin}   (staff 9001)");
    println!("  collector token  {collector}   (staff 1001, {POINT})");
    println!("  (also in {}; the configuration keeps only their SHA-256)", tokens.display());
    println!("Try, in another terminal:");
    println!("  export ZHENGJIAO_API=http://{} ZHENGJIAO_TOKEN={collector}", daemon.addr);
    println!("  cargo run --release -- terminals");
    println!("  cargo run --release -- payments --date {today} --state refunded");
    println!("  cargo run --release -- lookup {example}");
    println!("  cargo run --release -- collect {example} --terminal T01");
    println!("  cargo run --release -- settle T01");
    println!("  cargo run --release -- reconcile --date {today}");
    println!("  ZHENGJIAO_TOKEN={admin} cargo run --release -- ledger status");
    Ok(())
}

async fn wait_for_ctrl_c() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

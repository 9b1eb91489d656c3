//! What `GET /metrics` shows (docs/operations.md, "Metrics to watch"): one Prometheus text page
//! ([`exposition`]) built at each scrape from what the daemon already keeps, with no registry of its
//! own:
//!
//! - the journal's payments and reversals by state (gauges, read with one SQL query);
//! - every terminal's link: its state (one 0/1 gauge per state) and its counters (frames, NAKs,
//!   resends, noise bytes, broken frames, ...), labelled `terminal` with the configured name;
//! - the journal writer: commit latency (a summary: seconds and count), writes per commit (a
//!   histogram over [`BATCH_SIZE_BOUNDS`]), failed batches;
//! - the ledger forwarder: outbox backlog, age of the oldest unsent entry, dead letters, failures by
//!   kind.
//!
//! A journal that cannot be read does not fail the page: `zhengjiao_journal_up` is 0 and the families
//! read from it are left out, so an alert on the daemon still has the link and forwarder figures.
//!
//! Counters are the daemon's since it started (Prometheus handles the reset at a restart).

pub mod exposition;

use exposition::{Kind, Page};

use crate::collect::{link_state_name, Collection};
use crate::journal::{PaymentState, ReversalKind, Store, BATCH_SIZE_BOUNDS};
use crate::ledger::Forwarder;
use crate::link::LinkState;

/// Every family's name starts with this.
pub const PREFIX: &str = "zhengjiao_";

/// The journal's counts by state, read at one moment.
#[derive(Debug, Default)]
struct JournalCounts {
    payments: Vec<(String, u64)>,
    reversals: Vec<(String, String, u64)>,
}

/// The whole page, now.
pub async fn render(collection: &Collection, forwarder: &Forwarder) -> String {
    let mut page = Page::new();
    page.family("zhengjiao_build_info", Kind::Gauge, "The daemon's version; always 1.").sample(
        "zhengjiao_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    let counts = journal_counts(collection).await;
    page.single(
        "zhengjiao_journal_up",
        Kind::Gauge,
        "1 when the journal answered this scrape's reads, 0 when it failed (the daemon refuses work until restarted).",
        if counts.is_some() { 1.0 } else { 0.0 },
    );
    if let Some(counts) = &counts {
        payments(&mut page, counts);
    }
    links(&mut page, collection);
    journal_writer(&mut page, collection);
    ledger(&mut page, forwarder).await;
    page.finish()
}

async fn journal_counts(collection: &Collection) -> Option<JournalCounts> {
    let read = collection
        .store()
        .query(|conn| {
            let mut counts = JournalCounts::default();
            let mut stmt = conn.prepare("SELECT state, count(*) FROM payments GROUP BY state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                counts.payments.push((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or_default()));
            }
            let mut stmt = conn.prepare("SELECT kind, state, count(*) FROM reversals GROUP BY kind, state")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                counts.reversals.push((r.get(0)?, r.get(1)?, u64::try_from(r.get::<_, i64>(2)?).unwrap_or_default()));
            }
            Ok(counts)
        })
        .await;
    match read {
        Ok(counts) => Some(counts),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the journal");
            None
        }
    }
}

fn payments(page: &mut Page, counts: &JournalCounts) {
    let name = "zhengjiao_payments";
    page.family(name, Kind::Gauge, "Payments in the journal by state (every state listed, 0 when none).");
    for state in PaymentState::ALL {
        let n = counts.payments.iter().filter(|(s, _)| s == state.as_str()).map(|(_, n)| *n).sum::<u64>();
        page.sample(name, &[("state", state.as_str())], n as f64);
    }
    let name = "zhengjiao_reversals";
    page.family(name, Kind::Gauge, "Voids and refunds in the journal by kind and state (every pair listed).");
    // A reversal's states: those of a payment up to its outcome.
    const REVERSAL_STATES: [PaymentState; 6] = [
        PaymentState::Created,
        PaymentState::Sent,
        PaymentState::Approved,
        PaymentState::Declined,
        PaymentState::Unknown,
        PaymentState::NotCharged,
    ];
    for kind in [ReversalKind::Void, ReversalKind::Refund] {
        for state in REVERSAL_STATES {
            let n = counts
                .reversals
                .iter()
                .filter(|(k, s, _)| k == kind.as_str() && s == state.as_str())
                .map(|(_, _, n)| *n)
                .sum::<u64>();
            page.sample(name, &[("kind", kind.as_str()), ("state", state.as_str())], n as f64);
        }
    }
}

fn links(page: &mut Page, collection: &Collection) {
    let terminals = collection.terminals();
    let name = "zhengjiao_terminal_link_state";
    page.family(name, Kind::Gauge, "A terminal link's state: 1 for the state it is in, 0 for the others.");
    for (_, status) in &terminals {
        for state in [LinkState::Connecting, LinkState::SigningIn, LinkState::Ready, LinkState::Down] {
            let on = if status.state == state { 1.0 } else { 0.0 };
            page.sample(name, &[("terminal", &status.name), ("state", link_state_name(state))], on);
        }
    }
    let name = "zhengjiao_terminal_queued_requests";
    page.family(name, Kind::Gauge, "Requests waiting for the terminal.");
    for (_, status) in &terminals {
        page.sample(name, &[("terminal", &status.name)], status.queued as f64);
    }
    type Counter = fn(&crate::link::LinkStatus) -> u64;
    let counters: [(&str, &str, Counter); 10] = [
        ("frames_sent", "Frames sent to the terminal (first sends only).", |s| s.frames_sent),
        ("frames_received", "Well-formed frames received from the terminal.", |s| s.frames_received),
        ("naks_sent", "NAKs sent for broken frames.", |s| s.naks_sent),
        ("naks_received", "NAKs received from the terminal.", |s| s.naks_received),
        ("resends", "Frames and probes sent again (after a NAK or no ACK).", |s| s.resends),
        ("noise_bytes", "Bytes skipped as noise outside frames.", |s| s.noise_bytes),
        ("broken_frames", "Broken frames received (bad check, no ETX, partial).", |s| s.broken_frames),
        ("stale_responses", "Responses that belonged to no exchange in flight.", |s| s.stale_responses),
        ("probes_sent", "ENQ heartbeat probes sent.", |s| s.probes_sent),
        ("connects", "Transport connections opened.", |s| s.connects),
    ];
    for (short, help, get) in counters {
        let name = format!("zhengjiao_terminal_{short}_total");
        page.family(&name, Kind::Counter, help);
        for (_, status) in &terminals {
            page.sample(&name, &[("terminal", &status.name)], get(status) as f64);
        }
    }
}

fn journal_writer(page: &mut Page, collection: &Collection) {
    let m = collection.store().metrics();
    let name = "zhengjiao_journal_commit_seconds";
    page.family(name, Kind::Summary, "Time spent in COMMIT (the fsync) per committed journal transaction.");
    page.sample(&format!("{name}_sum"), &[], m.commit_time.as_secs_f64());
    page.sample(&format!("{name}_count"), &[], m.batches_committed as f64);
    page.single(
        "zhengjiao_journal_commit_seconds_max",
        Kind::Gauge,
        "The longest single COMMIT since the daemon started.",
        m.commit_time_max.as_secs_f64(),
    );
    let name = "zhengjiao_journal_transaction_seconds";
    page.family(name, Kind::Summary, "Time from BEGIN to the end of COMMIT per committed journal transaction.");
    page.sample(&format!("{name}_sum"), &[], m.batch_time.as_secs_f64());
    page.sample(&format!("{name}_count"), &[], m.batches_committed as f64);
    let name = "zhengjiao_journal_batch_writes";
    page.family(name, Kind::Histogram, "Writes per committed journal transaction (group commit).");
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0u64;
    for (bound, n) in BATCH_SIZE_BOUNDS.iter().zip(m.batch_sizes) {
        cumulative += n;
        let le = if *bound == usize::MAX { "+Inf".to_owned() } else { bound.to_string() };
        page.sample(&bucket, &[("le", &le)], cumulative as f64);
    }
    page.sample(&format!("{name}_sum"), &[], m.writes_committed as f64);
    page.sample(&format!("{name}_count"), &[], m.batches_committed as f64);
    page.single(
        "zhengjiao_journal_failed_batches_total",
        Kind::Counter,
        "Journal transactions that failed (each stops the journal until the daemon is restarted).",
        m.batches_failed as f64,
    );
}

async fn ledger(page: &mut Page, forwarder: &Forwarder) {
    let name = "zhengjiao_ledger_errors_total";
    page.family(name, Kind::Counter, "Failed ledger batches (or outbox reads) by kind of failure.");
    for (kind, n) in forwarder.error_counts() {
        page.sample(name, &[("kind", &kind)], n as f64);
    }
    let status = match forwarder.status().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot read the ledger outbox");
            return;
        }
    };
    let gauges: [(&str, &str, f64); 6] = [
        (
            "outbox_backlog",
            "Ledger entries not yet forwarded (held reversals included), dead letters excluded.",
            status.backlog as f64,
        ),
        ("outbox_held", "Reversals waiting for their payment's entry to be acknowledged.", status.held as f64),
        (
            "oldest_unsent_age_seconds",
            "Age of the oldest entry not yet forwarded, by the business clock (0 when none).",
            status.oldest_unsent_age_secs.unwrap_or(0) as f64,
        ),
        ("dead_letters", "Entries the ledger rejected, waiting for an operator.", status.dead_letters as f64),
        ("forwarded", "Entries the ledger holds.", status.forwarded as f64),
        (
            "consecutive_failures",
            "Ledger failures since the last answered batch.",
            f64::from(status.consecutive_failures),
        ),
    ];
    for (short, help, value) in gauges {
        page.single(&format!("zhengjiao_ledger_{short}"), Kind::Gauge, help, value);
    }
    let counters: [(&str, &str, u64); 3] = [
        ("batches_answered", "Ledger batches answered.", status.batches_answered),
        ("entries_acknowledged", "Entries the ledger acknowledged (created or exists).", status.entries_acknowledged),
        ("entries_rejected", "Entries the ledger rejected (each a dead letter).", status.entries_rejected),
    ];
    for (short, help, value) in counters {
        page.single(&format!("zhengjiao_ledger_{short}_total"), Kind::Counter, help, value as f64);
    }
    let name = "zhengjiao_ledger_forwarder_state";
    page.family(name, Kind::Gauge, "The forwarder's state: 1 for the state it is in, 0 for the others.");
    for state in ["idle", "sending", "backing_off", "stopped"] {
        page.sample(name, &[("state", state)], if status.state == state { 1.0 } else { 0.0 });
    }
}

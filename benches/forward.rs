//! Forwarding to the tax ledger, measured against the in-process ledger simulator on loopback:
//!
//! 1. a backlog of [`ENTRIES`] approved payments is prepared through the journal's `Store` API (many
//!    concurrent submitters, group commit);
//! 2. baseline: the same entries, read from the outbox beforehand, posted to a fresh simulator in the
//!    same batches and with the same concurrency, without the journal (the simulator's raw ingest);
//! 3. the forwarder drains the backlog to another fresh simulator: the time to drain it (until the
//!    journal has recorded every answer) and the steady-state rate (between 10% and 90% of the
//!    entries acknowledged at the ledger).
//!
//! Run: `cargo bench --bench forward` (`ZJ_FORWARD_BENCH_ENTRIES` changes the backlog). Goal: at least
//! 20,000 entries/s, a backlog of 100,000 drained in under 10 s.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/journal_support/mod.rs"]
mod journal_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use journal_support::*;
use tokio::sync::Notify;
use zhengjiao::clock::Clock;
use zhengjiao::journal::{JournalOptions, PaymentState, SqliteStore, Store};
use zhengjiao::ledger::sign::SigningSecret;
use zhengjiao::ledger::{ClientSettings, Forwarder, ForwarderSettings, LedgerClient, MAX_BATCH};
use zhengjiao_simulator::ledger::{LedgerConfig, LedgerHandle, LedgerSim, Secret};

const ENTRIES: u32 = 100_000;
const SUBMITTERS: u32 = 256;
const KEY_ID: &str = "district-1";
const SECRET: &str = "s3cret";

fn entries() -> u32 {
    std::env::var("ZJ_FORWARD_BENCH_ENTRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(ENTRIES)
}

async fn ledger() -> LedgerHandle {
    LedgerSim::start(LedgerConfig::new(KEY_ID, Secret::new(SECRET))).await.unwrap()
}

fn client(url: &str) -> LedgerClient {
    LedgerClient::new(url, KEY_ID, SigningSecret::new(SECRET), ClientSettings::default()).unwrap()
}

/// `n` approved payments through the Store API.
async fn prepare(store: &SqliteStore, n: u32) {
    store.import_roster(lines(0..n), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        let (store, next) = (store.clone(), Arc::clone(&next));
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let id = format!("P{i:07}");
                let r = reference(&id);
                store.record_payment_created(new_payment(&id, &line(i))).await.unwrap();
                store.transition(&r, PaymentState::Sent, Default::default()).await.unwrap();
                store
                    .transition(&r, PaymentState::Approved, approved(MEDICAL_FEN, u64::from(i % 999_999) + 1))
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

/// The simulator's raw ingest of the same batches, `in_flight` at once, no journal.
async fn baseline(store: &SqliteStore, in_flight: usize) -> (u32, Duration) {
    let mut bodies = Vec::new();
    let mut cursor = 0;
    loop {
        let batch = store.sendable_outbox(cursor, MAX_BATCH).await.unwrap();
        let Some(last) = batch.last() else { break };
        cursor = last.seq;
        let ids: Vec<String> = batch.iter().map(|e| e.entry_id.clone()).collect();
        let body =
            format!("{{\"entries\":[{}]}}", batch.iter().map(|e| e.payload.as_str()).collect::<Vec<_>>().join(","));
        bodies.push((ids, body.into_bytes()));
    }
    let sim = ledger().await;
    let client = Arc::new(client(&sim.url()));
    let total: usize = bodies.iter().map(|(ids, _)| ids.len()).sum();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (client, queue) = (Arc::clone(&client), Arc::clone(&queue));
        tasks.spawn(async move {
            loop {
                let Some((ids, body)) = queue.lock().unwrap().pop() else { break };
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                client.post_entries(&refs, body).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let elapsed = started.elapsed();
    assert_eq!(sim.entry_count().await.unwrap(), total as u64);
    (u32::try_from(total).unwrap(), elapsed)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let n = entries();
        let dir = tempfile::Builder::new().prefix("forward-bench").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let clock = Clock::starting_at(time::macros::datetime!(2020-10-21 10:00 +8));
        let store = SqliteStore::open(dir.path().join("journal.sqlite"), JournalOptions { clock, ..JournalOptions::default() })
            .await
            .unwrap();
        let t = Instant::now();
        prepare(&store, n).await;
        println!("backlog: {n} outbox entries prepared through the Store API in {:.2} s", t.elapsed().as_secs_f64());

        let settings = ForwarderSettings::default();
        let (base_n, base_time) = baseline(&store, settings.in_flight).await;
        let base_rate = f64::from(base_n) / base_time.as_secs_f64();
        println!(
            "baseline: simulator raw ingest, {base_n} entries in batches of {MAX_BATCH}, {} in flight: {:.2} s, {:.0} entries/s",
            settings.in_flight,
            base_time.as_secs_f64(),
            base_rate
        );

        let sim = ledger().await;
        let started = Instant::now();
        let f = Forwarder::start(store.clone(), client(&sim.url()), clock, Arc::new(Notify::new()), settings);
        let (mut t10, mut t90) = (None, None);
        let total = u64::from(n);
        loop {
            let created = sim.counters().entries_created;
            if t10.is_none() && created >= total / 10 {
                t10 = Some((Instant::now(), created));
            }
            if t90.is_none() && created >= total * 9 / 10 {
                t90 = Some((Instant::now(), created));
            }
            if created >= total {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let status = f.wait_until(Duration::from_secs(600), |s| s.backlog == 0 && s.in_flight == 0).await.unwrap().unwrap();
        let drained = started.elapsed();
        assert_eq!(status.forwarded, total);
        assert_eq!(sim.entry_count().await.unwrap(), total);
        let ((a, ca), (b, cb)) = (t10.unwrap(), t90.unwrap());
        let steady = (cb - ca) as f64 / (b - a).as_secs_f64();
        let overall = total as f64 / drained.as_secs_f64();
        let m = store.metrics();
        println!(
            "forwarder: {n} entries drained in {:.2} s ({overall:.0} entries/s overall; goal < 10 s)",
            drained.as_secs_f64()
        );
        println!("forwarder: steady state (10%..90% acknowledged) {steady:.0} entries/s (goal >= 20000)");
        println!(
            "ratio to the simulator's raw ingest: steady {:.2}x, overall {:.2}x",
            steady / base_rate,
            overall / base_rate
        );
        println!(
            "journal: {} commits in all, mean {:.1} writes per commit, {:.0} ms in COMMIT",
            m.batches_committed,
            m.mean_batch(),
            m.commit_time.as_secs_f64() * 1000.0
        );
        f.shutdown().await;
        store.close().await;
    });
}

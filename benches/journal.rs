//! Payments recorded per second in the journal with `synchronous=FULL`, three ways, in one run on the
//! same kind of file (a fresh journal under the target directory for each):
//!
//! 1. group commit: 64 concurrent submitters through the writer, which commits what waits together;
//! 2. the same writer and submitters with `max_batch = 1`: one transaction (one fsync) per payment;
//! 3. plain rusqlite, one connection, one transaction per payment (the same two inserts a payment
//!    costs: the payment row and its first history row), for reference.
//!
//! Run: `cargo bench --bench journal`. Prints the figures and the ratio of 1 to 2.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "../tests/journal_support/mod.rs"]
mod journal_support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use journal_support::*;
use zhengjiao::journal::{JournalOptions, SqliteStore, Store};

/// Concurrent submitters.
const SUBMITTERS: u32 = 64;
/// Payments recorded with group commit.
const GROUP_PAYMENTS: u32 = 20_000;
/// Payments recorded one transaction each (each costs an fsync).
const SINGLE_PAYMENTS: u32 = 1_000;

struct Run {
    payments: u32,
    elapsed: Duration,
    batches: u64,
    mean_batch: f64,
    commit_time: Duration,
}

impl Run {
    fn per_second(&self) -> f64 {
        f64::from(self.payments) / self.elapsed.as_secs_f64()
    }
}

fn work_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

async fn through_writer(options: JournalOptions, payments: u32) -> Run {
    let dir = work_dir();
    let store = SqliteStore::open(dir.path().join("journal.db"), options).await.unwrap();
    store.import_roster(lines(0..payments), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    let before = store.metrics();
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            let (store, next) = (store.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= payments {
                        break;
                    }
                    store.record_payment_created(new_payment(&format!("B-{n}"), &line(n))).await.unwrap();
                }
            })
        })
        .collect();
    for s in submitters {
        s.await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = store.metrics();
    store.close().await;
    let batches = after.batches_committed - before.batches_committed;
    let writes = after.writes_committed - before.writes_committed;
    Run {
        payments,
        elapsed,
        batches,
        mean_batch: writes as f64 / batches.max(1) as f64,
        commit_time: after.commit_time - before.commit_time,
    }
}

fn plain_rusqlite(payments: u32) -> Run {
    let dir = work_dir();
    let conn = rusqlite::Connection::open(dir.path().join("plain.db")).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE payments (id TEXT PRIMARY KEY, line_id INTEGER NOT NULL, amount_fen INTEGER NOT NULL,
             terminal_id TEXT NOT NULL, till TEXT NOT NULL, operator TEXT NOT NULL, state TEXT NOT NULL,
             created_at TEXT NOT NULL, updated_at TEXT NOT NULL) STRICT;
         CREATE TABLE payment_transitions (seq INTEGER PRIMARY KEY AUTOINCREMENT, payment_id TEXT NOT NULL,
             at TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL) STRICT;",
    )
    .unwrap();
    let started = Instant::now();
    let mut commit_time = Duration::ZERO;
    for n in 0..payments {
        let id = format!("R-{n}");
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.prepare_cached("INSERT INTO payments VALUES (?1, ?2, 28000, 'T0000001', '01', '0001', 'created', ?3, ?3)")
            .unwrap()
            .execute(rusqlite::params![id, n, "2020-10-21T10:15:30.000000+08:00"])
            .unwrap();
        conn.prepare_cached("INSERT INTO payment_transitions (payment_id, at, to_state) VALUES (?1, ?2, 'created')")
            .unwrap()
            .execute(rusqlite::params![id, "2020-10-21T10:15:30.000000+08:00"])
            .unwrap();
        let commit = Instant::now();
        conn.execute_batch("COMMIT").unwrap();
        commit_time += commit.elapsed();
    }
    Run { payments, elapsed: started.elapsed(), batches: u64::from(payments), mean_batch: 1.0, commit_time }
}

fn report(name: &str, run: &Run) {
    println!(
        "{name:<50} {:>9.0} payments/s  ({} payments in {:.2} s; {} commits, mean {:.1} per commit, {:.2} ms per commit)",
        run.per_second(),
        run.payments,
        run.elapsed.as_secs_f64(),
        run.batches,
        run.mean_batch,
        run.commit_time.as_secs_f64() * 1000.0 / run.batches.max(1) as f64,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let group = rt.block_on(through_writer(JournalOptions::default(), GROUP_PAYMENTS));
    let single =
        rt.block_on(through_writer(JournalOptions { max_batch: 1, ..JournalOptions::default() }, SINGLE_PAYMENTS));
    let plain = plain_rusqlite(SINGLE_PAYMENTS);

    println!("journal: payments recorded (`created`), synchronous=FULL, WAL, {SUBMITTERS} concurrent submitters");
    report("group commit (writer, max_batch 256)", &group);
    report("one transaction per payment (writer, max_batch 1)", &single);
    report("one transaction per payment (plain rusqlite)", &plain);
    println!(
        "ratio group commit / one transaction per payment: {:.1}x (writer), {:.1}x (plain rusqlite)",
        group.per_second() / single.per_second(),
        group.per_second() / plain.per_second()
    );
}

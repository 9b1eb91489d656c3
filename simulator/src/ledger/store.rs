//! The ledger's entries in SQLite, owned by one thread.
//!
//! [`Store`] is the async face: each call sends a job to the store thread, which owns the
//! [`rusqlite::Connection`] and runs jobs one at a time, so no lock is ever held across an `.await` and
//! every request's entries are decided and committed in one transaction, in request order. The file (or
//! the in-memory database) outlives nothing but the thread: [`Store::close`] ends it, and a new
//! [`Store::open`] on the same file sees everything committed before.

use std::path::{Path, PathBuf};
use std::thread;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use tokio::sync::{mpsc, oneshot};

use super::entry::{Entry, Kind, LOCAL_OFFSET};

/// Jobs waiting for the store thread; senders wait (asynchronously) when it is full.
const STORE_QUEUE: usize = 64;

/// Schema of the ledger. `tax_voucher_no` comes from the persisted counter `voucher`, so numbers are
/// never reused, even across restarts.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    reverses TEXT,
    collection_serial TEXT NOT NULL,
    insurance TEXT NOT NULL,
    year INTEGER NOT NULL,
    payer_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    collection_point TEXT NOT NULL,
    amount_fen INTEGER NOT NULL,
    local_date TEXT NOT NULL,
    content TEXT NOT NULL,
    tax_voucher_no TEXT NOT NULL UNIQUE,
    received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_day ON entries (local_date, collection_point);
CREATE INDEX IF NOT EXISTS entries_by_target ON entries (reverses) WHERE reverses IS NOT NULL;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('voucher', 0);
";

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite refused an operation.
    #[error("ledger store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The store thread could not be started.
    #[error("ledger store: cannot start its thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The store was closed (the simulator is shutting down).
    #[error("ledger store: closed")]
    Closed,
    /// A stored row does not read back (edited by hand, or a newer schema).
    #[error("ledger store: entry {entry_id}: stored content does not read back")]
    Corrupt {
        /// The entry whose row is bad.
        entry_id: String,
    },
}

/// An entry as the ledger holds it (the answer of `GET /v1/entries/{entry_id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// The entry in canonical form: every contract field, in the contract's order.
    pub entry: serde_json::Value,
    /// 电子税票号码 assigned when the entry was created.
    pub tax_voucher_no: String,
    /// When the ledger accepted it (RFC 3339, UTC+8).
    pub received_at: String,
}

/// The answer of `GET /v1/summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The local date (UTC+8) summed, `YYYY-MM-DD`.
    pub date: String,
    /// One line per (collection point, insurance, channel) with entries on that date, sorted.
    pub lines: Vec<SummaryLine>,
}

/// Totals of one (collection point, insurance, channel) for one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryLine {
    /// 征缴网点 code.
    pub collection_point: String,
    /// `pension` or `medical`.
    pub insurance: String,
    /// `pos` or `cash`.
    pub channel: String,
    /// Number of payments whose occurred_at falls on the date.
    pub payments: u64,
    /// Their total in yuan, two decimals.
    pub payment_total: Decimal,
    /// Number of reversals whose own occurred_at falls on the date.
    pub reversals: u64,
    /// Their total in yuan, two decimals.
    pub reversal_total: Decimal,
}

/// The ledger's decision on one entry of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Stored now under this voucher number.
    Created(String),
    /// Stored before with the same content, under this voucher number.
    Exists(String),
    /// Refused for good, with the contract's reason.
    Rejected(String),
}

/// Why a well-formed entry is refused by what the ledger already holds.
const DIFFERENT_CONTENT: &str = "exists_with_different_content";
const UNKNOWN_TARGET: &str = "reversal_of_unknown_entry";
const EXCEEDS_PAYMENT: &str = "reversal_exceeds_payment";

/// Work for the store thread.
enum Job {
    /// Run this against the connection.
    Run(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Close the connection, then say so.
    Close(oneshot::Sender<()>),
}

/// Async handle on the store thread.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, or an in-memory one, on a new thread.
    pub(crate) async fn open(path: Option<PathBuf>) -> Result<Store, StoreError> {
        let (jobs, mut queue) = mpsc::channel::<Job>(STORE_QUEUE);
        let (ready_tx, ready_rx) = oneshot::channel();
        thread::Builder::new()
            .name("ledger-store".into())
            .spawn(move || {
                let mut conn = match open_db(path.as_deref()) {
                    Ok(conn) => {
                        let _ = ready_tx.send(Ok(()));
                        conn
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = queue.blocking_recv() {
                    match job {
                        Job::Run(f) => f(&mut conn),
                        Job::Close(done) => {
                            drop(conn);
                            let _ = done.send(());
                            return;
                        }
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        ready_rx.await.map_err(|_| StoreError::Closed)??;
        Ok(Store { jobs })
    }

    /// Runs `f` on the store thread and waits for its answer.
    async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        let job = Job::Run(Box::new(move |conn| {
            let _ = tx.send(f(conn));
        }));
        self.jobs.send(job).await.map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Decides every entry of one request in order and commits them in one transaction. `None` stands
    /// for an entry already refused by validation (it takes no part but keeps its place).
    pub(crate) async fn submit(&self, entries: Vec<Option<Entry>>) -> Result<Vec<Option<Decision>>, StoreError> {
        self.call(move |conn| {
            let received_at = now_local();
            let tx = conn.transaction()?;
            let decisions = entries
                .iter()
                .map(|e| e.as_ref().map(|e| decide(&tx, e, &received_at)).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(decisions)
        })
        .await
    }

    /// The stored entry with this id, if any.
    pub(crate) async fn get(&self, entry_id: String) -> Result<Option<StoredEntry>, StoreError> {
        self.call(move |conn| {
            let row = conn
                .query_row(
                    "SELECT content, tax_voucher_no, received_at FROM entries WHERE entry_id = ?1",
                    [&entry_id],
                    |r| Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            row.map(|(content, tax_voucher_no, received_at)| {
                let entry = serde_json::from_str(&content).map_err(|_| StoreError::Corrupt { entry_id })?;
                Ok(StoredEntry { entry, tax_voucher_no, received_at })
            })
            .transpose()
        })
        .await
    }

    /// Totals by local date of occurred_at, for one collection point or all.
    pub(crate) async fn summary(&self, date: Date, collection_point: Option<String>) -> Result<Summary, StoreError> {
        self.call(move |conn| {
            let date = date_text(date);
            let mut stmt = conn.prepare_cached(
                "SELECT collection_point, insurance, channel,
                        SUM(kind = 'payment'), SUM(CASE WHEN kind = 'payment' THEN amount_fen ELSE 0 END),
                        SUM(kind = 'reversal'), SUM(CASE WHEN kind = 'reversal' THEN amount_fen ELSE 0 END)
                 FROM entries
                 WHERE local_date = ?1 AND (?2 IS NULL OR collection_point = ?2)
                 GROUP BY collection_point, insurance, channel
                 ORDER BY collection_point, insurance, channel",
            )?;
            let lines = stmt
                .query_map(params![date, collection_point], |r| {
                    Ok(SummaryLine {
                        collection_point: r.get(0)?,
                        insurance: r.get(1)?,
                        channel: r.get(2)?,
                        payments: r.get(3)?,
                        payment_total: Decimal::new(r.get(4)?, 2),
                        reversals: r.get(5)?,
                        reversal_total: Decimal::new(r.get(6)?, 2),
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Summary { date, lines })
        })
        .await
    }

    /// Deletes the entry with this id, as if the ledger had lost it (a reconciliation drill); true
    /// when there was one. Its voucher number is never given out again.
    pub(crate) async fn remove(&self, entry_id: String) -> Result<bool, StoreError> {
        self.call(move |conn| Ok(conn.execute("DELETE FROM entries WHERE entry_id = ?1", [&entry_id])? > 0)).await
    }

    /// How many entries the ledger holds.
    pub(crate) async fn count(&self) -> Result<u64, StoreError> {
        self.call(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM entries", [], |r| r.get(0))?)).await
    }

    /// Runs the jobs already queued, then closes the database and ends the thread; later calls on any
    /// clone of this store fail with [`StoreError::Closed`].
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn open_db(path: Option<&Path>) -> Result<Connection, StoreError> {
    let conn = match path {
        Some(path) => {
            let conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn
        }
        None => Connection::open_in_memory()?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(SCHEMA)?;
    Ok(conn)
}

/// Decides one checked entry against what the transaction holds so far, storing it if it is new.
fn decide(tx: &Transaction<'_>, entry: &Entry, received_at: &str) -> Result<Decision, StoreError> {
    let content = entry.canonical_json();
    // Cached statements: a batch decides hundreds of entries, and preparing the same text for each of
    // them was most of the simulated ledger's time.
    let existing = tx
        .prepare_cached("SELECT content, tax_voucher_no FROM entries WHERE entry_id = ?1")?
        .query_row([&entry.entry_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .optional()?;
    if let Some((stored, voucher)) = existing {
        return Ok(if stored == content {
            Decision::Exists(voucher)
        } else {
            Decision::Rejected(DIFFERENT_CONTENT.into())
        });
    }
    if let (Kind::Reversal, Some(target)) = (entry.kind, &entry.reverses) {
        if let Some(reason) = check_reversal(tx, entry, target)? {
            return Ok(Decision::Rejected(reason));
        }
    }
    let seq: i64 = tx
        .prepare_cached("UPDATE counters SET value = value + 1 WHERE name = 'voucher' RETURNING value")?
        .query_row([], |r| r.get(0))?;
    let voucher = voucher_no(seq);
    tx.prepare_cached(
        "INSERT INTO entries (entry_id, kind, reverses, collection_serial, insurance, year, payer_id, channel,
                              collection_point, amount_fen, local_date, content, tax_voucher_no, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        entry.entry_id,
        entry.kind.as_str(),
        entry.reverses,
        entry.collection_serial,
        entry.insurance.as_str(),
        entry.year,
        entry.payer_id.as_str(),
        entry.channel.as_str(),
        entry.collection_point,
        entry.amount.fen(),
        date_text(entry.occurred_at.local_date()),
        content,
        voucher,
        received_at,
    ])?;
    Ok(Decision::Created(voucher))
}

/// A reversal must cancel a stored payment of the same line and payer, and all reversals of one payment
/// together may not cancel more than it paid (a void cancels all of it; refunds may be partial).
fn check_reversal(tx: &Transaction<'_>, entry: &Entry, target: &str) -> Result<Option<String>, StoreError> {
    let payment = tx
        .query_row(
            "SELECT collection_serial, insurance, year, payer_id, amount_fen FROM entries
             WHERE entry_id = ?1 AND kind = 'payment'",
            [target],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((serial, insurance, year, payer_id, paid)) = payment else {
        return Ok(Some(UNKNOWN_TARGET.into()));
    };
    let mismatch = [
        ("collection_serial", serial == entry.collection_serial),
        ("insurance", insurance == entry.insurance.as_str()),
        ("year", year == entry.year),
        ("payer_id", payer_id == entry.payer_id.as_str()),
    ]
    .into_iter()
    .find(|(_, same)| !same);
    if let Some((field, _)) = mismatch {
        return Ok(Some(format!("reversal_mismatch:{field}")));
    }
    let reversed: i64 =
        tx.query_row("SELECT COALESCE(SUM(amount_fen), 0) FROM entries WHERE reverses = ?1", [target], |r| r.get(0))?;
    if reversed.saturating_add(entry.amount.fen()) > paid {
        return Ok(Some(EXCEEDS_PAYMENT.into()));
    }
    Ok(None)
}

/// 电子税票号码: twenty digits, `3` and the counter zero-padded to nineteen.
fn voucher_no(seq: i64) -> String {
    format!("3{seq:019}")
}

fn date_text(date: Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

/// The server clock in UTC+8, to the millisecond, RFC 3339.
fn now_local() -> String {
    let now = OffsetDateTime::now_utc().to_offset(LOCAL_OFFSET);
    let now = now.replace_millisecond(now.millisecond()).unwrap_or(now);
    now.format(&Rfc3339).unwrap_or_default()
}

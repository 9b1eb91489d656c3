//! [`SqliteStore`]: the journal on one SQLite file.

mod checkpoint;
mod codec;
mod open;
mod outbox;
mod payment;
mod reversal;
mod roster;
mod settlement;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::Connection;
use tokio::sync::Semaphore;
use zhengjiao_protocol::message::{Batch, TerminalId};
use zhengjiao_protocol::EcrReference;

use super::error::{
    CreatePaymentError, CreateReversalError, ForwardError, ImportError, OpenError, ReadError, RegisterTerminalError,
    SettlementError, StorageError, TransitionError,
};
pub use super::writer::PendingWrite;
use super::writer::{is_io_failure, Refusal, Shared, StoreMetrics, Writer, WriterConfig};
use super::{
    AnswersRecorded, BatchTotals, Collector, DaySettlement, ImportOutcome, LedgerAnswer, NewPayment, NewReversal,
    OutboxCounts, OutboxEntry, Payment, PaymentDetail, PaymentFilter, PaymentState, QueuedEntry, Reversal,
    ReversalOutcome, RosterLine, SettlementRecord, Store, StoredLine, Terminal, TerminalSaid, TransitionOutcome,
    TransitionRecord,
};
use crate::clock::Clock;
use crate::domain::{CollectionPointCode, CollectionSerial, IdNumber, Insurance};

pub(crate) use codec::stamp;

/// How a journal is opened.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// Most writes committed in one transaction (group commit).
    pub max_batch: usize,
    /// Most writes waiting for the writer; submitters wait (asynchronously) beyond it.
    pub queue: usize,
    /// How long a statement waits for another process's lock before giving up.
    pub busy_timeout: Duration,
    /// Most reader connections in use at once (each read takes one; more readers wait).
    pub readers: usize,
    /// Run `PRAGMA quick_check` on an existing journal at open (reads the whole file once).
    pub check_on_open: bool,
    /// A cap on the file's size in pages (SQLite's `max_page_count`); reaching it fails the batch as a
    /// full disk would, and the store stops. `None` (the default): the disk is the limit.
    pub max_pages: Option<u32>,
    /// The business clock the journal stamps its rows with (real time in production).
    pub clock: Clock,
}

impl JournalOptions {
    /// Default [`max_batch`](Self::max_batch).
    pub const MAX_BATCH: usize = 256;
    /// Default [`queue`](Self::queue).
    pub const QUEUE: usize = 4096;
    /// Default [`busy_timeout`](Self::busy_timeout).
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// Default [`readers`](Self::readers).
    pub const READERS: usize = 4;
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            max_batch: Self::MAX_BATCH,
            queue: Self::QUEUE,
            busy_timeout: Self::BUSY_TIMEOUT,
            readers: Self::READERS,
            check_on_open: true,
            max_pages: None,
            clock: Clock::real(),
        }
    }
}

/// The settings of the writer connection, as SQLite reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    /// `PRAGMA journal_mode`: `wal`.
    pub journal_mode: String,
    /// `PRAGMA synchronous`: 2 is FULL.
    pub synchronous: i64,
    /// `PRAGMA foreign_keys`.
    pub foreign_keys: bool,
    /// `PRAGMA busy_timeout`, in milliseconds.
    pub busy_timeout_ms: i64,
    /// `PRAGMA user_version`: the schema version.
    pub schema_version: i64,
    /// `PRAGMA application_id`.
    pub application_id: i32,
}

/// The journal on one SQLite file: one writer thread with group commit, a few reader connections.
///
/// Cheap to clone; every clone is the same store. The writer thread ends when the last clone is dropped
/// or [`close`](Self::close) is called.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Writer,
    shared: Arc<Shared>,
    readers: Readers,
    /// Stops the checkpoint thread (dropping the sender does too), and its thread to wait for.
    checkpoint: Mutex<Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

/// Reader connections: opened on demand, kept for reuse, at most `permits` in use.
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.inner.shared.path).finish_non_exhaustive()
    }
}

/// Why a read closure failed.
enum ReadFail {
    Sql(rusqlite::Error),
    Storage(StorageError),
}

impl From<rusqlite::Error> for ReadFail {
    fn from(e: rusqlite::Error) -> Self {
        ReadFail::Sql(e)
    }
}

impl ReadFail {
    /// A read inside a write: an SQLite error stays one (the writer classifies it), a bad row refuses
    /// the write.
    fn into_refusal<E: From<StorageError>>(self) -> Refusal<E> {
        match self {
            ReadFail::Sql(e) => Refusal::Sql(e),
            ReadFail::Storage(e) => Refusal::Refused(E::from(e)),
        }
    }
}

impl From<StorageError> for ReadFail {
    fn from(e: StorageError) -> Self {
        ReadFail::Storage(e)
    }
}

impl SqliteStore {
    /// Opens the journal at `path`, creating it (mode 0600) if it does not exist: sets WAL,
    /// `synchronous=FULL` and foreign keys, checks the file is a journal (and, with
    /// [`check_on_open`](JournalOptions::check_on_open), sound), applies the schema migrations, and
    /// starts the writer. The directory must exist.
    pub async fn open(path: impl AsRef<Path>, options: JournalOptions) -> Result<SqliteStore, OpenError> {
        let path = path.as_ref().to_owned();
        let blocking_path = path.clone();
        tokio::task::spawn_blocking(move || SqliteStore::open_blocking(blocking_path, options))
            .await
            .map_err(|e| OpenError::Thread { path, source: std::io::Error::other(e.to_string()) })?
    }

    fn open_blocking(path: PathBuf, options: JournalOptions) -> Result<SqliteStore, OpenError> {
        let setup = open::WriterSetup {
            busy_timeout: options.busy_timeout,
            check_on_open: options.check_on_open,
            max_pages: options.max_pages,
        };
        let conn = open::open_writer(&path, &setup)?;
        let shared = Arc::new(Shared::new(path.clone(), options.busy_timeout));
        let config = WriterConfig { max_batch: options.max_batch, queue: options.queue, clock: options.clock };
        let writer = Writer::start(conn, Arc::clone(&shared), config)
            .map_err(|source| OpenError::Thread { path: path.clone(), source })?;
        let readers =
            Readers { idle: Mutex::new(Vec::new()), permits: Arc::new(Semaphore::new(options.readers.max(1))) };
        let (stop, stopped) = std::sync::mpsc::channel();
        let checkpointer = checkpoint::start(Arc::clone(&shared), stopped)
            .map_err(|source| OpenError::Thread { path: path.clone(), source })?;
        let checkpoint = Mutex::new(Some((stop, checkpointer)));
        tracing::info!(path = %path.display(), "journal open");
        Ok(SqliteStore { inner: Arc::new(Inner { writer, shared, readers, checkpoint }) })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.inner.shared.path
    }

    /// Finishes the writes already queued and closes the writer connection (every clone of this store
    /// answers [`StorageError::Closed`] afterwards).
    pub async fn close(&self) {
        // The checkpoint thread first, so that it holds no connection when the writer's closes.
        let checkpointer = self.inner.checkpoint.lock().ok().and_then(|mut c| c.take());
        if let Some((stop, thread)) = checkpointer {
            let _ = stop.send(());
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        self.inner.writer.close().await;
        if let Ok(mut idle) = self.inner.readers.idle.lock() {
            idle.clear();
        }
    }

    /// The writer connection's settings, read with PRAGMA queries on that connection.
    pub async fn settings(&self) -> Result<JournalSettings, ReadError> {
        self.inner
            .writer
            .submit(|ctx| -> Result<JournalSettings, Refusal<ReadError>> {
                let conn = ctx.conn;
                let int = |pragma: &str| conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, i64>(0));
                Ok(JournalSettings {
                    journal_mode: conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?,
                    synchronous: int("synchronous")?,
                    foreign_keys: int("foreign_keys")? == 1,
                    busy_timeout_ms: int("busy_timeout")?,
                    schema_version: int("user_version")?,
                    application_id: conn.query_row("PRAGMA application_id", [], |r| r.get(0))?,
                })
            })
            .await
    }

    /// Queues a payment's step like [`Store::transition`], waiting only for room in the writer's queue;
    /// the answer comes from the returned write. Steps queued one after the other by one caller are
    /// applied in that order (in one batch when they arrive together), so a caller can queue `sent` and,
    /// before it is committed, the outcome behind it.
    /// `via` as in [`Store::transition_through`].
    pub async fn queue_transition(
        &self,
        payment_id: &EcrReference,
        via: Vec<(PaymentState, TerminalSaid)>,
        to: PaymentState,
        said: TerminalSaid,
    ) -> PendingWrite<TransitionOutcome, TransitionError> {
        let id = *payment_id;
        self.inner.writer.enqueue(move |ctx| payment::transition_through(ctx, &id, &via, to, &said)).await
    }

    /// As [`queue_transition`](Self::queue_transition), and reads the payment's detail (as
    /// [`Store::payment_detail`]) after the step, in the step's own transaction: what a caller waiting
    /// for the outcome answers with, read by the writer while the pages it just wrote are in its cache,
    /// instead of by a reader after the commit, whose cache every commit empties. The detail is `None`
    /// when that read fails short of an I/O error (which fails the write): the step stands, and the
    /// caller reads for itself.
    pub async fn queue_transition_detailed(
        &self,
        payment_id: &EcrReference,
        via: Vec<(PaymentState, TerminalSaid)>,
        to: PaymentState,
        said: TerminalSaid,
    ) -> PendingWrite<(TransitionOutcome, Option<PaymentDetail>), TransitionError> {
        let id = *payment_id;
        self.inner
            .writer
            .enqueue(move |ctx| {
                let outcome = payment::transition_through(ctx, &id, &via, to, &said)?;
                // The step answers with the row it wrote (equal to a read of it): the rest is read.
                let detail = match detail_of(ctx.conn, ctx.shared, outcome.payment.clone()) {
                    Ok(detail) => Some(detail),
                    // The disk failing under the read fails the write (and stops the store).
                    Err(ReadFail::Sql(e)) if is_io_failure(&e) => return Err(Refusal::Sql(e)),
                    Err(_) => None,
                };
                Ok((outcome, detail))
            })
            .await
    }

    /// Queues a reversal's step, as [`queue_transition`](Self::queue_transition) does a payment's.
    pub async fn queue_transition_reversal(
        &self,
        id: &EcrReference,
        to: PaymentState,
        said: TerminalSaid,
    ) -> PendingWrite<ReversalOutcome, TransitionError> {
        let id = *id;
        self.inner.writer.enqueue(move |ctx| reversal::transition(ctx, &id, to, &said)).await
    }

    /// Runs a read on a reader connection, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T, ReadFail> + Send + 'static,
    {
        self.read_with(f).await
    }

    /// A read-only query of the daemon's own read models (reports, metrics) on a reader connection,
    /// off the async threads: `f` gets the connection (opened read-only) and returns rows it mapped.
    /// Kept inside the crate: the [`Store`] trait stays the contract for writes and payment reads.
    pub(crate) async fn query<T, F>(&self, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.read_with(move |conn, _| f(conn).map_err(ReadFail::from)).await
    }

    /// A point read (one payment, one line: a few rows found by key, pages mapped in memory) run on
    /// the calling thread when a reader connection is free, which costs less than handing it to a
    /// blocking thread and back; otherwise as [`read`](Self::read). Never for reads that scan.
    async fn point_read<T, F>(&self, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T, ReadFail> + Send + 'static,
    {
        let shared = &self.inner.shared;
        shared.check()?;
        // Only with a free permit and a connection already open: opening one (or waiting for a lock)
        // is not for an async thread.
        let Ok(permit) = Arc::clone(&self.inner.readers.permits).try_acquire_owned() else {
            return self.read_with(f).await;
        };
        let idle = self.inner.readers.idle.lock().ok().and_then(|mut idle| idle.pop());
        let Some(conn) = idle else {
            drop(permit);
            return self.read_with(f).await;
        };
        let result = self.inner.run_read_on(conn, f);
        drop(permit);
        result.map_err(ReadError::from)
    }

    async fn read_with<T, F>(&self, f: F) -> Result<T, ReadError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &Shared) -> Result<T, ReadFail> + Send + 'static,
    {
        let shared = &self.inner.shared;
        shared.check()?;
        let permit = Arc::clone(&self.inner.readers.permits)
            .acquire_owned()
            .await
            .map_err(|_| StorageError::Closed { path: shared.path.clone() })?;
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inner.run_read(f)
        })
        .await;
        match joined {
            Ok(result) => result.map_err(ReadError::from),
            Err(e) => Err(ReadError::from(StorageError::Sql {
                path: shared.path.clone(),
                what: format!("reader task failed: {e}"),
            })),
        }
    }
}

impl Inner {
    fn run_read<T>(&self, f: impl FnOnce(&Connection, &Shared) -> Result<T, ReadFail>) -> Result<T, StorageError> {
        let shared = &self.shared;
        shared.check()?;
        let idle = self.readers.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match idle {
            Some(conn) => conn,
            None => open::open_reader(&shared.path, shared.busy_timeout).map_err(|e| self.read_failure(&e))?,
        };
        self.run_read_on(conn, f)
    }

    /// Runs a read on `conn`, which goes back to the pool afterwards unless the read failed (or left a
    /// transaction open: a snapshot kept would pin the WAL).
    fn run_read_on<T>(
        &self,
        conn: Connection,
        f: impl FnOnce(&Connection, &Shared) -> Result<T, ReadFail>,
    ) -> Result<T, StorageError> {
        let shared = &self.shared;
        match f(&conn, shared) {
            Ok(value) => {
                if !shared.has_failed() && conn.is_autocommit() {
                    if let Ok(mut idle) = self.readers.idle.lock() {
                        idle.push(conn);
                    }
                }
                Ok(value)
            }
            Err(ReadFail::Storage(e)) => Err(e),
            Err(ReadFail::Sql(e)) => Err(self.read_failure(&e)),
        }
    }

    /// An I/O-class error on a read stops the store like one on a write.
    fn read_failure(&self, e: &rusqlite::Error) -> StorageError {
        if is_io_failure(e) {
            if let Ok(mut idle) = self.readers.idle.lock() {
                idle.clear();
            }
            self.shared.fail(e.to_string())
        } else {
            self.shared.storage_error(e)
        }
    }
}

impl Store for SqliteStore {
    async fn import_roster(&self, lines: Vec<RosterLine>, update: bool) -> Result<ImportOutcome, ImportError> {
        self.inner.writer.submit(move |ctx| roster::import_roster(ctx, &lines, update)).await
    }

    async fn import_collectors(&self, collectors: Vec<Collector>, update: bool) -> Result<ImportOutcome, ImportError> {
        self.inner.writer.submit(move |ctx| roster::import_collectors(ctx, &collectors, update)).await
    }

    async fn count_roster_lines(&self) -> Result<u64, ReadError> {
        self.read(|conn, _| {
            let n: i64 = conn.query_row("SELECT count(*) FROM roster_lines", [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or_default())
        })
        .await
    }

    async fn roster_line(
        &self,
        serial: &CollectionSerial,
        insurance: Insurance,
        year: i32,
    ) -> Result<Option<StoredLine>, ReadError> {
        let serial = serial.clone();
        self.point_read(move |conn, shared| roster::line_by_key(conn, shared, &serial, insurance, year)).await
    }

    async fn lines_by_id_number(&self, id_number: &IdNumber) -> Result<Vec<StoredLine>, ReadError> {
        let id = id_number.as_str().to_owned();
        self.read(move |conn, shared| roster::lines_by_id_number(conn, shared, &id)).await
    }

    async fn collectors(&self) -> Result<Vec<Collector>, ReadError> {
        self.read(roster::collectors).await
    }

    async fn register_terminal(&self, terminal: Terminal) -> Result<(), RegisterTerminalError> {
        self.inner.writer.submit(move |ctx| payment::register_terminal(ctx, &terminal)).await
    }

    async fn terminals(&self) -> Result<Vec<Terminal>, ReadError> {
        self.read(payment::terminals).await
    }

    async fn record_payment_created(&self, new: NewPayment) -> Result<Payment, CreatePaymentError> {
        self.inner.writer.submit(move |ctx| payment::record_created(ctx, &new)).await
    }

    async fn transition(
        &self,
        payment_id: &EcrReference,
        to: PaymentState,
        said: TerminalSaid,
    ) -> Result<TransitionOutcome, TransitionError> {
        let id = *payment_id;
        self.inner.writer.submit(move |ctx| payment::transition(ctx, &id, to, &said)).await
    }

    async fn transition_through(
        &self,
        payment_id: &EcrReference,
        via: Vec<(PaymentState, TerminalSaid)>,
        to: PaymentState,
        said: TerminalSaid,
    ) -> Result<TransitionOutcome, TransitionError> {
        self.queue_transition(payment_id, via, to, said).await.outcome().await
    }

    async fn mark_forwarded(&self, entry_id: &str, tax_voucher_no: &str) -> Result<(), ForwardError> {
        let (entry, voucher) = (entry_id.to_owned(), tax_voucher_no.to_owned());
        self.inner.writer.submit(move |ctx| payment::mark_forwarded(ctx, &entry, &voucher).map(|_| ())).await
    }

    async fn mark_forward_failed(&self, entry_id: &str, error: &str, rejected: bool) -> Result<(), ForwardError> {
        let (entry, error) = (entry_id.to_owned(), error.to_owned());
        self.inner.writer.submit(move |ctx| payment::mark_forward_failed(ctx, &entry, &error, rejected)).await
    }

    async fn sendable_outbox(&self, after_seq: i64, limit: usize) -> Result<Vec<QueuedEntry>, ReadError> {
        self.read(move |conn, shared| outbox::sendable(conn, shared, after_seq, limit)).await
    }

    async fn record_ledger_answers(&self, answers: Vec<LedgerAnswer>) -> Result<AnswersRecorded, ForwardError> {
        self.inner.writer.submit(move |ctx| outbox::record_answers(ctx, &answers)).await
    }

    async fn record_forward_attempt_failed(&self, entry_ids: Vec<String>, error: &str) -> Result<(), ForwardError> {
        let error = error.to_owned();
        self.inner.writer.submit(move |ctx| outbox::record_attempt_failed(ctx, &entry_ids, &error)).await
    }

    async fn outbox_counts(&self) -> Result<OutboxCounts, ReadError> {
        self.read(|conn, _| outbox::counts(conn)).await
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<OutboxEntry>, ReadError> {
        self.read(move |conn, shared| outbox::dead_letters(conn, shared, limit)).await
    }

    async fn outbox_entry(&self, entry_id: &str) -> Result<Option<OutboxEntry>, ReadError> {
        let id = entry_id.to_owned();
        self.read(move |conn, shared| outbox::entry(conn, shared, &id)).await
    }

    async fn requeue_dead_letter(&self, entry_id: &str) -> Result<OutboxEntry, ForwardError> {
        let id = entry_id.to_owned();
        self.inner.writer.submit(move |ctx| outbox::requeue(ctx, &id)).await
    }

    async fn ledger_entries_on(
        &self,
        date: time::Date,
        collection_point: Option<&CollectionPointCode>,
    ) -> Result<Vec<OutboxEntry>, ReadError> {
        let point = collection_point.cloned();
        self.read(move |conn, shared| outbox::entries_on(conn, shared, date, point.as_ref())).await
    }

    async fn settlements_on(&self, date: time::Date) -> Result<Vec<DaySettlement>, ReadError> {
        self.read(move |conn, shared| outbox::settlements_on(conn, shared, date)).await
    }

    async fn payment(&self, id: &EcrReference) -> Result<Option<Payment>, ReadError> {
        let id = *id;
        self.point_read(move |conn, shared| payment::payment(conn, shared, id.as_str())).await
    }

    async fn payment_detail(&self, id: &EcrReference) -> Result<Option<PaymentDetail>, ReadError> {
        let id = *id;
        self.point_read(move |conn, shared| {
            // One snapshot for the four reads; rolled back (it only read) when it goes out of scope.
            let snapshot = conn.unchecked_transaction()?;
            read_detail(&snapshot, shared, id.as_str())
        })
        .await
    }

    async fn payment_history(&self, id: &EcrReference) -> Result<Vec<TransitionRecord>, ReadError> {
        let id = *id;
        self.read(move |conn, shared| payment::history(conn, shared, payment::History::Payment, id.as_str())).await
    }

    async fn payments_in(&self, states: &[PaymentState]) -> Result<Vec<Payment>, ReadError> {
        let states = states.to_vec();
        self.read(move |conn, shared| payment::payments_in(conn, shared, &states)).await
    }

    async fn payments_to_reverse(&self) -> Result<Vec<Payment>, ReadError> {
        self.read(payment::payments_to_reverse).await
    }

    async fn is_bound(&self, payment: &EcrReference) -> Result<bool, ReadError> {
        let payment = *payment;
        self.read(move |conn, _| payment::is_bound(conn, payment.as_str())).await
    }

    async fn pending_outbox(&self, limit: usize) -> Result<Vec<OutboxEntry>, ReadError> {
        self.read(move |conn, shared| payment::pending_outbox(conn, shared, limit)).await
    }

    async fn payments(&self, filter: PaymentFilter) -> Result<Vec<Payment>, ReadError> {
        self.read(move |conn, shared| payment::payments(conn, shared, &filter)).await
    }

    async fn record_reversal_created(&self, new: NewReversal) -> Result<Reversal, CreateReversalError> {
        self.inner.writer.submit(move |ctx| reversal::record_created(ctx, &new)).await
    }

    async fn transition_reversal(
        &self,
        id: &EcrReference,
        to: PaymentState,
        said: TerminalSaid,
    ) -> Result<ReversalOutcome, TransitionError> {
        let id = *id;
        self.inner.writer.submit(move |ctx| reversal::transition(ctx, &id, to, &said)).await
    }

    async fn reversal(&self, id: &EcrReference) -> Result<Option<Reversal>, ReadError> {
        let id = *id;
        self.point_read(move |conn, shared| reversal::reversal(conn, shared, id.as_str())).await
    }

    async fn reversal_history(&self, id: &EcrReference) -> Result<Vec<TransitionRecord>, ReadError> {
        let id = *id;
        self.read(move |conn, shared| payment::history(conn, shared, payment::History::Reversal, id.as_str())).await
    }

    async fn reversals_of(&self, payment: &EcrReference) -> Result<Vec<Reversal>, ReadError> {
        let payment = *payment;
        self.read(move |conn, shared| reversal::reversals_of(conn, shared, payment.as_str())).await
    }

    async fn reversals_in(&self, states: &[PaymentState]) -> Result<Vec<Reversal>, ReadError> {
        let states = states.to_vec();
        self.read(move |conn, shared| reversal::reversals_in(conn, shared, &states)).await
    }

    async fn batch_totals(&self, terminal: &TerminalId, batch: &Batch) -> Result<BatchTotals, ReadError> {
        let (terminal, batch) = (*terminal, *batch);
        self.read(move |conn, _| settlement::batch_totals(conn, &terminal, &batch)).await
    }

    async fn record_settlement(
        &self,
        terminal: &TerminalId,
        batch: &Batch,
        terminal_totals: BatchTotals,
        journal_totals: BatchTotals,
    ) -> Result<SettlementRecord, SettlementError> {
        let (terminal, batch) = (*terminal, *batch);
        self.inner
            .writer
            .submit(move |ctx| settlement::record_settlement(ctx, &terminal, &batch, &terminal_totals, &journal_totals))
            .await
    }

    async fn settlements(&self, terminal: Option<&TerminalId>) -> Result<Vec<SettlementRecord>, ReadError> {
        let terminal = terminal.copied();
        self.read(move |conn, shared| settlement::settlements(conn, shared, terminal.as_ref())).await
    }

    fn metrics(&self) -> StoreMetrics {
        self.inner.shared.metrics()
    }
}

/// A payment with its line, reversals and history, read through `conn` (in one transaction: the
/// caller's snapshot, or the writer's own).
fn read_detail(conn: &Connection, shared: &Shared, id: &str) -> Result<Option<PaymentDetail>, ReadFail> {
    match payment::payment(conn, shared, id)? {
        Some(payment) => detail_of(conn, shared, payment).map(Some),
        None => Ok(None),
    }
}

/// What belongs to a payment already read: its line, reversals and history, read through `conn`.
fn detail_of(conn: &Connection, shared: &Shared, payment: Payment) -> Result<PaymentDetail, ReadFail> {
    let (l, id) = (&payment.line, payment.id.as_str());
    let line = roster::line_by_key(conn, shared, &l.serial, l.insurance, l.year)?;
    let reversals = reversal::reversals_of(conn, shared, id)?;
    let history = payment::history(conn, shared, payment::History::Payment, id)?;
    Ok(PaymentDetail { payment, line, reversals, history })
}

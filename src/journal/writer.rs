//! The writer: one thread owns the write connection and commits waiting writes together (group commit).
//!
//! Callers submit a write as a closure over the connection on a bounded queue, with a oneshot channel
//! for its answer. The writer takes the first request waiting, then every other one already queued (up
//! to the batch limit), and runs them in one `BEGIN IMMEDIATE` transaction, one after the other. When a
//! write is refused, or SQLite refuses it with a non-I/O error, the transaction is rolled back and the
//! batch runs again with that write and the ones after it each inside its own `SAVEPOINT`: the refused
//! write is rolled back to its savepoint and the others go on (see [`run_batch`]). Then one `COMMIT`
//! (one fsync of the WAL with `synchronous=FULL`),
//! and only after it each caller gets its answer. While one batch commits, the next one gathers in the
//! queue, so under load the cost of the fsync is shared by many writes.
//!
//! An I/O-class error (see [`is_io_failure`]) anywhere in a batch, or any failure of the transaction
//! control statements or the commit, stops the store: the batch's writes are answered
//! [`StorageError::Failed`], the connection is closed, and every later request (reads included) is
//! answered [`StorageError::Stopped`] until the journal is reopened.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};
use tokio::sync::{mpsc, oneshot};

use super::error::StorageError;
use super::sqlite::stamp;
use crate::clock::Clock;

/// Upper bounds of the batch-size buckets of [`StoreMetrics::batch_sizes`]: bucket `i` counts the
/// committed batches of more than `BATCH_SIZE_BOUNDS[i - 1]` and at most `BATCH_SIZE_BOUNDS[i]` writes.
pub const BATCH_SIZE_BOUNDS: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, usize::MAX];

/// The writer's counters, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreMetrics {
    /// Transactions committed.
    pub batches_committed: u64,
    /// Writes answered after a commit (those refused and rolled back included).
    pub writes_committed: u64,
    /// Batches that failed (and stopped the store).
    pub batches_failed: u64,
    /// Committed batches by size; see [`BATCH_SIZE_BOUNDS`].
    pub batch_sizes: [u64; BATCH_SIZE_BOUNDS.len()],
    /// Largest batch committed.
    pub largest_batch: u64,
    /// Time spent in `COMMIT` (the fsync), summed over committed batches.
    pub commit_time: Duration,
    /// Longest single `COMMIT`.
    pub commit_time_max: Duration,
    /// Time from `BEGIN` to the end of `COMMIT`, summed over committed batches.
    pub batch_time: Duration,
    /// Times a batch was rolled back and run again because a write run without a savepoint was refused
    /// (or failed short of an I/O error); the next run puts a savepoint around it and the writes after it.
    pub batches_rerun: u64,
}

impl StoreMetrics {
    /// Mean writes per committed batch (0 before the first).
    pub fn mean_batch(&self) -> f64 {
        if self.batches_committed == 0 {
            0.0
        } else {
            self.writes_committed as f64 / self.batches_committed as f64
        }
    }
}

/// The live counters behind [`StoreMetrics`].
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    failed: AtomicU64,
    sizes: [AtomicU64; BATCH_SIZE_BOUNDS.len()],
    largest: AtomicU64,
    commit_nanos: AtomicU64,
    commit_max_nanos: AtomicU64,
    batch_nanos: AtomicU64,
    rerun: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Counters {
    fn committed(&self, writes: usize, commit: Duration, batch: Duration) {
        let n = u64::try_from(writes).unwrap_or(u64::MAX);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(n, Ordering::Relaxed);
        let bucket = BATCH_SIZE_BOUNDS.iter().position(|&b| writes <= b).unwrap_or(BATCH_SIZE_BOUNDS.len() - 1);
        self.sizes[bucket].fetch_add(1, Ordering::Relaxed);
        self.largest.fetch_max(n, Ordering::Relaxed);
        self.commit_nanos.fetch_add(nanos(commit), Ordering::Relaxed);
        self.commit_max_nanos.fetch_max(nanos(commit), Ordering::Relaxed);
        self.batch_nanos.fetch_add(nanos(batch), Ordering::Relaxed);
    }

    fn snapshot(&self) -> StoreMetrics {
        StoreMetrics {
            batches_committed: self.batches.load(Ordering::Relaxed),
            writes_committed: self.writes.load(Ordering::Relaxed),
            batches_failed: self.failed.load(Ordering::Relaxed),
            batch_sizes: std::array::from_fn(|i| self.sizes[i].load(Ordering::Relaxed)),
            largest_batch: self.largest.load(Ordering::Relaxed),
            commit_time: Duration::from_nanos(self.commit_nanos.load(Ordering::Relaxed)),
            commit_time_max: Duration::from_nanos(self.commit_max_nanos.load(Ordering::Relaxed)),
            batch_time: Duration::from_nanos(self.batch_nanos.load(Ordering::Relaxed)),
            batches_rerun: self.rerun.load(Ordering::Relaxed),
        }
    }
}

/// What the writer and every handle of one open store share.
pub(crate) struct Shared {
    /// The journal file, for messages.
    pub(crate) path: PathBuf,
    /// The busy timeout, for messages.
    pub(crate) busy_timeout: Duration,
    /// Set once, when the store stops after a failure: what failed.
    failure: OnceLock<String>,
    /// Set when the writer has ended (closed, or every handle dropped).
    closed: AtomicBool,
    counters: Counters,
}

impl Shared {
    pub(crate) fn new(path: PathBuf, busy_timeout: Duration) -> Shared {
        Shared {
            path,
            busy_timeout,
            failure: OnceLock::new(),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        }
    }

    /// `Err(Stopped)` once the store has stopped after a failure, `Err(Closed)` once it is closed.
    pub(crate) fn check(&self) -> Result<(), StorageError> {
        match self.failure.get() {
            Some(what) => Err(StorageError::Stopped { path: self.path.clone(), what: what.clone() }),
            None if self.closed.load(Ordering::Acquire) => Err(StorageError::Closed { path: self.path.clone() }),
            None => Ok(()),
        }
    }

    /// True once the store has stopped.
    pub(crate) fn has_failed(&self) -> bool {
        self.failure.get().is_some()
    }

    /// Stops the store (the first failure is the one remembered) and returns the error for the writes of
    /// the failing batch.
    pub(crate) fn fail(&self, what: String) -> StorageError {
        tracing::error!(path = %self.path.display(), error = %what, "journal failed; refusing work until reopened");
        let _ = self.failure.set(what.clone());
        StorageError::Failed { path: self.path.clone(), what }
    }

    /// The error for a request the writer will never run: stopped, or closed.
    fn gone(&self) -> StorageError {
        self.check().err().unwrap_or_else(|| StorageError::Closed { path: self.path.clone() })
    }

    /// The metrics now.
    pub(crate) fn metrics(&self) -> StoreMetrics {
        self.counters.snapshot()
    }

    /// Maps a non-fatal SQLite error of one operation.
    pub(crate) fn storage_error(&self, error: &rusqlite::Error) -> StorageError {
        match error.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StorageError::Busy {
                path: self.path.clone(),
                timeout_ms: u64::try_from(self.busy_timeout.as_millis()).unwrap_or(u64::MAX),
            },
            _ => StorageError::Sql { path: self.path.clone(), what: error.to_string() },
        }
    }
}

/// True for the errors after which the connection's view of the file cannot be trusted: I/O error, full
/// disk, corruption, not a database, cannot open, read-only file, out of memory, locking protocol.
pub(crate) fn is_io_failure(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::CannotOpen
                | ErrorCode::ReadOnly
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// What a write closure sees: the connection, inside the batch's transaction (and, when its batch runs
/// again after a refusal, inside a savepoint of its own). A closure may run more than once: only the
/// last run's changes and answer count.
pub(crate) struct Ctx<'a> {
    pub(crate) conn: &'a Connection,
    clock: &'a Clock,
    pub(crate) shared: &'a Shared,
}

impl Ctx<'_> {
    /// The current time from the store's clock, as stored (RFC 3339, +08:00).
    pub(crate) fn now(&self) -> String {
        stamp(self.clock.now())
    }

    /// The current time from the store's clock.
    pub(crate) fn now_time(&self) -> time::OffsetDateTime {
        self.clock.now()
    }
}

/// How a write closure ends, other than with its answer.
pub(crate) enum Refusal<E> {
    /// The write is refused with this answer; its changes are rolled back.
    Refused(E),
    /// SQLite failed; an I/O-class error stops the store, any other refuses this write.
    Sql(rusqlite::Error),
}

impl<E> From<rusqlite::Error> for Refusal<E> {
    fn from(e: rusqlite::Error) -> Self {
        Refusal::Sql(e)
    }
}

/// What happened to one write in the open transaction.
enum Step {
    /// Keep its changes.
    Keep,
    /// Refused: roll back to its savepoint, or, run without one, the whole transaction (the batch then
    /// runs again).
    Discard,
    /// An I/O-class failure: the batch fails and the store stops.
    Fatal(rusqlite::Error),
}

/// One queued write, its closure and its answer, type-erased for the queue.
trait Job: Send {
    /// Runs the write.
    fn apply(&mut self, ctx: &Ctx<'_>) -> Step;
    /// Answers the caller: its own result after a commit, or the batch's failure.
    fn finish(self: Box<Self>, failure: Option<StorageError>);
}

struct Typed<T, E, F> {
    /// The write; `Fn`, so that a batch can run it again (see [`run_batch`]).
    work: F,
    result: Option<Result<T, E>>,
    reply: oneshot::Sender<Result<T, E>>,
    path: PathBuf,
}

impl<T, E, F> Job for Typed<T, E, F>
where
    T: Send,
    E: From<StorageError> + Send,
    F: Fn(&Ctx<'_>) -> Result<T, Refusal<E>> + Send,
{
    fn apply(&mut self, ctx: &Ctx<'_>) -> Step {
        // A run again replaces the answer of the run before.
        self.result = None;
        match (self.work)(ctx) {
            Ok(value) => {
                self.result = Some(Ok(value));
                Step::Keep
            }
            Err(Refusal::Refused(answer)) => {
                self.result = Some(Err(answer));
                Step::Discard
            }
            Err(Refusal::Sql(e)) if is_io_failure(&e) => Step::Fatal(e),
            Err(Refusal::Sql(e)) => {
                self.result = Some(Err(E::from(ctx.shared.storage_error(&e))));
                Step::Discard
            }
        }
    }

    fn finish(self: Box<Self>, failure: Option<StorageError>) {
        let path = self.path;
        let result = match failure {
            Some(f) => Err(E::from(f)),
            None => self.result.unwrap_or_else(|| Err(E::from(StorageError::Closed { path }))),
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = self.reply.send(result);
    }
}

/// A write in the writer's queue; [`outcome`](Self::outcome) waits for its answer, given after its batch
/// committed. Dropping it does not take the write back.
pub struct PendingWrite<T, E> {
    answer: Result<oneshot::Receiver<Result<T, E>>, E>,
    shared: Arc<Shared>,
}

impl<T, E: From<StorageError>> PendingWrite<T, E> {
    /// The write's answer.
    pub async fn outcome(self) -> Result<T, E> {
        match self.answer {
            Ok(answer) => answer.await.unwrap_or_else(|_| Err(E::from(self.shared.gone()))),
            Err(e) => Err(e),
        }
    }
}

enum Msg {
    Job(Box<dyn Job>),
    Close(oneshot::Sender<()>),
}

/// The handle callers submit writes through.
#[derive(Clone)]
pub(crate) struct Writer {
    queue: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
}

/// Settings of the writer thread.
pub(crate) struct WriterConfig {
    pub(crate) max_batch: usize,
    pub(crate) queue: usize,
    pub(crate) clock: Clock,
}

impl Writer {
    /// Starts the writer thread on `conn`.
    pub(crate) fn start(conn: Connection, shared: Arc<Shared>, config: WriterConfig) -> std::io::Result<Writer> {
        let (queue, rx) = mpsc::channel(config.queue.max(1));
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || run(conn, rx, &thread_shared, &config))?;
        Ok(Writer { queue, shared })
    }

    /// Submits a write and waits for its answer, given after its batch committed.
    pub(crate) async fn submit<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: Fn(&Ctx<'_>) -> Result<T, Refusal<E>> + Send + 'static,
    {
        self.enqueue(work).await.outcome().await
    }

    /// Queues a write, waiting only for room in the queue, and returns its answer to come. Writes are
    /// applied in the order they were queued: a write queued after this one returned is applied after
    /// it, in the same batch or a later one.
    pub(crate) async fn enqueue<T, E, F>(&self, work: F) -> PendingWrite<T, E>
    where
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
        F: Fn(&Ctx<'_>) -> Result<T, Refusal<E>> + Send + 'static,
    {
        if let Err(e) = self.shared.check() {
            return PendingWrite { answer: Err(E::from(e)), shared: Arc::clone(&self.shared) };
        }
        let (reply, answer) = oneshot::channel();
        let job = Typed { work, result: None, reply, path: self.shared.path.clone() };
        let answer = match self.queue.send(Msg::Job(Box::new(job))).await {
            Ok(()) => Ok(answer),
            Err(_) => Err(E::from(self.shared.gone())),
        };
        PendingWrite { answer, shared: Arc::clone(&self.shared) }
    }

    /// Stops the writer after the writes already queued, and waits until its connection is closed.
    pub(crate) async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Msg::Close(done)).await.is_ok() {
            let _ = wait.await;
        } else {
            // The writer is gone already; wait until it has dropped its connection.
            self.queue.closed().await;
        }
    }
}

/// The writer thread's loop.
fn run(conn: Connection, mut rx: mpsc::Receiver<Msg>, shared: &Shared, config: &WriterConfig) {
    let max_batch = config.max_batch.max(1);
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut closing = None;
    while let Some(first) = rx.blocking_recv() {
        match first {
            Msg::Job(job) => batch.push(job),
            Msg::Close(done) => closing = Some(done),
        }
        while closing.is_none() && batch.len() < max_batch {
            match rx.try_recv() {
                Ok(Msg::Job(job)) => batch.push(job),
                Ok(Msg::Close(done)) => closing = Some(done),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            run_batch(&conn, &mut batch, shared, &config.clock);
        }
        if closing.is_some() || shared.has_failed() {
            break;
        }
    }
    // Nothing more is taken: answer whatever is still queued, then close the connection.
    shared.closed.store(true, Ordering::Release);
    rx.close();
    let mut waiting_close = Vec::new();
    while let Ok(msg) = rx.try_recv() {
        match msg {
            Msg::Job(job) => job.finish(Some(shared.gone())),
            Msg::Close(done) => waiting_close.push(done),
        }
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!(path = %shared.path.display(), error = %e, "journal writer connection did not close cleanly");
    }
    for done in closing.into_iter().chain(waiting_close) {
        let _ = done.send(());
    }
}

/// Runs one batch: one transaction, one commit, then the answers.
///
/// The writes first run one after the other with nothing between them. Should one be refused (or fail
/// short of an I/O error), the transaction is rolled back and the batch runs again: the writes before
/// the refused one as before, the refused one and every one after it inside a savepoint of its own, so
/// that a refused write is rolled back alone and the others stand. Should a write run plainly be
/// refused in that second run (it was not the first time), the batch runs again guarding from it; each
/// round guards an earlier write, so this ends. Most batches have no refusal, and a savepoint per write
/// cost the writer more than SQL parsing ever did: each copies every page an earlier write of the batch
/// dirtied before writing to it.
fn run_batch(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, shared: &Shared, clock: &Clock) {
    let started = Instant::now();
    let ctx = Ctx { conn, clock, shared };
    // Writes from this index on run inside a savepoint each.
    let mut guarded = batch.len();
    loop {
        if !begin(conn, batch, shared) {
            return;
        }
        match run_writes(&ctx, batch, guarded) {
            Run::Done(fatal) => return end_batch(conn, batch, shared, fatal, started),
            Run::Refused(at) => {
                shared.counters.rerun.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = run_cached(conn, "ROLLBACK") {
                    // Gone already when SQLite rolled it back itself (unless for an I/O error); else
                    // the store cannot go on.
                    if is_io_failure(&e) || !conn.is_autocommit() {
                        return end_batch(conn, batch, shared, Some(e), started);
                    }
                }
                guarded = at;
            }
        }
    }
}

/// How a run of a batch's writes ended.
enum Run {
    /// Every write ran (`None`), or this failure ends the batch.
    Done(Option<rusqlite::Error>),
    /// The write at this index, run without a savepoint, was refused: the transaction must be rolled
    /// back and the batch run again.
    Refused(usize),
}

/// Runs the batch's writes in the open transaction: those before `guarded` plainly, the others each
/// inside a savepoint (a refused one is rolled back to it, the others are kept).
fn run_writes(ctx: &Ctx<'_>, batch: &mut [Box<dyn Job>], guarded: usize) -> Run {
    let conn = ctx.conn;
    for (i, job) in batch.iter_mut().enumerate() {
        if i < guarded {
            match job.apply(ctx) {
                // A write that swallowed an error after which SQLite rolled the transaction back would
                // leave the next writes committing one statement at a time: the batch ends instead.
                Step::Keep if conn.is_autocommit() => return Run::Done(Some(transaction_gone())),
                Step::Keep => {}
                Step::Discard => return Run::Refused(i),
                Step::Fatal(e) => return Run::Done(Some(e)),
            }
            continue;
        }
        if let Err(e) = run_cached(conn, "SAVEPOINT write") {
            return Run::Done(Some(e));
        }
        let end = match job.apply(ctx) {
            Step::Keep => run_cached(conn, "RELEASE write"),
            Step::Discard => run_cached(conn, "ROLLBACK TO write").and_then(|()| run_cached(conn, "RELEASE write")),
            Step::Fatal(e) => Err(e),
        };
        if let Err(e) = end {
            return Run::Done(Some(e));
        }
    }
    Run::Done(None)
}

/// The failure of a batch whose transaction SQLite ended under a write that went on as if it had not.
fn transaction_gone() -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
        Some("the batch's transaction ended inside a write".to_owned()),
    )
}

/// Opens the batch's transaction; on failure answers every write with it and returns false.
fn begin(conn: &Connection, batch: &mut Vec<Box<dyn Job>>, shared: &Shared) -> bool {
    let Err(e) = run_cached(conn, "BEGIN IMMEDIATE") else {
        return true;
    };
    let error = if is_io_failure(&e) { shared.fail(describe(&e)) } else { shared.storage_error(&e) };
    if is_io_failure(&e) {
        shared.counters.failed.fetch_add(1, Ordering::Relaxed);
    }
    for job in batch.drain(..) {
        job.finish(Some(error.clone()));
    }
    false
}

/// Commits the batch's transaction (unless `fatal`) and answers every write: its own answer after a
/// commit; the failure, which stops the store, otherwise.
fn end_batch(
    conn: &Connection,
    batch: &mut Vec<Box<dyn Job>>,
    shared: &Shared,
    fatal: Option<rusqlite::Error>,
    started: Instant,
) {
    let commit_started = Instant::now();
    let committed = match fatal {
        Some(e) => Err(e),
        None => run_cached(conn, "COMMIT"),
    };
    match committed {
        Ok(()) => {
            shared.counters.committed(batch.len(), commit_started.elapsed(), started.elapsed());
            for job in batch.drain(..) {
                job.finish(None);
            }
        }
        Err(e) => {
            // The transaction may be gone already (SQLite rolls back on some errors); the store stops
            // either way, so a failing rollback changes nothing.
            let _ = conn.execute_batch("ROLLBACK");
            shared.counters.failed.fetch_add(1, Ordering::Relaxed);
            let error = shared.fail(describe(&e));
            for job in batch.drain(..) {
                job.finish(Some(error.clone()));
            }
        }
    }
}

/// Runs one transaction-control statement from the connection's statement cache: `execute_batch` would
/// parse it again for every write of every batch (a few percent of the writer's time under load).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(|_| ())
}

/// SQLite's message with its extended code, e.g. `disk I/O error (extended code 778)`.
fn describe(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, Some(msg)) => format!("{msg} (SQLite code {})", code.extended_code),
        rusqlite::Error::SqliteFailure(code, None) => format!("{code} (SQLite code {})", code.extended_code),
        other => other.to_string(),
    }
}

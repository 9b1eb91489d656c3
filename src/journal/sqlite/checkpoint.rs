//! Checkpoints off the writer's path: a thread of its own copies the WAL's committed pages back into the
//! journal file.
//!
//! SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past 1,000 pages, on the
//! writer thread: that commit (and every write waiting for the writer) then also waits for the copy and
//! two more fsyncs. Here the writer's automatic checkpoint is only a backstop ([`WRITER_BACKSTOP_PAGES`])
//! and this thread runs a `PASSIVE` checkpoint every [`EVERY`], which never blocks the writer or a
//! reader: it copies what no reader still needs and leaves the rest for the next round. The WAL starts
//! again from its beginning once a checkpoint has copied everything. Durability is unchanged: a commit is
//! durable once its WAL frames are synced, checkpointed or not.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use super::super::writer::Shared;
use super::open;

/// How often the checkpoint thread runs.
pub(super) const EVERY: Duration = Duration::from_millis(100);

/// The writer's own automatic checkpoint, in WAL pages: reached only if this thread falls far behind
/// (64 MiB of WAL with 4 KiB pages).
pub(crate) const WRITER_BACKSTOP_PAGES: u32 = 16_384;

/// Starts the checkpoint thread; it ends when `stop` is signalled or dropped, or the store fails.
pub(super) fn start(shared: Arc<Shared>, stop: Receiver<()>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("journal-checkpoint".into()).spawn(move || run(&shared, &stop))
}

fn run(shared: &Shared, stop: &Receiver<()>) {
    let path: PathBuf = shared.path.clone();
    let mut conn = None;
    loop {
        match stop.recv_timeout(EVERY) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if shared.has_failed() {
            return;
        }
        if conn.is_none() {
            match open::connect(&path, shared.busy_timeout) {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "journal checkpoint: cannot open a connection");
                    continue;
                }
            }
        }
        let Some(c) = &conn else { continue };
        // (busy, pages in the WAL, pages copied back); `busy` is 1 only when another checkpoint runs.
        let result = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match result {
            Ok((_, wal_pages, copied)) => {
                tracing::trace!(wal_pages, copied, "journal checkpoint");
            }
            Err(e) => {
                // Another round comes; an I/O failure shows on the writer's next commit and stops the store.
                tracing::warn!(path = %path.display(), error = %e, "journal checkpoint failed");
                conn = None;
            }
        }
    }
}

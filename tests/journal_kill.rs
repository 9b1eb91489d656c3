//! The journal across process deaths and real system failures. Each test re-runs this test binary as a
//! child (`current_exe()` with `--exact <child test>`), selected by the environment variable
//! [`CHILD`]; without it, the child tests return at once.
//!
//! - SIGKILL while 64 writers are in flight: every write the child saw acknowledged is in the journal
//!   the parent reopens.
//! - A lock held by another process: a clear "locked" error at open, and the journal opens once that
//!   process is gone.
//! - A real write error from the kernel (`EFBIG` past a file-size limit set with `ulimit -f`, the
//!   `SIGXFSZ` signal ignored): the store fails the batch, refuses all work afterwards, and the journal
//!   reopens sound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journal_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use journal_support::*;
use zhengjiao::journal::{OpenError, PaymentState, SqliteStore, Store};

/// Selects the child's part: `kill`, `lock` or `fsize`.
const CHILD: &str = "ZJ_JOURNAL_CHILD";
/// The journal file the child works on.
const CHILD_PATH: &str = "ZJ_JOURNAL_PATH";
/// A child never outlives this, even if its parent died without killing it.
const CHILD_WATCHDOG: Duration = Duration::from_secs(60);
/// How long the parent waits for a line from the child.
const LINE_WAIT: Duration = Duration::from_secs(60);

/// Lines (roster lines, then payments) the kill child writes.
const KILL_LINES: u32 = 3000;
/// Concurrent submitters in the kill child.
const SUBMITTERS: u32 = 64;
/// Acknowledgements the parent reads before it kills the child.
const KILL_AFTER_ACKS: usize = 200;

/// In a child, which part it plays and on which file.
fn child_role(role: &str) -> Option<PathBuf> {
    (std::env::var(CHILD).ok()? == role).then(|| PathBuf::from(std::env::var_os(CHILD_PATH).unwrap_or_default()))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().unwrap()
}

/// Prints one line for the parent, flushed.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Waits to be killed, but not forever.
fn wait_to_be_killed() -> ! {
    std::thread::sleep(CHILD_WATCHDOG);
    std::process::exit(3)
}

/// Starts this binary as a child running `test` in `role` on `path`, stdout piped.
fn spawn_child(role: &str, test: &str, path: &Path, shell_prefix: Option<&str>) -> Child {
    let exe = std::env::current_exe().unwrap();
    let args = ["--exact", test, "--nocapture", "--test-threads=1"];
    let mut cmd = match shell_prefix {
        Some(prefix) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(format!("{prefix}; exec \"$0\" \"$@\"")).arg(&exe).args(args);
            c
        }
        None => {
            let mut c = Command::new(&exe);
            c.args(args);
            c
        }
    };
    cmd.env(CHILD, role).env(CHILD_PATH, path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// The child's stdout lines, read on a thread so the parent can wait with a timeout.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The child's message in `line`, from `prefix` on (libtest may have printed `test <name> ... ` before
/// it on the same line).
fn message<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.find(prefix).map(|at| &line[at..])
}

/// Waits for a line carrying a message that starts with `prefix` and returns the message; on EOF or
/// timeout, fails with the child's stderr.
fn expect_line(rx: &mpsc::Receiver<String>, child: &mut Child, prefix: &str) -> String {
    loop {
        match rx.recv_timeout(LINE_WAIT) {
            Ok(line) => {
                if let Some(m) = message(&line, prefix) {
                    return m.to_owned();
                }
            }
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output_stderr();
                panic!("no {prefix:?} line from the child ({e}); its stderr:\n{out}");
            }
        }
    }
}

trait StderrOf {
    fn wait_with_output_stderr(&mut self) -> String;
}

impl StderrOf for Child {
    fn wait_with_output_stderr(&mut self) -> String {
        let _ = self.wait();
        let mut err = String::new();
        if let Some(mut s) = self.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut s, &mut err);
        }
        err
    }
}

#[test]
fn child_writes_until_killed() {
    let Some(path) = child_role("kill") else { return };
    runtime().block_on(async {
        let store = open(&path).await;
        store.import_roster(lines(0..KILL_LINES), false).await.unwrap();
        store.register_terminal(terminal()).await.unwrap();
        say("READY");
        let next = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let submitters: Vec<_> = (0..SUBMITTERS)
            .map(|_| {
                let (store, next) = (store.clone(), std::sync::Arc::clone(&next));
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if n >= KILL_LINES {
                            break;
                        }
                        let id = format!("K-{n}");
                        store.record_payment_created(new_payment(&id, &line(n))).await.unwrap();
                        // Printed only after the acknowledgement, i.e. after the commit.
                        say(&format!("ACK {id}"));
                    }
                })
            })
            .collect();
        for s in submitters {
            s.await.unwrap();
        }
        say("ALL");
    });
    wait_to_be_killed();
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let mut child = spawn_child("kill", "child_writes_until_killed", &path, None);
    let rx = lines_of(&mut child);
    expect_line(&rx, &mut child, "READY");
    let mut acked = Vec::new();
    while acked.len() < KILL_AFTER_ACKS {
        acked.push(expect_line(&rx, &mut child, "ACK ")["ACK ".len()..].to_owned());
    }
    // SIGKILL, with writes in flight.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child should have died by the signal: {status}");
    // Lines printed before the signal are acknowledged too.
    for line in rx.iter() {
        if let Some(ack) = message(&line, "ACK ") {
            acked.push(ack["ACK ".len()..].to_owned());
        }
    }

    runtime().block_on(async {
        let store = open(&path).await;
        assert_eq!(store.count_roster_lines().await.unwrap(), u64::from(KILL_LINES));
        for id in &acked {
            let p = store.payment(&reference(id)).await.unwrap();
            let p = p.unwrap_or_else(|| panic!("acknowledged payment {id} is not in the journal"));
            assert_eq!(p.state, PaymentState::Created);
            assert_eq!(store.payment_history(&reference(id)).await.unwrap().len(), 1);
        }
        let held = store.payments_in(&[PaymentState::Created]).await.unwrap().len();
        assert!(held >= acked.len(), "{held} payments held, {} acknowledged", acked.len());
        eprintln!("{} acknowledged before the kill, {held} in the journal after", acked.len());
    });
}

#[test]
fn child_holds_an_exclusive_lock() {
    let Some(path) = child_role("lock") else { return };
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE;").unwrap();
    say("LOCKED");
    wait_to_be_killed();
}

#[test]
fn a_lock_held_by_another_process_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    runtime().block_on(async { open(&path).await.close().await });
    let mut child = spawn_child("lock", "child_holds_an_exclusive_lock", &path, None);
    let rx = lines_of(&mut child);
    expect_line(&rx, &mut child, "LOCKED");

    let err = runtime().block_on(SqliteStore::open(&path, options())).unwrap_err();
    assert!(matches!(err, OpenError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("locked by another process") && msg.contains(&path.display().to_string()), "{msg}");

    child.kill().unwrap();
    child.wait().unwrap();
    runtime().block_on(async { open(&path).await.count_roster_lines().await.unwrap() });
}

/// Lines per import in the file-size child.
const FSIZE_CHUNK: u32 = 1000;

#[test]
fn child_writes_past_the_file_size_limit() {
    let Some(path) = child_role("fsize") else { return };
    runtime().block_on(async {
        let store = open(&path).await;
        let mut committed = 0;
        let err = loop {
            match store.import_roster(lines(committed..committed + FSIZE_CHUNK), false).await {
                Ok(_) => committed += FSIZE_CHUNK,
                Err(e) => break e,
            }
            assert!(committed < 100 * FSIZE_CHUNK, "no write error: is the file-size limit in place?");
        };
        say(&format!("COMMITTED {committed}"));
        say(&format!("FAILED {err}"));
        let then = store.count_roster_lines().await.unwrap_err();
        say(&format!("THEN {then}"));
    });
}

#[test]
fn a_real_write_error_stops_the_store_and_the_journal_reopens_sound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    // 2048 blocks: 1 MiB where the shell counts 512-byte blocks (dash), 2 MiB for 1024 (bash).
    let mut child =
        spawn_child("fsize", "child_writes_past_the_file_size_limit", &path, Some("trap '' XFSZ; ulimit -f 2048"));
    let rx = lines_of(&mut child);
    let committed: u64 = expect_line(&rx, &mut child, "COMMITTED ")["COMMITTED ".len()..].parse().unwrap();
    let failed = expect_line(&rx, &mut child, "FAILED ");
    let then = expect_line(&rx, &mut child, "THEN ");
    let status = child.wait().unwrap();
    assert!(status.success(), "child: {status}");

    assert!(committed > 0, "the limit should allow some imports first");
    assert!(failed.contains("whether this write was committed is unknown"), "{failed}");
    assert!(failed.contains("journal.db"), "{failed}");
    assert!(then.contains("stopped after an earlier failure"), "{then}");

    // Reopened without the limit: sound, and the failed import is either wholly there or wholly absent.
    runtime().block_on(async {
        let store = open(&path).await;
        let held = store.count_roster_lines().await.unwrap();
        assert!(held == committed || held == committed + u64::from(FSIZE_CHUNK), "{held} lines, {committed} committed");
        let next = u32::try_from(held).unwrap();
        store.import_roster(lines(next..next + 10), false).await.unwrap();
    });
}

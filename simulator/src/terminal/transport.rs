//! The two transports of wire-protocol.md §1: TCP (the terminal listens, the ECR connects) and serial,
//! here a pseudo-terminal pair through the real serial stack (`serialport::TTYPort::pair`, the
//! simulator's end driven through `tokio_serial`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serialport::TTYPort;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

use super::connection::{serve, ConnEnd};
use super::runtime::Terminal;

/// How long a transport waits before trying again after an accept or read error, so a persistent
/// error (out of file descriptors, a broken device) does not spin.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// How often the simulator clears exclusive mode (`TIOCEXCL`) on each pseudo-terminal device it serves
/// (and it does after every restart of the terminal's link too), so an ECR killed while holding the
/// device can open it again; see the README, Transports.
pub const SERIAL_UNLOCK_INTERVAL: Duration = Duration::from_millis(500);

/// Accepts ECR connections on `listener` until `cancel` fires. One connection at a time: a new
/// connection replaces the current one, which is closed first (a restarted daemon must not be locked
/// out by its own half-open old connection). A request being processed when its connection goes
/// carries on; its response is lost.
pub(crate) async fn serve_tcp(term: Arc<Terminal>, listener: TcpListener, cancel: CancellationToken) {
    let index = term.cfg.index;
    let mut current: Option<(CancellationToken, JoinHandle<()>)> = None;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Some((old, task)) = current.take() {
                    tracing::info!(terminal = index, %peer, "new ECR connection replaces the current one");
                    old.cancel();
                    if let Err(error) = task.await {
                        tracing::error!(terminal = index, %error, "connection task failed");
                    }
                }
                tracing::info!(terminal = index, %peer, "ECR connected");
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(terminal = index, %error, "cannot set TCP_NODELAY");
                }
                let token = cancel.child_token();
                let task = tokio::spawn(tcp_connection(Arc::clone(&term), stream, token.clone()));
                current = Some((token, task));
            }
            Err(error) => {
                tracing::warn!(terminal = index, %error, "accept failed");
                if !backoff(&cancel).await {
                    break;
                }
            }
        }
    }
    if let Some((old, task)) = current {
        old.cancel();
        if let Err(error) = task.await {
            tracing::error!(terminal = index, %error, "connection task failed");
        }
    }
}

async fn tcp_connection(term: Arc<Terminal>, mut stream: tokio::net::TcpStream, cancel: CancellationToken) {
    let index = term.cfg.index;
    match serve(&term, &mut stream, &cancel).await {
        ConnEnd::Closed => tracing::info!(terminal = index, "ECR closed the connection"),
        ConnEnd::Dropped => tracing::info!(terminal = index, "terminal dropped the connection"),
        ConnEnd::Cancelled => tracing::debug!(terminal = index, "connection closed by the simulator"),
        ConnEnd::Io(error) => tracing::warn!(terminal = index, %error, "connection failed"),
    }
}

/// A pseudo-terminal pair: the simulator's end and the device the ECR opens.
#[derive(Debug)]
pub(crate) struct Pty {
    /// The end the terminal reads and writes.
    pub(crate) master: SerialStream,
    /// The device end, held open so the ECR may close and reopen the device without the line
    /// breaking (on Linux the simulator's end fails with EIO while no one holds the device open). Never
    /// read or written; it also serves to clear exclusive mode ([`unlock`]).
    pub(crate) device: TTYPort,
    /// The device's path, for the ECR to open.
    pub(crate) path: PathBuf,
}

/// Opens a pseudo-terminal pair.
pub(crate) fn open_pty() -> Result<Pty, tokio_serial::Error> {
    use serialport::SerialPort;
    let (master, device) = TTYPort::pair()?;
    let path = device.name().map(PathBuf::from).ok_or_else(|| {
        tokio_serial::Error::new(tokio_serial::ErrorKind::NoDevice, "the pseudo-terminal has no device path")
    })?;
    let master = SerialStream::try_from(master)?;
    Ok(Pty { master, device, path })
}

/// Serves the terminal over its pseudo-terminal until `cancel` fires. The line is one long
/// connection; when a fault drops the connection, the link starts over (a terminal that rebooted) and
/// the line stays open, as a serial cable does. Bytes the terminal writes while no ECR holds the device
/// open wait in the pseudo-terminal's buffer for the next one, whose link skips them.
///
/// Every [`SERIAL_UNLOCK_INTERVAL`], and after every restart of the link, exclusive mode is cleared on
/// the device ([`unlock`]): an ECR that opened it with serialport's default exclusive access and was
/// killed leaves `TIOCEXCL` set, and the kernel keeps it set while any end of the pair is open, so the
/// ECR (unless root) could never open its device again (EBUSY).
pub(crate) async fn serve_pty(term: Arc<Terminal>, pty: Pty, cancel: CancellationToken) {
    let Pty { mut master, device, path } = pty;
    let index = term.cfg.index;
    let serving = async {
        loop {
            match serve(&term, &mut master, &cancel).await {
                ConnEnd::Cancelled => break,
                ConnEnd::Dropped => tracing::info!(terminal = index, "terminal dropped the line: link starts over"),
                ConnEnd::Closed => {
                    tracing::warn!(terminal = index, path = %path.display(), "serial line closed");
                    if !backoff(&cancel).await {
                        break;
                    }
                }
                ConnEnd::Io(error) => {
                    tracing::warn!(terminal = index, path = %path.display(), %error, "serial line failed");
                    if !backoff(&cancel).await {
                        break;
                    }
                }
            }
            unlock(&term, &device);
        }
    };
    let unlocking = async {
        let mut ticks = tokio::time::interval(SERIAL_UNLOCK_INTERVAL);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => unlock(&term, &device),
                _ = cancel.cancelled() => break,
            }
        }
    };
    tokio::join!(serving, unlocking);
    drop(device);
}

/// Clears exclusive mode (`TIOCEXCL`) on the device through the simulator's own handle, without
/// `unsafe` and without taking a lock. serialport's `TTYPort::set_exclusive(false)` would clear it but
/// also put a shared `flock` on the simulator's handle, which makes every later exclusive open (the
/// serialport default) fail. Dropping a `TTYPort` clears exclusive mode before closing its descriptor
/// (serialport 4 does so on every drop), so dropping a duplicate of the held handle clears the flag
/// and closes only the duplicate: the device stays open and no lock is taken. An ECR holding the device
/// keeps its own `flock`, which still keeps a second serialport opener out.
fn unlock(term: &Terminal, device: &TTYPort) {
    match device.try_clone_native() {
        Ok(duplicate) => {
            drop(duplicate);
            term.serial_unlocked();
        }
        Err(error) => tracing::warn!(terminal = term.cfg.index, %error, "cannot clear exclusive mode on the device"),
    }
}

/// Waits [`ERROR_BACKOFF`]; false when `cancel` fired first.
async fn backoff(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(ERROR_BACKOFF) => true,
        _ = cancel.cancelled() => false,
    }
}

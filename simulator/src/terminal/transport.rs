//! The two transports of wire-protocol.md §1: TCP (the terminal listens, the ECR connects) and serial,
//! here a pseudo-terminal pair through the real serial stack (`tokio_serial::SerialStream::pair`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_serial::SerialStream;
use tokio_util::sync::CancellationToken;

use super::connection::{serve, ConnEnd};
use super::runtime::Terminal;

/// How long a transport waits before trying again after an accept or read error, so a persistent
/// error (out of file descriptors, a broken device) does not spin.
pub const ERROR_BACKOFF: Duration = Duration::from_millis(100);

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
    /// breaking (on Linux the simulator's end fails with EIO while no one holds the device open).
    pub(crate) device: SerialStream,
    /// The device's path, for the ECR to open.
    pub(crate) path: PathBuf,
}

/// Opens a pseudo-terminal pair.
pub(crate) fn open_pty() -> Result<Pty, tokio_serial::Error> {
    use tokio_serial::SerialPort;
    let (master, device) = SerialStream::pair()?;
    let path = device.name().map(PathBuf::from).ok_or_else(|| {
        tokio_serial::Error::new(tokio_serial::ErrorKind::NoDevice, "the pseudo-terminal has no device path")
    })?;
    Ok(Pty { master, device, path })
}

/// Serves the terminal over its pseudo-terminal until `cancel` fires. The line is one long
/// connection; when a fault drops the connection, the link starts over (a terminal that rebooted) and
/// the line stays open, as a serial cable does. Bytes the terminal writes while no ECR holds the device
/// open wait in the pseudo-terminal's buffer for the next one, whose link skips them.
pub(crate) async fn serve_pty(term: Arc<Terminal>, pty: Pty, cancel: CancellationToken) {
    let Pty { mut master, device, path } = pty;
    let index = term.cfg.index;
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
    }
    drop(device);
}

/// Waits [`ERROR_BACKOFF`]; false when `cancel` fired first.
async fn backoff(cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(ERROR_BACKOFF) => true,
        _ = cancel.cancelled() => false,
    }
}

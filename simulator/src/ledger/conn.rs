//! The listener: at most a bounded number of connections at once, and connections a request handler
//! can cut (the "store then drop" fault).
//!
//! Each accepted connection holds one slot of a semaphore of [`super::LedgerConfig::max_connections`]
//! slots until it closes (an idle keep-alive connection included). With every slot taken the listener
//! stops accepting: further clients wait in the kernel's accept queue (or are refused by the kernel
//! once that queue is full) until a connection closes. This bounds the memory that request bodies can
//! take to `max_connections` × the body limit.
//!
//! axum serves each connection on a task of its own that a handler cannot reach. So every accepted
//! stream is wrapped in a [`CuttableStream`] sharing a [`Cut`] switch with the request extensions
//! (through axum's `ConnectInfo`). A handler that flips the switch before it returns makes every later
//! read and write of that connection fail, so hyper never writes the answer and drops the socket: the
//! client sees its connection closed with no HTTP response at all.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The switch that cuts one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cut(Arc<AtomicBool>);

impl Cut {
    /// From now on the connection refuses all I/O; its answer is never written.
    pub(crate) fn cut(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn is_cut(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a handler learns about its connection: the peer and the switch.
#[derive(Debug, Clone)]
pub(crate) struct ConnInfo {
    /// The client's address.
    pub(crate) peer: SocketAddr,
    /// Cuts this connection.
    pub(crate) cut: Cut,
}

impl Connected<IncomingStream<'_, CuttableListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, CuttableListener>) -> ConnInfo {
        ConnInfo { peer: *stream.remote_addr(), cut: stream.io().cut.clone() }
    }
}

/// A TCP listener that serves a bounded number of connections at once, each of which can be cut.
#[derive(Debug)]
pub(crate) struct CuttableListener {
    listener: TcpListener,
    /// One permit per connection being served.
    slots: Arc<Semaphore>,
}

impl CuttableListener {
    /// Serves at most `max_connections` (at least 1) connections at once.
    pub(crate) fn new(listener: TcpListener, max_connections: usize) -> CuttableListener {
        CuttableListener { listener, slots: Arc::new(Semaphore::new(max_connections)) }
    }
}

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CuttableStream, SocketAddr) {
        // A free slot first, so that a connection beyond the bound is not even accepted. The semaphore
        // is never closed, so the permit is always there.
        let slot = self.slots.clone().acquire_owned().await.ok();
        // axum's own listener loop: retry after an accept error; the accept call itself paces it.
        loop {
            match self.listener.accept().await {
                Ok((inner, peer)) => {
                    let _ = inner.set_nodelay(true);
                    return (CuttableStream { inner, cut: Cut::default(), _slot: slot }, peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ledger: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// A TCP stream that fails all I/O once its [`Cut`] is flipped; it frees its connection slot when
/// dropped.
#[derive(Debug)]
pub(crate) struct CuttableStream {
    inner: TcpStream,
    cut: Cut,
    _slot: Option<OwnedSemaphorePermit>,
}

fn cut_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "connection cut by the store-then-drop fault")
}

impl AsyncRead for CuttableStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for CuttableStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.cut.is_cut() {
            return Poll::Ready(Err(cut_error()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

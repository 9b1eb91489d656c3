//! Connections a request handler can cut: the "store then drop" fault.
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

/// A TCP listener whose connections can be cut.
#[derive(Debug)]
pub(crate) struct CuttableListener(pub(crate) TcpListener);

impl Listener for CuttableListener {
    type Io = CuttableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (CuttableStream, SocketAddr) {
        // axum's own listener loop: retry after an accept error; the accept call itself paces it.
        loop {
            match self.0.accept().await {
                Ok((inner, peer)) => {
                    let _ = inner.set_nodelay(true);
                    return (CuttableStream { inner, cut: Cut::default() }, peer);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ledger: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// A TCP stream that fails all I/O once its [`Cut`] is flipped.
#[derive(Debug)]
pub(crate) struct CuttableStream {
    inner: TcpStream,
    cut: Cut,
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

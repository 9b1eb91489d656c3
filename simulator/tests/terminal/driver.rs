//! A small async driver that runs the protocol crate's sans-IO machines over a real byte stream, the way
//! the daemon will: read into `handle_input`, `handle_timeout` at `poll_timeout`, write `poll_transmit`.
//! Every wait is bounded by [`LIMIT`], so a test that never settles fails instead of hanging.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use zhengjiao_protocol::link::{Ecr, EcrConfig, EcrEvent, Link, LinkEvent};
use zhengjiao_protocol::message::{Request, Response};

/// The longest any wait in these tests may take before the test fails.
pub(crate) const LIMIT: Duration = Duration::from_secs(20);

/// A sans-IO machine with the driver contract of `zhengjiao_protocol::link`.
pub(crate) trait Machine {
    fn input(&mut self, now: std::time::Instant, bytes: &[u8]);
    fn timeout(&mut self, now: std::time::Instant);
    fn transmit(&mut self) -> Option<Vec<u8>>;
    fn deadline(&self) -> Option<std::time::Instant>;
    fn lost(&mut self);
}

impl Machine for Ecr {
    fn input(&mut self, now: std::time::Instant, bytes: &[u8]) {
        self.handle_input(now, bytes);
    }
    fn timeout(&mut self, now: std::time::Instant) {
        self.handle_timeout(now);
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.poll_transmit()
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        self.poll_timeout()
    }
    fn lost(&mut self) {
        self.connection_lost();
    }
}

impl Machine for Link {
    fn input(&mut self, now: std::time::Instant, bytes: &[u8]) {
        self.handle_input(now, bytes);
    }
    fn timeout(&mut self, now: std::time::Instant) {
        self.handle_timeout(now);
    }
    fn transmit(&mut self) -> Option<Vec<u8>> {
        self.poll_transmit()
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        self.poll_timeout()
    }
    fn lost(&mut self) {
        self.reset();
    }
}

/// A machine over a stream.
pub(crate) struct Driver<M, S> {
    pub(crate) m: M,
    io: Option<S>,
    buf: Vec<u8>,
    /// Events that end no exchange (stale responses, probes), kept for the test to look at.
    pub(crate) others: Vec<EcrEvent>,
}

impl<M: Machine, S: AsyncRead + AsyncWrite + Unpin> Driver<M, S> {
    pub(crate) fn over(m: M, io: S) -> Self {
        Driver { m, io: Some(io), buf: vec![0; 4096], others: Vec::new() }
    }

    /// True while the stream is open.
    pub(crate) fn connected(&self) -> bool {
        self.io.is_some()
    }

    /// A new stream for the same machine (after the old one closed).
    pub(crate) fn reconnect(&mut self, io: S) {
        if self.io.is_some() {
            self.m.lost();
        }
        self.io = Some(io);
    }

    /// Writes out what the machine has to send.
    pub(crate) async fn flush(&mut self) {
        while let Some(bytes) = self.m.transmit() {
            let Some(io) = self.io.as_mut() else { continue };
            if io.write_all(&bytes).await.is_err() || io.flush().await.is_err() {
                self.close();
            }
        }
    }

    /// Writes raw bytes, outside the machine.
    pub(crate) async fn write_raw(&mut self, bytes: &[u8]) {
        let io = self.io.as_mut().expect("connected");
        io.write_all(bytes).await.unwrap();
        io.flush().await.unwrap();
    }

    fn close(&mut self) {
        if self.io.take().is_some() {
            self.m.lost();
        }
    }

    /// Flushes, then waits for one input or one timeout. Panics when nothing can happen any more.
    pub(crate) async fn pump(&mut self) {
        self.flush().await;
        let deadline = self.m.deadline().map(Instant::from_std);
        let Some(io) = self.io.as_mut() else {
            let deadline = deadline.expect("connection closed and nothing pending");
            tokio::time::sleep_until(deadline).await;
            self.m.timeout(Instant::now().into_std());
            return;
        };
        tokio::select! {
            read = io.read(&mut self.buf) => match read {
                Ok(0) | Err(_) => self.close(),
                Ok(n) => self.m.input(Instant::now().into_std(), &self.buf[..n]),
            },
            _ = sleep_until(deadline), if deadline.is_some() => self.m.timeout(Instant::now().into_std()),
        }
    }

    /// Pumps until `done` holds for the machine, e.g. a counter reached a value.
    pub(crate) async fn until(&mut self, what: &str, mut done: impl FnMut(&M) -> bool) {
        tokio::time::timeout(LIMIT, async {
            while !done(&self.m) {
                self.pump().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("never happened: {what}"));
    }

    /// Pumps until the peer closes the stream.
    pub(crate) async fn until_closed(&mut self) {
        tokio::time::timeout(LIMIT, async {
            while self.io.is_some() {
                self.pump().await;
            }
        })
        .await
        .expect("the peer never closed the connection");
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<Ecr, S> {
    pub(crate) fn ecr(cfg: EcrConfig, io: S) -> Self {
        Driver::over(Ecr::new(cfg), io)
    }

    /// Runs one exchange to its end: `Answered`, `OutcomeUnknown` or `Failed`.
    pub(crate) async fn exchange(&mut self, request: Request) -> EcrEvent {
        self.m.start(Instant::now().into_std(), request).expect("the ECR refused to start the exchange");
        tokio::time::timeout(LIMIT, async {
            loop {
                while let Some(event) = self.m.poll_event() {
                    match event {
                        EcrEvent::Answered { .. } | EcrEvent::OutcomeUnknown { .. } | EcrEvent::Failed { .. } => {
                            return event
                        }
                        other => self.others.push(other),
                    }
                }
                self.pump().await;
            }
        })
        .await
        .expect("the exchange never ended")
    }

    /// Pumps until a stale response (one belonging to no exchange in flight) has arrived.
    pub(crate) async fn until_stale(&mut self) {
        tokio::time::timeout(LIMIT, async {
            loop {
                while let Some(event) = self.m.poll_event() {
                    self.others.push(event);
                }
                if self.others.iter().any(|e| matches!(e, EcrEvent::StaleResponse { .. })) {
                    return;
                }
                self.pump().await;
            }
        })
        .await
        .expect("no stale response arrived");
    }

    /// Runs one exchange that must be answered, and returns the response.
    pub(crate) async fn answered(&mut self, request: Request) -> Response {
        match self.exchange(request).await {
            EcrEvent::Answered { response, .. } => *response,
            other => panic!("expected an answer, got {other:?}"),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Driver<Link, S> {
    /// Pumps until the link reports an event.
    pub(crate) async fn link_event(&mut self) -> LinkEvent {
        tokio::time::timeout(LIMIT, async {
            loop {
                if let Some(event) = self.m.poll_event() {
                    return event;
                }
                self.pump().await;
            }
        })
        .await
        .expect("no link event")
    }

    /// Sends one frame and waits for its ACK.
    pub(crate) async fn send_acked(&mut self, data: &[u8]) {
        self.m.send_frame(Instant::now().into_std(), data).unwrap();
        match self.link_event().await {
            LinkEvent::Acked => {}
            other => panic!("expected the ACK, got {other:?}"),
        }
    }

    /// Waits for the next delivered frame's DATA.
    pub(crate) async fn delivered(&mut self) -> Vec<u8> {
        match self.link_event().await {
            LinkEvent::Delivered(data) => data,
            other => panic!("expected a frame, got {other:?}"),
        }
    }
}

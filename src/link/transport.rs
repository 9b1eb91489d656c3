//! Opening a terminal's transport (wire-protocol.md §1) and the reconnect backoff.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

use crate::config::Transport;

/// The longest a TCP connect may take before it counts as failed.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// An open transport.
pub(crate) enum Connection {
    /// TCP, Nagle off: a request frame written right after an ACK must not wait for the peer's delayed
    /// TCP acknowledgement.
    Tcp(TcpStream),
    /// A serial port, 8N1, no flow control.
    Serial(SerialStream),
}

/// Opens `transport`; the error is for the status and the log.
pub(crate) async fn connect(transport: &Transport) -> Result<Connection, String> {
    match transport {
        Transport::Tcp { host, port } => {
            let connecting = TcpStream::connect((host.as_str(), *port));
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return Err(format!("cannot connect to {transport}: {e}")),
                Err(_) => return Err(format!("cannot connect to {transport}: no answer within {CONNECT_TIMEOUT:?}")),
            };
            stream.set_nodelay(true).map_err(|e| format!("{transport}: cannot set TCP_NODELAY: {e}"))?;
            Ok(Connection::Tcp(stream))
        }
        Transport::Serial { path, baud } => tokio_serial::new(path, *baud)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .open_native_async()
            .map(Connection::Serial)
            .map_err(|e| format!("cannot open {transport}: {e}")),
    }
}

/// Exponential backoff with jitter: the `attempt`-th wait (0-based) is drawn between half of
/// `min * 2^attempt` (but at least `min`) and `min * 2^attempt`, capped at `max`, so terminals that went
/// down together do not reconnect in step.
pub(crate) fn backoff(attempt: u32, min: Duration, max: Duration) -> Duration {
    let max = max.max(min);
    let ceiling = min.saturating_mul(2u32.saturating_pow(attempt.min(30))).min(max);
    let floor = (ceiling / 2).max(min);
    let spread = ceiling.saturating_sub(floor).as_millis();
    let jitter = u64::try_from(spread).map_or(0, |s| fastrand::u64(0..=s));
    floor.saturating_add(Duration::from_millis(jitter))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_bounds_and_grows() {
        let (min, max) = (Duration::from_millis(200), Duration::from_secs(10));
        for attempt in 0..40 {
            let d = backoff(attempt, min, max);
            assert!(d >= min && d <= max, "{attempt}: {d:?}");
        }
        assert!(backoff(10, min, max) >= max / 2);
        assert_eq!(backoff(0, Duration::ZERO, Duration::ZERO), Duration::ZERO);
    }
}

//! The terminal link end to end: `zhengjiao::link` drives the in-process terminal simulator over real TCP
//! sockets and a real pseudo-terminal. Tests wait on the link's status channel and on exchange results,
//! each wait bounded by [`LIMIT`]; none sleeps, and none asserts on wall-clock time.
// Tests unwrap values they built themselves; a failure there is a broken test, reported by the panic.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use zhengjiao::config::Transport;
use zhengjiao::link::{
    spawn, ExchangeResult, LinkSettings, LinkState, LinkStatus, Outgoing, SubmitError, TerminalLink,
};
use zhengjiao_protocol::link::{EcrConfig, FailureReason, LinkConfig, ResponseTimeouts};
use zhengjiao_protocol::memo::{Memo, QueryState};
use zhengjiao_protocol::message::{Amount, RequestBody, Response, ResponseCode, Token};
use zhengjiao_protocol::Ascii;
use zhengjiao_simulator::terminal::{self as sim, Faults, TerminalSim, TerminalSimConfig, TerminalSimHandle};

/// The longest any wait may take before the test fails.
const LIMIT: Duration = Duration::from_secs(20);

fn code(s: &str) -> ResponseCode {
    ResponseCode::new(s).unwrap()
}

fn outgoing(body: RequestBody, reference: Option<&str>) -> Outgoing {
    Outgoing {
        operator: Ascii::new("C0001").unwrap(),
        body,
        memo: reference.map_or_else(Memo::new, |r| Memo::with_reference(Ascii::new(r).unwrap())),
        start_by: None,
    }
}

fn sale(fen: u64, reference: &str) -> Outgoing {
    outgoing(RequestBody::Sale { amount: Amount::from_fen(fen).unwrap() }, Some(reference))
}

fn query(reference: &str) -> Outgoing {
    outgoing(RequestBody::Query, Some(reference))
}

/// Response timeouts long enough never to fire unless a test is about them.
fn ecr_config() -> EcrConfig {
    let t = Duration::from_secs(5);
    EcrConfig {
        link: LinkConfig::default(),
        timeouts: ResponseTimeouts { money: t, settle: t, sign_in: t, query: t, status: t },
        first_token: Token::MIN,
    }
}

fn settings(transport: Transport) -> LinkSettings {
    LinkSettings {
        name: "T01".to_owned(),
        transport,
        ecr: ecr_config(),
        till: Ascii::new("DESK01").unwrap(),
        heartbeat: Duration::from_secs(15),
        reconnect_min: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(200),
        queue: 8,
    }
}

fn tcp(addr: SocketAddr) -> Transport {
    Transport::Tcp { host: addr.ip().to_string(), port: addr.port() }
}

async fn start(cfg: TerminalSimConfig) -> TerminalSimHandle {
    TerminalSim::start(cfg).await.unwrap()
}

/// Waits until the status satisfies `pred`; returns that status.
async fn wait_for(link: &TerminalLink, pred: impl FnMut(&LinkStatus) -> bool) -> LinkStatus {
    let mut rx = link.watch();
    let status = tokio::time::timeout(LIMIT, rx.wait_for(pred)).await;
    match status {
        Ok(Ok(status)) => status.clone(),
        _ => panic!("status never got there; last: {:?}", link.status()),
    }
}

async fn ready(link: &TerminalLink, session: u64) -> LinkStatus {
    wait_for(link, |s| s.state == LinkState::Ready && s.session == session).await
}

/// Submits `out` and waits for its result.
async fn result_of(link: &TerminalLink, out: Outgoing) -> ExchangeResult {
    let exchange = link.submit(out).unwrap();
    tokio::time::timeout(LIMIT, exchange.done).await.unwrap().unwrap()
}

/// Submits `out`, expects an answer, and checks `acked` fired too.
async fn answered(link: &TerminalLink, out: Outgoing) -> Response {
    let exchange = link.submit(out).unwrap();
    let result = tokio::time::timeout(LIMIT, exchange.done).await.unwrap().unwrap();
    let ExchangeResult::Answered(response) = result else { panic!("not answered: {result:?}") };
    // Fired before `done`: already there.
    assert_eq!(exchange.acked.await, Ok(()), "acked did not fire");
    *response
}

fn assert_query_state(response: &Response, state: QueryState) {
    assert_eq!(response.code, ResponseCode::APPROVED, "{response:?}");
    assert_eq!(response.memo.query_state, Some(state), "{response:?}");
}

/// Sign-in, an approved sale and a declined one: the happy path on any transport.
async fn happy_path(link: &TerminalLink) {
    let status = ready(link, 1).await;
    assert_eq!(status.terminal_id.as_deref(), Some("41000001"));
    assert_eq!(status.merchant_id.as_deref(), Some(sim::DEFAULT_MERCHANT));
    assert!(status.batch.is_some());
    assert_eq!(status.connects, 1);

    let response = answered(link, sale(28_000, "P0001")).await;
    assert_eq!(response.code, ResponseCode::APPROVED);
    assert_eq!(response.memo.reference, Some(Ascii::new("P0001").unwrap()));
    assert!(response.card.is_some());

    let response = answered(link, sale(10_051, "P0002")).await;
    assert_eq!(response.code, code("51"));
    assert_eq!(link.status().in_flight, None);
}

#[tokio::test]
async fn sign_in_and_sales_over_tcp() {
    let sim = start(TerminalSimConfig::default()).await;
    let link = spawn(settings(tcp(sim.addrs()[0])));
    assert_eq!(link.name(), "T01");
    happy_path(&link).await;
    let status = link.status();
    assert_eq!(status.transport, format!("tcp:127.0.0.1:{}", sim.addrs()[0].port()));
    assert!(status.frames_sent >= 3 && status.frames_received >= 3, "{status:?}");
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["state"], "ready");
    link.shutdown().await;
    assert_eq!(link.status().state, LinkState::Down);
    assert!(matches!(link.submit(sale(100, "P0003")), Err(SubmitError::Stopped)));
    sim.shutdown().await;
}

#[tokio::test]
async fn sign_in_and_sales_over_a_pseudo_terminal() {
    let sim = start(TerminalSimConfig { transport: sim::Transport::Pty, ..TerminalSimConfig::default() }).await;
    let path = sim.pty_path().unwrap().to_str().unwrap().to_owned();
    let link = spawn(settings(Transport::Serial { path, baud: 9600 }));
    happy_path(&link).await;
    link.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_sale_never_answered_is_unknown_and_query_says_25() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut s = settings(tcp(sim.addrs()[0]));
    s.ecr.timeouts.money = Duration::from_millis(500);
    let link = spawn(s);
    ready(&link, 1).await;

    sim.set_faults(0, Faults { never_answer: 1.0, ..Faults::NONE }).unwrap();
    let exchange = link.submit(sale(5_000, "P0100")).unwrap();
    let result = tokio::time::timeout(LIMIT, exchange.done).await.unwrap().unwrap();
    assert!(matches!(result, ExchangeResult::OutcomeUnknown(FailureReason::ResponseTimeout { .. })), "{result:?}");
    assert_eq!(exchange.acked.await, Ok(()), "the terminal ACKed the request");

    // The core refuses another money request for that reference until QUERY settles it.
    let again = result_of(&link, sale(5_000, "P0100")).await;
    assert!(matches!(again, ExchangeResult::NotSent(_)), "{again:?}");

    sim.set_faults(0, Faults::NONE).unwrap();
    let response = answered(&link, query("P0100")).await;
    assert_eq!(response.code, ResponseCode::NOT_FOUND);
    assert_eq!(link.status().session, 1, "the link stayed up");
    link.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_approved_sale_whose_connection_drops_is_unknown_then_found() {
    let sim = start(TerminalSimConfig::default()).await;
    let link = spawn(settings(tcp(sim.addrs()[0])));
    ready(&link, 1).await;

    sim.set_faults(0, Faults { approve_drop: 1.0, ..Faults::NONE }).unwrap();
    let result = result_of(&link, sale(12_000, "P0200")).await;
    assert_eq!(result, ExchangeResult::OutcomeUnknown(FailureReason::ConnectionLost));

    // The link reconnects and signs in by itself.
    let status = ready(&link, 2).await;
    assert_eq!(status.connects, 2);
    assert!(status.last_error.is_some());
    let response = answered(&link, query("P0200")).await;
    assert_query_state(&response, QueryState::Approved);
    link.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn power_loss_over_tcp_is_unknown_and_the_sale_never_happened() {
    let sim = start(TerminalSimConfig::default()).await;
    let link = spawn(settings(tcp(sim.addrs()[0])));
    ready(&link, 1).await;

    sim.set_faults(0, Faults { power_loss: 1.0, ..Faults::NONE }).unwrap();
    let result = result_of(&link, sale(12_000, "P0300")).await;
    assert_eq!(result, ExchangeResult::OutcomeUnknown(FailureReason::ConnectionLost));

    ready(&link, 2).await;
    let response = answered(&link, query("P0300")).await;
    assert_eq!(response.code, ResponseCode::NOT_FOUND);
    link.shutdown().await;
    sim.shutdown().await;
}

/// Over serial a power loss drops nothing: the sale times out, the next QUERY gets `T4`, and the link
/// signs in again and repeats the QUERY by itself.
#[tokio::test]
async fn t4_after_a_power_loss_over_serial_signs_in_and_repeats_the_query() {
    let sim = start(TerminalSimConfig { transport: sim::Transport::Pty, ..TerminalSimConfig::default() }).await;
    let path = sim.pty_path().unwrap().to_str().unwrap().to_owned();
    let mut s = settings(Transport::Serial { path, baud: 9600 });
    s.ecr.timeouts.money = Duration::from_millis(500);
    let link = spawn(s);
    ready(&link, 1).await;

    sim.set_faults(0, Faults { power_loss: 1.0, ..Faults::NONE }).unwrap();
    let result = result_of(&link, sale(12_000, "P0400")).await;
    assert!(matches!(result, ExchangeResult::OutcomeUnknown(FailureReason::ResponseTimeout { .. })), "{result:?}");
    sim.set_faults(0, Faults::NONE).unwrap();

    let response = answered(&link, query("P0400")).await;
    assert_eq!(response.code, ResponseCode::NOT_FOUND, "{response:?}");
    let status = link.status();
    assert_eq!((status.session, status.connects, status.state), (2, 1, LinkState::Ready));

    // A sale answered T4 is delivered as it is: nothing moved, and it is not repeated.
    sim.set_faults(0, Faults { power_loss: 1.0, ..Faults::NONE }).unwrap();
    let result = result_of(&link, sale(12_000, "P0401")).await;
    assert!(matches!(result, ExchangeResult::OutcomeUnknown(_)), "{result:?}");
    sim.set_faults(0, Faults::NONE).unwrap();
    let response = answered(&link, sale(12_000, "P0402")).await;
    assert_eq!(response.code, ResponseCode::NOT_SIGNED_IN, "{response:?}");
    ready(&link, 3).await;
    assert_eq!(answered(&link, query("P0402")).await.code, ResponseCode::NOT_FOUND);
    assert_eq!(answered(&link, query("P0401")).await.code, ResponseCode::NOT_FOUND);
    link.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_terminal_that_goes_away_leaves_requests_queued_until_it_is_back() {
    let sim = start(TerminalSimConfig::default()).await;
    let addr = sim.addrs()[0];
    let link = spawn(settings(tcp(addr)));
    ready(&link, 1).await;

    sim.shutdown().await;
    let status = wait_for(&link, |s| s.state == LinkState::Down && s.last_error.is_some()).await;
    assert_eq!(status.session, 1);

    let exchange = link.submit(sale(3_000, "P0500")).unwrap();
    assert_eq!(link.status().queued, 1);

    // A terminal on the same address again: the link reconnects, signs in and sends the request.
    let sim = start(TerminalSimConfig { transport: sim::Transport::Tcp(addr), ..TerminalSimConfig::default() }).await;
    let result = tokio::time::timeout(LIMIT, exchange.done).await.unwrap().unwrap();
    let ExchangeResult::Answered(response) = result else { panic!("{result:?}") };
    assert_eq!(response.code, ResponseCode::APPROVED);
    let status = link.status();
    assert_eq!((status.session, status.queued), (2, 0));
    link.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_refuses_and_shutdown_answers_queued_requests_not_sent() {
    // An address nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut s = settings(tcp(addr));
    s.queue = 2;
    let link = spawn(s);
    wait_for(&link, |s| s.state == LinkState::Down && s.last_error.is_some()).await;

    let first = link.submit(sale(100, "P0600")).unwrap();
    let second = link.submit(query("P0600")).unwrap();
    assert!(matches!(link.submit(sale(100, "P0601")), Err(SubmitError::QueueFull { max: 2 })));
    assert_eq!(link.status().queued, 2);

    link.shutdown().await;
    for exchange in [first, second] {
        let result = tokio::time::timeout(LIMIT, exchange.done).await.unwrap().unwrap();
        assert!(matches!(result, ExchangeResult::NotSent(_)), "{result:?}");
        assert!(exchange.acked.await.is_err(), "never sent, never acked");
    }
    let status = link.status();
    assert_eq!((status.state, status.queued, status.connects), (LinkState::Down, 0, 0));
    assert!(matches!(link.submit(sale(100, "P0602")), Err(SubmitError::Stopped)));
}

#[tokio::test]
async fn noise_and_bad_checks_are_survived_and_counted() {
    let faults = Faults { noise: 1.0, corrupt_check: 1.0, ..Faults::NONE };
    let sim = start(TerminalSimConfig { faults, ..TerminalSimConfig::default() }).await;
    let link = spawn(settings(tcp(sim.addrs()[0])));
    ready(&link, 1).await;
    let response = answered(&link, sale(28_000, "P0700")).await;
    assert_eq!(response.code, ResponseCode::APPROVED);
    let status = link.status();
    assert!(status.noise_bytes > 0 && status.naks_sent > 0 && status.broken_frames > 0, "{status:?}");
    assert_eq!(status.session, 1);
    link.shutdown().await;
    sim.shutdown().await;
}

#[tokio::test]
async fn an_idle_link_is_probed() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut s = settings(tcp(sim.addrs()[0]));
    s.heartbeat = Duration::from_millis(50);
    let link = spawn(s);
    let status = wait_for(&link, |s| s.probes_sent >= 3).await;
    assert_eq!((status.state, status.session, status.connects), (LinkState::Ready, 1, 1));
    assert!(sim.counters(0).unwrap().link.enqs_answered >= 2);
    // Still serving requests between probes.
    assert_eq!(answered(&link, sale(1_000, "P0800")).await.code, ResponseCode::APPROVED);
    link.shutdown().await;
    sim.shutdown().await;
}

/// A request still queued when its start deadline passes is answered `NotSent` at the deadline, never
/// reaches the terminal, and leaves the exchange in flight alone: SALE A waits at the card, SALE B
/// (start by now + 300 ms) is dropped behind it, and A completes once the card is presented.
#[tokio::test]
async fn a_queued_request_past_its_start_deadline_is_never_sent() {
    let cfg = TerminalSimConfig { card_delay: Duration::from_secs(60), ..TerminalSimConfig::default() };
    let sim = start(cfg).await;
    let mut s = settings(tcp(sim.addrs()[0]));
    // A waits at the card for as long as the test needs.
    s.ecr.timeouts.money = Duration::from_secs(60);
    let link = spawn(s);
    ready(&link, 1).await;

    let a = link.submit(sale(28_000, "P0900")).unwrap();
    // The terminal ACKed A: it is at the card.
    tokio::time::timeout(LIMIT, a.acked).await.unwrap().unwrap();
    let before = sim.counters(0).unwrap();
    assert_eq!((before.requests, before.engine.requests.sale), (2, 0), "SIGN_IN, and A at the card: {before:?}");

    let mut b = sale(28_000, "P0901");
    b.start_by = Some(tokio::time::Instant::now() + Duration::from_millis(300));
    let b = link.submit(b).unwrap();
    let result = tokio::time::timeout(LIMIT, b.done).await.unwrap().unwrap();
    assert!(matches!(result, ExchangeResult::NotSent(_)), "{result:?}");
    assert!(b.acked.await.is_err(), "never sent, never acked");
    let status = link.status();
    assert_eq!(status.queued, 0, "{status:?}");
    assert!(status.in_flight.is_some(), "A is still in flight: {status:?}");
    let after = sim.counters(0).unwrap();
    assert_eq!((after.requests, after.busy, after.link.frames_delivered), (2, 0, before.link.frames_delivered));

    // The card is presented: A completes.
    sim.set_card_delay(0, Duration::ZERO).unwrap();
    let result = tokio::time::timeout(LIMIT, a.done).await.unwrap().unwrap();
    let ExchangeResult::Answered(response) = result else { panic!("A: {result:?}") };
    assert_eq!(response.code, ResponseCode::APPROVED);
    assert_eq!(response.memo.reference, Some(Ascii::new("P0900").unwrap()));

    // Only A's SALE reached the terminal; it has no record of B.
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.engine.requests.sale, counters.engine.sales_approved), (1, 1), "{counters:?}");
    assert_eq!(answered(&link, query("P0901")).await.code, ResponseCode::NOT_FOUND);
    assert_query_state(&answered(&link, query("P0900")).await, QueryState::Approved);
    assert_eq!(link.status().session, 1, "the link stayed up");
    link.shutdown().await;
    sim.shutdown().await;
}

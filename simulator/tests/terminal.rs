//! The terminal simulator end to end: the protocol crate's `Ecr` (and a bare `Link`) act as the daemon
//! over real TCP sockets and a real pseudo-terminal, against terminals started in-process on port 0 and
//! the `zhengjiao-sim` binary. Waits are on readiness and events, each bounded; no test asserts on
//! wall-clock time, and no outcome depends on one timer beating another: a wait under test is ended by
//! the test (a card delay or response delay changed at run time), never by its length.
// Tests unwrap values they built themselves; a failure there is a broken test, reported by the panic.
#![allow(clippy::unwrap_used)]

#[path = "terminal/driver.rs"]
mod driver;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use zhengjiao_protocol::frame::{encode_frame, Check, FrameConfig, ENQ, STX};
use zhengjiao_protocol::link::{EcrConfig, EcrEvent, FailureReason, Link, LinkConfig, LinkEvent, ResponseTimeouts};
use zhengjiao_protocol::memo::{Memo, QueryState, SettleTotals};
use zhengjiao_protocol::message::{
    Amount, Date, MessageType, Request, RequestBody, Response, ResponseCode, Rrn, Token, Trace,
};
use zhengjiao_protocol::Ascii;
use zhengjiao_simulator::terminal::{
    ControlError, FaultCounters, Faults, FaultsPatch, TerminalSim, TerminalSimConfig, TerminalSimHandle, Transport,
    MAX_DELAY_MS,
};

use driver::{Driver, LIMIT};

type Tcp = Driver<zhengjiao_protocol::link::Ecr, TcpStream>;
type Raw = Driver<Link, TcpStream>;

// ---------------------------------------------------------------------------------------------------
// Requests and settings

fn code(s: &str) -> ResponseCode {
    ResponseCode::new(s).unwrap()
}

fn request(body: RequestBody, reference: Option<&str>) -> Request {
    Request {
        token: Token::MIN,
        till: Ascii::new("DESK01").unwrap(),
        operator: Ascii::new("C0001").unwrap(),
        body,
        memo: reference.map_or_else(Memo::new, |r| Memo::with_reference(Ascii::new(r).unwrap())),
    }
}

fn sale(fen: u64, reference: &str) -> Request {
    request(RequestBody::Sale { amount: Amount::from_fen(fen).unwrap() }, Some(reference))
}

fn void(fen: u64, orig_trace: Trace, reference: &str) -> Request {
    request(RequestBody::Void { amount: Amount::from_fen(fen).unwrap(), orig_trace }, Some(reference))
}

fn refund(fen: u64, orig_date: Date, orig_rrn: Rrn, reference: &str) -> Request {
    request(RequestBody::Refund { amount: Amount::from_fen(fen).unwrap(), orig_date, orig_rrn }, Some(reference))
}

fn settle() -> Request {
    request(RequestBody::Settle, None)
}

fn query(reference: &str) -> Request {
    request(RequestBody::Query, Some(reference))
}

fn sign_in() -> Request {
    request(RequestBody::SignIn, None)
}

fn status() -> Request {
    request(RequestBody::Status, None)
}

/// The request DATA with token `token`, for a bare link (the `Ecr` sets tokens itself).
fn data(mut request: Request, token: u16) -> Vec<u8> {
    request.token = Token::new(token).unwrap();
    request.encode().unwrap()
}

/// The ECR of most tests: the default T_ack (1 s), so no resend happens unless a test causes one, and
/// response timeouts long enough never to fire unless a test is about them.
fn ecr_config(check: Check) -> EcrConfig {
    let t = Duration::from_secs(5);
    EcrConfig {
        link: LinkConfig { frame: FrameConfig::new(check), ..LinkConfig::default() },
        timeouts: ResponseTimeouts { money: t, settle: t, sign_in: t, query: t, status: t },
        first_token: Token::MIN,
    }
}

/// An ECR that resends after 200 ms, for tests whose resends the swallow-ack fault causes.
fn resending_ecr_config() -> EcrConfig {
    let mut cfg = ecr_config(Check::Lrc);
    cfg.link.t_ack = Duration::from_millis(200);
    cfg
}

/// An ECR whose money requests time out after `ms`, for tests about that timeout.
fn impatient_ecr_config(ms: u64) -> EcrConfig {
    let mut cfg = ecr_config(Check::Lrc);
    cfg.timeouts.money = Duration::from_millis(ms);
    cfg
}

async fn start(cfg: TerminalSimConfig) -> TerminalSimHandle {
    TerminalSim::start(cfg).await.unwrap()
}

async fn connect(sim: &TerminalSimHandle, index: usize) -> Tcp {
    connect_with(sim, index, ecr_config(Check::Lrc)).await
}

/// A TCP connection as the daemon makes it: without Nagle's delay, which would hold a request frame
/// written right after an ACK until the peer's delayed TCP acknowledgement.
async fn tcp(addr: impl tokio::net::ToSocketAddrs) -> TcpStream {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

async fn connect_with(sim: &TerminalSimHandle, index: usize, cfg: EcrConfig) -> Tcp {
    Driver::ecr(cfg, tcp(sim.addrs()[index]).await)
}

async fn reconnect(sim: &TerminalSimHandle, index: usize, ecr: &mut Tcp) {
    ecr.reconnect(tcp(sim.addrs()[index]).await);
}

/// A bare link to terminal `index`, for tests that write frames and bytes themselves.
async fn raw(sim: &TerminalSimHandle, index: usize) -> Raw {
    Driver::over(Link::new(LinkConfig::default()), tcp(sim.addrs()[index]).await)
}

/// Sends `data` over a bare link and returns the response.
async fn raw_exchange(raw: &mut Raw, data: &[u8]) -> Response {
    raw.send_acked(data).await;
    Response::decode(&raw.delivered().await).unwrap()
}

/// A terminal on TCP, signed in, with its ECR.
async fn signed_in(cfg: TerminalSimConfig) -> (TerminalSimHandle, Tcp) {
    signed_in_with(cfg, ecr_config(Check::Lrc)).await
}

/// The same with an ECR of the given settings.
async fn signed_in_with(cfg: TerminalSimConfig, ecr_cfg: EcrConfig) -> (TerminalSimHandle, Tcp) {
    let sim = start(cfg).await;
    let mut ecr = connect_with(&sim, 0, ecr_cfg).await;
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    (sim, ecr)
}

fn assert_found(response: &Response, state: QueryState) {
    assert_eq!(response.code, ResponseCode::APPROVED, "{response:?}");
    assert_eq!(response.memo.query_state, Some(state), "{response:?}");
    assert_eq!(response.memo.query_type, Some(MessageType::Sale), "{response:?}");
}

/// A card wait no test sits out: tests end it with `set_card_delay`.
const LONG_CARD_WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------------
// Behaviour over TCP

#[tokio::test]
async fn sign_in_then_sale_is_approved_over_tcp() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut ecr = connect(&sim, 0).await;
    let signed = ecr.answered(sign_in()).await;
    assert_eq!(signed.code, ResponseCode::APPROVED);
    assert_eq!(signed.terminal.as_str(), "41000001");
    assert_eq!(signed.merchant.as_str(), "898410153990001");

    let sold = ecr.answered(sale(28_000, "P20201021000001")).await;
    assert_eq!(sold.code, ResponseCode::APPROVED);
    assert_eq!(sold.amount.fen(), 28_000);
    assert!(sold.card.is_some());
    assert!(!sold.trace.is_zero());
    assert_found(&ecr.answered(query("P20201021000001")).await, QueryState::Approved);

    let counters = sim.counters(0).unwrap();
    assert_eq!(counters.engine.sales_approved, 1);
    assert_eq!(counters.requests, 3);
    assert_eq!(counters.engine.sign_ins, 1);
    assert_eq!(counters.connections, 1);
    assert_eq!(counters.link.frames_received, 3);
    assert_eq!(counters.link.acks_sent, 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn t4_before_sign_in() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut ecr = connect(&sim, 0).await;
    assert_eq!(ecr.answered(sale(28_000, "P-T4")).await.code, ResponseCode::NOT_SIGNED_IN);
    assert_eq!(ecr.answered(status()).await.code, ResponseCode::APPROVED);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    assert_eq!(ecr.answered(sale(28_000, "P-T4")).await.code, ResponseCode::APPROVED);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_request_during_the_card_wait_gets_t3_and_the_sale_goes_on() {
    let sim = start(TerminalSimConfig { card_delay: LONG_CARD_WAIT, ..TerminalSimConfig::default() }).await;
    let mut raw = raw(&sim, 0).await;
    assert_eq!(raw_exchange(&mut raw, &data(sign_in(), 100)).await.code, ResponseCode::APPROVED);

    raw.send_acked(&data(sale(28_000, "P-BUSY"), 101)).await;
    // The sale waits for its card (30 s, ended below).
    let busy = raw_exchange(&mut raw, &data(status(), 102)).await;
    assert_eq!((busy.token.get(), busy.code), (102, ResponseCode::BUSY));

    // The card is presented: the sale goes on, undisturbed.
    sim.set_card_delay(0, Duration::ZERO).unwrap();
    let done = Response::decode(&raw.delivered().await).unwrap();
    assert_eq!((done.token.get(), done.code), (101, ResponseCode::APPROVED));
    let counters = sim.counters(0).unwrap();
    assert_eq!(counters.busy, 1);
    assert_eq!(counters.engine.sales_approved, 1);
    assert_eq!(counters.responses_lost, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn enq_is_ignored_while_busy() {
    let sim = start(TerminalSimConfig { card_delay: LONG_CARD_WAIT, ..TerminalSimConfig::default() }).await;
    let mut raw = raw(&sim, 0).await;
    assert_eq!(raw_exchange(&mut raw, &data(sign_in(), 100)).await.code, ResponseCode::APPROVED);
    raw.send_acked(&data(sale(28_000, "P-ENQ"), 101)).await;

    raw.write_raw(&[ENQ]).await;
    // Handled in order, so the ENQ has been dealt with once this answer is here.
    assert_eq!(raw_exchange(&mut raw, &data(status(), 102)).await.code, ResponseCode::BUSY);
    // No ACK came for the ENQ (it would be a stray ACK here, or take the place of the STATUS frame's).
    assert_eq!(raw.m.stats().stray_controls, 0);
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.link.enqs_ignored, counters.link.enqs_answered), (1, 0));

    sim.set_card_delay(0, Duration::ZERO).unwrap();
    assert_eq!(Response::decode(&raw.delivered().await).unwrap().code, ResponseCode::APPROVED);
    sim.shutdown().await;
}

#[tokio::test]
async fn enq_is_answered_when_idle() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut raw = raw(&sim, 0).await;
    raw.m.send_probe(tokio::time::Instant::now().into_std()).unwrap();
    assert_eq!(raw.link_event().await, LinkEvent::ProbeAnswered);
    assert_eq!(sim.counters(0).unwrap().link.enqs_answered, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_frame_with_a_bad_check_is_naked_and_the_next_good_one_answered() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut raw = raw(&sim, 0).await;
    let mut broken = encode_frame(&data(status(), 100), Check::Lrc).unwrap();
    // A wrong check that is no frame or control byte either, so the rescan finds nothing in it.
    let last = broken.len() - 1;
    broken[last] = if broken[last] == b'A' { b'B' } else { b'A' };
    raw.write_raw(&broken).await;
    raw.until("the terminal NAKs the broken frame", |link| link.stats().naks_received == 1).await;

    let answer = raw_exchange(&mut raw, &data(status(), 101)).await;
    assert_eq!((answer.token.get(), answer.code), (101, ResponseCode::APPROVED));
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.link.naks_sent, counters.link.broken_frames), (1, 1));
    assert_eq!((counters.link.frames_received, counters.requests), (1, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn a_partial_frame_is_dropped_after_t_gap_and_the_next_frame_answered() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut raw = raw(&sim, 0).await;
    // STX and a length of 63 bytes, then only three of them, then silence.
    raw.write_raw(&[STX, 0x00, 0x63, b'1', b'2', b'3']).await;
    raw.until("the terminal NAKs the partial frame after T_gap", |link| link.stats().naks_received == 1).await;

    let answer = raw_exchange(&mut raw, &data(status(), 100)).await;
    assert_eq!((answer.token.get(), answer.code), (100, ResponseCode::APPROVED));
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.link.naks_sent, counters.link.broken_frames), (1, 1));
    assert_eq!(counters.link.frames_received, 1);
    assert!(counters.link.noise_bytes >= 3, "{counters:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn outcomes_by_amount_and_by_the_control_queue() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    assert_eq!(ecr.answered(sale(10_051, "P-51")).await.code, code("51"));
    assert_eq!(ecr.answered(sale(10_097, "P-T1")).await.code, ResponseCode::CANCELLED);
    let declined = ecr.answered(query("P-51")).await;
    assert_eq!(declined.memo.query_state, Some(QueryState::Declined));

    // The queue comes before the amount table: 100.51 would answer 51.
    sim.queue_outcome(0, code("05")).unwrap();
    assert_eq!(ecr.answered(sale(10_051, "P-Q1")).await.code, code("05"));
    assert_eq!(ecr.answered(sale(28_000, "P-Q2")).await.code, ResponseCode::APPROVED);
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.engine.sales_approved, counters.engine.sales_declined), (1, 3));
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_t5_and_garbage_is_noise() {
    let sim = start(TerminalSimConfig::default()).await;
    let mut raw = raw(&sim, 0).await;
    raw.write_raw(b"garbage \xff\xfe bytes").await;

    let mut bad = data(sale(28_000, "P-T5"), 100);
    // The amount field (bytes 21..33) with a letter in it.
    bad[25] = b'x';
    let answer = raw_exchange(&mut raw, &bad).await;
    assert_eq!((answer.token.get(), answer.code), (100, ResponseCode::MALFORMED));

    // Not even a token: nothing to answer, and the terminal carries on.
    raw.send_acked(b"xyz").await;
    let answer = raw_exchange(&mut raw, &data(status(), 555)).await;
    assert_eq!((answer.token.get(), answer.code), (555, ResponseCode::APPROVED));

    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.malformed, counters.unanswerable), (1, 1));
    assert_eq!(counters.engine.malformed, 2);
    assert!(counters.link.noise_bytes > 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn crc16_dialect() {
    let cfg = TerminalSimConfig {
        link: LinkConfig { frame: FrameConfig::new(Check::Crc16), ..LinkConfig::default() },
        ..TerminalSimConfig::default()
    };
    let sim = start(cfg).await;
    let mut ecr = connect_with(&sim, 0, ecr_config(Check::Crc16)).await;
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    assert_eq!(ecr.m.stats().link.broken_frames, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_new_connection_replaces_the_current_one() {
    let (sim, mut first) = signed_in(TerminalSimConfig::default()).await;
    let mut second = connect(&sim, 0).await;
    assert_eq!(second.answered(status()).await.code, ResponseCode::APPROVED);
    first.until_closed().await;
    assert_eq!(sim.counters(0).unwrap().connections, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn sale_then_void_over_the_wire() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    let sold = ecr.answered(sale(28_000, "P-VOID-S")).await;
    assert_eq!(sold.code, ResponseCode::APPROVED);
    let voided = ecr.answered(void(28_000, sold.trace, "P-VOID-V")).await;
    assert_eq!(voided.code, ResponseCode::APPROVED, "{voided:?}");
    assert_ne!(voided.trace, sold.trace);
    assert_eq!(voided.card, sold.card);
    assert_found(&ecr.answered(query("P-VOID-S")).await, QueryState::Voided);
    assert_eq!(sim.counters(0).unwrap().engine.voids_approved, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn sale_then_settle_then_refund_over_the_wire() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    let sold = ecr.answered(sale(10_000, "P-REF-S")).await;
    assert_eq!(sold.code, ResponseCode::APPROVED);

    let settled = ecr.answered(settle()).await;
    assert_eq!((settled.code, settled.batch.as_str()), (ResponseCode::APPROVED, "000001"));
    let totals = SettleTotals { sale_count: 1, sale_total: 10_000, ..SettleTotals::default() };
    assert_eq!(settled.memo.settle, Some(totals));

    let refunded = ecr.answered(refund(4_000, sold.date, sold.rrn, "P-REF-R")).await;
    assert_eq!((refunded.code, refunded.batch.as_str()), (ResponseCode::APPROVED, "000002"), "{refunded:?}");
    // Partly refunded: still standing.
    assert_found(&ecr.answered(query("P-REF-S")).await, QueryState::Approved);

    let settled = ecr.answered(settle()).await;
    let totals = SettleTotals { refund_count: 1, refund_total: 4_000, ..SettleTotals::default() };
    assert_eq!((settled.batch.as_str(), settled.memo.settle), ("000002", Some(totals)));
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// Faults, each at rate 1.0

fn faults(f: impl FnOnce(&mut Faults)) -> Faults {
    let mut faults = Faults::NONE;
    f(&mut faults);
    faults
}

#[tokio::test]
async fn corrupt_check_is_naked_and_the_resend_gets_through() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.corrupt_check = 1.0)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-CORRUPT")).await.code, ResponseCode::APPROVED);
    let link = ecr.m.stats().link;
    assert!(link.broken_frames >= 1 && link.naks_sent >= 1, "{link:?}");
    let counters = sim.counters(0).unwrap();
    assert_eq!(counters.faults.corrupt_check, 1);
    assert!(counters.link.naks_received >= 1 && counters.link.resends >= 1, "{counters:?}");
    assert!(counters.resends_seen >= 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn swallowed_ack_makes_the_ecr_resend_and_the_duplicate_is_suppressed() {
    let (sim, mut ecr) = signed_in_with(TerminalSimConfig::default(), resending_ecr_config()).await;
    sim.set_faults(0, faults(|f| f.swallow_ack = 1.0)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-SWALLOW")).await.code, ResponseCode::APPROVED);
    assert!(ecr.m.stats().link.resends >= 1);
    assert_eq!(ecr.m.stats().stale_responses, 0, "answered once");
    let counters = sim.counters(0).unwrap();
    assert_eq!(counters.faults.swallow_ack, 1);
    assert!(counters.link.duplicates_suppressed >= 1);
    assert_eq!(counters.engine.requests.sale, 1, "processed once");
    // Every frame received was ACKed but the swallowed one, which is not counted as sent.
    assert_eq!(counters.link.acks_sent + 1, counters.link.frames_received, "{counters:?}");
    sim.shutdown().await;
}

#[tokio::test]
async fn swallow_ack_takes_the_request_frame_ack_not_an_enq_ack() {
    let sim =
        start(TerminalSimConfig { faults: faults(|f| f.swallow_ack = 1.0), ..TerminalSimConfig::default() }).await;
    let mut raw = raw(&sim, 0).await;
    let frame = encode_frame(&data(status(), 100), Check::Lrc).unwrap();
    // An ENQ and a request in one write: one ACK each is due, and only the frame's may go.
    raw.write_raw(&[&[ENQ][..], &frame].concat()).await;
    raw.until("the ENQ's ACK", |link| link.stats().stray_controls == 1).await;
    // The frame's ACK never comes; its resend is ACKed as a duplicate and then answered.
    raw.write_raw(&frame).await;
    let answer = Response::decode(&raw.delivered().await).unwrap();
    assert_eq!((answer.token.get(), answer.code), (100, ResponseCode::APPROVED));
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.faults.swallow_ack, counters.link.enqs_answered), (1, 1));
    assert_eq!((counters.link.frames_received, counters.link.duplicates_suppressed), (2, 1));
    // The ENQ's and the duplicate's ACKs went out; the swallowed one is not counted.
    assert_eq!(counters.link.acks_sent, 2);
    assert_eq!(raw.m.stats().stray_controls, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn never_answered_sale_is_unknown_and_query_says_25() {
    let (sim, mut ecr) = signed_in_with(TerminalSimConfig::default(), impatient_ecr_config(200)).await;
    sim.set_faults(0, faults(|f| f.never_answer = 1.0)).unwrap();
    match ecr.exchange(sale(28_000, "P-NEVER")).await {
        EcrEvent::OutcomeUnknown { reason: FailureReason::ResponseTimeout { .. }, .. } => {}
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    sim.set_faults(0, Faults::NONE).unwrap();
    assert_eq!(ecr.answered(query("P-NEVER")).await.code, ResponseCode::NOT_FOUND);
    assert!(ecr.m.unknown_references().is_empty());
    assert_eq!(sim.counters(0).unwrap().faults.never_answer, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn approve_then_drop_moves_money_the_ecr_never_heard_of() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.approve_drop = 1.0)).unwrap();
    match ecr.exchange(sale(28_000, "P-DROP")).await {
        EcrEvent::OutcomeUnknown { reason: FailureReason::ConnectionLost, .. } => {}
        other => panic!("expected the connection to drop, got {other:?}"),
    }
    assert!(!ecr.connected());
    sim.set_faults(0, Faults::NONE).unwrap();
    reconnect(&sim, 0, &mut ecr).await;
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    assert_found(&ecr.answered(query("P-DROP")).await, QueryState::Approved);
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.faults.approve_drop, counters.engine.sales_approved), (1, 1));
    sim.shutdown().await;
}

#[tokio::test]
async fn power_loss_stores_nothing_and_needs_sign_in_again() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.power_loss = 1.0)).unwrap();
    match ecr.exchange(sale(28_000, "P-POWER")).await {
        EcrEvent::OutcomeUnknown { reason: FailureReason::ConnectionLost, .. } => {}
        other => panic!("expected the connection to drop, got {other:?}"),
    }
    sim.set_faults(0, Faults::NONE).unwrap();
    reconnect(&sim, 0, &mut ecr).await;
    assert_eq!(ecr.answered(query("P-POWER")).await.code, ResponseCode::NOT_SIGNED_IN);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    assert_eq!(ecr.answered(query("P-POWER")).await.code, ResponseCode::NOT_FOUND);
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.faults.power_loss, counters.engine.requests.sale), (1, 0));
    sim.shutdown().await;
}

#[tokio::test]
async fn delayed_response_is_stored_before_it_is_sent() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.delay_ms = 100)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-DELAY1")).await.code, ResponseCode::APPROVED);
    assert_eq!(sim.counters(0).unwrap().faults.delay, 1);

    // A delay no ECR waits out: unknown at the ECR (its timeout is what is under test), stored at the
    // terminal. A second connection with a short money timeout replaces the first.
    sim.set_faults(0, faults(|f| f.delay_ms = MAX_DELAY_MS)).unwrap();
    let mut impatient = connect_with(&sim, 0, impatient_ecr_config(300)).await;
    match impatient.exchange(sale(28_000, "P-DELAY2")).await {
        EcrEvent::OutcomeUnknown { reason: FailureReason::ResponseTimeout { .. }, .. } => {}
        other => panic!("expected a response timeout, got {other:?}"),
    }
    // Ending the delay releases the waiting response: it arrives stale; then QUERY settles the outcome.
    sim.set_faults(0, Faults::NONE).unwrap();
    impatient.until_stale().await;
    assert_found(&impatient.answered(query("P-DELAY2")).await, QueryState::Approved);
    assert!(impatient.m.unknown_references().is_empty());
    assert_eq!(sim.counters(0).unwrap().faults.delay, 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn noise_between_frames_is_skipped() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.noise = 1.0)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-NOISE")).await.code, ResponseCode::APPROVED);
    assert!(ecr.m.stats().link.noise_bytes > 0);
    assert_eq!(sim.counters(0).unwrap().faults.noise, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_response_is_acked_and_suppressed() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.duplicate = 1.0)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-DUP")).await.code, ResponseCode::APPROVED);
    sim.set_faults(0, Faults::NONE).unwrap();
    // The copy goes out as soon as the ACK arrives, ahead of this exchange's answer.
    assert_eq!(ecr.answered(status()).await.code, ResponseCode::APPROVED);
    assert!(ecr.m.stats().link.duplicates >= 1);
    assert_eq!(ecr.m.stats().stale_responses, 0);
    assert_eq!(sim.counters(0).unwrap().faults.duplicate, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_from_the_config_with_a_seed() {
    let cfg = TerminalSimConfig { seed: 42, faults: faults(|f| f.noise = 1.0), ..TerminalSimConfig::default() };
    let (sim, mut ecr) = signed_in(cfg).await;
    assert!(ecr.m.stats().link.noise_bytes > 0);
    assert!(sim.set_faults(0, faults(|f| f.noise = 2.0)).is_err());
    assert!(sim.set_faults(1, Faults::NONE).is_err());
    assert_eq!(ecr.answered(status()).await.code, ResponseCode::APPROVED);
    sim.shutdown().await;
}

/// The fault counts of 50 sales on a terminal with `seed` and `faults`.
async fn fault_counts(seed: u64, faults: Faults) -> FaultCounters {
    let cfg = TerminalSimConfig { seed, faults, ..TerminalSimConfig::default() };
    let (sim, mut ecr) = signed_in_with(cfg, resending_ecr_config()).await;
    for i in 0..50 {
        assert_eq!(ecr.answered(sale(28_000, &format!("P-SEED-{i}"))).await.code, ResponseCode::APPROVED);
    }
    let counts = sim.counters(0).unwrap().faults;
    sim.shutdown().await;
    counts
}

#[tokio::test]
async fn fault_draws_repeat_with_the_seed_and_each_kind_keeps_its_own() {
    // The duplicate fault is left at 0 (it is still drawn): its extra ACKs can be taken for the ACK of
    // the next response, whose corrupted first send would then never be resent. Swallowed ACKs cost an
    // ECR resend each, hence their lower rate.
    let rates = faults(|f| {
        f.corrupt_check = 0.3;
        f.swallow_ack = 0.1;
        f.noise = 0.3;
    });
    let quiet = Faults { noise: 0.0, ..rates };
    let (first, again, other_seed, without_noise) =
        tokio::join!(fault_counts(7, rates), fault_counts(7, rates), fault_counts(8, rates), fault_counts(7, quiet),);
    assert_eq!(first, again);
    assert!(first.corrupt_check > 0 && first.swallow_ack > 0 && first.noise > 0, "{first:?}");
    assert_ne!(first, other_seed);
    // Another kind's rate does not move these: each kind draws from its own stream, once per occasion.
    assert_eq!((without_noise.noise, without_noise.corrupt_check), (0, first.corrupt_check));
    assert_eq!(without_noise.swallow_ack, first.swallow_ack);
}

#[tokio::test]
async fn drawn_declines_from_the_config() {
    let cfg = TerminalSimConfig { decline_rates: vec![(code("51"), 1.0)], ..TerminalSimConfig::default() };
    let (sim, mut ecr) = signed_in(cfg).await;
    assert_eq!(ecr.answered(sale(28_000, "P-DRAWN")).await.code, code("51"));
    sim.set_decline_rates(0, Vec::new()).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-DRAWN")).await.code, ResponseCode::APPROVED);
    assert!(sim.set_decline_rates(0, vec![(code("00"), 0.5)]).is_err());
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// State, many terminals, serial

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminal.json");
    let cfg = TerminalSimConfig { state: Some(path.clone()), ..TerminalSimConfig::default() };
    let (sim, mut ecr) = signed_in(cfg.clone()).await;
    assert_eq!(ecr.answered(sale(28_000, "P-FLASH")).await.code, ResponseCode::APPROVED);
    sim.shutdown().await;
    assert!(path.exists());

    let sim = start(cfg).await;
    let mut ecr = connect(&sim, 0).await;
    assert_eq!(ecr.answered(query("P-FLASH")).await.code, ResponseCode::NOT_SIGNED_IN);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    assert_found(&ecr.answered(query("P-FLASH")).await, QueryState::Approved);
    assert_eq!(ecr.answered(sale(28_000, "P-FLASH")).await.code, code("94"));
    assert_eq!(sim.counters(0).unwrap().state_save_errors, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn three_terminals_are_independent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.json");
    let cfg = TerminalSimConfig { terminals: 3, state: Some(path.clone()), ..TerminalSimConfig::default() };
    let sim = start(cfg).await;
    assert_eq!(sim.addrs().len(), 3);
    let mut ecrs = Vec::new();
    for i in 0..3 {
        let mut ecr = connect(&sim, i).await;
        let signed = ecr.answered(sign_in()).await;
        assert_eq!(signed.terminal.as_str(), format!("4100000{}", i + 1));
        ecrs.push(ecr);
    }
    assert_eq!(ecrs[1].answered(sale(28_000, "P-ONE")).await.code, ResponseCode::APPROVED);
    assert_found(&ecrs[1].answered(query("P-ONE")).await, QueryState::Approved);
    assert_eq!(ecrs[0].answered(query("P-ONE")).await.code, ResponseCode::NOT_FOUND);
    assert_eq!(ecrs[2].answered(query("P-ONE")).await.code, ResponseCode::NOT_FOUND);
    assert_eq!(sim.counters(1).unwrap().engine.sales_approved, 1);
    assert_eq!(sim.counters(2).unwrap().engine.sales_approved, 0);
    sim.shutdown().await;
    assert!(dir.path().join("t.json.1").exists());
}

#[tokio::test]
async fn serial_over_a_real_pseudo_terminal() {
    use tokio_serial::SerialPortBuilderExt;
    let cfg = TerminalSimConfig { transport: Transport::Pty, ..TerminalSimConfig::default() };
    let sim = start(cfg).await;
    let path = sim.pty_path().unwrap().to_str().unwrap().to_owned();
    let port = tokio_serial::new(&path, 9600).open_native_async().unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), port);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    assert_eq!(ecr.answered(sale(28_000, "P-SERIAL")).await.code, ResponseCode::APPROVED);
    // The ACK of the response goes out before the device is closed.
    ecr.flush().await;
    drop(ecr);

    // The daemon closes the device and opens it again: the line still works.
    let port = tokio_serial::new(&path, 9600).open_native_async().unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), port);
    assert_found(&ecr.answered(query("P-SERIAL")).await, QueryState::Approved);
    assert_eq!(ecr.m.stats().stale_responses, 0);
    sim.shutdown().await;
}

/// Names the device [`hold_device_until_killed`] opens.
const HOLD_DEVICE: &str = "ZHENGJIAO_SIM_TEST_HOLD_DEVICE";
/// What [`hold_device_until_killed`] prints once it holds the device.
const HELD: &str = "device held";

/// Not a test of its own: the daemon of `a_killed_ecr_does_not_lock_the_serial_device`, run in a child
/// process. With `HOLD_DEVICE` set it opens that device as a daemon does (serialport's default,
/// exclusive), says so and waits to be killed; without, it does nothing.
#[test]
fn hold_device_until_killed() {
    let Ok(path) = std::env::var(HOLD_DEVICE) else { return };
    let port = serialport::new(&path, 9600).open_native().unwrap();
    assert!(port.exclusive());
    let mut out = std::io::stdout();
    writeln!(out, "{HELD}").unwrap();
    out.flush().unwrap();
    // Blocks until the parent kills this process (or, should the parent die first, closes stdin).
    let _ = std::io::stdin().read_line(&mut String::new());
    drop(port);
}

/// True when this process runs as root (files it creates belong to uid 0).
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    tempfile::tempfile().unwrap().metadata().unwrap().uid() == 0
}

/// Whether an unprivileged process can open the device. Root opens a device in exclusive mode anyway
/// (`TIOCEXCL` binds only processes without CAP_SYS_ADMIN), so as root the device is made world
/// read-write and the opening is left to `sh` running as `nobody`.
fn unprivileged_open(path: &str) -> Result<(), String> {
    if !running_as_root() {
        return serialport::new(path, 9600).open_native().map(drop).map_err(|e| e.to_string());
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = Command::new("sh")
        .args(["-c", "exec 3<>\"$0\"", path])
        .uid(65534)
        .gid(65534)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

#[tokio::test]
async fn a_killed_ecr_does_not_lock_the_serial_device() {
    let sim = start(TerminalSimConfig { transport: Transport::Pty, ..TerminalSimConfig::default() }).await;
    let path = sim.pty_path().unwrap().to_str().unwrap().to_owned();
    let mut daemon = Child(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "hold_device_until_killed", "--nocapture", "--test-threads", "1"])
            .env(HOLD_DEVICE, &path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = daemon.0.stdout.take().unwrap();
    // libtest has written "test hold_device_until_killed ... " on the same line before.
    let held = tokio::task::spawn_blocking(move || BufReader::new(stdout).lines().any(|l| l.unwrap().ends_with(HELD)));
    assert!(tokio::time::timeout(LIMIT, held).await.unwrap().unwrap(), "the daemon never held the device");

    // Killed: no destructor runs, so nothing clears the exclusive mode its open set.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    tokio::time::timeout(LIMIT, sim.serial_unlocked(0)).await.unwrap().unwrap();
    if let Err(error) = unprivileged_open(&path) {
        panic!("the device stays locked after its holder was killed: {error}");
    }
    assert!(sim.counters(0).unwrap().serial_unlocks >= 1);

    // And the daemon's next (exclusive) open works and is served.
    use tokio_serial::SerialPortBuilderExt;
    let port = tokio_serial::new(&path, 9600).open_native_async().unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), port);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    sim.shutdown().await;
}

#[tokio::test]
async fn power_loss_over_serial_keeps_the_line_and_resets_the_link() {
    use tokio_serial::SerialPortBuilderExt;
    let cfg = TerminalSimConfig { transport: Transport::Pty, ..TerminalSimConfig::default() };
    let sim = start(cfg).await;
    let port = tokio_serial::new(sim.pty_path().unwrap().to_str().unwrap(), 9600).open_native_async().unwrap();
    let mut ecr = Driver::ecr(impatient_ecr_config(300), port);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    sim.set_faults(0, faults(|f| f.power_loss = 1.0)).unwrap();
    assert!(matches!(ecr.exchange(sale(28_000, "P-SPOWER")).await, EcrEvent::OutcomeUnknown { .. }));
    sim.set_faults(0, Faults::NONE).unwrap();
    assert_eq!(ecr.answered(query("P-SPOWER")).await.code, ResponseCode::NOT_SIGNED_IN);
    sim.shutdown().await;
}

// ---------------------------------------------------------------------------------------------------
// Control endpoint and binary

#[tokio::test]
async fn control_endpoint_queues_outcomes_patches_faults_and_reports_counters() {
    let (mut sim, mut ecr) = signed_in(TerminalSimConfig { terminals: 2, ..TerminalSimConfig::default() }).await;
    let control = sim.serve_control("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{control}");

    let listed: serde_json::Value = http.get(format!("{base}/terminals")).send().await.unwrap().json().await.unwrap();
    assert_eq!(
        listed,
        serde_json::json!([
            {"index": 0, "terminal": "41000001", "endpoint": sim.addrs()[0].to_string()},
            {"index": 1, "terminal": "41000002", "endpoint": sim.addrs()[1].to_string()},
        ])
    );

    let queued = http
        .post(format!("{base}/terminals/0/next-sale"))
        .json(&serde_json::json!({"code": "51"}))
        .send()
        .await
        .unwrap();
    assert_eq!(queued.status(), 204);
    assert_eq!(ecr.answered(sale(28_000, "P-HTTP")).await.code, code("51"));

    let counters: serde_json::Value =
        http.get(format!("{base}/terminals/0/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counters["engine"]["sales_declined"], 1);
    assert_eq!(counters["requests"], 2);
    assert_eq!(counters["engine"]["sign_ins"], 1);

    // A patch: the fields given change, the others stay.
    let post = |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send();
    let set = post("/terminals/0/faults", serde_json::json!({"noise": 1.0})).await.unwrap();
    assert_eq!(set.status(), 200);
    let set = post("/terminals/0/faults", serde_json::json!({"delay_ms": 5})).await.unwrap();
    let now: Faults = set.json().await.unwrap();
    assert_eq!(now, Faults { noise: 1.0, delay_ms: 5, ..Faults::NONE });
    assert_eq!(sim.faults(0).unwrap(), now);

    let all = post("/faults", serde_json::json!({"duplicate": 0.5})).await.unwrap();
    assert_eq!(all.status(), 200);
    let all: Vec<Faults> = all.json().await.unwrap();
    assert_eq!(all, vec![Faults { duplicate: 0.5, ..now }, Faults { duplicate: 0.5, ..Faults::NONE }]);
    assert_eq!(sim.faults(1).unwrap().duplicate, 0.5);

    // A bad value changes nothing, on one terminal or all.
    assert_eq!(post("/terminals/0/faults", serde_json::json!({"noise": 3})).await.unwrap().status(), 400);
    assert_eq!(post("/faults", serde_json::json!({"noise": 0.1, "power_loss": 2})).await.unwrap().status(), 400);
    let unknown = post("/faults", serde_json::json!({"nosie": 0.1})).await.unwrap();
    assert_eq!(unknown.status(), 400);
    let unknown: serde_json::Value = unknown.json().await.unwrap();
    assert!(unknown["error"].as_str().unwrap().contains("nosie"), "{unknown}");
    assert_eq!(sim.faults(0).unwrap(), Faults { duplicate: 0.5, ..now });
    assert_eq!(sim.faults(1).unwrap(), Faults { duplicate: 0.5, ..Faults::NONE });
    let patch = FaultsPatch { noise: Some(0.2), ..FaultsPatch::default() };
    assert_eq!(sim.patch_faults(1, &patch).unwrap().noise, 0.2);

    let missing = http.get(format!("{base}/terminals/7/counters")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad_code = post("/terminals/0/next-sale", serde_json::json!({"code": "5"})).await.unwrap();
    assert_eq!(bad_code.status(), 400);
    sim.shutdown().await;
}

/// An approval of another amount, queued over HTTP and in-process: the sale is answered, stored, queried
/// and settled with that amount; a bad amount, or an amount with a code other than `00`, queues nothing.
#[tokio::test]
async fn an_approval_of_another_amount_is_queued_over_http_and_in_process() {
    let (mut sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    let control = sim.serve_control("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{control}");
    let post = |path: &str, body: serde_json::Value| http.post(format!("{base}{path}")).json(&body).send();

    for bad in [
        serde_json::json!({"code": "51", "amount_fen": 28_100}),
        serde_json::json!({"code": "T1", "amount_fen": 28_100}),
        serde_json::json!({"code": "00", "amount_fen": 0}),
        serde_json::json!({"code": "00", "amount_fen": 1_000_000_000_000_u64}),
        serde_json::json!({"code": "00", "amount_fen": -1}),
        serde_json::json!({"code": "00", "amount_fen": "281.00"}),
    ] {
        let answer = post("/terminals/0/next-sale", bad.clone()).await.unwrap();
        assert_eq!(answer.status(), 400, "{bad}");
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{bad}: {body}");
    }
    let missing = post("/terminals/7/next-sale", serde_json::json!({"code": "00", "amount_fen": 100})).await.unwrap();
    assert_eq!(missing.status(), 404);
    // Nothing was queued: the amount asked.
    let plain = ecr.answered(sale(28_000, "P-AMT-0")).await;
    assert_eq!((plain.code, plain.amount.fen()), (ResponseCode::APPROVED, 28_000));

    let queued = post("/terminals/0/next-sale", serde_json::json!({"code": "00", "amount_fen": 28_100})).await.unwrap();
    assert_eq!(queued.status(), 204);
    let wrong = ecr.answered(sale(28_000, "P-AMT-1")).await;
    assert_eq!((wrong.code, wrong.amount.fen()), (ResponseCode::APPROVED, 28_100), "{wrong:?}");
    assert_eq!(wrong.memo.reference.unwrap().as_str(), "P-AMT-1");
    let found = ecr.answered(query("P-AMT-1")).await;
    assert_found(&found, QueryState::Approved);
    assert_eq!((found.amount.fen(), found.trace), (28_100, wrong.trace));

    // In-process, the same.
    assert_eq!(sim.queue_approval_of(0, 0), Err(ControlError::ApprovalAmount(0)));
    assert!(matches!(sim.queue_approval_of(3, 100), Err(ControlError::NoSuchTerminal { index: 3, count: 1 })));
    sim.queue_approval_of(0, 5_000).unwrap();
    let less = ecr.answered(sale(28_000, "P-AMT-2")).await;
    assert_eq!((less.code, less.amount.fen()), (ResponseCode::APPROVED, 5_000));

    let settled = ecr.answered(settle()).await;
    let totals = SettleTotals { sale_count: 3, sale_total: 28_000 + 28_100 + 5_000, ..SettleTotals::default() };
    assert_eq!(settled.memo.settle, Some(totals));
    let counters: serde_json::Value =
        http.get(format!("{base}/terminals/0/counters")).send().await.unwrap().json().await.unwrap();
    assert_eq!(counters["engine"]["sales_approved"], 3, "{counters}");
    sim.shutdown().await;
}

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `zhengjiao-sim` with `args` and returns it with the first `lines` lines of its output.
async fn binary(args: &[&str], lines: usize) -> (Child, Vec<String>) {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_zhengjiao-sim"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let read = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout).lines().take(lines).collect::<Result<Vec<_>, _>>().unwrap()
    });
    let lines = tokio::time::timeout(LIMIT, read).await.unwrap().unwrap();
    (child, lines)
}

#[tokio::test]
async fn the_binary_prints_its_address_first_and_serves() {
    let (_child, lines) =
        binary(&["terminal", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--noise", "0"], 2).await;
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), tcp(lines[0].as_str()).await);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);

    let url = lines[1].strip_prefix("control ").unwrap();
    let counters: serde_json::Value =
        reqwest::get(format!("{url}/terminals/0/counters")).await.unwrap().json().await.unwrap();
    assert_eq!(counters["engine"]["sign_ins"], 1);
}

#[tokio::test]
async fn the_binary_prints_one_address_per_terminal() {
    let (_child, lines) = binary(&["terminal", "--terminals", "2"], 2).await;
    let addrs: Vec<std::net::SocketAddr> = lines.iter().map(|line| line.parse().unwrap()).collect();
    assert_ne!(addrs[0], addrs[1]);
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), tcp(addrs[1]).await);
    assert_eq!(ecr.answered(sign_in()).await.terminal.as_str(), "41000002");
}

#[tokio::test]
async fn the_binary_over_a_pty_prints_the_device_first() {
    use tokio_serial::SerialPortBuilderExt;
    let (_child, lines) = binary(&["terminal", "--pty"], 1).await;
    let port = tokio_serial::new(&lines[0], 9600).open_native_async().unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), port);
    let signed = ecr.answered(sign_in()).await;
    assert_eq!((signed.code, signed.terminal.as_str()), (ResponseCode::APPROVED, "41000001"));
}

#[tokio::test]
async fn the_binary_refuses_bad_options() {
    for args in [
        &["terminal", "--noise", "2"][..],
        &["terminal", "--decline", "00=0.1"],
        &["terminal", "--check", "md5"],
        &["terminal", "--card-delay-ms", "600001"],
        &["terminal", "--delay-ms", "600001"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_zhengjiao-sim")).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

#[tokio::test]
async fn a_card_delay_above_the_limit_is_refused() {
    let cfg = TerminalSimConfig { card_delay: Duration::from_secs(601), ..TerminalSimConfig::default() };
    assert!(TerminalSim::start(cfg).await.is_err());
    let sim = start(TerminalSimConfig::default()).await;
    assert!(sim.set_card_delay(0, Duration::from_secs(601)).is_err());
    assert!(sim.set_card_delay(3, Duration::ZERO).is_err());
    sim.shutdown().await;
}

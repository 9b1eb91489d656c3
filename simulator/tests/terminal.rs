//! The terminal simulator end to end: the protocol crate's `Ecr` (and a bare `Link`) act as the daemon
//! over real TCP sockets and a real pseudo-terminal, against terminals started in-process on port 0 and
//! the `zhengjiao-sim` binary. Waits are on readiness and events, each bounded; no test asserts on
//! wall-clock time.
// Tests unwrap values they built themselves; a failure there is a broken test, reported by the panic.
#![allow(clippy::unwrap_used)]

#[path = "terminal/driver.rs"]
mod driver;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::net::TcpStream;
use zhengjiao_protocol::frame::{Check, FrameConfig};
use zhengjiao_protocol::link::{EcrConfig, EcrEvent, FailureReason, Link, LinkConfig, LinkEvent, ResponseTimeouts};
use zhengjiao_protocol::memo::{Memo, QueryState};
use zhengjiao_protocol::message::{Amount, MessageType, Request, RequestBody, Response, ResponseCode, Token};
use zhengjiao_protocol::Ascii;
use zhengjiao_simulator::terminal::{Faults, TerminalSim, TerminalSimConfig, TerminalSimHandle, Transport};

use driver::{Driver, LIMIT};

type Tcp = Driver<zhengjiao_protocol::link::Ecr, TcpStream>;

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

fn query(reference: &str) -> Request {
    request(RequestBody::Query, Some(reference))
}

fn sign_in() -> Request {
    request(RequestBody::SignIn, None)
}

fn status() -> Request {
    request(RequestBody::Status, None)
}

/// Short timers so failures and resends happen within a test's second or two.
fn ecr_config(check: Check) -> EcrConfig {
    let t = Duration::from_secs(5);
    EcrConfig {
        link: LinkConfig { frame: FrameConfig::new(check), t_ack: Duration::from_millis(200), ..LinkConfig::default() },
        timeouts: ResponseTimeouts { money: t, settle: t, sign_in: t, query: t, status: t },
        first_token: Token::MIN,
    }
}

async fn start(cfg: TerminalSimConfig) -> TerminalSimHandle {
    TerminalSim::start(cfg).await.unwrap()
}

async fn connect(sim: &TerminalSimHandle, index: usize) -> Tcp {
    Driver::ecr(ecr_config(Check::Lrc), TcpStream::connect(sim.addrs()[index]).await.unwrap())
}

async fn reconnect(sim: &TerminalSimHandle, index: usize, ecr: &mut Tcp) {
    ecr.reconnect(TcpStream::connect(sim.addrs()[index]).await.unwrap());
}

/// A terminal on TCP, signed in, with its ECR.
async fn signed_in(cfg: TerminalSimConfig) -> (TerminalSimHandle, Tcp) {
    signed_in_with(cfg, ecr_config(Check::Lrc)).await
}

/// The same with an ECR of the given settings.
async fn signed_in_with(cfg: TerminalSimConfig, ecr_cfg: EcrConfig) -> (TerminalSimHandle, Tcp) {
    let sim = start(cfg).await;
    let mut ecr = Driver::ecr(ecr_cfg, TcpStream::connect(sim.addrs()[0]).await.unwrap());
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);
    (sim, ecr)
}

fn assert_found(response: &Response, state: QueryState) {
    assert_eq!(response.code, ResponseCode::APPROVED, "{response:?}");
    assert_eq!(response.memo.query_state, Some(state), "{response:?}");
    assert_eq!(response.memo.query_type, Some(MessageType::Sale), "{response:?}");
}

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
    assert_eq!(counters.sales_approved, 1);
    assert_eq!(counters.requests, 3);
    assert_eq!(counters.engine.sign_ins, 1);
    assert_eq!(counters.connections, 1);
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
    let cfg = TerminalSimConfig { card_delay: Duration::from_millis(1500), ..TerminalSimConfig::default() };
    let sim = start(cfg).await;
    let stream = TcpStream::connect(sim.addrs()[0]).await.unwrap();
    let mut raw = Driver::over(Link::new(LinkConfig::default()), stream);
    let mut signing = sign_in();
    signing.token = Token::new(100).unwrap();
    raw.send_acked(&signing.encode().unwrap()).await;
    assert_eq!(Response::decode(&raw.delivered().await).unwrap().code, ResponseCode::APPROVED);

    let mut sold = sale(28_000, "P-BUSY");
    sold.token = Token::new(101).unwrap();
    raw.send_acked(&sold.encode().unwrap()).await;
    // The card wait has begun.
    let mut asking = status();
    asking.token = Token::new(102).unwrap();
    raw.send_acked(&asking.encode().unwrap()).await;

    let busy = Response::decode(&raw.delivered().await).unwrap();
    assert_eq!((busy.token.get(), busy.code), (102, ResponseCode::BUSY));
    let done = Response::decode(&raw.delivered().await).unwrap();
    assert_eq!((done.token.get(), done.code), (101, ResponseCode::APPROVED));
    let counters = sim.counters(0).unwrap();
    assert_eq!(counters.busy, 1);
    assert_eq!(counters.sales_approved, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn outcomes_by_amount_and_by_the_control_queue() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    assert_eq!(ecr.answered(sale(10_051, "P-51")).await.code, code("51"));
    assert_eq!(ecr.answered(sale(10_097, "P-T1")).await.code, ResponseCode::CANCELLED);
    let declined = ecr.answered(query("P-51")).await;
    assert_eq!(declined.memo.query_state, Some(QueryState::Declined));

    sim.queue_outcome(0, code("05")).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-Q1")).await.code, code("05"));
    assert_eq!(ecr.answered(sale(28_000, "P-Q2")).await.code, ResponseCode::APPROVED);
    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.sales_approved, counters.sales_declined), (1, 3));
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_requests_get_t5_and_garbage_is_noise() {
    let sim = start(TerminalSimConfig::default()).await;
    let stream = TcpStream::connect(sim.addrs()[0]).await.unwrap();
    let mut raw = Driver::over(Link::new(LinkConfig::default()), stream);
    raw.write_raw(b"garbage \xff\xfe bytes").await;

    let mut data = sale(28_000, "P-T5").encode().unwrap();
    // The amount field (bytes 21..33) with a letter in it.
    data[25] = b'x';
    raw.send_acked(&data).await;
    let answer = Response::decode(&raw.delivered().await).unwrap();
    assert_eq!(answer.code, ResponseCode::MALFORMED);
    assert_eq!(answer.token, Token::MIN);

    // Not even a token: nothing to answer, and the terminal carries on.
    raw.send_acked(b"xyz").await;
    let mut asking = status();
    asking.token = Token::new(555).unwrap();
    raw.send_acked(&asking.encode().unwrap()).await;
    let answer = Response::decode(&raw.delivered().await).unwrap();
    assert_eq!((answer.token.get(), answer.code), (555, ResponseCode::APPROVED));

    let counters = sim.counters(0).unwrap();
    assert_eq!((counters.malformed, counters.unanswerable), (1, 1));
    assert_eq!(counters.engine.malformed, 2);
    assert!(counters.link.noise_bytes > 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn enq_is_answered_when_idle() {
    let sim = start(TerminalSimConfig::default()).await;
    let stream = TcpStream::connect(sim.addrs()[0]).await.unwrap();
    let mut raw = Driver::over(Link::new(LinkConfig::default()), stream);
    raw.m.send_probe(tokio::time::Instant::now().into_std()).unwrap();
    assert_eq!(raw.link_event().await, LinkEvent::ProbeAnswered);
    sim.shutdown().await;
}

#[tokio::test]
async fn crc16_dialect() {
    let cfg = TerminalSimConfig {
        link: LinkConfig { frame: FrameConfig::new(Check::Crc16), ..LinkConfig::default() },
        ..TerminalSimConfig::default()
    };
    let sim = start(cfg).await;
    let stream = TcpStream::connect(sim.addrs()[0]).await.unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Crc16), stream);
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
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.swallow_ack = 1.0)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-SWALLOW")).await.code, ResponseCode::APPROVED);
    assert!(ecr.m.stats().link.resends >= 1);
    assert_eq!(ecr.m.stats().stale_responses, 0, "answered once");
    let counters = sim.counters(0).unwrap();
    assert_eq!(counters.faults.swallow_ack, 1);
    assert!(counters.link.duplicates_suppressed >= 1);
    assert_eq!(counters.engine.requests.sale, 1, "processed once");
    sim.shutdown().await;
}

#[tokio::test]
async fn never_answered_sale_is_unknown_and_query_says_25() {
    let mut cfg = ecr_config(Check::Lrc);
    cfg.timeouts.money = Duration::from_millis(200);
    let (sim, mut ecr) = signed_in_with(TerminalSimConfig::default(), cfg).await;
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
    assert_eq!((counters.faults.approve_drop, counters.sales_approved), (1, 1));
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
    let mut cfg = ecr_config(Check::Lrc);
    cfg.timeouts.money = Duration::from_millis(300);
    let (sim, mut ecr) = signed_in_with(TerminalSimConfig::default(), cfg).await;
    sim.set_faults(0, faults(|f| f.delay_ms = 100)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-DELAY1")).await.code, ResponseCode::APPROVED);
    assert_eq!(sim.counters(0).unwrap().faults.delay, 1);

    // A delay beyond the ECR's response timeout: unknown at the ECR, stored at the terminal.
    sim.set_faults(0, faults(|f| f.delay_ms = 800)).unwrap();
    assert!(matches!(ecr.exchange(sale(28_000, "P-DELAY2")).await, EcrEvent::OutcomeUnknown { .. }));
    sim.set_faults(0, Faults::NONE).unwrap();
    // The late answer arrives stale; then the QUERY settles the outcome.
    ecr.until_stale().await;
    assert_found(&ecr.answered(query("P-DELAY2")).await, QueryState::Approved);
    assert!(ecr.m.unknown_references().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn noise_between_frames_is_skipped() {
    let (sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    sim.set_faults(0, faults(|f| f.noise = 1.0)).unwrap();
    assert_eq!(ecr.answered(sale(28_000, "P-NOISE")).await.code, ResponseCode::APPROVED);
    assert!(ecr.m.stats().link.noise_bytes > 0);
    assert!(sim.counters(0).unwrap().faults.noise >= 1);
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
    assert_eq!(sim.counters(1).unwrap().sales_approved, 1);
    assert_eq!(sim.counters(2).unwrap().sales_approved, 0);
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
    drop(ecr);

    // The daemon closes the device and opens it again: the line still works.
    let port = tokio_serial::new(&path, 9600).open_native_async().unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), port);
    assert_found(&ecr.answered(query("P-SERIAL")).await, QueryState::Approved);
    sim.shutdown().await;
}

#[tokio::test]
async fn power_loss_over_serial_keeps_the_line_and_resets_the_link() {
    use tokio_serial::SerialPortBuilderExt;
    let cfg = TerminalSimConfig { transport: Transport::Pty, ..TerminalSimConfig::default() };
    let sim = start(cfg).await;
    let port = tokio_serial::new(sim.pty_path().unwrap().to_str().unwrap(), 9600).open_native_async().unwrap();
    let mut cfg = ecr_config(Check::Lrc);
    cfg.timeouts.money = Duration::from_millis(300);
    let mut ecr = Driver::ecr(cfg, port);
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
async fn control_endpoint_queues_outcomes_and_reports_counters() {
    let (mut sim, mut ecr) = signed_in(TerminalSimConfig::default()).await;
    let control = sim.serve_control("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let http = reqwest::Client::new();
    let base = format!("http://{control}");

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
    assert_eq!(counters["sales_declined"], 1);
    assert_eq!(counters["requests"], 2);
    assert_eq!(counters["engine"]["sign_ins"], 1);

    let set = http.post(format!("{base}/terminals/0/faults")).json(&serde_json::json!({"noise": 1.0})).send();
    assert_eq!(set.await.unwrap().status(), 204);
    assert_eq!(sim.faults(0).unwrap().noise, 1.0);
    let bad = http.post(format!("{base}/terminals/0/faults")).json(&serde_json::json!({"noise": 3})).send();
    assert_eq!(bad.await.unwrap().status(), 400);
    let missing = http.get(format!("{base}/terminals/7/counters")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad_code = http
        .post(format!("{base}/terminals/0/next-sale"))
        .json(&serde_json::json!({"code": "5"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_code.status(), 400);
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

#[tokio::test]
async fn the_binary_prints_its_address_first_and_serves() {
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_zhengjiao-sim"))
            .args(["terminal", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--noise", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        let addr = lines.next().unwrap().unwrap();
        let control = lines.next().unwrap().unwrap();
        (addr, control)
    });
    let (addr, control) = tokio::time::timeout(LIMIT, lines).await.unwrap().unwrap();
    let stream = TcpStream::connect(addr.as_str()).await.unwrap();
    let mut ecr = Driver::ecr(ecr_config(Check::Lrc), stream);
    assert_eq!(ecr.answered(sign_in()).await.code, ResponseCode::APPROVED);

    let url = control.strip_prefix("control ").unwrap();
    let counters: serde_json::Value =
        reqwest::get(format!("{url}/terminals/0/counters")).await.unwrap().json().await.unwrap();
    assert_eq!(counters["engine"]["sign_ins"], 1);
}

#[tokio::test]
async fn the_binary_refuses_bad_options() {
    for args in
        [&["terminal", "--noise", "2"][..], &["terminal", "--decline", "00=0.1"], &["terminal", "--check", "md5"]]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_zhengjiao-sim")).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
    }
}

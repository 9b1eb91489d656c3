//! The link state machine (wire-protocol.md §4) driven in memory: an `Ecr` and a minimal terminal built
//! on `Link`, a virtual clock, fault knobs on both directions, and `drive_bounded`, which fails a test
//! that never settles.

// clippy.toml allows unwrap in `#[test]` functions only; the harness helpers here are test code too.
#![allow(clippy::unwrap_used, reason = "test harness: a failed unwrap is a failed test")]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use zhengjiao_protocol::frame::{encode_frame, Check, ACK, DEFAULT_MAX_DATA_LEN, ENQ, NAK, STX};
use zhengjiao_protocol::link::{
    Ecr, EcrConfig, EcrEvent, FailureReason, Link, LinkConfig, LinkError, LinkEvent, StartError, UnknownSetFull,
    INPUT_PIECE, MAX_QUEUED_CONTROLS, MAX_QUEUED_EVENTS, MAX_UNKNOWN_REFERENCES,
};
use zhengjiao_protocol::{
    Amount, Ascii, Digits, EcrReference, Memo, MessageType, QueryState, Request, RequestBody, Response, ResponseCode,
    Token,
};

const MAX_STEPS: usize = 10_000;
const SEC: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------------------------------
// Messages

fn reference(r: &str) -> EcrReference {
    EcrReference::new(r).unwrap()
}

fn request(body: RequestBody, r: Option<&str>) -> Request {
    Request {
        token: Token::MIN,
        till: Ascii::new("DESK01").unwrap(),
        operator: Ascii::new("C0001").unwrap(),
        body,
        memo: r.map_or_else(Memo::new, |r| Memo::with_reference(reference(r))),
    }
}

fn sale(r: &str) -> Request {
    request(RequestBody::Sale { amount: Amount::from_fen(28_000).unwrap() }, Some(r))
}

fn query(r: &str) -> Request {
    request(RequestBody::Query, Some(r))
}

fn status() -> Request {
    request(RequestBody::Status, None)
}

/// Bytes of the frame carrying `req` (any token: all tokens have three digits).
fn frame_len(req: &Request) -> usize {
    Check::Lrc.frame_len(req.encode().unwrap().len())
}

fn answer(req: &Request, code: ResponseCode) -> Vec<u8> {
    Response::answering(req, code).encode().unwrap()
}

// ---------------------------------------------------------------------------------------------------
// The terminal peer: a `Link` plus `Request::decode` / `Response::encode`.

type Responder = Box<dyn FnMut(&Request) -> Vec<Vec<u8>>>;

fn answer_all(code: ResponseCode) -> Responder {
    Box::new(move |req| vec![answer(req, code)])
}

fn silent() -> Responder {
    Box::new(|_| Vec::new())
}

struct Terminal {
    link: Link,
    responder: Responder,
    /// How long the terminal takes to answer (card wait, host).
    delay: Duration,
    scheduled: VecDeque<(Instant, Vec<u8>)>,
    outbox: VecDeque<Vec<u8>>,
    requests: Vec<Request>,
    undecodable: usize,
}

impl Terminal {
    fn new(responder: Responder) -> Self {
        Terminal {
            link: Link::new(LinkConfig::default()),
            responder,
            delay: Duration::ZERO,
            scheduled: VecDeque::new(),
            outbox: VecDeque::new(),
            requests: Vec::new(),
            undecodable: 0,
        }
    }

    fn process(&mut self, now: Instant) {
        while let Some(event) = self.link.poll_event() {
            if let LinkEvent::Delivered(data) = event {
                match Request::decode(&data) {
                    Ok(req) => {
                        for frame in (self.responder)(&req) {
                            self.scheduled.push_back((now + self.delay, frame));
                        }
                        self.requests.push(req);
                    }
                    Err(_) => self.undecodable += 1,
                }
            }
        }
        while self.scheduled.front().is_some_and(|(at, _)| *at <= now) {
            let (_, frame) = self.scheduled.pop_front().unwrap();
            self.outbox.push_back(frame);
        }
        if !self.link.is_awaiting_ack() {
            if let Some(frame) = self.outbox.pop_front() {
                self.link.send_frame(now, &frame).unwrap();
            }
        }
        let idle = self.scheduled.is_empty() && self.outbox.is_empty() && !self.link.is_awaiting_ack();
        self.link.set_idle(idle);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [self.link.poll_timeout(), self.scheduled.front().map(|(at, _)| *at)].into_iter().flatten().min()
    }
}

// ---------------------------------------------------------------------------------------------------
// Fault knobs and the harness

/// Faults applied to what one side writes.
#[derive(Default)]
struct Faults {
    /// Drop the next N bytes.
    drop_bytes: usize,
    /// Flip a bit in the first DATA byte of the next frame.
    corrupt_next_frame: bool,
    /// Drop the next N ACK bytes.
    drop_acks: usize,
    /// Everything written, before faults.
    log: Vec<Vec<u8>>,
}

impl Faults {
    fn apply(&mut self, mut bytes: Vec<u8>) -> Vec<u8> {
        self.log.push(bytes.clone());
        let controls_only = bytes.iter().all(|b| [ACK, NAK, ENQ].contains(b));
        if controls_only && self.drop_acks > 0 {
            let mut left = self.drop_acks;
            bytes.retain(|&b| {
                let drop = b == ACK && left > 0;
                left -= usize::from(drop);
                !drop
            });
            self.drop_acks = left;
        }
        if self.corrupt_next_frame && bytes.first() == Some(&STX) && bytes.len() > 4 {
            bytes[3] ^= 0x01;
            self.corrupt_next_frame = false;
        }
        let n = self.drop_bytes.min(bytes.len());
        self.drop_bytes -= n;
        bytes.drain(..n);
        bytes
    }

    fn frames(&self) -> Vec<&Vec<u8>> {
        self.log.iter().filter(|b| b.first() == Some(&STX)).collect()
    }
}

struct Harness {
    t0: Instant,
    now: Instant,
    ecr: Ecr,
    term: Terminal,
    to_term: Faults,
    to_ecr: Faults,
    /// ECR events with the virtual time they surfaced at.
    events: Vec<(Duration, EcrEvent)>,
}

impl Harness {
    fn new(responder: Responder) -> Self {
        Harness::with_config(EcrConfig::default(), responder)
    }

    fn with_config(cfg: EcrConfig, responder: Responder) -> Self {
        let t0 = Instant::now();
        Harness {
            t0,
            now: t0,
            ecr: Ecr::new(cfg),
            term: Terminal::new(responder),
            to_term: Faults::default(),
            to_ecr: Faults::default(),
            events: Vec::new(),
        }
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn start(&mut self, req: Request) -> Token {
        self.ecr.start(self.now, req).unwrap()
    }

    /// Moves bytes both ways at the current instant until nothing moves.
    fn pump(&mut self) {
        for _ in 0..MAX_STEPS {
            let mut moved = false;
            while let Some(bytes) = self.ecr.poll_transmit() {
                moved = true;
                let bytes = self.to_term.apply(bytes);
                self.term.link.handle_input(self.now, &bytes);
            }
            self.term.process(self.now);
            while let Some(bytes) = self.term.link.poll_transmit() {
                moved = true;
                let bytes = self.to_ecr.apply(bytes);
                self.ecr.handle_input(self.now, &bytes);
            }
            while let Some(event) = self.ecr.poll_event() {
                self.events.push((self.now - self.t0, event));
            }
            if !moved {
                return;
            }
        }
        panic!("pump never settled after {MAX_STEPS} steps");
    }

    /// Pumps and advances the virtual clock from deadline to deadline until neither side has one.
    fn drive_bounded(&mut self) {
        self.drive_until(None);
    }

    /// As `drive_bounded`, but the clock stops at `limit`.
    fn drive_until(&mut self, limit: Option<Instant>) {
        for _ in 0..MAX_STEPS {
            self.pump();
            let next = [self.ecr.poll_timeout(), self.term.poll_timeout()].into_iter().flatten().min();
            let Some(next) = next else {
                return;
            };
            if let Some(limit) = limit.filter(|&l| next > l) {
                self.now = self.now.max(limit);
                return;
            }
            self.now = self.now.max(next);
            self.ecr.handle_timeout(self.now);
            self.term.link.handle_timeout(self.now);
            assert!(self.ecr.poll_timeout().is_none_or(|t| t > self.now), "ECR deadline not moved past now");
            assert!(self.term.link.poll_timeout().is_none_or(|t| t > self.now), "link deadline not moved past now");
            self.term.process(self.now);
        }
        panic!("drive never settled after {MAX_STEPS} steps");
    }

    fn take_events(&mut self) -> Vec<(Duration, EcrEvent)> {
        std::mem::take(&mut self.events)
    }
}

/// The single end-of-exchange event, with its time.
fn outcome(events: &[(Duration, EcrEvent)]) -> (Duration, &EcrEvent) {
    let ends: Vec<_> = events
        .iter()
        .filter(|(_, e)| {
            matches!(e, EcrEvent::Answered { .. } | EcrEvent::Failed { .. } | EcrEvent::OutcomeUnknown { .. })
        })
        .collect();
    assert_eq!(ends.len(), 1, "expected exactly one end of exchange, got {events:?}");
    (ends[0].0, &ends[0].1)
}

fn answered_code(event: &EcrEvent) -> ResponseCode {
    match event {
        EcrEvent::Answered { request, response } => {
            assert_eq!(request.token, response.token);
            response.code
        }
        other => panic!("expected Answered, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------
// Rules 1-3: ACK, NAK, resends, link lost

#[test]
fn nak_then_resend_succeeds() {
    let mut h = Harness::new(answer_all(ResponseCode::APPROVED));
    h.to_term.corrupt_next_frame = true;
    let token = h.start(sale("P1"));
    h.drive_bounded();
    let events = h.take_events();
    let (at, event) = outcome(&events);
    assert_eq!(answered_code(event), ResponseCode::APPROVED);
    // The NAK triggers the resend at once, without waiting for T_ack.
    assert_eq!(at, Duration::ZERO);
    let ecr = h.ecr.stats().link;
    assert_eq!((ecr.naks_received, ecr.resends, ecr.frames_sent), (1, 1, 1));
    let term = h.term.link.stats();
    assert_eq!((term.naks_sent, term.broken_frames, term.frames_delivered), (1, 1, 1));
    assert_eq!(h.term.requests.len(), 1);
    assert_eq!(h.term.requests[0].token, token);
    // The resend carries the identical bytes.
    let frames = h.to_term.frames();
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0], frames[1]);
    assert!(h.ecr.unknown_references().is_empty());
}

#[test]
fn lost_ack_resend_is_suppressed_as_duplicate() {
    let mut h = Harness::new(answer_all(ResponseCode::APPROVED));
    h.term.delay = 2 * SEC;
    h.to_ecr.drop_acks = 1;
    h.start(sale("P2"));
    h.drive_bounded();
    let events = h.take_events();
    let (at, event) = outcome(&events);
    assert_eq!(answered_code(event), ResponseCode::APPROVED);
    assert_eq!(at, 2 * SEC);
    let term = h.term.link.stats();
    assert_eq!(term.frames_received, 2);
    assert_eq!(term.frames_delivered, 1, "the resend must not be delivered again");
    assert_eq!(term.duplicates, 1);
    assert_eq!(h.term.requests.len(), 1);
    assert_eq!(h.ecr.stats().link.resends, 1);
}

#[test]
fn four_failed_sends_make_a_sale_unknown_until_queried() {
    let mut h = Harness::new(Box::new(|req: &Request| match req.message_type() {
        MessageType::Query => vec![answer(req, ResponseCode::NOT_FOUND)],
        _ => vec![answer(req, ResponseCode::APPROVED)],
    }));
    h.to_term.drop_bytes = usize::MAX;
    h.start(sale("P7"));
    h.drive_bounded();
    let events = h.take_events();
    let (at, event) = outcome(&events);
    assert!(
        matches!(event, EcrEvent::OutcomeUnknown { reason: FailureReason::LinkLost, request } if request.reference() == Some(&reference("P7"))),
        "{event:?}"
    );
    // Sends at 0, 1, 2 and 3 s; the fourth T_ack runs out at 4 s.
    assert_eq!(at, 4 * SEC);
    let frames = h.to_term.frames();
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| *f == frames[0]));
    assert_eq!(h.ecr.stats().link.resends, 3);
    assert_eq!(h.ecr.stats().outcomes_unknown, 1);
    assert_eq!(h.ecr.unknown_references(), [reference("P7")]);
    assert!(h.ecr.is_idle());

    // Rule 7: no other money request for that payment ...
    assert_eq!(h.ecr.start(h.now, sale("P7")), Err(StartError::OutcomeUnknown(reference("P7"))));
    let void = request(
        RequestBody::Void { amount: Amount::from_fen(28_000).unwrap(), orig_trace: Digits::new("000123").unwrap() },
        Some("P7"),
    );
    assert_eq!(h.ecr.start(h.now, void), Err(StartError::OutcomeUnknown(reference("P7"))));
    // ... but a QUERY, whose 25 proves it was not carried out.
    h.to_term.drop_bytes = 0;
    h.start(query("P7"));
    h.drive_bounded();
    let events = h.take_events();
    assert_eq!(answered_code(outcome(&events).1), ResponseCode::NOT_FOUND);
    assert!(h.ecr.unknown_references().is_empty());
    assert!(h.ecr.start(h.now, sale("P7")).is_ok());
}

#[test]
fn query_answers_that_settle_and_that_do_not() {
    let mut h = Harness::new(Box::new(|req: &Request| {
        let r = req.reference().unwrap().as_str().to_owned();
        let mut resp = Response::answering(req, ResponseCode::APPROVED);
        match r.as_str() {
            // 00 with 0F05: the stored result; settles.
            "A1" => resp.memo.query_state = Some(QueryState::Approved),
            // A stored decline echoed with its own code and 0F05 D: settles.
            "D1" => {
                resp.code = ResponseCode::new("51").unwrap();
                resp.memo.query_state = Some(QueryState::Declined);
            }
            // Another transaction's record: learns nothing about D2.
            "D2" => {
                resp.memo.query_state = Some(QueryState::Approved);
                resp.memo.reference = Some(reference("D3"));
            }
            // Terminal busy: learns nothing.
            "B1" => resp.code = ResponseCode::BUSY,
            // 00 without 0F05: learns nothing.
            _ => {}
        }
        vec![resp.encode().unwrap()]
    }));
    let all = ["A1", "D1", "D2", "B1", "C1"];
    for r in all {
        h.ecr.mark_unknown(reference(r)).unwrap();
    }
    for r in all {
        h.start(query(r));
        h.drive_bounded();
    }
    assert_eq!(h.ecr.unknown_references(), [reference("D2"), reference("B1"), reference("C1")]);
    assert_eq!(h.take_events().len(), all.len());
}

#[test]
fn an_ack_for_a_frame_not_yet_written_is_stray() {
    // The peer cannot have seen a frame the driver has not written: an ACK then answers nothing, and an
    // abort still withdraws the frame, so it never goes out after its exchange ended.
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    ecr.start(t0, sale("U1")).unwrap();
    ecr.handle_input(t0, &[0x06]);
    assert_eq!(ecr.stats().link.stray_controls, 1);
    ecr.abort();
    assert!(matches!(ecr.poll_event(), Some(EcrEvent::Failed { reason: FailureReason::Aborted, .. })));
    assert_eq!(ecr.poll_transmit(), None);
    assert!(ecr.unknown_references().is_empty());
}

#[test]
fn a_probe_cut_short_still_ends_with_an_event() {
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    ecr.send_probe(t0).unwrap();
    assert!(!ecr.is_idle());
    ecr.connection_lost();
    assert_eq!(ecr.poll_event(), Some(EcrEvent::ProbeLost));
    assert!(ecr.is_idle());
    ecr.send_probe(t0).unwrap();
    ecr.abort();
    assert_eq!(ecr.poll_event(), Some(EcrEvent::ProbeLost));
}

#[test]
fn link_lost_before_anything_was_written_is_a_plain_failure() {
    // The driver never wrote the frame (it was still queued) when the connection dropped: nothing can
    // have reached the terminal, so the outcome is known.
    let mut h = Harness::new(silent());
    h.start(sale("P9"));
    h.ecr.connection_lost();
    assert!(matches!(h.ecr.poll_event(), Some(EcrEvent::Failed { reason: FailureReason::ConnectionLost, .. })));
    assert!(h.ecr.unknown_references().is_empty());
    assert_eq!(h.ecr.poll_transmit(), None);

    // Written, then the connection dropped: unknown.
    h.start(sale("P9"));
    assert!(h.ecr.poll_transmit().is_some());
    h.ecr.connection_lost();
    assert!(matches!(h.ecr.poll_event(), Some(EcrEvent::OutcomeUnknown { reason: FailureReason::ConnectionLost, .. })));
    assert_eq!(h.ecr.unknown_references(), [reference("P9")]);
}

#[test]
fn link_lost_with_nothing_written_withdraws_the_frame() {
    // A driver that never writes: T_ack runs out four times over a frame still queued. The exchange
    // fails with nothing moved, so that frame must never go out afterwards.
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    ecr.start(t0, sale("W1")).unwrap();
    let mut now = t0;
    for _ in 0..4 {
        now = ecr.poll_timeout().unwrap();
        ecr.handle_timeout(now);
    }
    assert_eq!(now, t0 + 4 * SEC);
    assert!(matches!(ecr.poll_event(), Some(EcrEvent::Failed { reason: FailureReason::LinkLost, .. })));
    assert_eq!(ecr.poll_transmit(), None);
    assert!(ecr.unknown_references().is_empty());
}

#[test]
fn abort_withdraws_an_unwritten_request() {
    let mut h = Harness::new(answer_all(ResponseCode::APPROVED));
    h.start(sale("P10"));
    h.ecr.abort();
    assert!(matches!(h.ecr.poll_event(), Some(EcrEvent::Failed { reason: FailureReason::Aborted, .. })));
    // The frame must not go out after the owner was told nothing happened.
    assert_eq!(h.ecr.poll_transmit(), None);
    h.drive_bounded();
    assert!(h.term.requests.is_empty());
    assert!(h.ecr.is_idle());
}

// ---------------------------------------------------------------------------------------------------
// Rule 6: response timeouts

#[test]
fn sale_times_out_90_s_after_its_ack() {
    let mut h = Harness::new(silent());
    let req = sale("P3");
    // The first send is lost, so the ACK comes for the resend at 1 s: T_resp counts from there.
    h.to_term.drop_bytes = frame_len(&req);
    h.start(req);
    h.drive_until(Some(h.at(SEC)));
    assert_eq!(h.ecr.stats().link.resends, 1);
    assert!(h.ecr.in_flight().is_some());
    assert_eq!(h.ecr.poll_timeout(), Some(h.at(SEC + 90 * SEC)));

    h.drive_until(Some(h.at(91 * SEC - Duration::from_millis(1))));
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert!(h.ecr.in_flight().is_some());

    h.drive_bounded();
    let events = h.take_events();
    let (at, event) = outcome(&events);
    assert_eq!(at, 91 * SEC);
    assert!(matches!(
        event,
        EcrEvent::OutcomeUnknown { reason: FailureReason::ResponseTimeout { after }, .. } if *after == 90 * SEC
    ));
    assert_eq!(h.ecr.unknown_references(), [reference("P3")]);
}

#[test]
fn status_times_out_after_10_s_and_simply_fails() {
    let mut h = Harness::new(silent());
    h.start(status());
    h.pump();
    assert_eq!(h.ecr.poll_timeout(), Some(h.at(10 * SEC)));
    h.drive_bounded();
    let events = h.take_events();
    let (at, event) = outcome(&events);
    assert_eq!(at, 10 * SEC);
    assert!(matches!(
        event,
        EcrEvent::Failed { reason: FailureReason::ResponseTimeout { after }, .. } if *after == 10 * SEC
    ));
    assert!(h.ecr.unknown_references().is_empty());
}

#[test]
fn response_timeouts_are_configurable() {
    let mut cfg = EcrConfig::default();
    cfg.timeouts.money = 30 * SEC;
    cfg.timeouts.query = 3 * SEC;
    assert_eq!(cfg.timeouts.for_type(MessageType::Refund), 30 * SEC);
    assert_eq!(cfg.timeouts.for_type(MessageType::Settle), 60 * SEC);
    assert_eq!(cfg.timeouts.for_type(MessageType::SignIn), 60 * SEC);
    let mut h = Harness::with_config(cfg, silent());
    h.start(sale("P4"));
    h.drive_bounded();
    assert_eq!(outcome(&h.take_events()).0, 30 * SEC);
    h.start(query("P4"));
    h.drive_bounded();
    assert_eq!(outcome(&h.take_events()).0, 33 * SEC);
}

// ---------------------------------------------------------------------------------------------------
// §5.2 stale tokens, responses before ACK, malformed responses

#[test]
fn stale_token_is_discarded_and_the_right_one_completes() {
    let mut h = Harness::new(Box::new(|req: &Request| {
        let mut stale = Response::answering(req, ResponseCode::APPROVED);
        stale.token = Token::new(if req.token.get() == 500 { 501 } else { 500 }).unwrap();
        vec![stale.encode().unwrap(), answer(req, ResponseCode::CANCELLED)]
    }));
    let token = h.start(sale("P5"));
    h.drive_bounded();
    let events = h.take_events();
    let stale: Vec<_> = events.iter().filter(|(_, e)| matches!(e, EcrEvent::StaleResponse { .. })).collect();
    assert_eq!(stale.len(), 1);
    assert!(matches!(&stale[0].1, EcrEvent::StaleResponse { token: Some(t) } if *t != token));
    // The stale response came first and did not end the exchange.
    assert!(matches!(events[0].1, EcrEvent::StaleResponse { .. }));
    assert_eq!(answered_code(outcome(&events).1), ResponseCode::CANCELLED);
    assert_eq!(h.ecr.stats().stale_responses, 1);
    // Both were ACKed at the link level.
    assert_eq!(h.term.link.stats().frames_sent, 2);
    assert_eq!(h.term.link.stats().resends, 0);
}

#[test]
fn response_while_idle_is_stale() {
    let mut h = Harness::new(silent());
    let data = answer(&sale("P6"), ResponseCode::APPROVED);
    h.term.link.send_frame(h.now, &data).unwrap();
    h.drive_bounded();
    assert_eq!(h.take_events(), [(Duration::ZERO, EcrEvent::StaleResponse { token: Some(Token::MIN) })]);
}

#[test]
fn response_before_ack_completes_the_exchange() {
    let mut h = Harness::new(answer_all(ResponseCode::APPROVED));
    h.to_ecr.drop_acks = 1;
    h.start(sale("P8"));
    h.drive_bounded();
    let events = h.take_events();
    let (at, event) = outcome(&events);
    assert_eq!(answered_code(event), ResponseCode::APPROVED);
    assert_eq!(at, Duration::ZERO);
    // The response stood in for the ACK: no resend, nothing left waiting.
    let link = h.ecr.stats().link;
    assert_eq!((link.resends, link.stray_controls), (0, 0));
    assert_eq!(h.to_term.frames().len(), 1);
    assert_eq!(h.ecr.poll_timeout(), None);
    assert!(h.ecr.is_idle());
}

#[test]
fn malformed_or_mismatched_response_with_our_token_fails_the_exchange() {
    let mut h = Harness::new(Box::new(|req: &Request| {
        let mut data = answer(req, ResponseCode::APPROVED);
        // Amount (offset 67) gets a letter.
        data[67] = b'X';
        vec![data]
    }));
    h.start(sale("M1"));
    h.drive_bounded();
    let events = h.take_events();
    assert!(matches!(
        outcome(&events).1,
        EcrEvent::OutcomeUnknown { reason: FailureReason::MalformedResponse(e), .. } if e.offset == 67
    ));

    let mut h = Harness::new(Box::new(|req: &Request| {
        let mut resp = Response::answering(req, ResponseCode::APPROVED);
        resp.kind = MessageType::Status;
        resp.amount = Amount::ZERO;
        vec![resp.encode().unwrap()]
    }));
    h.start(status());
    h.drive_bounded();
    assert!(h.ecr.is_idle());
    let tok = h.start(sale("M2"));
    h.drive_bounded();
    let events = h.take_events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        &events[1].1,
        EcrEvent::OutcomeUnknown {
            reason: FailureReason::TypeMismatch { expected: MessageType::Sale, got: MessageType::Status },
            request,
        } if request.token == tok
    ));
}

// ---------------------------------------------------------------------------------------------------
// Rule 5: ENQ; probes

#[test]
fn enq_is_answered_when_idle_and_not_during_an_exchange() {
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    ecr.handle_input(t0, &[ENQ]);
    assert_eq!(ecr.poll_transmit(), Some(vec![ACK]));
    assert_eq!(ecr.stats().link.enqs_answered, 1);

    let req = status();
    ecr.start(t0, req.clone()).unwrap();
    let frame = ecr.poll_transmit().unwrap();
    assert_eq!(frame[0], STX);
    ecr.handle_input(t0, &[ENQ]);
    assert_eq!(ecr.poll_transmit(), None);
    assert_eq!(ecr.stats().link.enqs_ignored, 1);

    ecr.handle_input(t0, &[ACK]);
    let mut answered = req;
    answered.token = Token::MIN;
    ecr.handle_input(t0, &encode_frame(&answer(&answered, ResponseCode::APPROVED), Check::Lrc).unwrap());
    assert_eq!(ecr.poll_transmit(), Some(vec![ACK]));
    assert!(matches!(ecr.poll_event(), Some(EcrEvent::Answered { .. })));
    ecr.handle_input(t0, &[ENQ]);
    assert_eq!(ecr.poll_transmit(), Some(vec![ACK]));
    assert_eq!(ecr.stats().link.enqs_answered, 2);
}

#[test]
fn probe_answered_and_probe_lost() {
    let mut h = Harness::new(silent());
    h.ecr.send_probe(h.now).unwrap();
    assert_eq!(h.ecr.start(h.now, status()), Err(StartError::Busy));
    h.drive_bounded();
    assert_eq!(h.take_events(), [(Duration::ZERO, EcrEvent::ProbeAnswered)]);
    assert_eq!(h.term.link.stats().enqs_answered, 1);

    // A busy terminal does not answer: four ENQs, then lost.
    h.term.link.set_idle(false);
    h.term.delay = Duration::from_secs(3600);
    h.term.scheduled.push_back((h.now + Duration::from_secs(3600), Vec::new()));
    h.ecr.send_probe(h.now).unwrap();
    h.drive_until(Some(h.at(10 * SEC)));
    assert_eq!(h.take_events(), [(4 * SEC, EcrEvent::ProbeLost)]);
    assert_eq!(h.term.link.stats().enqs_ignored, 4);
    assert!(h.ecr.is_idle());
}

// ---------------------------------------------------------------------------------------------------
// Rule 2: partial frame and T_gap

#[test]
fn partial_frame_is_nakked_after_t_gap_and_the_frame_behind_it_delivered() {
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    let token = ecr.start(t0, sale("G1")).unwrap();
    assert!(ecr.poll_transmit().is_some());
    ecr.handle_input(t0, &[ACK]);

    let mut req = sale("G1");
    req.token = token;
    let response = encode_frame(&answer(&req, ResponseCode::APPROVED), Check::Lrc).unwrap();
    // Noise, then a stray STX promising 4000 bytes, then the real response.
    let t1 = t0 + Duration::from_millis(100);
    let mut input = vec![0x41, STX, 0x40, 0x00];
    input.extend_from_slice(&response);
    ecr.handle_input(t1, &input);
    assert_eq!(ecr.poll_transmit(), None);
    assert_eq!(ecr.poll_event(), None);
    assert_eq!(ecr.poll_timeout(), Some(t1 + Duration::from_millis(500)));

    ecr.handle_timeout(t1 + Duration::from_millis(499));
    assert_eq!(ecr.poll_transmit(), None);
    ecr.handle_timeout(t1 + Duration::from_millis(500));
    assert_eq!(ecr.poll_transmit(), Some(vec![NAK, ACK]));
    assert!(matches!(ecr.poll_event(), Some(EcrEvent::Answered { .. })));
    let link = ecr.stats().link;
    // Noise: the 0x41 before, and the stray LEN bytes once its STX was dropped.
    assert_eq!((link.broken_frames, link.naks_sent, link.noise_bytes, link.frames_delivered), (1, 1, 3, 1));
    assert_eq!(ecr.poll_timeout(), None);
}

// ---------------------------------------------------------------------------------------------------
// Bounds

#[test]
fn enq_and_noise_floods_stay_within_bounds() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default());
    let enqs = vec![ENQ; 64 * 1024];
    for i in 0..16 {
        link.handle_input(t0 + Duration::from_millis(i), &enqs);
        let b = link.backlog();
        assert!(b.transmit_bytes <= MAX_QUEUED_CONTROLS, "{b:?}");
        assert!(b.queued_controls <= MAX_QUEUED_CONTROLS);
        assert_eq!(b.input_bytes, 0);
    }
    let stats = link.stats();
    assert_eq!(stats.enqs_answered, MAX_QUEUED_CONTROLS as u64);
    assert_eq!(stats.controls_dropped, 16 * 64 * 1024 - MAX_QUEUED_CONTROLS as u64);
    assert_eq!(link.poll_transmit(), Some(vec![ACK; MAX_QUEUED_CONTROLS]));
    assert_eq!(link.poll_transmit(), None);
    // Room again once the driver writes.
    link.handle_input(t0, &[ENQ]);
    assert_eq!(link.poll_transmit(), Some(vec![ACK]));

    link.handle_input(t0, &vec![0x41; 1 << 20]);
    assert_eq!(link.stats().noise_bytes, 1 << 20);
    assert_eq!(link.backlog().input_bytes, 0);

    // Stray STXs with large lengths: the decoder holds at most one partial frame.
    let stx: Vec<u8> = [STX, 0x40, 0x96].repeat(100_000);
    link.handle_input(t0, &stx);
    assert!(link.backlog().input_bytes <= DEFAULT_MAX_DATA_LEN + 6 + INPUT_PIECE);
    assert!(link.backlog().queued_controls <= MAX_QUEUED_CONTROLS);
}

#[test]
fn frame_flood_without_polling_is_refused_not_buffered() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default());
    let mut input = Vec::new();
    for i in 0..1000u32 {
        input.extend_from_slice(&encode_frame(format!("frame {i}").as_bytes(), Check::Lrc).unwrap());
    }
    link.handle_input(t0, &input);
    let b = link.backlog();
    assert_eq!(b.events, MAX_QUEUED_EVENTS);
    assert!(b.queued_controls <= MAX_QUEUED_CONTROLS);
    let stats = link.stats();
    assert_eq!(stats.frames_delivered, MAX_QUEUED_EVENTS as u64);
    assert_eq!(stats.frames_refused, 1000 - MAX_QUEUED_EVENTS as u64);
    // Delivered in order, each once.
    for i in 0..MAX_QUEUED_EVENTS {
        assert_eq!(link.poll_event(), Some(LinkEvent::Delivered(format!("frame {i}").into_bytes())));
    }
    assert_eq!(link.poll_event(), None);
}

#[test]
fn stale_flood_into_an_ecr_is_bounded() {
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    let mut req = sale("F1");
    for i in 0..500u16 {
        req.token = Token::new(100 + i).unwrap();
        let frame = encode_frame(&answer(&req, ResponseCode::APPROVED), Check::Lrc).unwrap();
        ecr.handle_input(t0, &frame);
    }
    assert_eq!(ecr.stats().stale_responses, 500);
    assert!(ecr.link().backlog().queued_controls <= MAX_QUEUED_CONTROLS);
    let mut events = 0;
    while ecr.poll_event().is_some() {
        events += 1;
    }
    assert_eq!(events, MAX_QUEUED_EVENTS);
}

#[test]
fn unknown_set_is_bounded() {
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    for i in 0..MAX_UNKNOWN_REFERENCES {
        ecr.mark_unknown(reference(&format!("U{i}"))).unwrap();
    }
    // Marking one already there is fine; a new one is refused.
    ecr.mark_unknown(reference("U0")).unwrap();
    assert_eq!(ecr.mark_unknown(reference("NEW")), Err(UnknownSetFull { max: MAX_UNKNOWN_REFERENCES }));
    assert_eq!(ecr.start(t0, sale("NEW")), Err(StartError::TooManyUnknown { max: MAX_UNKNOWN_REFERENCES }));
    assert_eq!(ecr.start(t0, sale("U5")), Err(StartError::OutcomeUnknown(reference("U5"))));
    assert!(ecr.start(t0, query("U5")).is_ok());
    assert!(ecr.forget_unknown(&reference("U7")));
    assert!(!ecr.forget_unknown(&reference("U7")));
}

// ---------------------------------------------------------------------------------------------------
// One exchange at a time; tokens

#[test]
fn busy_while_in_flight_and_tokens_differ() {
    let mut h = Harness::new(answer_all(ResponseCode::APPROVED));
    let first = h.start(sale("T1"));
    assert_eq!(h.ecr.start(h.now, status()), Err(StartError::Busy));
    assert_eq!(h.ecr.send_probe(h.now), Err(LinkError::Busy));
    assert_eq!(h.ecr.in_flight().map(|r| r.token), Some(first));
    h.drive_bounded();
    let second = h.start(status());
    assert_ne!(first, second);
    h.drive_bounded();
    let third = h.start(status());
    assert_ne!(second, third);
    h.drive_bounded();
    let seen: Vec<Token> = h.term.requests.iter().map(|r| r.token).collect();
    assert_eq!(seen, [first, second, third]);
    assert_eq!(h.take_events().len(), 3);
    assert_eq!(h.ecr.stats().answered, 3);

    // A restarted daemon continues from its saved token, and 999 wraps to 100.
    let cfg = EcrConfig { first_token: Token::new(999).unwrap(), ..EcrConfig::default() };
    let mut h = Harness::with_config(cfg, answer_all(ResponseCode::APPROVED));
    assert_eq!(h.start(status()).get(), 999);
    h.drive_bounded();
    assert_eq!(h.start(status()).get(), 100);
    assert_eq!(h.ecr.next_token().get(), 101);
}

#[test]
fn encode_errors_are_refused_before_anything_is_sent() {
    let t0 = Instant::now();
    let mut ecr = Ecr::new(EcrConfig::default());
    let no_reference = request(RequestBody::Sale { amount: Amount::from_fen(1).unwrap() }, None);
    assert!(matches!(ecr.start(t0, no_reference), Err(StartError::Encode(_))));
    assert!(ecr.is_idle());
    assert_eq!(ecr.poll_transmit(), None);
    assert_eq!(ecr.next_token(), Token::MIN);
}

// ---------------------------------------------------------------------------------------------------
// Link level: stray controls, NAK exhaustion, reset

#[test]
fn link_nak_exhaustion_and_strays() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default());
    link.handle_input(t0, &[ACK, NAK]);
    assert_eq!(link.stats().stray_controls, 2);
    assert_eq!(link.poll_event(), None);

    link.send_frame(t0, b"HELLO").unwrap();
    assert_eq!(link.send_frame(t0, b"AGAIN"), Err(LinkError::Busy));
    let frame = link.poll_transmit().unwrap();
    for _ in 0..3 {
        link.handle_input(t0, &[NAK]);
        assert_eq!(link.poll_transmit().as_ref(), Some(&frame));
    }
    link.handle_input(t0, &[NAK]);
    assert_eq!(link.poll_transmit(), None);
    assert_eq!(link.poll_event(), Some(LinkEvent::LinkLost));
    assert!(!link.is_awaiting_ack());
    assert_eq!(link.stats().resends, 3);
    assert!(link.send_frame(t0, b"AGAIN").is_ok());
}

#[test]
fn reset_forgets_the_last_frame_and_the_partial_one() {
    let t0 = Instant::now();
    let mut link = Link::new(LinkConfig::default());
    let frame = encode_frame(b"ONCE", Check::Lrc).unwrap();
    link.handle_input(t0, &frame);
    link.handle_input(t0, &frame);
    assert_eq!(link.stats().duplicates, 1);
    link.handle_input(t0, &[STX, 0x00]);
    assert!(link.poll_timeout().is_some());
    link.reset();
    assert_eq!(link.poll_timeout(), None);
    assert_eq!(link.poll_transmit(), None);
    assert_eq!(link.poll_event(), None);
    // A new connection: the same bytes are a new frame.
    link.handle_input(t0, &frame);
    assert_eq!(link.poll_event(), Some(LinkEvent::Delivered(b"ONCE".to_vec())));
    assert_eq!(link.stats().frames_delivered, 2);
}

// ---------------------------------------------------------------------------------------------------
// Property: arbitrary input never panics, and poll loops terminate

#[derive(Debug, Clone)]
enum Op {
    Bytes(Vec<u8>),
    Frame(Vec<u8>),
    Control(u8),
    /// A response to the request in flight, with its token or another.
    Response(bool),
    Advance(u32),
    Lost,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Op::Bytes),
        2 => proptest::collection::vec(any::<u8>(), 1..220).prop_map(Op::Frame),
        3 => prop_oneof![Just(ACK), Just(NAK), Just(ENQ), Just(STX)].prop_map(Op::Control),
        2 => any::<bool>().prop_map(Op::Response),
        3 => (0u32..120_000).prop_map(Op::Advance),
        1 => Just(Op::Lost),
    ]
}

fn drain(ecr: &mut Ecr, ends: &mut usize) {
    let mut n = 0;
    while ecr.poll_transmit().is_some() {
        n += 1;
        assert!(n < MAX_STEPS, "poll_transmit never ran dry");
    }
    while let Some(event) = ecr.poll_event() {
        n += 1;
        assert!(n < MAX_STEPS, "poll_event never ran dry");
        if matches!(event, EcrEvent::Answered { .. } | EcrEvent::Failed { .. } | EcrEvent::OutcomeUnknown { .. }) {
            *ends += 1;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_input_never_panics(ops in proptest::collection::vec(op(), 0..40)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut ecr = Ecr::new(EcrConfig::default());
        let req = sale("PROP1");
        let token = ecr.start(now, req.clone()).unwrap();
        let mut answered = req;
        answered.token = token;
        let mut ends = 0usize;
        drain(&mut ecr, &mut ends);
        for op in ops {
            match op {
                Op::Bytes(bytes) => ecr.handle_input(now, &bytes),
                Op::Frame(data) => ecr.handle_input(now, &encode_frame(&data, Check::Lrc).unwrap()),
                Op::Control(byte) => ecr.handle_input(now, &[byte]),
                Op::Response(ours) => {
                    let mut resp = Response::answering(&answered, ResponseCode::APPROVED);
                    if !ours {
                        resp.token = token.next();
                    }
                    ecr.handle_input(now, &encode_frame(&resp.encode().unwrap(), Check::Lrc).unwrap());
                }
                Op::Advance(ms) => {
                    now += Duration::from_millis(u64::from(ms));
                    let mut n = 0;
                    while ecr.poll_timeout().is_some_and(|t| t <= now) {
                        ecr.handle_timeout(now);
                        prop_assert!(ecr.poll_timeout().is_none_or(|t| t > now));
                        drain(&mut ecr, &mut ends);
                        n += 1;
                        prop_assert!(n < MAX_STEPS);
                    }
                }
                Op::Lost => ecr.connection_lost(),
            }
            drain(&mut ecr, &mut ends);
            let b = ecr.link().backlog();
            prop_assert!(b.queued_controls <= MAX_QUEUED_CONTROLS);
            prop_assert!(b.input_bytes <= DEFAULT_MAX_DATA_LEN + 6);
            prop_assert!(ecr.unknown_references().len() <= 1);
            // Exactly one end per exchange, and only once it is over.
            prop_assert_eq!(ends, usize::from(ecr.in_flight().is_none()));
        }
    }

    #[test]
    fn arbitrary_bytes_into_a_link_never_panic(chunks in proptest::collection::vec(
        (proptest::collection::vec(any::<u8>(), 0..300), 0u32..2_000), 0..30)
    ) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut link = Link::new(LinkConfig::default());
        link.send_frame(now, b"REQUEST").unwrap();
        for (bytes, ms) in chunks {
            link.handle_input(now, &bytes);
            now += Duration::from_millis(u64::from(ms));
            let mut n = 0;
            while link.poll_timeout().is_some_and(|t| t <= now) {
                link.handle_timeout(now);
                n += 1;
                prop_assert!(n < MAX_STEPS);
            }
            while link.poll_transmit().is_some() {}
            while link.poll_event().is_some() {}
            prop_assert!(link.backlog().input_bytes <= DEFAULT_MAX_DATA_LEN + 6);
        }
    }
}

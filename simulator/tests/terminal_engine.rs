//! The terminal engine's behaviour (wire-protocol.md §5), driven directly: requests in, responses out.
// Tests unwrap values they built themselves; a failure there is a broken test, reported by the panic.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use time::macros::datetime;
use time::OffsetDateTime;
use zhengjiao_protocol::memo::{Memo, QueryState, SettleTotals};
use zhengjiao_protocol::message::{Amount, MessageType, Request, RequestBody, Response, ResponseCode, Token};
use zhengjiao_protocol::{Ascii, Digits};
use zhengjiao_simulator::terminal::engine::{
    malformed_response, Engine, EngineConfig, QueueApprovalError, QueueFull, CARD_BINS, MAX_QUEUED_OUTCOMES,
};
use zhengjiao_simulator::terminal::state::{StateError, TerminalState};

/// 2020-10-21 10:15:30 in UTC+8.
const NOW: OffsetDateTime = datetime!(2020-10-21 02:15:30 UTC);

fn code(s: &str) -> ResponseCode {
    ResponseCode::new(s).unwrap()
}

/// Builds requests with fresh tokens.
struct Ecr {
    token: Token,
}

impl Ecr {
    fn new() -> Self {
        Ecr { token: Token::MIN }
    }

    fn request(&mut self, body: RequestBody, reference: Option<&str>) -> Request {
        self.token = self.token.next();
        Request {
            token: self.token,
            till: Ascii::new("DESK01").unwrap(),
            operator: Ascii::new("C0001").unwrap(),
            body,
            memo: reference.map_or_else(Memo::new, |r| Memo::with_reference(Ascii::new(r).unwrap())),
        }
    }

    fn sale(&mut self, fen: u64, reference: &str) -> Request {
        self.request(RequestBody::Sale { amount: Amount::from_fen(fen).unwrap() }, Some(reference))
    }

    fn void(&mut self, fen: u64, trace: &Digits<6>, reference: &str) -> Request {
        self.request(RequestBody::Void { amount: Amount::from_fen(fen).unwrap(), orig_trace: *trace }, Some(reference))
    }

    fn refund(&mut self, fen: u64, date: &Digits<8>, rrn: &str, reference: &str) -> Request {
        let body = RequestBody::Refund {
            amount: Amount::from_fen(fen).unwrap(),
            orig_date: *date,
            orig_rrn: Ascii::new(rrn).unwrap(),
        };
        self.request(body, Some(reference))
    }

    fn query(&mut self, reference: &str) -> Request {
        self.request(RequestBody::Query, Some(reference))
    }
}

/// Sends `request` and checks what every response must satisfy: token and type echoed, and it encodes
/// and decodes back to itself (so every text fits its 40 bytes).
fn send(engine: &mut Engine, request: &Request) -> Response {
    let response = engine.handle(request, NOW);
    check(request, &response);
    response
}

fn check(request: &Request, response: &Response) {
    assert_eq!(response.token, request.token);
    assert_eq!(response.kind, request.message_type());
    let bytes = response.encode().unwrap();
    assert_eq!(Response::decode(&bytes).unwrap(), *response);
    if request.message_type() != MessageType::Query {
        assert_eq!(response.amount, request.body.amount());
    }
}

fn signed_in(cfg: EngineConfig) -> (Engine, Ecr) {
    let mut engine = Engine::new(cfg, TerminalState::new());
    let mut ecr = Ecr::new();
    let r = send(&mut engine, &ecr.request(RequestBody::SignIn, None));
    assert_eq!(r.code, ResponseCode::APPROVED);
    (engine, ecr)
}

fn settle(engine: &mut Engine, ecr: &mut Ecr) -> Response {
    let r = send(engine, &ecr.request(RequestBody::Settle, None));
    assert_eq!(r.code, ResponseCode::APPROVED);
    r
}

fn query_state(engine: &mut Engine, ecr: &mut Ecr, reference: &str) -> (ResponseCode, Option<QueryState>) {
    let r = send(engine, &ecr.query(reference));
    (r.code, r.memo.query_state)
}

#[test]
fn the_amount_decides_the_outcome() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let cases = [
        (28_000, "00", "交易成功"),
        (10_051, "51", "余额不足"),
        (10_005, "05", "不予承兑"),
        (10_061, "61", "超出金额限制"),
        (10_097, "T1", "交易取消"),
        (10_098, "T2", "等待刷卡超时"),
        (10_099, "00", "交易成功"),
    ];
    for (i, (fen, expected, text)) in cases.into_iter().enumerate() {
        let reference = format!("P{i}");
        let r = send(&mut e, &ecr.sale(fen, &reference));
        assert_eq!((r.code.as_str(), r.text.as_str()), (expected, text), "amount {fen}");
        assert_eq!(r.memo.reference.unwrap().as_str(), reference);
        assert_eq!((r.merchant.as_str(), r.terminal.as_str()), ("898410153990001", "41000001"));
        assert_eq!((r.batch.as_str(), r.date.as_str(), r.time.as_str()), ("000001", "20201021", "101530"));
        let host_saw_it = !expected.starts_with('T');
        assert_eq!(!r.trace.is_zero(), host_saw_it, "trace for {expected}");
        assert_eq!(r.card.is_some(), host_saw_it, "card for {expected}");
        assert_eq!(!r.rrn.is_empty(), host_saw_it, "rrn for {expected}");
        assert_eq!(!r.auth.is_empty(), expected == "00", "auth for {expected}");
        let stored = if expected == "00" { QueryState::Approved } else { QueryState::Declined };
        assert_eq!(query_state(&mut e, &mut ecr, &reference), (code(expected), Some(stored)));
    }
    let c = e.counters();
    assert_eq!((c.sales_approved, c.sales_declined, c.requests.sale, c.requests.query), (2, 5, 7, 7));
}

#[test]
fn the_queue_comes_before_the_amount_table_and_is_bounded() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    e.queue_outcome(code("05")).unwrap();
    e.queue_outcome(ResponseCode::APPROVED).unwrap();
    assert_eq!(send(&mut e, &ecr.sale(28_000, "Q1")).code.as_str(), "05");
    assert_eq!(send(&mut e, &ecr.sale(10_051, "Q2")).code, ResponseCode::APPROVED);
    assert_eq!(send(&mut e, &ecr.sale(10_051, "Q3")).code.as_str(), "51");
    // A refused request does not take the queued outcome.
    e.queue_outcome(ResponseCode::CANCELLED).unwrap();
    assert_eq!(send(&mut e, &ecr.sale(1_000, "Q2")).code.as_str(), "94");
    assert_eq!(send(&mut e, &ecr.sale(1_000, "Q4")).code, ResponseCode::CANCELLED);
    // Forced beats the queue and the table.
    e.queue_outcome(code("05")).unwrap();
    let forced = e.handle_forced(&ecr.sale(10_051, "Q5"), NOW, ResponseCode::APPROVED);
    assert_eq!(forced.code, ResponseCode::APPROVED);
    assert_eq!(e.queued_outcomes(), 1);
    for _ in 1..MAX_QUEUED_OUTCOMES {
        e.queue_outcome(ResponseCode::APPROVED).unwrap();
    }
    assert_eq!(e.queue_outcome(ResponseCode::APPROVED), Err(QueueFull));
}

/// A queued approval of another amount (a misbehaving terminal): the sale is approved, stored and
/// answered for that amount; QUERY, VOID and SETTLE see it; the queue keeps its order.
#[test]
fn a_queued_approval_of_another_amount_is_what_the_terminal_keeps() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    e.queue_approval_of(Amount::from_fen(28_100).unwrap()).unwrap();
    e.queue_outcome(code("51")).unwrap();
    assert_eq!(e.queued_outcomes(), 2);

    // Asked 280.00, approved 281.00.
    let asked = ecr.sale(28_000, "W1");
    let wrong = e.handle(&asked, NOW);
    assert_eq!((wrong.code, wrong.amount.fen()), (ResponseCode::APPROVED, 28_100), "{wrong:?}");
    assert_eq!(wrong.memo.reference.unwrap().as_str(), "W1");
    assert!(!wrong.trace.is_zero() && wrong.card.is_some() && !wrong.auth.as_str().is_empty(), "{wrong:?}");
    assert_eq!(Response::decode(&wrong.encode().unwrap()).unwrap(), wrong);
    // The next queued outcome is the next sale's.
    assert_eq!(send(&mut e, &ecr.sale(28_000, "W2")).code.as_str(), "51");
    assert_eq!(e.queued_outcomes(), 0);

    let found = send(&mut e, &ecr.query("W1"));
    assert_eq!((found.code, found.memo.query_state), (ResponseCode::APPROVED, Some(QueryState::Approved)));
    assert_eq!((found.amount.fen(), found.trace), (28_100, wrong.trace));

    // A VOID must name the amount the terminal keeps.
    let refused = send(&mut e, &ecr.void(28_000, &wrong.trace, "W1-V1"));
    assert_eq!(refused.code.as_str(), "12", "{refused:?}");
    let voided = send(&mut e, &ecr.void(28_100, &wrong.trace, "W1-V2"));
    assert_eq!(voided.code, ResponseCode::APPROVED, "{voided:?}");
    assert_eq!(query_state(&mut e, &mut ecr, "W1"), (ResponseCode::APPROVED, Some(QueryState::Voided)));

    // The queue is empty again: the amount asked.
    let right = send(&mut e, &ecr.sale(28_000, "W3"));
    assert_eq!((right.code, right.amount.fen()), (ResponseCode::APPROVED, 28_000));

    let settled = settle(&mut e, &mut ecr);
    let totals = SettleTotals {
        sale_count: 2,
        sale_total: 56_100,
        void_count: 1,
        void_total: 28_100,
        ..SettleTotals::default()
    };
    assert_eq!(settled.memo.settle, Some(totals));
    let c = e.counters();
    assert_eq!((c.sales_approved, c.sales_declined, c.voids_approved, c.voids_refused), (2, 1, 1, 1));

    // No approval of nothing; the bound is the queue's.
    assert_eq!(e.queue_approval_of(Amount::ZERO), Err(QueueApprovalError::ZeroAmount));
    for _ in 0..MAX_QUEUED_OUTCOMES {
        e.queue_outcome(ResponseCode::APPROVED).unwrap();
    }
    assert_eq!(e.queue_approval_of(Amount::from_fen(1).unwrap()), Err(QueueApprovalError::Full(QueueFull)));
}

fn run_rates(seed: u64, n: usize) -> Vec<(String, Option<String>)> {
    let cfg = EngineConfig { seed, decline_rates: vec![(code("51"), 0.3), (code("T1"), 0.2)], ..Default::default() };
    let (mut e, mut ecr) = signed_in(cfg);
    (0..n)
        .map(|i| {
            let r = send(&mut e, &ecr.sale(10_000, &format!("R{i}")));
            (r.code.to_string(), r.card.map(|c| c.to_string()))
        })
        .collect()
}

#[test]
fn drawn_declines_are_reproducible_and_roughly_honoured() {
    let a = run_rates(7, 2000);
    assert_eq!(a, run_rates(7, 2000), "same seed, same outcomes and cards");
    assert_ne!(a, run_rates(8, 2000), "another seed, other outcomes");
    let count = |c: &str| a.iter().filter(|(code, _)| code == c).count();
    let (declined, cancelled, approved) = (count("51"), count("T1"), count("00"));
    assert_eq!(declined + cancelled + approved, 2000);
    assert!((450..=750).contains(&declined), "51 drawn {declined} times of 2000 at 30%");
    assert!((280..=520).contains(&cancelled), "T1 drawn {cancelled} times of 2000 at 20%");
    assert!((850..=1150).contains(&approved), "approved {approved} times of 2000 at 50%");
}

#[test]
fn rates_can_change_at_run_time() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    e.set_decline_rates(vec![(code("91"), 1.0)]);
    assert_eq!(send(&mut e, &ecr.sale(100, "S1")).code.as_str(), "91");
    e.set_decline_rates(Vec::new());
    assert_eq!(send(&mut e, &ecr.sale(100, "S2")).code, ResponseCode::APPROVED);
}

#[test]
fn cards_are_masked_union_pay_numbers() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let mut bins = HashSet::new();
    for i in 0..300 {
        let card = send(&mut e, &ecr.sale(100, &format!("C{i}"))).card.unwrap().to_string();
        let b = card.as_bytes();
        assert_eq!(b.len(), 19, "{card}");
        assert!(CARD_BINS.contains(&&card[..6]), "{card}");
        assert!(b[..6].iter().chain(&b[15..]).all(u8::is_ascii_digit), "{card}");
        assert!(b[6..15].iter().all(|&c| c == b'*'), "{card}");
        bins.insert(card[..6].to_owned());
    }
    assert!(bins.len() >= 4, "cards come from several BINs: {bins:?}");
}

#[test]
fn traces_and_rrns_stay_unique_across_a_restart_and_terminals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t1.json");
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let mut traces = HashSet::new();
    let mut rrns = HashSet::new();
    let mut record = |r: Response| {
        assert!(traces.insert(r.trace), "trace {} repeated", r.trace);
        assert!(rrns.insert(r.rrn), "rrn {} repeated", r.rrn);
        assert_eq!(r.rrn.as_str().len(), 12);
        r
    };
    for i in 0..1500 {
        let r = record(send(&mut e, &ecr.sale(100, &format!("A{i}"))));
        if i % 500 == 0 {
            record(send(&mut e, &ecr.void(r.amount.fen(), &r.trace, &format!("V{i}"))));
        }
    }
    e.state().save(&path).unwrap();
    let before = e.changes();
    assert!(before > 1500);
    drop(e);
    let mut e = Engine::new(EngineConfig::default(), TerminalState::load(&path).unwrap().unwrap());
    send(&mut e, &ecr.request(RequestBody::SignIn, None));
    for i in 0..1500 {
        record(send(&mut e, &ecr.sale(100, &format!("B{i}"))));
    }
    assert_eq!(traces.len(), 3003);
    assert!(traces.contains(&Digits::new("3003").unwrap()), "traces run on after the restart");
    // Another terminal of the same simulator.
    let other = EngineConfig { terminal: Ascii::new("41000002").unwrap(), ..Default::default() };
    let (mut e2, mut ecr2) = signed_in(other);
    for i in 0..1500 {
        let r = send(&mut e2, &ecr2.sale(100, &format!("A{i}")));
        assert!(rrns.insert(r.rrn), "rrn {} of terminal 2 repeats terminal 1's", r.rrn);
    }
}

#[test]
fn void_rules() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let sale = send(&mut e, &ecr.sale(28_000, "S1"));
    let declined = send(&mut e, &ecr.sale(10_051, "S2"));
    let unknown = Digits::new("999").unwrap();
    assert_eq!(send(&mut e, &ecr.void(28_000, &unknown, "V1")).code, ResponseCode::NOT_FOUND);
    assert_eq!(send(&mut e, &ecr.void(27_999, &sale.trace, "V2")).code, ResponseCode::INVALID_TRANSACTION);
    assert_eq!(send(&mut e, &ecr.void(10_051, &declined.trace, "V3")).code, ResponseCode::INVALID_TRANSACTION);
    assert_eq!(query_state(&mut e, &mut ecr, "S1"), (ResponseCode::APPROVED, Some(QueryState::Approved)));
    let void = send(&mut e, &ecr.void(28_000, &sale.trace, "V4"));
    assert_eq!(void.code, ResponseCode::APPROVED);
    assert_ne!(void.trace, sale.trace);
    assert_eq!(void.card, sale.card);
    assert_eq!(void.memo.reference.unwrap().as_str(), "V4");
    assert_eq!(query_state(&mut e, &mut ecr, "S1"), (ResponseCode::APPROVED, Some(QueryState::Voided)));
    let q = send(&mut e, &ecr.query("V4"));
    assert_eq!((q.memo.query_type, q.memo.query_state), (Some(MessageType::Void), Some(QueryState::Approved)));
    assert_eq!(q.trace, void.trace);
    // Double void; a void of a void.
    assert_eq!(send(&mut e, &ecr.void(28_000, &sale.trace, "V5")).code, ResponseCode::INVALID_TRANSACTION);
    assert_eq!(send(&mut e, &ecr.void(28_000, &void.trace, "V6")).code, ResponseCode::INVALID_TRANSACTION);
    // Refusals are stored as declined, with no trace.
    let q = send(&mut e, &ecr.query("V5"));
    assert_eq!(
        (q.code, q.memo.query_state, q.trace),
        (ResponseCode::INVALID_TRANSACTION, Some(QueryState::Declined), Digits::ZERO)
    );
    // A sale of a closed batch cannot be voided.
    let s3 = send(&mut e, &ecr.sale(500, "S3"));
    settle(&mut e, &mut ecr);
    assert_eq!(send(&mut e, &ecr.void(500, &s3.trace, "V7")).code, ResponseCode::NOT_FOUND);
    let c = e.counters();
    assert_eq!((c.voids_approved, c.voids_refused), (1, 6));
}

#[test]
fn refund_rules() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let sale = send(&mut e, &ecr.sale(10_000, "S1"));
    let rrn = sale.rrn.as_str().to_owned();
    let declined = send(&mut e, &ecr.sale(10_051, "S2"));
    assert_eq!(declined.code, code("51"));
    let voided = send(&mut e, &ecr.sale(20_000, "S3"));
    assert!(send(&mut e, &ecr.void(20_000, &voided.trace, "V3")).is_approved());
    // No refundable approved sale of an earlier batch: 25, the text saying why.
    let refused = |e: &mut Engine, ecr: &mut Ecr, date: &Digits<8>, rrn: &str, reference: &str| {
        let r = send(e, &ecr.refund(1_000, date, rrn, reference));
        (r.code, r.text.as_str().to_owned(), r.trace)
    };
    let not_found = |text: &str| (ResponseCode::NOT_FOUND, text.to_owned(), Digits::ZERO);
    assert_eq!(refused(&mut e, &mut ecr, &sale.date, &rrn, "F0"), not_found("当批交易请撤销"));
    settle(&mut e, &mut ecr);
    assert_eq!(refused(&mut e, &mut ecr, &sale.date, "000000000000", "F1"), not_found("原交易不存在"));
    let other_day = Digits::new("20201020").unwrap();
    assert_eq!(refused(&mut e, &mut ecr, &other_day, &rrn, "F2"), not_found("原交易不存在"));
    assert_eq!(refused(&mut e, &mut ecr, &declined.date, declined.rrn.as_str(), "F2D"), not_found("原交易未成功"));
    assert_eq!(refused(&mut e, &mut ecr, &voided.date, voided.rrn.as_str(), "F2V"), not_found("原交易已撤销"));
    // More than what remains: 13.
    assert_eq!(send(&mut e, &ecr.refund(10_001, &sale.date, &rrn, "F3")).code, ResponseCode::INVALID_AMOUNT);
    let partial = send(&mut e, &ecr.refund(4_000, &sale.date, &rrn, "F4"));
    assert_eq!((partial.code, partial.card), (ResponseCode::APPROVED, sale.card));
    assert_eq!(partial.batch.as_str(), "000002");
    assert_eq!(query_state(&mut e, &mut ecr, "S1").1, Some(QueryState::Approved));
    assert_eq!(send(&mut e, &ecr.refund(6_001, &sale.date, &rrn, "F5")).code, ResponseCode::INVALID_AMOUNT);
    assert_eq!(send(&mut e, &ecr.refund(6_000, &sale.date, &rrn, "F6")).code, ResponseCode::APPROVED);
    assert_eq!(query_state(&mut e, &mut ecr, "S1"), (ResponseCode::APPROVED, Some(QueryState::Refunded)));
    assert_eq!(send(&mut e, &ecr.refund(1, &sale.date, &rrn, "F7")).code, ResponseCode::INVALID_AMOUNT);
    let q = send(&mut e, &ecr.query("F6"));
    assert_eq!((q.memo.query_type, q.memo.query_state), (Some(MessageType::Refund), Some(QueryState::Approved)));
    assert_eq!(q.amount.fen(), 6_000);
    let c = e.counters();
    assert_eq!((c.refunds_approved, c.refunds_refused), (2, 8));
}

#[test]
fn settle_totals_are_gross_and_the_batch_advances() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let old = send(&mut e, &ecr.sale(5_000, "OLD"));
    assert_eq!(settle(&mut e, &mut ecr).batch.as_str(), "000001");
    send(&mut e, &ecr.sale(10_000, "S1"));
    let voided = send(&mut e, &ecr.sale(20_000, "S2"));
    send(&mut e, &ecr.sale(10_051, "S3")); // declined
    send(&mut e, &ecr.sale(10_097, "S4")); // cancelled
    assert!(send(&mut e, &ecr.void(20_000, &voided.trace, "V1")).is_approved());
    assert!(!send(&mut e, &ecr.void(1, &voided.trace, "V2")).is_approved());
    assert!(send(&mut e, &ecr.refund(3_000, &old.date, old.rrn.as_str(), "F1")).is_approved());
    assert!(!send(&mut e, &ecr.refund(3_000, &old.date, "NOPE", "F2")).is_approved());
    let r = settle(&mut e, &mut ecr);
    assert_eq!(r.batch.as_str(), "000002");
    let expected = SettleTotals {
        sale_count: 2,
        sale_total: 30_000,
        void_count: 1,
        void_total: 20_000,
        refund_count: 1,
        refund_total: 3_000,
    };
    assert_eq!(r.memo.settle, Some(expected));
    assert_eq!(e.state().batch().as_str(), "000003");
    let empty = settle(&mut e, &mut ecr);
    assert_eq!((empty.batch.as_str(), empty.memo.settle), ("000003", Some(SettleTotals::default())));
    let status = send(&mut e, &ecr.request(RequestBody::Status, None));
    assert_eq!(status.batch.as_str(), "000004");
    assert_eq!(e.counters().settlements, 3);
}

#[test]
fn the_batch_number_wraps() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let json =
        r#"{"version":1,"batch":999999,"previous_batch":null,"last_trace":999999,"last_rrn":5,"transactions":[]}"#;
    std::fs::write(&path, json).unwrap();
    let mut e = Engine::new(EngineConfig::default(), TerminalState::load(&path).unwrap().unwrap());
    let mut ecr = Ecr::new();
    send(&mut e, &ecr.request(RequestBody::SignIn, None));
    let sale = send(&mut e, &ecr.sale(100, "W1"));
    assert_eq!((sale.trace.as_str(), sale.rrn.as_str()), ("000001", "000100000006"));
    assert_eq!(settle(&mut e, &mut ecr).batch.as_str(), "999999");
    assert_eq!(e.state().batch().as_str(), "000001");
}

#[test]
fn query_answers_every_state_and_retention_keeps_the_previous_batch() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    assert_eq!(query_state(&mut e, &mut ecr, "NONE"), (ResponseCode::NOT_FOUND, None));
    let sale = send(&mut e, &ecr.sale(28_000, "OLD"));
    let q = send(&mut e, &ecr.query("OLD"));
    assert_eq!(
        (q.code, q.amount, q.trace, q.batch, q.date, q.time, q.rrn, q.auth, q.card),
        (sale.code, sale.amount, sale.trace, sale.batch, sale.date, sale.time, sale.rrn, sale.auth, sale.card)
    );
    assert_eq!(q.memo.query_type, Some(MessageType::Sale));
    assert_eq!(q.memo.reference.unwrap().as_str(), "OLD");
    for i in 0..1200 {
        send(&mut e, &ecr.sale(100, &format!("B1-{i}")));
    }
    settle(&mut e, &mut ecr);
    // 1200 transactions later, but in the previous batch: kept.
    assert_eq!(query_state(&mut e, &mut ecr, "OLD"), (ResponseCode::APPROVED, Some(QueryState::Approved)));
    send(&mut e, &ecr.sale(100, "B2"));
    settle(&mut e, &mut ecr);
    // Batch 1 is neither current nor previous, and more than 1000 transactions old: gone.
    assert_eq!(query_state(&mut e, &mut ecr, "OLD"), (ResponseCode::NOT_FOUND, None));
    // Its last 999 are among the last 1000 transactions: kept.
    assert_eq!(query_state(&mut e, &mut ecr, "B1-1199").1, Some(QueryState::Approved));
    assert_eq!(query_state(&mut e, &mut ecr, "B1-201").1, Some(QueryState::Approved));
    assert_eq!(query_state(&mut e, &mut ecr, "B1-200").0, ResponseCode::NOT_FOUND);
    assert_eq!(query_state(&mut e, &mut ecr, "B2").1, Some(QueryState::Approved));
    assert_eq!(e.state().len(), 1000);
    let c = e.counters();
    assert_eq!((c.queries_answered, c.queries_not_found), (5, 3));
}

#[test]
fn nothing_but_sign_in_and_status_before_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut e = Engine::new(EngineConfig::default(), TerminalState::new());
    let mut ecr = Ecr::new();
    let date = Digits::new("20201021").unwrap();
    let trace = Digits::new("1").unwrap();
    let requests = [
        ecr.sale(100, "P1"),
        ecr.void(100, &trace, "P2"),
        ecr.refund(100, &date, "000100000001", "P3"),
        ecr.request(RequestBody::Settle, None),
        ecr.query("P1"),
    ];
    for request in &requests {
        let r = send(&mut e, request);
        assert_eq!((r.code, r.text.as_str()), (ResponseCode::NOT_SIGNED_IN, "终端未签到"), "{request:?}");
    }
    assert!(e.state().is_empty());
    let status = send(&mut e, &ecr.request(RequestBody::Status, None));
    assert_eq!(
        (status.code, status.merchant.as_str(), status.terminal.as_str(), status.batch.as_str()),
        (ResponseCode::APPROVED, "898410153990001", "41000001", "000001")
    );
    let sign_in = send(&mut e, &ecr.request(RequestBody::SignIn, None));
    assert_eq!((sign_in.code, sign_in.batch.as_str()), (ResponseCode::APPROVED, "000001"));
    assert!(send(&mut e, &ecr.sale(100, "P1")).is_approved());
    e.sign_out();
    assert_eq!(send(&mut e, &ecr.sale(100, "P4")).code, ResponseCode::NOT_SIGNED_IN);
    send(&mut e, &ecr.request(RequestBody::SignIn, None));
    e.state().save(&path).unwrap();
    // Sign-in is not persisted.
    let mut e = Engine::new(EngineConfig::default(), TerminalState::load(&path).unwrap().unwrap());
    assert_eq!(send(&mut e, &ecr.query("P1")).code, ResponseCode::NOT_SIGNED_IN);
    assert_eq!(e.counters().not_signed_in, 1);
}

#[test]
fn a_used_reference_answers_94_and_charges_nothing() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let first = send(&mut e, &ecr.sale(28_000, "P1"));
    let changes = e.changes();
    let again = send(&mut e, &ecr.sale(28_000, "P1"));
    assert_eq!((again.code.as_str(), again.text.as_str(), again.trace), ("94", "重复交易", Digits::ZERO));
    assert_eq!((e.state().len(), e.changes(), e.state().last_trace()), (1, changes, first.trace));
    // A void may not take a sale's reference either.
    assert_eq!(send(&mut e, &ecr.void(28_000, &first.trace, "P1")).code.as_str(), "94");
    assert_eq!(query_state(&mut e, &mut ecr, "P1"), (ResponseCode::APPROVED, Some(QueryState::Approved)));
    // A declined reference may be tried again; QUERY then answers the latest attempt.
    assert_eq!(send(&mut e, &ecr.sale(10_051, "P2")).code.as_str(), "51");
    assert!(send(&mut e, &ecr.sale(10_000, "P2")).is_approved());
    assert_eq!(query_state(&mut e, &mut ecr, "P2"), (ResponseCode::APPROVED, Some(QueryState::Approved)));
    assert_eq!(e.counters().duplicates, 2);
}

#[test]
fn state_survives_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminal.json");
    assert!(TerminalState::load(&path).unwrap().is_none());
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let sale = send(&mut e, &ecr.sale(10_000, "S1"));
    send(&mut e, &ecr.sale(10_051, "S2"));
    settle(&mut e, &mut ecr);
    let voided = send(&mut e, &ecr.sale(2_000, "S3"));
    send(&mut e, &ecr.void(2_000, &voided.trace, "V1"));
    send(&mut e, &ecr.refund(2_500, &sale.date, sale.rrn.as_str(), "F1"));
    e.state().save(&path).unwrap();
    e.state().save(&path).unwrap(); // over an existing file
    let loaded = TerminalState::load(&path).unwrap().unwrap();
    assert!(loaded.transactions().eq(e.state().transactions()));
    assert_eq!(
        (loaded.batch(), loaded.previous_batch(), loaded.last_trace(), loaded.rrns_issued()),
        (e.state().batch(), e.state().previous_batch(), e.state().last_trace(), e.state().rrns_issued())
    );
    assert!(!loaded.is_signed_in());
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|d| d.unwrap().file_name()).collect();
    assert_eq!(names, ["terminal.json"], "no temporary files left behind");
    // The restarted terminal answers the same, and its indexes work: void and refund find their sales.
    let mut e2 = Engine::new(EngineConfig::default(), loaded);
    send(&mut e2, &ecr.request(RequestBody::SignIn, None));
    for reference in ["S1", "S2", "S3", "V1", "F1"] {
        let a = e.handle(&ecr.query(reference), NOW);
        let b = e2.handle(&ecr.query(reference), NOW);
        assert_eq!((a.code, a.trace, a.rrn, a.memo.query_state), (b.code, b.trace, b.rrn, b.memo.query_state));
    }
    assert_eq!(send(&mut e2, &ecr.void(2_000, &voided.trace, "V2")).code, ResponseCode::INVALID_TRANSACTION);
    assert!(send(&mut e2, &ecr.refund(7_500, &sale.date, sale.rrn.as_str(), "F2")).is_approved());
}

#[test]
fn a_corrupt_state_file_is_an_error_naming_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("terminal.json");
    let cases = [
        ("{\"version\":1,\"batch\":", "EOF"),
        ("", "EOF"),
        ("[1,2]", "invalid"),
        (r#"{"version":2,"batch":1,"previous_batch":null,"last_trace":0,"last_rrn":0,"transactions":[]}"#, "version"),
        (r#"{"version":1,"batch":0,"previous_batch":null,"last_trace":0,"last_rrn":0,"transactions":[]}"#, "batch 0"),
        (
            r#"{"version":1,"batch":1,"previous_batch":null,"last_trace":0,"last_rrn":0,"transactions":[{"reference":"P1","kind":"00","code":"00","text":"ok","card":"6228481234567890123","amount_fen":1,"trace":"000001","batch":"000001","date":"20201021","time":"101530","rrn":"000100000001","auth":"A1B2C3"}]}"#,
            "card",
        ),
    ];
    for (content, problem) in cases {
        std::fs::write(&path, content).unwrap();
        let err = TerminalState::load(&path).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("terminal.json"), "{message}");
        assert!(message.contains(problem), "{message} should name {problem}");
    }
}

#[test]
fn a_truncated_request_gets_t5_with_its_token() {
    let mut ecr = Ecr::new();
    let request = ecr.sale(28_000, "P1");
    let bytes = request.encode().unwrap();
    let truncated = &bytes[..40];
    let error = Request::decode(truncated).unwrap_err();
    let r = malformed_response(truncated, &error).unwrap();
    assert_eq!((r.token, r.kind, r.code), (request.token, MessageType::Sale, ResponseCode::MALFORMED));
    assert!(r.text.as_str().contains(&*error.field.name()), "{} names {}", r.text, error.field);
    assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r);
    // The engine's variant fills in the ids and counts.
    let mut e = Engine::new(EngineConfig::default(), TerminalState::new());
    let r = e.handle_malformed(truncated, &error).unwrap();
    assert_eq!((r.code, r.terminal.as_str()), (ResponseCode::MALFORMED, "41000001"));
    assert_eq!(e.counters().malformed, 1);
    // Unreadable type: answered as STATUS; unreadable token: nobody to answer.
    let mut bad_type = bytes.clone();
    bad_type[3..5].copy_from_slice(b"99");
    let error = Request::decode(&bad_type).unwrap_err();
    assert_eq!(malformed_response(&bad_type, &error).unwrap().kind, MessageType::Status);
    assert!(malformed_response(b"1", &error).is_none());
    assert!(malformed_response(b"0AB00", &error).is_none());
}

#[test]
fn a_request_breaking_the_rules_gets_t5() {
    let (mut e, mut ecr) = signed_in(EngineConfig::default());
    let no_reference = ecr.request(RequestBody::Sale { amount: Amount::from_fen(100).unwrap() }, None);
    let r = send(&mut e, &no_reference);
    assert_eq!(r.code, ResponseCode::MALFORMED);
    assert!(r.text.as_str().contains("0F01"), "{}", r.text);
    let zero = ecr.request(RequestBody::Sale { amount: Amount::ZERO }, Some("Z1"));
    assert_eq!(send(&mut e, &zero).code, ResponseCode::MALFORMED);
    assert!(e.state().is_empty());
}

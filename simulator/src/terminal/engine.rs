//! The terminal's behaviour, sans-IO: one decoded request and the terminal's clock in, one response out
//! (wire-protocol.md §5).
//!
//! # Driver contract
//! The runtime owns the link, the clock and the state file. For each request DATA it delivers (§4 rule 1
//! already applied, so a retransmission never arrives twice) it calls [`Engine::handle`] (or
//! [`Engine::handle_forced`]) with the decoded request and the current time, or
//! [`Engine::handle_malformed`] when DATA does not decode, and sends back the response. To survive a
//! restart it saves [`Engine::state`] ([`TerminalState::save`]) whenever [`Engine::changes`] moved, before
//! sending the response, as a terminal writes flash before it prints the slip.
//!
//! # Decisions
//! - A SALE's outcome: forced code ([`Engine::handle_forced`]) first, then the control queue, then the
//!   amount table ([`amount_outcome`]), then one seeded draw against the decline rates, else approved.
//!   A queued approval may name another amount ([`Engine::queue_approval_of`]): the sale is then
//!   approved, stored and answered for that amount, as a misbehaving terminal would; QUERY, VOID,
//!   REFUND and SETTLE see that amount.
//! - Traces: a transaction that reaches the host (approved, or declined by a host code) gets a trace; a
//!   terminal-local refusal (`T1`-`T3`, and VOID/REFUND refused by the terminal's own checks `25`/`12`/`13`)
//!   gets none (000000), as on real terminals, where a cancelled card wait prints no slip.
//! - Every money request that is carried out or refused is stored under its 0F01 reference, so QUERY
//!   answers it (`D` for refusals). A reference stored for an approved transaction is taken: another
//!   money request with it answers `94` and changes nothing. A reference whose transaction was refused
//!   may be used again (the refusal moved no money); QUERY then answers the latest attempt.
//! - RRN (12 an): the last four characters of the terminal id (left-padded with `0`) and an 8-digit
//!   counter kept in the state file: unique across restarts, and across the terminals of one simulator
//!   as long as their ids differ in the last four characters (and for 10^8 RRNs per terminal).
//! - A REFUND must name an approved, unvoided sale of an earlier batch by (`orig_date`, `orig_rrn`);
//!   anything else answers `25` with the text saying why ("原交易不存在", "当批交易请撤销" for a sale
//!   of the open batch, which is voided instead, "原交易未成功", "原交易已撤销"). An amount above
//!   what remains unrefunded answers `13`.
//! - `T5` for a request that decodes but breaks §5.3 rules (no reference, zero amount) when built in code.

use std::collections::VecDeque;

use serde::Serialize;
use time::OffsetDateTime;
use zhengjiao_protocol::memo::{EcrReference, Memo, TAG_REFERENCE};
use zhengjiao_protocol::message::{
    peek_token, Amount, Date, MaskedPan, MerchantId, MessageType, Request, RequestBody, Response, ResponseCode,
    ResponseText, Rrn, TerminalId, Time, Trace,
};
use zhengjiao_protocol::{Ascii, DecodeError, Digits, Field, Text};

use super::state::{TerminalState, Transaction};

pub use crate::common::LOCAL_OFFSET;
/// The most outcomes [`Engine::queue_outcome`] holds.
pub const MAX_QUEUED_OUTCOMES: usize = 1000;
/// UnionPay BINs the simulated cards come from.
pub const CARD_BINS: [&str; 6] = ["622848", "621700", "622202", "621483", "622588", "623668"];

/// How a simulated terminal behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// 商户号.
    pub merchant: MerchantId,
    /// 终端号.
    pub terminal: TerminalId,
    /// Seed of all randomness (card numbers, auth codes, drawn declines).
    pub seed: u64,
    /// Declines drawn, in order, for a SALE that neither its amount nor the queue decides: one uniform
    /// draw `u` in [0, 1); the first code whose cumulative rate exceeds `u` wins. Rates that are not
    /// finite or not above zero count as zero.
    pub decline_rates: Vec<(ResponseCode, f64)>,
}

impl Default for EngineConfig {
    /// Merchant `898410153990001`, terminal `41000001`, seed 0, no drawn declines.
    fn default() -> Self {
        EngineConfig {
            merchant: Ascii::new("898410153990001").unwrap_or(Ascii::EMPTY),
            terminal: Ascii::new("41000001").unwrap_or(Ascii::EMPTY),
            seed: 0,
            decline_rates: Vec::new(),
        }
    }
}

/// An outcome queued for a coming SALE through the control surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedOutcome {
    /// The response code.
    pub code: ResponseCode,
    /// With `00` only: the amount the sale is approved, stored and answered for instead of the one
    /// asked (a misbehaving terminal). `None`: the amount asked.
    pub amount: Option<Amount>,
}

/// Why [`Engine::queue_approval_of`] refused an approval of another amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueueApprovalError {
    /// The control queue is full.
    #[error(transparent)]
    Full(#[from] QueueFull),
    /// The amount is zero: no sale is approved for nothing.
    #[error("an approval of 0 fen: the amount must be at least 1 fen")]
    ZeroAmount,
}

/// The control queue already holds [`MAX_QUEUED_OUTCOMES`] outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the outcome queue is full ({MAX_QUEUED_OUTCOMES} outcomes)")]
pub struct QueueFull;

/// Requests handled, by message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    /// SALE.
    pub sale: u64,
    /// VOID.
    pub void: u64,
    /// REFUND.
    pub refund: u64,
    /// SETTLE.
    pub settle: u64,
    /// SIGN_IN.
    pub sign_in: u64,
    /// QUERY.
    pub query: u64,
    /// STATUS.
    pub status: u64,
}

impl RequestCounts {
    fn count(&mut self, kind: MessageType) {
        let n = match kind {
            MessageType::Sale => &mut self.sale,
            MessageType::Void => &mut self.void,
            MessageType::Refund => &mut self.refund,
            MessageType::Settle => &mut self.settle,
            MessageType::SignIn => &mut self.sign_in,
            MessageType::Query => &mut self.query,
            MessageType::Status => &mut self.status,
        };
        *n += 1;
    }
}

/// What an engine has done since it was created (not persisted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineCounters {
    /// Decoded requests, by type (malformed ones are in `malformed`).
    pub requests: RequestCounts,
    /// SALEs answered `00`.
    pub sales_approved: u64,
    /// SALEs declined (any code but `00`, stored as `D`).
    pub sales_declined: u64,
    /// VOIDs answered `00`.
    pub voids_approved: u64,
    /// VOIDs refused (`25`, `12`).
    pub voids_refused: u64,
    /// REFUNDs answered `00`.
    pub refunds_approved: u64,
    /// REFUNDs refused (`25`, `13`).
    pub refunds_refused: u64,
    /// SETTLEs carried out.
    pub settlements: u64,
    /// SIGN_INs carried out.
    pub sign_ins: u64,
    /// QUERYs that found the transaction.
    pub queries_answered: u64,
    /// QUERYs answered `25`.
    pub queries_not_found: u64,
    /// Money requests answered `94` (reference already used).
    pub duplicates: u64,
    /// Money requests answered `T3` because the batch is full.
    pub batch_full: u64,
    /// Requests answered `T4` (not signed in).
    pub not_signed_in: u64,
    /// Requests answered `T5` (malformed).
    pub malformed: u64,
}

/// The terminal's behaviour: state, control queue, seeded randomness and counters.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    state: TerminalState,
    rng: fastrand::Rng,
    queue: VecDeque<QueuedOutcome>,
    counters: EngineCounters,
    changes: u64,
}

impl Engine {
    /// An engine for the terminal `cfg` describes, starting from `state` (fresh or loaded). It starts
    /// signed out whatever `state` says: sign-in is not kept across restarts.
    pub fn new(cfg: EngineConfig, mut state: TerminalState) -> Engine {
        state.set_signed_in(false);
        let rng = fastrand::Rng::with_seed(cfg.seed);
        Engine { cfg, state, rng, queue: VecDeque::new(), counters: EngineCounters::default(), changes: 0 }
    }

    /// Handles one decoded request at the terminal's local time `now` (converted to UTC+8), stores what a
    /// real terminal stores, returns the response to send.
    pub fn handle(&mut self, request: &Request, now: OffsetDateTime) -> Response {
        self.handle_inner(request, now, None)
    }

    /// Same, but a SALE's outcome is forced to `code` (ahead of the queue, the amount table and the
    /// rates). Everything else is as in [`Engine::handle`]: a duplicate reference still answers `94`.
    pub fn handle_forced(&mut self, request: &Request, now: OffsetDateTime, code: ResponseCode) -> Response {
        self.handle_inner(request, now, Some(code))
    }

    /// [`malformed_response`] with this terminal's merchant and terminal ids, counted.
    pub fn handle_malformed(&mut self, data: &[u8], error: &DecodeError) -> Option<Response> {
        self.counters.malformed += 1;
        let mut response = malformed_response(data, error)?;
        response.merchant = self.cfg.merchant;
        response.terminal = self.cfg.terminal;
        Some(response)
    }

    /// Control surface: the next SALE on this terminal answers `code`, whatever its amount (the queue
    /// is consulted before the amount table; FIFO, at most [`MAX_QUEUED_OUTCOMES`]). A SALE answered
    /// `T4` or `94` does not take an outcome.
    pub fn queue_outcome(&mut self, code: ResponseCode) -> Result<(), QueueFull> {
        self.push_outcome(QueuedOutcome { code, amount: None })
    }

    /// Control surface: the next SALE on this terminal is approved (`00`) for `amount` instead of the
    /// amount it asks, and stored and answered with that amount (a misbehaving terminal); QUERY, VOID,
    /// REFUND and SETTLE then see `amount`. Queued in order with [`Engine::queue_outcome`]'s codes.
    pub fn queue_approval_of(&mut self, amount: Amount) -> Result<(), QueueApprovalError> {
        if amount == Amount::ZERO {
            return Err(QueueApprovalError::ZeroAmount);
        }
        Ok(self.push_outcome(QueuedOutcome { code: ResponseCode::APPROVED, amount: Some(amount) })?)
    }

    fn push_outcome(&mut self, outcome: QueuedOutcome) -> Result<(), QueueFull> {
        if self.queue.len() >= MAX_QUEUED_OUTCOMES {
            return Err(QueueFull);
        }
        self.queue.push_back(outcome);
        Ok(())
    }

    /// Outcomes queued and not yet taken.
    pub fn queued_outcomes(&self) -> usize {
        self.queue.len()
    }

    /// Replaces the decline rates (see [`EngineConfig::decline_rates`]).
    pub fn set_decline_rates(&mut self, rates: Vec<(ResponseCode, f64)>) {
        self.cfg.decline_rates = rates;
    }

    /// What a power cycle does: the terminal needs SIGN_IN again. Stored transactions stay.
    pub fn sign_out(&mut self) {
        self.state.set_signed_in(false);
    }

    /// What the terminal keeps in flash.
    pub fn state(&self) -> &TerminalState {
        &self.state
    }

    /// The configuration in force (with the current decline rates).
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// How many times the persisted state changed since the engine was created: save when it moved.
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// Requests by type, outcomes and refusals so far.
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    fn handle_inner(&mut self, request: &Request, now: OffsetDateTime, forced: Option<ResponseCode>) -> Response {
        let kind = request.message_type();
        self.counters.requests.count(kind);
        let (date, time) = local_stamp(now);
        let mut base = Response::answering(request, ResponseCode::APPROVED);
        base.merchant = self.cfg.merchant;
        base.terminal = self.cfg.terminal;
        base.date = date;
        base.time = time;
        base.batch = self.state.batch();
        base.memo = request.reference().map_or_else(Memo::new, |r| Memo::with_reference(*r));

        if let Err(e) = request.validate() {
            self.counters.malformed += 1;
            return refuse(base, ResponseCode::MALFORMED, &malformed_text(e.field));
        }
        if !self.state.is_signed_in() && !matches!(kind, MessageType::SignIn | MessageType::Status) {
            self.counters.not_signed_in += 1;
            return refuse(base, ResponseCode::NOT_SIGNED_IN, "终端未签到");
        }
        match request.body {
            RequestBody::SignIn => {
                self.state.set_signed_in(true);
                self.counters.sign_ins += 1;
                return with_text(base, "签到成功");
            }
            RequestBody::Status => return with_text(base, "终端正常"),
            RequestBody::Settle => return self.settle(base),
            _ => {}
        }
        // validate() requires a reference for the rest.
        let Some(reference) = request.reference().copied() else {
            return refuse(base, ResponseCode::MALFORMED, &malformed_text(Field::MemoItem(TAG_REFERENCE)));
        };
        if request.body == RequestBody::Query {
            return self.query(base, &reference);
        }
        // A money request.
        if self.state.find(&reference).is_some_and(Transaction::is_approved) {
            self.counters.duplicates += 1;
            return refuse(base, host_code("94"), "重复交易");
        }
        if self.state.batch_full() {
            self.counters.batch_full += 1;
            return refuse(base, ResponseCode::BUSY, "交易笔数已满请先结算");
        }
        let blank = Transaction {
            reference,
            kind,
            code: ResponseCode::APPROVED,
            text: ResponseText::default(),
            card: None,
            amount: request.body.amount(),
            trace: Digits::ZERO,
            batch: self.state.batch(),
            date,
            time,
            rrn: Ascii::EMPTY,
            auth: Ascii::EMPTY,
            voided: false,
            refunded: Amount::ZERO,
            original: None,
        };
        let stored = match request.body {
            RequestBody::Void { amount, orig_trace } => self.void(blank, amount, orig_trace),
            RequestBody::Refund { amount, orig_date, orig_rrn } => self.refund(blank, amount, orig_date, orig_rrn),
            _ => self.sale(blank, forced),
        };
        let response = from_transaction(base, &stored);
        self.state.push(stored);
        self.changes += 1;
        response
    }

    fn sale(&mut self, mut t: Transaction, forced: Option<ResponseCode>) -> Transaction {
        // One draw per decided sale, whatever decides it, so the sequence depends only on the requests.
        let u = self.rng.f64();
        let queued = if forced.is_some() { None } else { self.queue.pop_front() };
        let code = forced
            .or(queued.map(|q| q.code))
            .or_else(|| amount_outcome(t.amount))
            .or_else(|| drawn_outcome(&self.cfg.decline_rates, u))
            .unwrap_or(ResponseCode::APPROVED);
        t.code = code;
        t.text = text(code_text(code));
        if is_terminal_local(code) {
            self.counters.sales_declined += 1;
            return t;
        }
        t.card = self.card();
        self.reach_host(&mut t);
        if code.is_approved() {
            if let Some(amount) = queued.and_then(|q| q.amount) {
                // The terminal approves another amount than asked, and stores that.
                t.amount = amount;
            }
            self.counters.sales_approved += 1;
        } else {
            self.counters.sales_declined += 1;
            t.auth = Ascii::EMPTY;
        }
        t
    }

    fn void(&mut self, mut t: Transaction, amount: Amount, orig_trace: Trace) -> Transaction {
        let found = self.state.slot_by_trace(orig_trace).and_then(|s| Some((s, self.state.get(s)?)));
        let slot = found.map(|(slot, _)| slot);
        let problem = match found {
            None => Some((ResponseCode::NOT_FOUND, "原交易不存在")),
            Some((_, sale)) if sale.kind != MessageType::Sale => {
                Some((ResponseCode::INVALID_TRANSACTION, "原交易不能撤销"))
            }
            Some((_, sale)) if !sale.is_approved() => Some((ResponseCode::INVALID_TRANSACTION, "原交易未成功")),
            Some((_, sale)) if sale.voided => Some((ResponseCode::INVALID_TRANSACTION, "原交易已撤销")),
            Some((_, sale)) if sale.amount != amount => Some((ResponseCode::INVALID_TRANSACTION, "金额与原交易不符")),
            Some(_) => None,
        };
        if let Some((_, sale)) = found {
            t.original = Some(sale.reference);
            t.card = sale.card;
        }
        if let Some((code, why)) = problem {
            self.counters.voids_refused += 1;
            return refused(t, code, why);
        }
        if let Some(sale) = slot.and_then(|slot| self.state.get_mut(slot)) {
            sale.voided = true;
        }
        self.counters.voids_approved += 1;
        self.approve(t)
    }

    fn refund(&mut self, mut t: Transaction, amount: Amount, orig_date: Date, orig_rrn: Rrn) -> Transaction {
        let batch = self.state.batch();
        let found = self.state.slot_by_rrn(&orig_rrn).and_then(|s| Some((s, self.state.get(s)?)));
        let found = found.filter(|(_, sale)| sale.kind == MessageType::Sale && sale.date == orig_date);
        let slot = found.map(|(slot, _)| slot);
        let problem = match found {
            // No refundable approved sale of an earlier batch: 25, the text saying why.
            None => Some((ResponseCode::NOT_FOUND, "原交易不存在")),
            Some((_, sale)) if sale.batch == batch => Some((ResponseCode::NOT_FOUND, "当批交易请撤销")),
            Some((_, sale)) if !sale.is_approved() => Some((ResponseCode::NOT_FOUND, "原交易未成功")),
            Some((_, sale)) if sale.voided => Some((ResponseCode::NOT_FOUND, "原交易已撤销")),
            Some((_, sale)) if amount.fen() > sale.refundable() => Some((ResponseCode::INVALID_AMOUNT, "退货金额超限")),
            Some(_) => None,
        };
        if let Some((_, sale)) = found {
            t.original = Some(sale.reference);
            t.card = sale.card;
        }
        if let Some((code, why)) = problem {
            self.counters.refunds_refused += 1;
            return refused(t, code, why);
        }
        if let Some(sale) = slot.and_then(|slot| self.state.get_mut(slot)) {
            sale.refunded = Amount::from_fen(sale.refunded.fen() + amount.fen()).unwrap_or(sale.amount);
        }
        self.counters.refunds_approved += 1;
        self.approve(t)
    }

    fn approve(&mut self, mut t: Transaction) -> Transaction {
        t.code = ResponseCode::APPROVED;
        t.text = text(code_text(ResponseCode::APPROVED));
        self.reach_host(&mut t);
        t
    }

    /// Trace, RRN and auth code of a transaction the host answered.
    fn reach_host(&mut self, t: &mut Transaction) {
        t.trace = self.state.next_trace();
        t.rrn = self.rrn();
        t.auth = self.auth_code();
    }

    fn settle(&mut self, mut base: Response) -> Response {
        let (closed, totals) = self.state.settle();
        self.counters.settlements += 1;
        self.changes += 1;
        base.batch = closed;
        base.memo.settle = Some(totals);
        with_text(base, "结算成功")
    }

    fn query(&mut self, base: Response, reference: &EcrReference) -> Response {
        let Some(t) = self.state.find(reference) else {
            self.counters.queries_not_found += 1;
            return refuse(base, ResponseCode::NOT_FOUND, "无此交易");
        };
        self.counters.queries_answered += 1;
        let mut response = from_transaction(base, t);
        response.memo.query_state = Some(t.query_state());
        response.memo.query_type = Some(t.kind);
        response
    }

    /// A masked card number from one of [`CARD_BINS`]: 6 digits, 9 `*`, 4 digits. No full PAN exists.
    fn card(&mut self) -> Option<MaskedPan> {
        let bin = CARD_BINS.get(self.rng.usize(..CARD_BINS.len())).copied().unwrap_or("622848");
        let last4 = self.rng.u32(..10_000);
        // Always valid (the shape is fixed and tested); `ok()` only keeps this panic-free.
        MaskedPan::new(&format!("{bin}*********{last4:04}")).ok()
    }

    fn auth_code(&mut self) -> zhengjiao_protocol::message::AuthCode {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHJKLMNPQRSTUVWXYZ";
        let code: String = (0..6)
            .map(|_| char::from(ALPHABET.get(self.rng.usize(..ALPHABET.len())).copied().unwrap_or(b'0')))
            .collect();
        Ascii::new(&code).unwrap_or(Ascii::EMPTY)
    }

    fn rrn(&mut self) -> Rrn {
        let n = self.state.next_rrn() % 100_000_000;
        Ascii::new(&format!("{}{n:08}", rrn_prefix(&self.cfg.terminal))).unwrap_or(Ascii::EMPTY)
    }
}

/// The fixed outcome table by amount (fen % 100): 51 → `51`, 05 → `05`, 61 → `61`, 97 → `T1`, 98 → `T2`.
pub fn amount_outcome(amount: Amount) -> Option<ResponseCode> {
    match amount.fen() % 100 {
        51 => Some(host_code("51")),
        5 => Some(host_code("05")),
        61 => Some(host_code("61")),
        97 => Some(ResponseCode::CANCELLED),
        98 => Some(ResponseCode::CARD_TIMEOUT),
        _ => None,
    }
}

/// The code a uniform draw `u` in [0, 1) picks from `rates` (cumulative, in order), if any.
fn drawn_outcome(rates: &[(ResponseCode, f64)], u: f64) -> Option<ResponseCode> {
    let mut cumulative = 0.0;
    for &(code, rate) in rates {
        if rate.is_finite() && rate > 0.0 {
            cumulative += rate;
            if u < cumulative {
                return Some(code);
            }
        }
    }
    None
}

/// `T` codes are the terminal's own: the host never saw the transaction.
fn is_terminal_local(code: ResponseCode) -> bool {
    code.as_str().starts_with('T')
}

/// A code from a constant two-character string (checked by the tests).
fn host_code(code: &'static str) -> ResponseCode {
    ResponseCode::new(code).unwrap_or(ResponseCode::INVALID_TRANSACTION)
}

/// 应答信息 for a response code, as a 全民付 terminal prints it.
pub fn code_text(code: ResponseCode) -> &'static str {
    match code.as_str() {
        "00" => "交易成功",
        "01" => "请持卡人与发卡行联系",
        "03" => "无效商户",
        "05" => "不予承兑",
        "12" => "无效交易",
        "13" => "无效金额",
        "14" => "无效卡号",
        "25" => "原交易不存在",
        "30" => "报文格式错误",
        "51" => "余额不足",
        "54" => "卡已过期",
        "55" => "密码错误",
        "61" => "超出金额限制",
        "68" | "98" => "发卡行超时",
        "91" => "发卡行不能操作",
        "94" => "重复交易",
        "96" => "系统故障",
        "97" => "终端未登记",
        "A0" => "MAC校验错",
        "T1" => "交易取消",
        "T2" => "等待刷卡超时",
        "T3" => "终端忙",
        "T4" => "终端未签到",
        "T5" => "报文格式错误",
        _ => "交易失败",
    }
}

fn text(s: &str) -> ResponseText {
    Text::new(s).unwrap_or_default()
}

fn with_text(mut response: Response, s: &str) -> Response {
    response.text = text(s);
    response
}

/// A response refused before anything was stored: code and text, no trace.
fn refuse(mut response: Response, code: ResponseCode, s: &str) -> Response {
    response.code = code;
    response.text = text(s);
    response
}

fn refused(mut t: Transaction, code: ResponseCode, s: &str) -> Transaction {
    t.code = code;
    t.text = text(s);
    t
}

/// The response carrying a stored transaction's result (`base` supplies token, type, ids and memo).
fn from_transaction(mut base: Response, t: &Transaction) -> Response {
    base.code = t.code;
    base.text = t.text.clone();
    base.card = t.card;
    base.amount = t.amount;
    base.trace = t.trace;
    base.batch = t.batch;
    base.date = t.date;
    base.time = t.time;
    base.rrn = t.rrn;
    base.auth = t.auth;
    base
}

/// `now` as the terminal's local date YYYYMMDD and time hhmmss (zeros for a year outside 0..=9999).
fn local_stamp(now: OffsetDateTime) -> (Date, Time) {
    let Some(local) = now.checked_to_offset(LOCAL_OFFSET) else { return (Digits::ZERO, Digits::ZERO) };
    let date = Digits::new(&format!("{:04}{:02}{:02}", local.year(), u8::from(local.month()), local.day()));
    let time = Digits::new(&format!("{:02}{:02}{:02}", local.hour(), local.minute(), local.second()));
    (date.unwrap_or(Digits::ZERO), time.unwrap_or(Digits::ZERO))
}

/// The first four characters of this terminal's RRNs: its id's last four, left-padded with `0`.
fn rrn_prefix(terminal: &TerminalId) -> String {
    let id = terminal.as_str();
    let tail = id.get(id.len().saturating_sub(4)..).unwrap_or_default();
    format!("{tail:0>4}")
}

fn malformed_text(field: Field) -> String {
    let named = format!("报文格式错误:{field}");
    if Text::<40>::new(&named).is_ok() {
        named
    } else {
        "报文格式错误".to_owned()
    }
}

/// The `T5` answer to request DATA that does not decode: the token and type echoed when they can be read
/// (a type that cannot be read is answered as STATUS, which the ECR reports as a type mismatch), the
/// text naming the field. `None` when not even the token can be read: then nobody can be answered.
pub fn malformed_response(data: &[u8], error: &DecodeError) -> Option<Response> {
    let token = peek_token(data)?;
    let kind = data.get(3..5).and_then(MessageType::from_code).unwrap_or(MessageType::Status);
    Some(Response { text: text(&malformed_text(error.field)), ..Response::empty(token, kind, ResponseCode::MALFORMED) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_text_that_fits_the_field() {
        let codes = [
            "00", "01", "03", "05", "12", "13", "14", "25", "30", "51", "54", "55", "61", "68", "91", "94", "96", "97",
            "98", "A0", "T1", "T2", "T3", "T4", "T5", "ZZ",
        ];
        for c in codes {
            let code = host_code(c);
            assert_eq!(code.as_str(), c);
            let t = code_text(code);
            assert_eq!(text(t).as_str(), t, "{c}: {t} does not fit 40 bytes of GB18030");
        }
        for t in ["交易笔数已满请先结算", "原交易不能撤销", "原交易未成功", "原交易已撤销", "金额与原交易不符"]
        {
            assert_eq!(text(t).as_str(), t);
        }
        for t in ["当批交易请撤销", "退货金额超限", "签到成功", "终端正常", "结算成功", "无此交易"]
        {
            assert_eq!(text(t).as_str(), t);
        }
        assert_eq!(malformed_text(Field::Trailing), "报文格式错误:trailing bytes");
    }

    #[test]
    fn the_amount_table() {
        let outcome = |fen| amount_outcome(Amount::from_fen(fen).unwrap_or_default()).map(|c| c.to_string());
        assert_eq!(outcome(151).as_deref(), Some("51"));
        assert_eq!(outcome(5).as_deref(), Some("05"));
        assert_eq!(outcome(99_961).as_deref(), Some("61"));
        assert_eq!(outcome(197).as_deref(), Some("T1"));
        assert_eq!(outcome(298).as_deref(), Some("T2"));
        for fen in [100, 150, 152, 6, 50, 99, 199] {
            assert_eq!(outcome(fen), None, "{fen}");
        }
    }

    #[test]
    fn rates_are_cumulative_in_order() {
        let rates =
            [(host_code("51"), 0.1), (host_code("05"), f64::NAN), (host_code("T1"), 0.2), (host_code("96"), -1.0)];
        let drawn = |u| drawn_outcome(&rates, u).map(|c| c.to_string());
        assert_eq!(drawn(0.0).as_deref(), Some("51"));
        assert_eq!(drawn(0.099).as_deref(), Some("51"));
        assert_eq!(drawn(0.1).as_deref(), Some("T1"));
        assert_eq!(drawn(0.299).as_deref(), Some("T1"));
        assert_eq!(drawn(0.301), None);
        assert_eq!(drawn_outcome(&[], 0.0), None);
    }

    #[test]
    fn rrn_prefix_takes_the_last_four_characters() {
        let id = |s| Ascii::new(s).unwrap_or(Ascii::EMPTY);
        assert_eq!(rrn_prefix(&id("41000001")), "0001");
        assert_eq!(rrn_prefix(&id("T7")), "00T7");
        assert_eq!(rrn_prefix(&Ascii::EMPTY), "0000");
    }

    #[test]
    fn local_stamp_is_utc_plus_8() {
        let (d, t) = local_stamp(time::macros::datetime!(2020-12-31 16:00:01 UTC));
        assert_eq!((d.as_str(), t.as_str()), ("20210101", "000001"));
        let (d, t) = local_stamp(time::macros::datetime!(2020-10-21 10:15:30 +08:00));
        assert_eq!((d.as_str(), t.as_str()), ("20201021", "101530"));
    }
}

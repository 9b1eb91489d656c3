//! Requests and responses (wire-protocol.md §5.1-5.3, §5.5), typed, with their encoders and decoders.
//!
//! Both directions go through the layout tables of [`crate::field`]; this module only says which value
//! each field holds and which combinations each message type allows.

use std::fmt;

use crate::field::{
    write_fixed, Ascii, DecodeError, Digits, Field, FieldError, Fixed, Text, Value, ValueError, REQUEST_LAYOUT,
    RESPONSE_LAYOUT,
};
use crate::memo::{EcrReference, Memo};

/// The message type (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// `00` 消费.
    Sale,
    /// `01` 撤销.
    Void,
    /// `02` 退货.
    Refund,
    /// `04` 结算.
    Settle,
    /// `05` 签到.
    SignIn,
    /// `07` 交易查询.
    Query,
    /// `08` 状态.
    Status,
}

impl MessageType {
    /// Every type, in code order.
    pub const ALL: [MessageType; 7] = [
        MessageType::Sale,
        MessageType::Void,
        MessageType::Refund,
        MessageType::Settle,
        MessageType::SignIn,
        MessageType::Query,
        MessageType::Status,
    ];

    /// The two-digit wire code.
    pub const fn code(self) -> &'static str {
        match self {
            MessageType::Sale => "00",
            MessageType::Void => "01",
            MessageType::Refund => "02",
            MessageType::Settle => "04",
            MessageType::SignIn => "05",
            MessageType::Query => "07",
            MessageType::Status => "08",
        }
    }

    /// The name used in the canonical JSON form (§6).
    pub const fn name(self) -> &'static str {
        match self {
            MessageType::Sale => "sale",
            MessageType::Void => "void",
            MessageType::Refund => "refund",
            MessageType::Settle => "settle",
            MessageType::SignIn => "sign_in",
            MessageType::Query => "query",
            MessageType::Status => "status",
        }
    }

    /// The type with the given wire code.
    pub fn from_code(code: &[u8]) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.code().as_bytes() == code)
    }

    /// The type with the given JSON name.
    pub fn from_name(name: &str) -> Option<MessageType> {
        MessageType::ALL.into_iter().find(|t| t.name() == name)
    }

    /// True for SALE, VOID and REFUND: the requests that move money and whose lost answer makes the
    /// outcome unknown (§4 rule 7).
    pub const fn moves_money(self) -> bool {
        matches!(self, MessageType::Sale | MessageType::Void | MessageType::Refund)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The request token, `100`..=`999`, new for every request and echoed in its response (§5.1 #1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u16);

impl Token {
    /// The lowest token.
    pub const MIN: Token = Token(100);
    /// The highest token.
    pub const MAX: Token = Token(999);

    /// A token, if `n` is in range.
    pub fn new(n: u16) -> Result<Token, ValueError> {
        if (100..=999).contains(&n) {
            Ok(Token(n))
        } else {
            Err(ValueError::Invalid { expected: "a token from 100 to 999" })
        }
    }

    /// The number.
    pub const fn get(self) -> u16 {
        self.0
    }

    /// The token after this one, wrapping from 999 to 100.
    pub const fn next(self) -> Token {
        if self.0 >= 999 {
            Token(100)
        } else {
            Token(self.0 + 1)
        }
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// The largest amount a 12-digit field holds, in fen.
pub const MAX_AMOUNT_FEN: u64 = 999_999_999_999;

/// An amount in fen (0.01 yuan) that fits the 12-digit field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(u64);

impl Amount {
    /// Zero.
    pub const ZERO: Amount = Amount(0);

    /// An amount, if it fits 12 digits.
    pub fn from_fen(fen: u64) -> Result<Amount, ValueError> {
        if fen > MAX_AMOUNT_FEN {
            return Err(ValueError::TooWide { width: 12, len: fen.to_string().len() });
        }
        Ok(Amount(fen))
    }

    /// The amount in fen.
    pub const fn fen(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// 应答码, a two-character response code (§5.5). Only `00` means money moved.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResponseCode([u8; 2]);

impl ResponseCode {
    /// `00` approved.
    pub const APPROVED: ResponseCode = ResponseCode(*b"00");
    /// `12` invalid transaction.
    pub const INVALID_TRANSACTION: ResponseCode = ResponseCode(*b"12");
    /// `13` invalid amount.
    pub const INVALID_AMOUNT: ResponseCode = ResponseCode(*b"13");
    /// `25` original transaction not found: for QUERY, proof the terminal did not carry it out.
    pub const NOT_FOUND: ResponseCode = ResponseCode(*b"25");
    /// `T1` cancelled by cardholder or operator.
    pub const CANCELLED: ResponseCode = ResponseCode(*b"T1");
    /// `T2` card wait timed out.
    pub const CARD_TIMEOUT: ResponseCode = ResponseCode(*b"T2");
    /// `T3` terminal busy.
    pub const BUSY: ResponseCode = ResponseCode(*b"T3");
    /// `T4` terminal not signed in.
    pub const NOT_SIGNED_IN: ResponseCode = ResponseCode(*b"T4");
    /// `T5` malformed request.
    pub const MALFORMED: ResponseCode = ResponseCode(*b"T5");

    /// A code of two uppercase letters or digits.
    pub fn new(code: &str) -> Result<ResponseCode, ValueError> {
        Self::from_wire(code.as_bytes())
    }

    fn from_wire(bytes: &[u8]) -> Result<ResponseCode, ValueError> {
        match bytes {
            [a, b] if [a, b].iter().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()) => Ok(ResponseCode([*a, *b])),
            _ => Err(ValueError::Invalid { expected: "two uppercase letters or digits" }),
        }
    }

    /// True for `00`.
    pub fn is_approved(self) -> bool {
        self == ResponseCode::APPROVED
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// What the code means, for codes §5.5 names.
    pub fn meaning(self) -> Option<&'static str> {
        Some(match &self.0 {
            b"00" => "approved",
            b"01" => "refer to issuer",
            b"03" => "invalid merchant",
            b"05" => "do not honour",
            b"12" => "invalid transaction",
            b"13" => "invalid amount",
            b"14" => "invalid card number",
            b"25" => "original transaction not found",
            b"30" => "format error",
            b"51" => "insufficient funds",
            b"54" => "expired card",
            b"55" => "wrong PIN",
            b"61" => "amount limit exceeded",
            b"68" | b"98" => "issuer time-out",
            b"91" => "issuer unavailable",
            b"94" => "duplicate transaction",
            b"96" => "system malfunction",
            b"97" => "terminal not registered",
            b"A0" => "MAC error",
            b"T1" => "cancelled by cardholder or operator",
            b"T2" => "card wait timed out",
            b"T3" => "terminal busy",
            b"T4" => "terminal not signed in",
            b"T5" => "malformed request",
            _ => return None,
        })
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseCode({:?})", self.as_str())
    }
}

/// 卡号: a masked PAN, first 6 digits, one or more `*`, last 4 digits, at most 20 characters. A full
/// PAN does not fit this type, so the ECR side never holds one.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaskedPan(Ascii<20>);

impl MaskedPan {
    /// Checks a masked PAN.
    pub fn new(masked: &str) -> Result<MaskedPan, ValueError> {
        Self::check(Ascii::new(masked)?)
    }

    fn check(value: Ascii<20>) -> Result<MaskedPan, ValueError> {
        let b = value.as_bytes();
        let ok = b.len() >= 11
            && b[..6].iter().all(u8::is_ascii_digit)
            && b[b.len() - 4..].iter().all(u8::is_ascii_digit)
            && b[6..b.len() - 4].iter().all(|&c| c == b'*');
        if ok {
            Ok(MaskedPan(value))
        } else {
            Err(ValueError::Invalid { expected: "a masked card number: 6 digits, '*'s, 4 digits" })
        }
    }

    /// The masked number.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for MaskedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MaskedPan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MaskedPan({:?})", self.as_str())
    }
}

/// 款台号, the collection desk (an 8).
pub type Till = Ascii<8>;
/// 操作员号, the collector's staff number (an 8).
pub type OperatorId = Ascii<8>;
/// 凭证号 / 批次号 (n 6).
pub type Trace = Digits<6>;
/// 批次号 (n 6).
pub type Batch = Digits<6>;
/// A date YYYYMMDD (n 8).
pub type Date = Digits<8>;
/// A time hhmmss (n 6).
pub type Time = Digits<6>;
/// 参考号, the host retrieval reference number (an 12).
pub type Rrn = Ascii<12>;
/// 授权码 (an 6).
pub type AuthCode = Ascii<6>;
/// 商户号 (an 15).
pub type MerchantId = Ascii<15>;
/// 终端号 (an 8).
pub type TerminalId = Ascii<8>;
/// 应答信息, 40 bytes of GB18030.
pub type ResponseText = Text<40>;

/// What a request asks for, with the fields only that type carries (§5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// 消费: charge `amount`; memo 0F01 required.
    Sale {
        /// The amount, above zero.
        amount: Amount,
    },
    /// 撤销: void the sale with `orig_trace` in the open batch; `amount` equals the sale's.
    Void {
        /// The sale's amount.
        amount: Amount,
        /// The sale's trace, not zero.
        orig_trace: Trace,
    },
    /// 退货: refund up to the sale's unrefunded amount from an earlier batch.
    Refund {
        /// The amount to refund, above zero.
        amount: Amount,
        /// The sale's date, not zero.
        orig_date: Date,
        /// The sale's RRN, not empty.
        orig_rrn: Rrn,
    },
    /// 结算: close the batch.
    Settle,
    /// 签到.
    SignIn,
    /// 交易查询: memo 0F01 names the transaction.
    Query,
    /// 状态.
    Status,
}

impl RequestBody {
    /// The message type.
    pub const fn message_type(&self) -> MessageType {
        match self {
            RequestBody::Sale { .. } => MessageType::Sale,
            RequestBody::Void { .. } => MessageType::Void,
            RequestBody::Refund { .. } => MessageType::Refund,
            RequestBody::Settle => MessageType::Settle,
            RequestBody::SignIn => MessageType::SignIn,
            RequestBody::Query => MessageType::Query,
            RequestBody::Status => MessageType::Status,
        }
    }

    /// Builds the body of a `kind` request from the fields every request carries (§5.1), applying the
    /// rules of §5.3: only SALE, VOID and REFUND take an amount; only VOID carries `orig_trace` and it
    /// must; only REFUND carries `orig_date` and `orig_rrn` and it must. Absent orig fields are `None`
    /// (zeros or spaces on the wire, `null` in JSON). The decoder and the JSON reader both use it.
    pub fn from_parts(
        kind: MessageType,
        amount: Amount,
        orig_trace: Option<Trace>,
        orig_date: Option<Date>,
        orig_rrn: Option<Rrn>,
    ) -> Result<RequestBody, FieldError> {
        if !kind.moves_money() && amount != Amount::ZERO {
            return Err(rule(Field::Amount, "no amount: this type takes none"));
        }
        if kind != MessageType::Void && orig_trace.is_some() {
            return Err(rule(Field::OrigTrace, "no orig_trace: only a void carries it"));
        }
        if kind != MessageType::Refund && orig_date.is_some() {
            return Err(rule(Field::OrigDate, "no orig_date: only a refund carries it"));
        }
        if kind != MessageType::Refund && orig_rrn.is_some() {
            return Err(rule(Field::OrigRrn, "no orig_rrn: only a refund carries it"));
        }
        Ok(match kind {
            MessageType::Sale => RequestBody::Sale { amount },
            MessageType::Void => RequestBody::Void {
                amount,
                orig_trace: orig_trace.ok_or_else(|| rule(Field::OrigTrace, "the voided sale's trace"))?,
            },
            MessageType::Refund => RequestBody::Refund {
                amount,
                orig_date: orig_date.ok_or_else(|| rule(Field::OrigDate, "the refunded sale's date"))?,
                orig_rrn: orig_rrn.ok_or_else(|| rule(Field::OrigRrn, "the refunded sale's RRN"))?,
            },
            MessageType::Settle => RequestBody::Settle,
            MessageType::SignIn => RequestBody::SignIn,
            MessageType::Query => RequestBody::Query,
            MessageType::Status => RequestBody::Status,
        })
    }

    /// The amount field (zero for types without one).
    pub const fn amount(&self) -> Amount {
        match self {
            RequestBody::Sale { amount } | RequestBody::Void { amount, .. } | RequestBody::Refund { amount, .. } => {
                *amount
            }
            _ => Amount::ZERO,
        }
    }
}

/// A request, ECR -> terminal (§5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// New for every request, echoed in the response.
    pub token: Token,
    /// 款台号.
    pub till: Till,
    /// 操作员号.
    pub operator: OperatorId,
    /// The type and its fields.
    pub body: RequestBody,
    /// The memo.
    pub memo: Memo,
}

/// The fixed part of a request in bytes (§5.1).
pub const REQUEST_FIXED_LEN: usize = REQUEST_LAYOUT.len();
/// The fixed part of a response in bytes (§5.2).
pub const RESPONSE_FIXED_LEN: usize = RESPONSE_LAYOUT.len();

/// A protocol rule broken by a message, found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(#[from] pub FieldError);

fn rule(field: Field, expected: &'static str) -> FieldError {
    FieldError { field, problem: ValueError::Invalid { expected } }
}

impl Request {
    /// The message type.
    pub const fn message_type(&self) -> MessageType {
        self.body.message_type()
    }

    /// The ECR reference in memo 0F01, if any.
    pub fn reference(&self) -> Option<&EcrReference> {
        self.memo.reference.as_ref()
    }

    /// Checks the rules of §5.3 that the types alone cannot: amounts above zero, required references.
    pub fn validate(&self) -> Result<(), FieldError> {
        let kind = self.message_type();
        if kind.moves_money() && self.body.amount() == Amount::ZERO {
            return Err(rule(Field::Amount, "an amount above zero"));
        }
        if matches!(kind, MessageType::Sale | MessageType::Void | MessageType::Refund | MessageType::Query)
            && self.memo.reference.is_none()
        {
            return Err(rule(Field::MemoItem(crate::memo::TAG_REFERENCE), "the ECR reference, required for this type"));
        }
        match self.body {
            RequestBody::Void { orig_trace, .. } if orig_trace.is_zero() => {
                Err(rule(Field::OrigTrace, "the voided sale's trace"))
            }
            RequestBody::Refund { orig_date, .. } if orig_date.is_zero() => {
                Err(rule(Field::OrigDate, "the refunded sale's date"))
            }
            RequestBody::Refund { orig_rrn, .. } if orig_rrn.is_empty() => {
                Err(rule(Field::OrigRrn, "the refunded sale's RRN"))
            }
            _ => Ok(()),
        }
    }

    /// Appends the DATA bytes of this request to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.validate()?;
        let memo_at = out.len() + REQUEST_FIXED_LEN;
        let (orig_trace, orig_date, orig_rrn) = match &self.body {
            RequestBody::Void { orig_trace, .. } => (Some(orig_trace), None, None),
            RequestBody::Refund { orig_date, orig_rrn, .. } => (None, Some(orig_date), Some(orig_rrn)),
            _ => (None, None, None),
        };
        let token = self.token.get().to_string();
        write_fixed(
            &REQUEST_LAYOUT.specs,
            |field| match field {
                Field::Token => Value::Bytes(token.as_bytes()),
                Field::Type => Value::Bytes(self.message_type().code().as_bytes()),
                Field::Till => Value::Bytes(self.till.as_bytes()),
                Field::Operator => Value::Bytes(self.operator.as_bytes()),
                Field::Amount => Value::Number(self.body.amount().fen()),
                Field::OrigTrace => Value::Bytes(orig_trace.map_or(b"0", |t| t.as_str().as_bytes())),
                Field::OrigDate => Value::Bytes(orig_date.map_or(b"0", |d| d.as_str().as_bytes())),
                Field::OrigRrn => Value::Bytes(orig_rrn.map_or(b"", |r| r.as_bytes())),
                // Filled in once the memo is written.
                _ => Value::Number(0),
            },
            out,
        )?;
        finish_memo(&self.memo, memo_at, out)
    }

    /// The DATA bytes of this request.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(REQUEST_FIXED_LEN + 64);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Parses the DATA of a request frame.
    pub fn decode(data: &[u8]) -> Result<Request, DecodeError> {
        let (fixed, rest) = Fixed::parse(&REQUEST_LAYOUT, data)?;
        let token = fixed.get(Field::Token, parse_token)?;
        let kind = fixed.get(Field::Type, parse_type)?;
        let till = fixed.get(Field::Till, Ascii::from_wire)?;
        let operator = fixed.get(Field::Operator, Ascii::from_wire)?;
        let amount = fixed.get(Field::Amount, parse_amount)?;
        let orig_trace: Trace = fixed.get(Field::OrigTrace, Digits::from_wire)?;
        let orig_date: Date = fixed.get(Field::OrigDate, Digits::from_wire)?;
        let orig_rrn: Rrn = fixed.get(Field::OrigRrn, Ascii::from_wire)?;
        let memo = decode_memo(&fixed, rest, REQUEST_FIXED_LEN)?;

        let body = RequestBody::from_parts(
            kind,
            amount,
            (!orig_trace.is_zero()).then_some(orig_trace),
            (!orig_date.is_zero()).then_some(orig_date),
            (!orig_rrn.is_empty()).then_some(orig_rrn),
        )
        .map_err(|e| DecodeError::new(e.field, fixed.offset(e.field), e.problem))?;
        let request = Request { token, till, operator, body, memo };
        request.validate().map_err(|e| {
            let offset = match e.field {
                Field::MemoItem(_) => fixed.offset(Field::MemoLen),
                field => fixed.offset(field),
            };
            DecodeError::new(e.field, offset, e.problem)
        })?;
        Ok(request)
    }
}

/// A response, terminal -> ECR (§5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's token.
    pub token: Token,
    /// The request's type.
    pub kind: MessageType,
    /// 应答码.
    pub code: ResponseCode,
    /// 应答信息.
    pub text: ResponseText,
    /// 卡号, masked; `None` when the field is spaces.
    pub card: Option<MaskedPan>,
    /// 金额.
    pub amount: Amount,
    /// 凭证号.
    pub trace: Trace,
    /// 批次号.
    pub batch: Batch,
    /// Terminal's local date (UTC+8).
    pub date: Date,
    /// Terminal's local time.
    pub time: Time,
    /// 参考号.
    pub rrn: Rrn,
    /// 授权码.
    pub auth: AuthCode,
    /// 商户号.
    pub merchant: MerchantId,
    /// 终端号.
    pub terminal: TerminalId,
    /// The memo.
    pub memo: Memo,
}

impl Response {
    /// A response to `request` with code `code`, the request's amount, and every other field empty or
    /// zero.
    pub fn answering(request: &Request, code: ResponseCode) -> Response {
        Response { amount: request.body.amount(), ..Response::empty(request.token, request.message_type(), code) }
    }

    /// A response with the given token, type and code and every other field empty or zero: the answer to
    /// a request that could only be read that far (e.g. `T5` for a malformed one).
    pub fn empty(token: Token, kind: MessageType, code: ResponseCode) -> Response {
        Response {
            token,
            kind,
            code,
            text: Text::default(),
            card: None,
            amount: Amount::ZERO,
            trace: Digits::ZERO,
            batch: Digits::ZERO,
            date: Digits::ZERO,
            time: Digits::ZERO,
            rrn: Ascii::EMPTY,
            auth: Ascii::EMPTY,
            merchant: Ascii::EMPTY,
            terminal: Ascii::EMPTY,
            memo: Memo::default(),
        }
    }

    /// Appends the DATA bytes of this response to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let memo_at = out.len() + RESPONSE_FIXED_LEN;
        let token = self.token.get().to_string();
        let text = self.text.to_gb18030();
        write_fixed(
            &RESPONSE_LAYOUT.specs,
            |field| match field {
                Field::Token => Value::Bytes(token.as_bytes()),
                Field::Type => Value::Bytes(self.kind.code().as_bytes()),
                Field::Code => Value::Bytes(&self.code.0),
                Field::Text => Value::Bytes(&text),
                Field::Card => Value::Bytes(self.card.as_ref().map_or(b"", |c| c.0.as_bytes())),
                Field::Amount => Value::Number(self.amount.fen()),
                Field::Trace => Value::Bytes(self.trace.as_str().as_bytes()),
                Field::Batch => Value::Bytes(self.batch.as_str().as_bytes()),
                Field::Date => Value::Bytes(self.date.as_str().as_bytes()),
                Field::Time => Value::Bytes(self.time.as_str().as_bytes()),
                Field::Rrn => Value::Bytes(self.rrn.as_bytes()),
                Field::Auth => Value::Bytes(self.auth.as_bytes()),
                Field::Merchant => Value::Bytes(self.merchant.as_bytes()),
                Field::Terminal => Value::Bytes(self.terminal.as_bytes()),
                _ => Value::Number(0),
            },
            out,
        )?;
        finish_memo(&self.memo, memo_at, out)
    }

    /// The DATA bytes of this response.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(RESPONSE_FIXED_LEN + 64);
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Parses the DATA of a response frame.
    pub fn decode(data: &[u8]) -> Result<Response, DecodeError> {
        let (fixed, rest) = Fixed::parse(&RESPONSE_LAYOUT, data)?;
        let card: Ascii<20> = fixed.get(Field::Card, Ascii::from_wire)?;
        let card = if card.is_empty() { None } else { Some(fixed.get(Field::Card, |_| MaskedPan::check(card))?) };
        Ok(Response {
            token: fixed.get(Field::Token, parse_token)?,
            kind: fixed.get(Field::Type, parse_type)?,
            code: fixed.get(Field::Code, ResponseCode::from_wire)?,
            text: fixed.get(Field::Text, Text::from_wire)?,
            card,
            amount: fixed.get(Field::Amount, parse_amount)?,
            trace: fixed.get(Field::Trace, Digits::from_wire)?,
            batch: fixed.get(Field::Batch, Digits::from_wire)?,
            date: fixed.get(Field::Date, Digits::from_wire)?,
            time: fixed.get(Field::Time, Digits::from_wire)?,
            rrn: fixed.get(Field::Rrn, Ascii::from_wire)?,
            auth: fixed.get(Field::Auth, Ascii::from_wire)?,
            merchant: fixed.get(Field::Merchant, Ascii::from_wire)?,
            terminal: fixed.get(Field::Terminal, Ascii::from_wire)?,
            memo: decode_memo(&fixed, rest, RESPONSE_FIXED_LEN)?,
        })
    }

    /// True when the code is `00`.
    pub fn is_approved(&self) -> bool {
        self.code.is_approved()
    }
}

/// Reads only the token of a response's DATA: enough to tell a stale response from a broken one.
pub fn peek_token(data: &[u8]) -> Option<Token> {
    data.get(..3).and_then(|t| parse_token(t).ok())
}

fn parse_token(bytes: &[u8]) -> Result<Token, ValueError> {
    let n = crate::field::read_number(bytes)?;
    // Three digits always fit u16.
    Token::new(n as u16)
}

fn parse_type(bytes: &[u8]) -> Result<MessageType, ValueError> {
    MessageType::from_code(bytes)
        .ok_or(ValueError::Invalid { expected: "a message type: 00, 01, 02, 04, 05, 07 or 08" })
}

fn parse_amount(bytes: &[u8]) -> Result<Amount, ValueError> {
    crate::field::read_number(bytes).and_then(Amount::from_fen)
}

/// Writes the memo after the fixed part and fills in `memo_len`, the fixed part's last 4 bytes.
fn finish_memo(memo: &Memo, memo_at: usize, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    memo.encode_into(out)?;
    let len = out.len() - memo_at;
    crate::field::write_number(len as u64, &mut out[memo_at - 4..memo_at])
        .map_err(|problem| FieldError { field: Field::MemoLen, problem })?;
    Ok(())
}

fn decode_memo<const N: usize>(fixed: &Fixed<'_, N>, rest: &[u8], base: usize) -> Result<Memo, DecodeError> {
    let memo_len = fixed.get(Field::MemoLen, crate::field::read_number)? as usize;
    if rest.len() < memo_len {
        return Err(DecodeError::new(
            Field::MemoLen,
            fixed.offset(Field::MemoLen),
            ValueError::Truncated { needed: base + memo_len, available: base + rest.len() },
        ));
    }
    if rest.len() > memo_len {
        return Err(DecodeError::new(
            Field::Trailing,
            base + memo_len,
            ValueError::Invalid { expected: "the end of the message after memo_len bytes of memo" },
        ));
    }
    Memo::decode(rest, base)
}

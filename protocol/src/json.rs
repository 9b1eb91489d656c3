//! The canonical JSON form of messages (wire-protocol.md §6), used by the frame inspector, the golden
//! vectors and debug logs. The field names are part of the contract.
//!
//! Writing goes through serde ([`Request`], [`Response`] and [`Control`] implement `Serialize` in this
//! form, and [`Line`] for any of them). Reading goes field by field so that every refusal names its
//! field: [`Line::from_json`], or `Deserialize` on [`Request`] and [`Response`].

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::field::{Ascii, Digits, Field, FieldError, Text, ValueError};
use crate::frame::Control;
use crate::memo::{parse_tag_str, Memo};
use crate::message::{Amount, MaskedPan, MessageType, Request, RequestBody, Response, ResponseCode, Token};

/// One line of the canonical form: a request, a response or a control byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `{"dir":"request", ...}`.
    Request(Request),
    /// `{"dir":"response", ...}`.
    Response(Response),
    /// `{"control":"ACK"}` and the like.
    Control(Control),
}

/// Why a JSON line is not a message of the canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    Syntax(String),
    /// JSON, but not an object with `dir` or `control`.
    #[error(
        "expected an object with \"dir\" (\"request\" or \"response\") or \"control\" (\"ACK\", \"NAK\", \"ENQ\")"
    )]
    NotAMessage,
    /// A required field is absent.
    #[error("field {field}: missing")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
    /// A field the form does not have.
    #[error("field {field}: not part of the canonical form")]
    Unknown {
        /// The field's name as given.
        field: String,
    },
    /// A field of the wrong JSON type.
    #[error("field {field}: expected {expected}")]
    WrongType {
        /// The field's name.
        field: String,
        /// What the form has there.
        expected: &'static str,
    },
    /// A value that breaks the protocol (too wide, unknown type, ...).
    #[error(transparent)]
    Rule(#[from] FieldError),
}

impl Line {
    /// Parses one line of canonical JSON.
    pub fn from_json(text: &str) -> Result<Line, JsonError> {
        let StrictValue(value) = serde_json::from_str(text).map_err(|e| JsonError::Syntax(e.to_string()))?;
        Line::from_value(value)
    }

    /// Reads an already parsed JSON value.
    pub fn from_value(value: Value) -> Result<Line, JsonError> {
        let Value::Object(map) = value else {
            return Err(JsonError::NotAMessage);
        };
        if map.contains_key("control") {
            let mut obj = Obj::new(map, &["control"])?;
            let name = obj.string("control")?;
            let control = [Control::Ack, Control::Nak, Control::Enq]
                .into_iter()
                .find(|c| c.name() == name)
                .ok_or(JsonError::WrongType { field: "control".into(), expected: "\"ACK\", \"NAK\" or \"ENQ\"" })?;
            return Ok(Line::Control(control));
        }
        match map.get("dir").and_then(Value::as_str) {
            Some("request") => request_from_map(map).map(Line::Request),
            Some("response") => response_from_map(map).map(Line::Response),
            Some(_) => Err(JsonError::WrongType { field: "dir".into(), expected: "\"request\" or \"response\"" }),
            None => Err(JsonError::NotAMessage),
        }
    }

    /// The line as compact canonical JSON.
    pub fn to_json(&self) -> String {
        // Serialising these types into a String cannot fail: every key is a string, no value is a float.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl Serialize for Line {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Line::Request(r) => r.serialize(s),
            Line::Response(r) => r.serialize(s),
            Line::Control(c) => c.serialize(s),
        }
    }
}

impl Serialize for Control {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("control", self.name())?;
        map.end()
    }
}

/// The memo as a JSON object, tags in ascending order, values as text.
struct MemoJson<'a>(&'a Memo);

impl Serialize for MemoJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let items = self.0.items();
        let mut map = s.serialize_map(Some(items.len()))?;
        for (tag, value) in &items {
            map.serialize_entry(&format!("{tag:04X}"), value)?;
        }
        map.end()
    }
}

fn non_empty<const N: usize>(a: &Ascii<N>) -> Option<&str> {
    (!a.is_empty()).then(|| a.as_str())
}

#[derive(Serialize)]
struct RequestJson<'a> {
    dir: &'static str,
    token: String,
    #[serde(rename = "type")]
    kind: &'static str,
    till: Option<&'a str>,
    operator: Option<&'a str>,
    amount_fen: u64,
    orig_trace: Option<&'a str>,
    orig_date: Option<&'a str>,
    orig_rrn: Option<&'a str>,
    memo: MemoJson<'a>,
}

impl Serialize for Request {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (orig_trace, orig_date, orig_rrn) = match &self.body {
            RequestBody::Void { orig_trace, .. } => (Some(orig_trace.as_str()), None, None),
            RequestBody::Refund { orig_date, orig_rrn, .. } => (None, Some(orig_date.as_str()), non_empty(orig_rrn)),
            _ => (None, None, None),
        };
        RequestJson {
            dir: "request",
            token: self.token.to_string(),
            kind: self.message_type().name(),
            till: non_empty(&self.till),
            operator: non_empty(&self.operator),
            amount_fen: self.body.amount().fen(),
            orig_trace,
            orig_date,
            orig_rrn,
            memo: MemoJson(&self.memo),
        }
        .serialize(s)
    }
}

#[derive(Serialize)]
struct ResponseJson<'a> {
    dir: &'static str,
    token: String,
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    text: &'a str,
    card: Option<&'a str>,
    amount_fen: u64,
    trace: &'a str,
    batch: &'a str,
    date: &'a str,
    time: &'a str,
    rrn: Option<&'a str>,
    auth: Option<&'a str>,
    merchant: Option<&'a str>,
    terminal: Option<&'a str>,
    memo: MemoJson<'a>,
}

impl Serialize for Response {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ResponseJson {
            dir: "response",
            token: self.token.to_string(),
            kind: self.kind.name(),
            code: self.code.as_str(),
            text: self.text.as_str(),
            card: self.card.as_ref().map(MaskedPan::as_str),
            amount_fen: self.amount.fen(),
            trace: self.trace.as_str(),
            batch: self.batch.as_str(),
            date: self.date.as_str(),
            time: self.time.as_str(),
            rrn: non_empty(&self.rrn),
            auth: non_empty(&self.auth),
            merchant: non_empty(&self.merchant),
            terminal: non_empty(&self.terminal),
            memo: MemoJson(&self.memo),
        }
        .serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Request {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Line::from_value(StrictValue::deserialize(d)?.0).map_err(serde::de::Error::custom)? {
            Line::Request(r) => Ok(r),
            _ => Err(serde::de::Error::custom("expected a request (\"dir\":\"request\")")),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Response {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Line::from_value(StrictValue::deserialize(d)?.0).map_err(serde::de::Error::custom)? {
            Line::Response(r) => Ok(r),
            _ => Err(serde::de::Error::custom("expected a response (\"dir\":\"response\")")),
        }
    }
}

/// A JSON value whose objects repeat no key. serde_json keeps the last of repeated keys; a message with
/// two `amount_fen`s or two memo items `0F01` is ambiguous, and §5.4 refuses repeated tags.
struct StrictValue(Value);

impl<'de> serde::Deserialize<'de> for StrictValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(value) = map.next_value()?;
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("key {key:?} appears twice")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A JSON object read field by field; unknown fields are refused up front.
struct Obj(Map<String, Value>);

impl Obj {
    fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Obj, JsonError> {
        if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(JsonError::Unknown { field: key.clone() });
        }
        Ok(Obj(map))
    }

    fn take(&mut self, field: &'static str) -> Result<Value, JsonError> {
        self.0.remove(field).ok_or(JsonError::Missing { field })
    }

    fn string(&mut self, field: &'static str) -> Result<String, JsonError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            _ => Err(JsonError::WrongType { field: field.into(), expected: "a string" }),
        }
    }

    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, JsonError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            _ => Err(JsonError::WrongType { field: field.into(), expected: "a string or null" }),
        }
    }

    fn amount(&mut self) -> Result<Amount, JsonError> {
        let value = self.take("amount_fen")?;
        let fen = value
            .as_u64()
            .ok_or(JsonError::WrongType { field: "amount_fen".into(), expected: "a whole number of fen, 0 or more" })?;
        Amount::from_fen(fen).map_err(|problem| FieldError { field: Field::Amount, problem }.into())
    }

    fn memo(&mut self) -> Result<Memo, JsonError> {
        let Value::Object(items) = self.take("memo")? else {
            return Err(JsonError::WrongType { field: "memo".into(), expected: "an object of tag -> string" });
        };
        let mut parsed = Vec::with_capacity(items.len());
        for (key, value) in &items {
            let tag = parse_tag_str(key).ok_or_else(|| JsonError::WrongType {
                field: format!("memo.{key}"),
                expected: "a tag of 4 uppercase hex digits",
            })?;
            let value = value
                .as_str()
                .ok_or_else(|| JsonError::WrongType { field: format!("memo.{key}"), expected: "a string" })?;
            parsed.push((tag, value));
        }
        Ok(Memo::from_items(parsed)?)
    }
}

fn rule<T>(field: Field, result: Result<T, ValueError>) -> Result<T, JsonError> {
    result.map_err(|problem| FieldError { field, problem }.into())
}

fn token(obj: &mut Obj) -> Result<Token, JsonError> {
    let token = obj.string("token")?;
    let digits: Digits<3> = digits(Field::Token, &token)?;
    rule(Field::Token, Token::new(digits.value() as u16))
}

fn message_type(obj: &mut Obj) -> Result<MessageType, JsonError> {
    let name = obj.string("type")?;
    MessageType::from_name(&name).ok_or_else(|| {
        FieldError {
            field: Field::Type,
            problem: ValueError::Invalid { expected: "one of sale, void, refund, settle, sign_in, query, status" },
        }
        .into()
    })
}

fn ascii_or_empty<const N: usize>(field: Field, value: Option<String>) -> Result<Ascii<N>, JsonError> {
    match value {
        None => Ok(Ascii::EMPTY),
        Some(s) if s.is_empty() => Ok(Ascii::EMPTY),
        Some(s) => rule(field, Ascii::new(&s)),
    }
}

/// A numeric field: exactly its width in digits, as the canonical form writes it.
fn digits<const N: usize>(field: Field, value: &str) -> Result<Digits<N>, JsonError> {
    if value.len() != N {
        return Err(FieldError { field, problem: ValueError::Invalid { expected: digits_expected(N) } }.into());
    }
    rule(field, Digits::new(value))
}

fn digits_expected(width: usize) -> &'static str {
    match width {
        3 => "exactly 3 digits",
        6 => "exactly 6 digits",
        8 => "exactly 8 digits",
        _ => "the field's full width in digits",
    }
}

fn request_from_map(map: Map<String, Value>) -> Result<Request, JsonError> {
    let mut obj = Obj::new(
        map,
        &["dir", "token", "type", "till", "operator", "amount_fen", "orig_trace", "orig_date", "orig_rrn", "memo"],
    )?;
    let token = token(&mut obj)?;
    let kind = message_type(&mut obj)?;
    let till = ascii_or_empty(Field::Till, obj.opt_string("till")?)?;
    let operator = ascii_or_empty(Field::Operator, obj.opt_string("operator")?)?;
    let amount = obj.amount()?;
    let orig_trace = obj.opt_string("orig_trace")?;
    let orig_date = obj.opt_string("orig_date")?;
    let orig_rrn = obj.opt_string("orig_rrn")?;
    let memo = obj.memo()?;
    let body = RequestBody::from_parts(
        kind,
        amount,
        orig_trace.map(|t| digits(Field::OrigTrace, &t)).transpose()?,
        orig_date.map(|d| digits(Field::OrigDate, &d)).transpose()?,
        orig_rrn.map(|r| rule(Field::OrigRrn, Ascii::new(&r))).transpose()?,
    )?;
    let request = Request { token, till, operator, body, memo };
    request.validate()?;
    Ok(request)
}

fn response_from_map(map: Map<String, Value>) -> Result<Response, JsonError> {
    let mut obj = Obj::new(
        map,
        &[
            "dir",
            "token",
            "type",
            "code",
            "text",
            "card",
            "amount_fen",
            "trace",
            "batch",
            "date",
            "time",
            "rrn",
            "auth",
            "merchant",
            "terminal",
            "memo",
        ],
    )?;
    let token = token(&mut obj)?;
    let kind = message_type(&mut obj)?;
    let code = rule(Field::Code, ResponseCode::new(&obj.string("code")?))?;
    let text = rule(Field::Text, Text::new(&obj.string("text")?))?;
    let card = match obj.opt_string("card")? {
        Some(s) if !s.is_empty() => Some(rule(Field::Card, MaskedPan::new(&s))?),
        _ => None,
    };
    let amount = obj.amount()?;
    Ok(Response {
        token,
        kind,
        code,
        text,
        card,
        amount,
        trace: digits(Field::Trace, &obj.string("trace")?)?,
        batch: digits(Field::Batch, &obj.string("batch")?)?,
        date: digits(Field::Date, &obj.string("date")?)?,
        time: digits(Field::Time, &obj.string("time")?)?,
        rrn: ascii_or_empty(Field::Rrn, obj.opt_string("rrn")?)?,
        auth: ascii_or_empty(Field::Auth, obj.opt_string("auth")?)?,
        merchant: ascii_or_empty(Field::Merchant, obj.opt_string("merchant")?)?,
        terminal: ascii_or_empty(Field::Terminal, obj.opt_string("terminal")?)?,
        memo: obj.memo()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_REQUEST: &str = r#"{"dir":"request","token":"123","type":"sale","till":"DESK01","operator":"C0001","amount_fen":28000,"orig_trace":null,"orig_date":null,"orig_rrn":null,"memo":{"0F01":"P20201021000001","0F02":"02"}}"#;
    const SPEC_RESPONSE: &str = r#"{"dir":"response","token":"123","type":"sale","code":"00","text":"交易成功","card":"622848******1234","amount_fen":28000,"trace":"000123","batch":"000001","date":"20201021","time":"101530","rrn":"201021101530","auth":"A1B2C3","merchant":"898410153990001","terminal":"41000001","memo":{"0F01":"P20201021000001"}}"#;

    #[test]
    fn spec_examples_round_trip_exactly() {
        for text in [SPEC_REQUEST, SPEC_RESPONSE] {
            let line = Line::from_json(text).unwrap();
            assert_eq!(line.to_json(), text);
        }
    }

    #[test]
    fn refusals_name_the_field() {
        let wide = SPEC_REQUEST.replace("DESK01", "DESK01234");
        assert_eq!(Line::from_json(&wide).unwrap_err().to_string(), "field till: 9 bytes, wider than the field's 8");
        let big = SPEC_REQUEST.replace("28000", "1000000000000");
        assert!(Line::from_json(&big).unwrap_err().to_string().starts_with("field amount_fen:"));
        let kind = SPEC_REQUEST.replace("\"sale\"", "\"deposit\"");
        assert!(Line::from_json(&kind).unwrap_err().to_string().starts_with("field type:"));
        let twice = SPEC_REQUEST.replace("\"0F02\":\"02\"", "\"0F01\":\"P2\"");
        assert!(Line::from_json(&twice).unwrap_err().to_string().contains("key \"0F01\" appears twice"));
        let twice = SPEC_REQUEST.replace("\"dir\"", "\"amount_fen\":1,\"dir\"");
        assert!(Line::from_json(&twice).unwrap_err().to_string().contains("key \"amount_fen\" appears twice"));
        let extra = SPEC_REQUEST.replace("\"dir\"", "\"pan\":\"1\",\"dir\"");
        assert_eq!(Line::from_json(&extra).unwrap_err(), JsonError::Unknown { field: "pan".into() });
    }
}

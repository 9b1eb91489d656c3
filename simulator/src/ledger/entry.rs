//! One ledger entry (ledger-api.md, POST /v1/entries, table ENTRY): parsed from JSON into a checked
//! [`Entry`], or refused with the name of the first field that is wrong.
//!
//! Fields are checked in the order of [`FIELDS`], the contract's table; the first failure names the
//! entry's `invalid_field:<name>`. Where the contract gives only a type, the limits below are ours
//! (the roster format and the terminal protocol give most of them).

use std::fmt;

use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use zhengjiao_protocol::MaskedPan;

/// The contract's ENTRY fields, in its order. A key outside this list refuses the entry.
pub(crate) const FIELDS: [&str; 20] = [
    "entry_id",
    "kind",
    "reverses",
    "collection_serial",
    "insurance",
    "year",
    "payer_id",
    "payer_name",
    "amount",
    "channel",
    "collection_point",
    "collector",
    "terminal_id",
    "merchant_id",
    "batch",
    "trace",
    "rrn",
    "auth_code",
    "card_masked",
    "occurred_at",
];

/// Longest entry id (contract: 1..64).
pub(crate) const MAX_ENTRY_ID: usize = 64;
/// Longest 征集流水号 (roster-format.md: 1..32 of `[0-9A-Za-z-]`).
const MAX_COLLECTION_SERIAL: usize = 32;
/// Longest payer name, in characters.
const MAX_PAYER_NAME: usize = 64;
/// Longest collection point code or collector staff number, in characters.
const MAX_CODE: usize = 32;
/// Contribution years accepted.
const YEARS: std::ops::RangeInclusive<i64> = 2000..=2100;
/// Most digits before the decimal point of an amount (under ten thousand million yuan).
const MAX_YUAN_DIGITS: usize = 10;
/// Longest POS values (wire-protocol.md §5.2 widths): 终端号, 商户号, 参考号, 授权码.
const MAX_TERMINAL_ID: usize = 8;
const MAX_MERCHANT_ID: usize = 15;
const MAX_RRN: usize = 12;
const MAX_AUTH_CODE: usize = 6;
/// Width of 批次号 and 凭证号, all digits.
const BATCH_TRACE_DIGITS: usize = 6;
/// Longest unknown key echoed back in a reason.
const MAX_ECHOED_KEY: usize = 64;

pub(crate) use crate::common::LOCAL_OFFSET;

/// Why an entry was refused before it reached the store: the field at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FieldError {
    /// The field's name as the contract spells it (or the unknown key, shortened).
    pub(crate) field: String,
}

impl FieldError {
    fn new(field: &str) -> FieldError {
        FieldError { field: field.chars().take(MAX_ECHOED_KEY).collect() }
    }

    /// The result's reason: `invalid_field:<name>`.
    pub(crate) fn reason(&self) -> String {
        format!("invalid_field:{}", self.field)
    }
}

/// `kind`: a payment, or a reversal (void or refund) cancelling an earlier payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// 缴费.
    Payment,
    /// 冲正: a void or refund of a payment.
    Reversal,
}

/// `insurance`: 养老 or 医疗.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Insurance {
    /// 城乡居民基本养老保险.
    Pension,
    /// 城乡居民基本医疗保险.
    Medical,
}

/// `channel`: paid by card on a POS terminal, or in cash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// Card on a "全民付" POS terminal.
    Pos,
    /// Cash taken by the collector.
    Cash,
}

macro_rules! wire_names {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// The value as the contract spells it.
            pub(crate) fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }

            fn parse(s: &str) -> Option<$ty> {
                match s { $($name => Some($ty::$variant),)+ _ => None }
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_names!(Kind { Payment => "payment", Reversal => "reversal" });
wire_names!(Insurance { Pension => "pension", Medical => "medical" });
wire_names!(Channel { Pos => "pos", Cash => "cash" });

/// 身份证号: an 18-character GB 11643 resident ID number with a correct check digit. `Debug` masks it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct PayerId(String);

impl PayerId {
    /// Checks the number: 17 digits, then a digit or `X`, the last being the ISO 7064 MOD 11-2 check.
    fn parse(s: &str) -> Option<PayerId> {
        const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
        const CHECK: [u8; 11] = *b"10X98765432";
        let b = s.as_bytes();
        if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
            return None;
        }
        let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(&d, w)| u32::from(d - b'0') * w).sum();
        (CHECK[(sum % 11) as usize] == b[17]).then(|| PayerId(s.to_owned()))
    }

    /// The full number, for the stored entry and for comparing a reversal with its payment.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head = self.0.get(..6).unwrap_or("");
        let tail = self.0.get(14..).unwrap_or("");
        write!(f, "PayerId({head}********{tail})")
    }
}

impl Serialize for PayerId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// `amount`: a positive number of yuan written with exactly two decimals, held in fen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Amount(i64);

impl Amount {
    /// Reads `"280.00"`: digits (no leading zero but for `0.xx`), a point, two digits; above zero.
    fn parse(s: &str) -> Option<Amount> {
        let (yuan, fen) = s.split_once('.')?;
        let digits_ok = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits_ok(yuan) || yuan.len() > MAX_YUAN_DIGITS || (yuan.len() > 1 && yuan.starts_with('0')) {
            return None;
        }
        if fen.len() != 2 || !digits_ok(fen) {
            return None;
        }
        let total = yuan.parse::<i64>().ok()?.checked_mul(100)?.checked_add(fen.parse::<i64>().ok()?)?;
        (total > 0).then_some(Amount(total))
    }

    /// The amount in fen.
    pub(crate) fn fen(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", rust_decimal::Decimal::new(self.0, 2))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `occurred_at`: an RFC 3339 time with its offset, kept as written (it is part of the content that
/// `exists` compares) beside the local date (UTC+8) it counts on in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OccurredAt {
    text: String,
    local_date: Date,
}

impl OccurredAt {
    fn parse(s: &str) -> Option<OccurredAt> {
        let at = OffsetDateTime::parse(s, &Rfc3339).ok()?;
        Some(OccurredAt { text: s.to_owned(), local_date: at.to_offset(LOCAL_OFFSET).date() })
    }

    /// The date in UTC+8 on which the entry counts.
    pub(crate) fn local_date(&self) -> Date {
        self.local_date
    }
}

impl Serialize for OccurredAt {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// A checked entry. Serialising it gives the canonical form the ledger stores and serves: every field
/// of the contract in its order, absent nullable fields as `null`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Entry {
    /// Idempotency key chosen by the client.
    pub(crate) entry_id: String,
    /// Payment or reversal.
    pub(crate) kind: Kind,
    /// For a reversal, the entry id of the payment it cancels.
    pub(crate) reverses: Option<String>,
    /// 征集流水号 of the contribution line.
    pub(crate) collection_serial: String,
    /// 险种.
    pub(crate) insurance: Insurance,
    /// 年度, the contribution year.
    pub(crate) year: i64,
    /// 身份证号 of the payer.
    pub(crate) payer_id: PayerId,
    /// 姓名 of the payer.
    pub(crate) payer_name: String,
    /// 金额.
    pub(crate) amount: Amount,
    /// POS or cash.
    pub(crate) channel: Channel,
    /// 征缴网点 code.
    pub(crate) collection_point: String,
    /// 工号 of the collector.
    pub(crate) collector: String,
    /// 终端号.
    pub(crate) terminal_id: Option<String>,
    /// 商户号.
    pub(crate) merchant_id: Option<String>,
    /// 批次号.
    pub(crate) batch: Option<String>,
    /// 凭证号, POS trace number.
    pub(crate) trace: Option<String>,
    /// 参考号, host retrieval reference number.
    pub(crate) rrn: Option<String>,
    /// 授权码 (may be null on a POS entry: not every host answer carries one).
    pub(crate) auth_code: Option<String>,
    /// 卡号, masked: 6 digits, `*`s, 4 digits.
    pub(crate) card_masked: Option<String>,
    /// When the payment or reversal happened.
    pub(crate) occurred_at: OccurredAt,
}

impl Entry {
    /// The canonical JSON text stored and compared for `exists`.
    pub(crate) fn canonical_json(&self) -> String {
        // Serialising plain strings, integers and the wire names above cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `entry_id` to echo in an entry's result: the string given, or `None` when there was none.
pub(crate) fn echoed_id(value: &Value) -> Option<String> {
    value.get("entry_id").and_then(Value::as_str).map(str::to_owned)
}

/// Checks one element of `entries`, which the caller has already found to be a JSON object.
pub(crate) fn parse_entry(map: &Map<String, Value>) -> Result<Entry, FieldError> {
    let field = |name: &'static str| Reader { map, name };

    let entry_id = field("entry_id").required(parse_entry_id)?;
    let kind = field("kind").required(Kind::parse)?;
    let reverses = field("reverses").nullable(parse_entry_id)?;
    match (kind, &reverses) {
        (Kind::Payment, None) => {}
        (Kind::Reversal, Some(target)) if *target != entry_id => {}
        _ => return Err(FieldError::new("reverses")),
    }
    let collection_serial = field("collection_serial").required(collection_serial)?;
    let insurance = field("insurance").required(Insurance::parse)?;
    let year = match map.get("year").and_then(Value::as_i64) {
        Some(y) if YEARS.contains(&y) => y,
        _ => return Err(FieldError::new("year")),
    };
    let payer_id = field("payer_id").required(PayerId::parse)?;
    let payer_name = field("payer_name").required(|s| text(s, MAX_PAYER_NAME))?;
    let amount = field("amount").required(Amount::parse)?;
    let channel = field("channel").required(Channel::parse)?;
    let collection_point = field("collection_point").required(|s| text(s, MAX_CODE))?;
    let collector = field("collector").required(|s| text(s, MAX_CODE))?;

    let pos = channel == Channel::Pos;
    let terminal_id = field("terminal_id").pos(pos, true, |s| ascii(s, MAX_TERMINAL_ID))?;
    let merchant_id = field("merchant_id").pos(pos, true, |s| ascii(s, MAX_MERCHANT_ID))?;
    let batch = field("batch").pos(pos, true, six_digits)?;
    let trace = field("trace").pos(pos, true, six_digits)?;
    let rrn = field("rrn").pos(pos, true, |s| ascii(s, MAX_RRN))?;
    let auth_code = field("auth_code").pos(pos, false, |s| ascii(s, MAX_AUTH_CODE))?;
    let card_masked = field("card_masked").pos(pos, true, |s| MaskedPan::new(s).ok().map(|_| s.to_owned()))?;

    let occurred_at = field("occurred_at").required(OccurredAt::parse)?;

    if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(FieldError::new(unknown));
    }

    Ok(Entry {
        entry_id,
        kind,
        reverses,
        collection_serial,
        insurance,
        year,
        payer_id,
        payer_name,
        amount,
        channel,
        collection_point,
        collector,
        terminal_id,
        merchant_id,
        batch,
        trace,
        rrn,
        auth_code,
        card_masked,
        occurred_at,
    })
}

/// Reads one field of an entry object; every failure names the field.
struct Reader<'a> {
    map: &'a Map<String, Value>,
    name: &'static str,
}

impl Reader<'_> {
    fn error(&self) -> FieldError {
        FieldError::new(self.name)
    }

    /// A string field that must be present and pass `check`.
    fn required<T>(&self, check: impl FnOnce(&str) -> Option<T>) -> Result<T, FieldError> {
        self.map.get(self.name).and_then(Value::as_str).and_then(check).ok_or_else(|| self.error())
    }

    /// A string-or-null field; absent counts as null.
    fn nullable<T>(&self, check: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, FieldError> {
        match self.map.get(self.name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => check(s).map(Some).ok_or_else(|| self.error()),
            Some(_) => Err(self.error()),
        }
    }

    /// A POS field: null for cash; for POS, passing `check`, and present unless `needed` is false.
    fn pos(
        &self,
        pos: bool,
        needed: bool,
        check: impl FnOnce(&str) -> Option<String>,
    ) -> Result<Option<String>, FieldError> {
        let value = self.nullable(check)?;
        match (pos, value) {
            (false, None) => Ok(None),
            (false, Some(_)) => Err(self.error()),
            (true, None) if needed => Err(self.error()),
            (true, value) => Ok(value),
        }
    }
}

/// An entry id: 1..=64 printable ASCII characters without spaces, so it can stand in a URL path.
fn parse_entry_id(s: &str) -> Option<String> {
    (!s.is_empty() && s.len() <= MAX_ENTRY_ID && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

fn collection_serial(s: &str) -> Option<String> {
    let ok =
        !s.is_empty() && s.len() <= MAX_COLLECTION_SERIAL && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    ok.then(|| s.to_owned())
}

/// Free text: 1..=`max` characters, none of them a control character, not blank.
fn text(s: &str, max: usize) -> Option<String> {
    let ok = !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control);
    ok.then(|| s.to_owned())
}

/// A POS code: 1..=`max` printable ASCII characters.
fn ascii(s: &str, max: usize) -> Option<String> {
    (!s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_graphic())).then(|| s.to_owned())
}

fn six_digits(s: &str) -> Option<String> {
    (s.len() == BATCH_TRACE_DIGITS && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(Amount::parse("280.00"), Some(Amount(28000)));
        assert_eq!(Amount::parse("0.01"), Some(Amount(1)));
        for bad in ["0.00", "280", "280.0", "280.000", "-1.00", "+1.00", "01.00", ".50", "1,00", "1e2.00", ""] {
            assert_eq!(Amount::parse(bad), None, "{bad}");
        }
        assert_eq!(Amount(28000).to_string(), "280.00");
    }

    #[test]
    fn id_numbers() {
        assert!(PayerId::parse("11010519491231002X").is_some());
        assert!(PayerId::parse("110105194912310021").is_none());
        assert!(PayerId::parse("11010519491231002x").is_none());
        let debug = format!("{:?}", PayerId("11010519491231002X".into()));
        assert!(!debug.contains("19491231"), "{debug}");
    }

    #[test]
    fn canonical_form_has_the_contract_fields_in_order() {
        let map: Map<String, Value> = serde_json::from_value(serde_json::json!({
            "entry_id": "p-1", "kind": "payment", "collection_serial": "WD-1", "insurance": "medical",
            "year": 2020, "payer_id": "11010519491231002X", "payer_name": "张三", "amount": "350.00",
            "channel": "cash", "collection_point": "WD001", "collector": "0101",
            "occurred_at": "2020-10-21T09:00:00+08:00",
        }))
        .unwrap_or_default();
        let entry = parse_entry(&map);
        let canonical = entry.map(|e| e.canonical_json()).unwrap_or_default();
        let positions: Vec<Option<usize>> = FIELDS.iter().map(|f| canonical.find(&format!("\"{f}\":"))).collect();
        assert!(positions.iter().all(Option::is_some), "{canonical}");
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{canonical}");
        assert_eq!(canonical.matches("\":").count(), FIELDS.len(), "{canonical}");
    }

    #[test]
    fn local_date_is_utc_plus_8() {
        let at = OccurredAt::parse("2020-10-21T16:00:00Z").map(|a| a.local_date());
        assert_eq!(at, Some(time::macros::date!(2020 - 10 - 22)));
        assert!(OccurredAt::parse("2020-10-21T10:15:30").is_none());
    }
}

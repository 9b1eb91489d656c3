//! The memo: TLV items after the fixed part of a message (wire-protocol.md §5.4).
//!
//! Items are `tag` (4 uppercase hex characters), `length` (3 decimal digits) and that many bytes of
//! value. The tags this protocol knows are kept, typed; unknown tags are checked for their framing and
//! then ignored, as §5.4 requires. A repeated tag, an item running past the memo, or bytes left over are
//! errors. Known tags are written in ascending order, which makes the encoding canonical.

use std::fmt;

use crate::field::{encode_gb18030, write_number, Ascii, DecodeError, Field, FieldError, Text, ValueError};
use crate::message::MessageType;

/// 0F01: the ECR reference.
pub const TAG_REFERENCE: u16 = 0x0F01;
/// 0F02: contribution kind.
pub const TAG_CONTRIBUTION: u16 = 0x0F02;
/// 0F03: payer name.
pub const TAG_PAYER_NAME: u16 = 0x0F03;
/// 0F04: masked payer ID number.
pub const TAG_PAYER_ID: u16 = 0x0F04;
/// 0F05: QUERY, state of the looked-up transaction.
pub const TAG_QUERY_STATE: u16 = 0x0F05;
/// 0F06: QUERY, type of the looked-up transaction.
pub const TAG_QUERY_TYPE: u16 = 0x0F06;
/// 0F10: SETTLE, sale count.
pub const TAG_SALE_COUNT: u16 = 0x0F10;
/// 0F11: SETTLE, sale total.
pub const TAG_SALE_TOTAL: u16 = 0x0F11;
/// 0F12: SETTLE, void count.
pub const TAG_VOID_COUNT: u16 = 0x0F12;
/// 0F13: SETTLE, void total.
pub const TAG_VOID_TOTAL: u16 = 0x0F13;
/// 0F14: SETTLE, refund count.
pub const TAG_REFUND_COUNT: u16 = 0x0F14;
/// 0F15: SETTLE, refund total.
pub const TAG_REFUND_TOTAL: u16 = 0x0F15;

/// The largest value one item can carry (three length digits).
pub const MAX_ITEM_LEN: usize = 999;
/// Bytes of an item's header: tag and length.
const ITEM_HEADER: usize = 7;

/// 0F01: the ECR's identifier of a money request, `an` 1..32 (the daemon's payment id).
pub type EcrReference = Ascii<32>;

/// 0F03: the payer's name, at most 30 bytes of GB18030. Its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PayerName(Text<30>);

impl PayerName {
    /// Checks a name against the field.
    pub fn new(name: &str) -> Result<Self, ValueError> {
        Text::new(name).map(PayerName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for PayerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayerName(..)")
    }
}

/// 0F04: a masked resident ID number, as printed on the slip (e.g. `410402********1234`). A value
/// without a `*` is refused, so a full ID number can never travel in this field.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct MaskedIdNumber(Ascii<18>);

impl MaskedIdNumber {
    /// Checks a masked ID number.
    pub fn new(masked: &str) -> Result<Self, ValueError> {
        let value = Ascii::new(masked)?;
        if value.is_empty()
            || !masked.contains('*')
            || !masked.bytes().all(|b| b.is_ascii_digit() || b == b'*' || b == b'X')
        {
            return Err(ValueError::Invalid { expected: "a masked ID number: digits, '*'s and 'X', at least one '*'" });
        }
        Ok(MaskedIdNumber(value))
    }

    /// The masked number.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// 0F02: which insurance a payment is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContributionKind {
    /// `01`: basic pension insurance (基本养老保险).
    Pension,
    /// `02`: basic medical insurance (基本医疗保险).
    Medical,
}

impl ContributionKind {
    /// The wire code.
    pub const fn code(self) -> &'static str {
        match self {
            ContributionKind::Pension => "01",
            ContributionKind::Medical => "02",
        }
    }
}

/// 0F05: the state of a transaction a QUERY looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryState {
    /// `A`: approved and standing.
    Approved,
    /// `V`: voided.
    Voided,
    /// `R`: refunded.
    Refunded,
    /// `D`: declined.
    Declined,
}

impl QueryState {
    /// The wire code.
    pub const fn code(self) -> &'static str {
        match self {
            QueryState::Approved => "A",
            QueryState::Voided => "V",
            QueryState::Refunded => "R",
            QueryState::Declined => "D",
        }
    }
}

/// 0F10-0F15: a closed batch's gross totals, in fen (§5.3 SETTLE).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SettleTotals {
    /// Sales, including those voided later.
    pub sale_count: u32,
    /// Sum of those sales.
    pub sale_total: u64,
    /// Voids.
    pub void_count: u32,
    /// Sum of the voids.
    pub void_total: u64,
    /// Refunds.
    pub refund_count: u32,
    /// Sum of the refunds.
    pub refund_total: u64,
}

impl SettleTotals {
    /// The batch's net: sales - voids - refunds, in fen (may be negative).
    pub fn net(&self) -> i128 {
        i128::from(self.sale_total) - i128::from(self.void_total) - i128::from(self.refund_total)
    }
}

/// The memo of a request or response, known tags typed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Memo {
    /// 0F01.
    pub reference: Option<EcrReference>,
    /// 0F02.
    pub contribution: Option<ContributionKind>,
    /// 0F03.
    pub payer_name: Option<PayerName>,
    /// 0F04.
    pub payer_id: Option<MaskedIdNumber>,
    /// 0F05.
    pub query_state: Option<QueryState>,
    /// 0F06: `sale`, `void` or `refund`.
    pub query_type: Option<MessageType>,
    /// 0F10-0F15, all six or none.
    pub settle: Option<SettleTotals>,
}

impl Memo {
    /// An empty memo.
    pub fn new() -> Self {
        Memo::default()
    }

    /// A memo carrying only an ECR reference.
    pub fn with_reference(reference: EcrReference) -> Self {
        Memo { reference: Some(reference), ..Memo::default() }
    }

    /// True when no known tag is set.
    pub fn is_empty(&self) -> bool {
        *self == Memo::default()
    }

    /// Every item as (tag, value as text), in ascending tag order: the canonical JSON's `memo`.
    pub fn items(&self) -> Vec<(u16, String)> {
        let mut items = Vec::new();
        self.each_item(|tag, value| items.push((tag, value.to_text())));
        items
    }

    fn each_item(&self, mut f: impl FnMut(u16, ItemValue<'_>)) {
        if let Some(r) = &self.reference {
            f(TAG_REFERENCE, ItemValue::Ascii(r.as_str()));
        }
        if let Some(k) = self.contribution {
            f(TAG_CONTRIBUTION, ItemValue::Ascii(k.code()));
        }
        if let Some(n) = &self.payer_name {
            f(TAG_PAYER_NAME, ItemValue::Text(n.as_str()));
        }
        if let Some(id) = &self.payer_id {
            f(TAG_PAYER_ID, ItemValue::Ascii(id.as_str()));
        }
        if let Some(s) = self.query_state {
            f(TAG_QUERY_STATE, ItemValue::Ascii(s.code()));
        }
        if let Some(t) = self.query_type {
            f(TAG_QUERY_TYPE, ItemValue::Ascii(t.code()));
        }
        if let Some(s) = &self.settle {
            f(TAG_SALE_COUNT, ItemValue::Number(u64::from(s.sale_count), 6));
            f(TAG_SALE_TOTAL, ItemValue::Number(s.sale_total, 12));
            f(TAG_VOID_COUNT, ItemValue::Number(u64::from(s.void_count), 6));
            f(TAG_VOID_TOTAL, ItemValue::Number(s.void_total, 12));
            f(TAG_REFUND_COUNT, ItemValue::Number(u64::from(s.refund_count), 6));
            f(TAG_REFUND_TOTAL, ItemValue::Number(s.refund_total, 12));
        }
    }

    /// Appends the TLV bytes to `out`.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), FieldError> {
        let mut result = Ok(());
        self.each_item(|tag, value| {
            if result.is_err() {
                return;
            }
            result = write_item(tag, value, out);
        });
        result
    }

    /// Builds a memo from (tag, text) items, as the canonical JSON carries them. Unknown tags are
    /// refused: the encoder has no way to carry them.
    pub fn from_items<'a>(items: impl IntoIterator<Item = (u16, &'a str)>) -> Result<Memo, FieldError> {
        let mut memo = Memo::default();
        let mut partial = PartialSettle::default();
        for (tag, value) in items {
            let field = Field::MemoItem(tag);
            let fail = |problem| FieldError { field, problem };
            if !is_known(tag) {
                return Err(fail(ValueError::Invalid { expected: "a known memo tag (0F01-0F06, 0F10-0F15)" }));
            }
            if memo.has(tag, &partial) {
                return Err(fail(ValueError::Invalid { expected: "each tag at most once" }));
            }
            let bytes =
                if tag == TAG_PAYER_NAME { encode_gb18030(value).map_err(fail)? } else { value.as_bytes().to_vec() };
            memo.apply(tag, &bytes, &mut partial).map_err(fail)?;
        }
        memo.settle = partial.finish().map_err(|tag| FieldError {
            field: Field::MemoItem(tag),
            problem: ValueError::Invalid { expected: "all six settlement totals 0F10-0F15 together" },
        })?;
        Ok(memo)
    }

    /// Parses the memo bytes of a message whose memo starts at `base` within DATA.
    pub(crate) fn decode(bytes: &[u8], base: usize) -> Result<Memo, DecodeError> {
        let mut memo = Memo::default();
        let mut partial = PartialSettle::default();
        let mut seen_unknown: Vec<u16> = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let at = base + pos;
            let rest = &bytes[pos..];
            if rest.len() < ITEM_HEADER {
                return Err(DecodeError::new(
                    Field::Memo,
                    at,
                    ValueError::Invalid { expected: "a 7-byte item header (tag, length); bytes left over" },
                ));
            }
            let tag = parse_tag(&rest[..4]).ok_or_else(|| {
                DecodeError::new(Field::Memo, at, ValueError::Invalid { expected: "a tag of 4 uppercase hex digits" })
            })?;
            let field = Field::MemoItem(tag);
            let len = crate::field::read_number(&rest[4..7]).map_err(|p| DecodeError::new(field, at + 4, p))? as usize;
            let Some(value) = rest.get(ITEM_HEADER..ITEM_HEADER + len) else {
                return Err(DecodeError::new(
                    field,
                    at + 4,
                    ValueError::Invalid { expected: "an item length within the memo" },
                ));
            };
            let value_at = at + ITEM_HEADER;
            if memo.has(tag, &partial) {
                return Err(DecodeError::new(field, at, ValueError::Invalid { expected: "each tag at most once" }));
            }
            if is_known(tag) {
                memo.apply(tag, value, &mut partial).map_err(|p| DecodeError::new(field, value_at, p))?;
            } else if seen_unknown.contains(&tag) {
                return Err(DecodeError::new(field, at, ValueError::Invalid { expected: "each tag at most once" }));
            } else {
                seen_unknown.push(tag);
            }
            pos += ITEM_HEADER + len;
        }
        memo.settle = partial.finish().map_err(|tag| {
            DecodeError::new(
                Field::MemoItem(tag),
                base + bytes.len(),
                ValueError::Invalid { expected: "all six settlement totals 0F10-0F15 together" },
            )
        })?;
        Ok(memo)
    }

    fn has(&self, tag: u16, partial: &PartialSettle) -> bool {
        match tag {
            TAG_REFERENCE => self.reference.is_some(),
            TAG_CONTRIBUTION => self.contribution.is_some(),
            TAG_PAYER_NAME => self.payer_name.is_some(),
            TAG_PAYER_ID => self.payer_id.is_some(),
            TAG_QUERY_STATE => self.query_state.is_some(),
            TAG_QUERY_TYPE => self.query_type.is_some(),
            _ => partial.has(tag),
        }
    }

    fn apply(&mut self, tag: u16, value: &[u8], partial: &mut PartialSettle) -> Result<(), ValueError> {
        match tag {
            TAG_REFERENCE => {
                if value.is_empty() {
                    return Err(ValueError::Empty);
                }
                self.reference = Some(Ascii::from_unpadded(value)?);
            }
            TAG_CONTRIBUTION => {
                self.contribution = Some(match value {
                    b"01" => ContributionKind::Pension,
                    b"02" => ContributionKind::Medical,
                    _ => return Err(ValueError::Invalid { expected: "01 (pension) or 02 (medical)" }),
                });
            }
            TAG_PAYER_NAME => {
                if value.is_empty() {
                    return Err(ValueError::Empty);
                }
                if value.len() > 30 {
                    return Err(ValueError::TooWide { width: 30, len: value.len() });
                }
                if value.last() == Some(&b' ') {
                    return Err(ValueError::TrailingSpace);
                }
                self.payer_name = Some(PayerName(Text::from_wire(value)?));
            }
            TAG_PAYER_ID => {
                let s = std::str::from_utf8(value).map_err(|_| ValueError::Invalid { expected: "ASCII" })?;
                self.payer_id = Some(MaskedIdNumber::new(s)?);
            }
            TAG_QUERY_STATE => {
                self.query_state = Some(match value {
                    b"A" => QueryState::Approved,
                    b"V" => QueryState::Voided,
                    b"R" => QueryState::Refunded,
                    b"D" => QueryState::Declined,
                    _ => return Err(ValueError::Invalid { expected: "A, V, R or D" }),
                });
            }
            TAG_QUERY_TYPE => {
                self.query_type = Some(match value {
                    b"00" => MessageType::Sale,
                    b"01" => MessageType::Void,
                    b"02" => MessageType::Refund,
                    _ => return Err(ValueError::Invalid { expected: "00, 01 or 02" }),
                });
            }
            _ => partial.set(tag, value)?,
        }
        Ok(())
    }
}

fn is_known(tag: u16) -> bool {
    matches!(tag, TAG_REFERENCE..=TAG_QUERY_TYPE | TAG_SALE_COUNT..=TAG_REFUND_TOTAL)
}

fn parse_tag(bytes: &[u8]) -> Option<u16> {
    let mut tag = 0u16;
    for &b in bytes {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        tag = (tag << 4) | u16::from(digit);
    }
    Some(tag)
}

/// Parses a memo tag as written in JSON (`"0F01"`).
pub fn parse_tag_str(s: &str) -> Option<u16> {
    (s.len() == 4).then(|| parse_tag(s.as_bytes())).flatten()
}

enum ItemValue<'a> {
    Ascii(&'a str),
    Text(&'a str),
    Number(u64, usize),
}

impl ItemValue<'_> {
    fn to_text(&self) -> String {
        match self {
            ItemValue::Ascii(s) | ItemValue::Text(s) => (*s).to_owned(),
            ItemValue::Number(n, width) => format!("{n:0width$}"),
        }
    }
}

fn write_item(tag: u16, value: ItemValue<'_>, out: &mut Vec<u8>) -> Result<(), FieldError> {
    use std::io::Write as _;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{tag:04X}");
    let len_at = out.len();
    out.extend_from_slice(b"000");
    let start = out.len();
    match value {
        ItemValue::Ascii(s) => out.extend_from_slice(s.as_bytes()),
        ItemValue::Text(s) => out.extend_from_slice(
            &encode_gb18030(s).map_err(|problem| FieldError { field: Field::MemoItem(tag), problem })?,
        ),
        ItemValue::Number(n, width) => {
            out.resize(start + width, b'0');
            write_number(n, &mut out[start..])
                .map_err(|problem| FieldError { field: Field::MemoItem(tag), problem })?;
        }
    }
    let len = out.len() - start;
    write_number(len as u64, &mut out[len_at..start]).map_err(|_| FieldError {
        field: Field::MemoItem(tag),
        problem: ValueError::TooWide { width: MAX_ITEM_LEN, len },
    })
}

/// Settlement totals while their six items arrive one by one.
#[derive(Debug, Default, Clone, Copy)]
struct PartialSettle {
    values: [Option<u64>; 6],
}

impl PartialSettle {
    fn slot(tag: u16) -> Option<(usize, usize)> {
        let i = usize::from(tag.checked_sub(TAG_SALE_COUNT)?);
        // Counts are n6, totals n12.
        (i < 6).then_some((i, if i % 2 == 0 { 6 } else { 12 }))
    }

    fn has(&self, tag: u16) -> bool {
        Self::slot(tag).is_some_and(|(i, _)| self.values[i].is_some())
    }

    fn set(&mut self, tag: u16, value: &[u8]) -> Result<(), ValueError> {
        let Some((i, width)) = Self::slot(tag) else {
            return Ok(());
        };
        if value.len() != width {
            return Err(ValueError::Invalid { expected: if width == 6 { "6 digits" } else { "12 digits" } });
        }
        self.values[i] = Some(crate::field::read_number(value)?);
        Ok(())
    }

    fn any(&self) -> bool {
        self.values.iter().any(Option::is_some)
    }

    /// All six, none, or the tag of the first missing one.
    fn finish(self) -> Result<Option<SettleTotals>, u16> {
        if !self.any() {
            return Ok(None);
        }
        if let Some(i) = self.values.iter().position(Option::is_none) {
            return Err(TAG_SALE_COUNT + i as u16);
        }
        let v = |i: usize| self.values[i].unwrap_or(0);
        // Counts are at most 6 digits.
        Ok(Some(SettleTotals {
            sale_count: v(0) as u32,
            sale_total: v(1),
            void_count: v(2) as u32,
            void_total: v(3),
            refund_count: v(4) as u32,
            refund_total: v(5),
        }))
    }
}

//! Fixed-width fields (wire-protocol.md §5) and the value types they hold.
//!
//! Every field of a request or response is declared once in a layout table (`REQUEST_LAYOUT`,
//! `RESPONSE_LAYOUT`): its name, width and kind. The message encoder walks the table asking the
//! message for each field's value; the decoder takes the fixed part by the same table (nom) and reads
//! each field at the offset and width the table gives, through the field's typed parser. Nothing else
//! knows an offset.

use std::fmt;

use nom::bytes::complete::take;
use nom::IResult;

/// Every field the protocol names, used to say where a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// Request token, echoed in the response (§5.1 #1, §5.2 #1).
    Token,
    /// Message type (§5.3).
    Type,
    /// 款台号, the collection desk.
    Till,
    /// 操作员号, the collector's staff number.
    Operator,
    /// 金额 in fen.
    Amount,
    /// 原凭证号, the voided sale's trace.
    OrigTrace,
    /// 原交易日期, the refunded sale's date.
    OrigDate,
    /// 原参考号, the refunded sale's RRN.
    OrigRrn,
    /// Length of the memo.
    MemoLen,
    /// The memo as a whole (its TLV framing).
    Memo,
    /// One memo item, by tag (§5.4).
    MemoItem(u16),
    /// 应答码 (§5.5).
    Code,
    /// 应答信息, GB18030 text.
    Text,
    /// 卡号, the masked PAN.
    Card,
    /// 凭证号, POS trace number.
    Trace,
    /// 批次号.
    Batch,
    /// Transaction date YYYYMMDD.
    Date,
    /// Transaction time hhmmss.
    Time,
    /// 参考号, host retrieval reference number.
    Rrn,
    /// 授权码.
    Auth,
    /// 商户号.
    Merchant,
    /// 终端号.
    Terminal,
    /// Bytes past the end of the message.
    Trailing,
}

/// How many distinct [`Field`] slots a layout's index has (memo items share one).
const FIELD_SLOTS: usize = 24;

impl Field {
    /// A dense number per field, for the layouts' index tables.
    const fn slot(self) -> usize {
        match self {
            Field::Token => 0,
            Field::Type => 1,
            Field::Till => 2,
            Field::Operator => 3,
            Field::Amount => 4,
            Field::OrigTrace => 5,
            Field::OrigDate => 6,
            Field::OrigRrn => 7,
            Field::MemoLen => 8,
            Field::Memo => 9,
            Field::MemoItem(_) => 10,
            Field::Code => 11,
            Field::Text => 12,
            Field::Card => 13,
            Field::Trace => 14,
            Field::Batch => 15,
            Field::Date => 16,
            Field::Time => 17,
            Field::Rrn => 18,
            Field::Auth => 19,
            Field::Merchant => 20,
            Field::Terminal => 21,
            Field::Trailing => 22,
        }
    }

    /// The field's name in the canonical JSON form (§6); memo items read `memo.0F01`.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        let name = match self {
            Field::Token => "token",
            Field::Type => "type",
            Field::Till => "till",
            Field::Operator => "operator",
            Field::Amount => "amount_fen",
            Field::OrigTrace => "orig_trace",
            Field::OrigDate => "orig_date",
            Field::OrigRrn => "orig_rrn",
            Field::MemoLen => "memo_len",
            Field::Memo => "memo",
            Field::MemoItem(tag) => return format!("memo.{tag:04X}").into(),
            Field::Code => "code",
            Field::Text => "text",
            Field::Card => "card",
            Field::Trace => "trace",
            Field::Batch => "batch",
            Field::Date => "date",
            Field::Time => "time",
            Field::Rrn => "rrn",
            Field::Auth => "auth",
            Field::Merchant => "merchant",
            Field::Terminal => "terminal",
            Field::Trailing => "trailing bytes",
        };
        name.into()
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// How a fixed-width field is written (§5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `n`: decimal digits, right-aligned, zero-padded.
    Numeric,
    /// `an`: printable ASCII, left-aligned, space-padded.
    Alnum,
    /// `text`: GB18030, left-aligned, space-padded.
    Text,
}

/// One row of a layout table.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldSpec {
    pub(crate) field: Field,
    pub(crate) width: usize,
    pub(crate) kind: Kind,
    /// Where the field starts, filled in by [`layout`] from the widths before it.
    pub(crate) offset: usize,
}

const fn spec(field: Field, width: usize, kind: Kind) -> FieldSpec {
    FieldSpec { field, width, kind, offset: 0 }
}

/// A message's fixed part: its fields in order, and an index from field to position.
#[derive(Debug)]
pub(crate) struct Layout<const N: usize> {
    pub(crate) specs: [FieldSpec; N],
    /// `index[field.slot()]` is the field's position in `specs`, or `u8::MAX` when absent.
    index: [u8; FIELD_SLOTS],
}

/// Builds a layout: fills in each field's offset from the widths before it, and the index.
const fn layout<const N: usize>(mut specs: [FieldSpec; N]) -> Layout<N> {
    let mut index = [u8::MAX; FIELD_SLOTS];
    let mut offset = 0;
    let mut i = 0;
    while i < N {
        specs[i].offset = offset;
        offset += specs[i].width;
        // Layouts have at most 15 fields.
        index[specs[i].field.slot()] = i as u8;
        i += 1;
    }
    Layout { specs, index }
}

impl<const N: usize> Layout<N> {
    /// Bytes of the fixed part.
    pub(crate) const fn len(&self) -> usize {
        fixed_len(&self.specs)
    }

    fn spec(&self, field: Field) -> Option<&FieldSpec> {
        self.specs.get(usize::from(self.index[field.slot()]))
    }
}

/// §5.1: the fixed part of a request, 63 bytes, followed by `memo_len` bytes of memo.
pub(crate) const REQUEST_LAYOUT: Layout<9> = layout([
    spec(Field::Token, 3, Kind::Numeric),
    spec(Field::Type, 2, Kind::Numeric),
    spec(Field::Till, 8, Kind::Alnum),
    spec(Field::Operator, 8, Kind::Alnum),
    spec(Field::Amount, 12, Kind::Numeric),
    spec(Field::OrigTrace, 6, Kind::Numeric),
    spec(Field::OrigDate, 8, Kind::Numeric),
    spec(Field::OrigRrn, 12, Kind::Alnum),
    spec(Field::MemoLen, 4, Kind::Numeric),
]);

/// §5.2: the fixed part of a response, 150 bytes, followed by `memo_len` bytes of memo.
pub(crate) const RESPONSE_LAYOUT: Layout<15> = layout([
    spec(Field::Token, 3, Kind::Numeric),
    spec(Field::Type, 2, Kind::Numeric),
    spec(Field::Code, 2, Kind::Alnum),
    spec(Field::Text, 40, Kind::Text),
    spec(Field::Card, 20, Kind::Alnum),
    spec(Field::Amount, 12, Kind::Numeric),
    spec(Field::Trace, 6, Kind::Numeric),
    spec(Field::Batch, 6, Kind::Numeric),
    spec(Field::Date, 8, Kind::Numeric),
    spec(Field::Time, 6, Kind::Numeric),
    spec(Field::Rrn, 12, Kind::Alnum),
    spec(Field::Auth, 6, Kind::Alnum),
    spec(Field::Merchant, 15, Kind::Alnum),
    spec(Field::Terminal, 8, Kind::Alnum),
    spec(Field::MemoLen, 4, Kind::Numeric),
]);

/// Bytes of a layout's fixed part.
pub(crate) const fn fixed_len(layout: &[FieldSpec]) -> usize {
    let mut total = 0;
    let mut i = 0;
    while i < layout.len() {
        total += layout[i].width;
        i += 1;
    }
    total
}

/// What is wrong with a value, wherever it came from. Positions are byte indexes within the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Fewer bytes than the layout needs.
    #[error("message ends after {available} bytes; {needed} needed")]
    Truncated {
        /// Bytes needed.
        needed: usize,
        /// Bytes there.
        available: usize,
    },
    /// Longer than the field.
    #[error("{len} bytes, wider than the field's {width}")]
    TooWide {
        /// The field's width.
        width: usize,
        /// The value's length in bytes.
        len: usize,
    },
    /// A numeric field holds something other than a digit.
    #[error("byte {byte:#04x} at index {index} is not a decimal digit")]
    NotDigit {
        /// The offending byte.
        byte: u8,
        /// Its index in the value.
        index: usize,
    },
    /// An `an` field holds something other than printable ASCII.
    #[error("byte {byte:#04x} at index {index} is not printable ASCII")]
    NotPrintable {
        /// The offending byte.
        byte: u8,
        /// Its index in the value.
        index: usize,
    },
    /// A text field is not valid GB18030.
    #[error("not valid GB18030 text")]
    NotGb18030,
    /// A text field holds a control character.
    #[error("control character at index {index}")]
    ControlInText {
        /// Its byte index in the value.
        index: usize,
    },
    /// A value ending in a space, which padding would swallow.
    #[error("ends in a space, which the padding would swallow")]
    TrailingSpace,
    /// The value is empty where one is required.
    #[error("empty; a value is required")]
    Empty,
    /// Well-formed, but not a value the protocol allows here.
    #[error("expected {expected}")]
    Invalid {
        /// What the protocol allows.
        expected: &'static str,
    },
}

/// Exactly `N` ASCII digits: a numeric field kept as the digits the wire carries (trace, batch, dates).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digits<const N: usize>([u8; N]);

impl<const N: usize> Digits<N> {
    /// All zeros.
    pub const ZERO: Self = Digits([b'0'; N]);

    /// Parses 1..=N digits, zero-padding on the left.
    pub fn new(digits: &str) -> Result<Self, ValueError> {
        let bytes = digits.as_bytes();
        if bytes.is_empty() {
            return Err(ValueError::Empty);
        }
        if bytes.len() > N {
            return Err(ValueError::TooWide { width: N, len: bytes.len() });
        }
        check_digits(bytes)?;
        let mut out = [b'0'; N];
        out[N - bytes.len()..].copy_from_slice(bytes);
        Ok(Digits(out))
    }

    /// The value with the given number, if it fits.
    pub fn from_number(n: u64) -> Result<Self, ValueError> {
        let mut out = [b'0'; N];
        write_number(n, &mut out)?;
        Ok(Digits(out))
    }

    /// Reads exactly N digits.
    #[inline]
    pub(crate) fn from_wire(bytes: &[u8]) -> Result<Self, ValueError> {
        let out: [u8; N] = bytes.try_into().map_err(|_| ValueError::TooWide { width: N, len: bytes.len() })?;
        check_digits(&out)?;
        Ok(Digits(out))
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        // Only ASCII digits are ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The number the digits spell.
    pub fn value(&self) -> u64 {
        self.0.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0'))
    }

    /// True when every digit is 0.
    pub fn is_zero(&self) -> bool {
        self.0.iter().all(|&d| d == b'0')
    }
}

impl<const N: usize> fmt::Display for Digits<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Digits<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Up to `N` bytes of printable ASCII with no trailing space: an `an` field's content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ascii<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

impl<const N: usize> Ascii<N> {
    /// The empty value (all spaces on the wire).
    pub const EMPTY: Self = Ascii { bytes: [b' '; N], len: 0 };

    /// Checks and stores `s`.
    pub fn new(s: &str) -> Result<Self, ValueError> {
        Self::from_unpadded(s.as_bytes())
    }

    /// Checks an unpadded value (a memo item's).
    pub(crate) fn from_unpadded(bytes: &[u8]) -> Result<Self, ValueError> {
        if bytes.len() > N {
            return Err(ValueError::TooWide { width: N, len: bytes.len() });
        }
        check_printable(bytes)?;
        if bytes.last() == Some(&b' ') {
            return Err(ValueError::TrailingSpace);
        }
        let mut out = [b' '; N];
        out[..bytes.len()].copy_from_slice(bytes);
        // N is a field width, at most 32.
        Ok(Ascii { bytes: out, len: bytes.len() as u8 })
    }

    /// Reads a space-padded field.
    #[inline]
    pub(crate) fn from_wire(field: &[u8]) -> Result<Self, ValueError> {
        check_printable(field)?;
        let content = trim_padding(field).len();
        // A wire field is exactly N bytes, already space-padded as stored: one fixed-size copy (wide
        // moves the compiler can forward, where a variable-length copy stalls every later read).
        let bytes: [u8; N] = field.try_into().map_err(|_| ValueError::TooWide { width: N, len: field.len() })?;
        // N is a field width, at most 32.
        Ok(Ascii { bytes, len: content as u8 })
    }

    /// The content.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The content as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// True when the field is all spaces.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> fmt::Display for Ascii<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> fmt::Debug for Ascii<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

/// Text of at most `N` bytes once encoded in GB18030, without control characters or a trailing space.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Text<const N: usize>(String);

impl<const N: usize> Text<N> {
    /// Checks `s` against the field.
    pub fn new(s: &str) -> Result<Self, ValueError> {
        if let Some(index) = s.char_indices().find(|(_, c)| c.is_control()).map(|(i, _)| i) {
            return Err(ValueError::ControlInText { index });
        }
        if s.ends_with(' ') {
            return Err(ValueError::TrailingSpace);
        }
        let len = encode_gb18030(s)?.len();
        if len > N {
            return Err(ValueError::TooWide { width: N, len });
        }
        Ok(Text(s.to_owned()))
    }

    /// Reads a space-padded GB18030 field.
    pub(crate) fn from_wire(field: &[u8]) -> Result<Self, ValueError> {
        let bytes = trim_padding(field);
        if bytes.is_ascii() {
            // The common case, and a fast one: ASCII is GB18030 and UTF-8 alike.
            if let Some(index) = bytes.iter().position(|b| b.is_ascii_control()) {
                return Err(ValueError::ControlInText { index });
            }
            return Ok(Text(String::from_utf8_lossy(bytes).into_owned()));
        }
        let text = encoding_rs::GB18030
            .decode_without_bom_handling_and_without_replacement(bytes)
            .ok_or(ValueError::NotGb18030)?;
        if text.chars().any(char::is_control) {
            return Err(ValueError::ControlInText { index: control_byte_index(bytes) });
        }
        if decodes_lossily(bytes, &text) {
            return Err(ValueError::NotGb18030);
        }
        // The field is N bytes wide and its trailing spaces are gone, so the width and trailing-space
        // rules already hold.
        Ok(Text(text.into_owned()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The GB18030 bytes.
    pub fn to_gb18030(&self) -> Vec<u8> {
        // `new` and `from_wire` only accept text that encodes.
        encode_gb18030(&self.0).unwrap_or_default()
    }
}

impl<const N: usize> fmt::Display for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<const N: usize> fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

fn control_byte_index(bytes: &[u8]) -> usize {
    bytes.iter().position(|b| b.is_ascii_control()).unwrap_or(0)
}

/// GB18030 bytes of `s`. encoding_rs follows the WHATWG encoder, which has no bytes for U+E5E5 (it would
/// write an HTML character reference instead); such text is refused rather than altered.
pub(crate) fn encode_gb18030(s: &str) -> Result<Vec<u8>, ValueError> {
    if s.is_ascii() {
        return Ok(s.as_bytes().to_vec());
    }
    let (bytes, _, had_errors) = encoding_rs::GB18030.encode(s);
    if had_errors {
        return Err(ValueError::NotGb18030);
    }
    Ok(bytes.into_owned())
}

/// True when `text`, decoded from `bytes`, would not encode back to the same bytes. The WHATWG GB18030
/// codec is not one-to-one: each character of [`GB18030_TWO_WAY`] is read from two byte sequences (the
/// lone byte 0x80 and A2 E3 both read as '€'; A3 A0 and A1 A1 both as U+3000) but written as one. A value
/// that changed between the wire and the JSON would break the inspector's both-ways promise. Encoding is
/// slow next to decoding, so only text holding one of those characters is encoded again to compare.
fn decodes_lossily(bytes: &[u8], text: &str) -> bool {
    text.contains(GB18030_TWO_WAY) && encode_gb18030(text).map_or(true, |again| again != bytes)
}

/// The characters encoding_rs 0.8's GB18030 decoder reads from two byte sequences, found by decoding
/// every one-, two- and four-byte sequence and encoding the result again.
const GB18030_TWO_WAY: [char; 20] = [
    '\u{20AC}', '\u{3000}', '\u{9FB4}', '\u{9FB5}', '\u{9FB6}', '\u{9FB7}', '\u{9FB8}', '\u{9FB9}', '\u{9FBA}',
    '\u{9FBB}', '\u{FE10}', '\u{FE11}', '\u{FE12}', '\u{FE13}', '\u{FE14}', '\u{FE15}', '\u{FE16}', '\u{FE17}',
    '\u{FE18}', '\u{FE19}',
];

fn trim_padding(field: &[u8]) -> &[u8] {
    let end = field.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    &field[..end]
}

fn check_digits(bytes: &[u8]) -> Result<(), ValueError> {
    match bytes.iter().position(|b| !b.is_ascii_digit()) {
        Some(index) => Err(ValueError::NotDigit { byte: bytes[index], index }),
        None => Ok(()),
    }
}

fn check_printable(bytes: &[u8]) -> Result<(), ValueError> {
    match bytes.iter().position(|&b| !(0x20..=0x7e).contains(&b)) {
        Some(index) => Err(ValueError::NotPrintable { byte: bytes[index], index }),
        None => Ok(()),
    }
}

/// Writes `n` right-aligned and zero-padded into `out`.
pub(crate) fn write_number(mut n: u64, out: &mut [u8]) -> Result<(), ValueError> {
    let width = out.len();
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    if n != 0 {
        let len = width + n.to_string().len();
        return Err(ValueError::TooWide { width, len });
    }
    Ok(())
}

/// Reads a numeric field as a number. Fields are at most 12 digits, so it cannot overflow.
pub(crate) fn read_number(bytes: &[u8]) -> Result<u64, ValueError> {
    check_digits(bytes)?;
    Ok(bytes.iter().fold(0, |acc, d| acc * 10 + u64::from(d - b'0')))
}

/// A field's value handed to the encoder.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    /// A number for a numeric field.
    Number(u64),
    /// Bytes already valid for the field's kind; padded by the encoder.
    Bytes(&'a [u8]),
}

/// A value that does not fit its field, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct FieldError {
    /// The field.
    pub field: Field,
    /// What is wrong.
    pub problem: ValueError,
}

/// Writes the fixed part of a message: each field of `layout`, its value asked from `value`.
pub(crate) fn write_fixed<'a>(
    layout: &[FieldSpec],
    mut value: impl FnMut(Field) -> Value<'a>,
    out: &mut Vec<u8>,
) -> Result<(), FieldError> {
    for spec in layout {
        let start = out.len();
        out.resize(start + spec.width, b' ');
        let slot = &mut out[start..];
        let written = match (spec.kind, value(spec.field)) {
            (Kind::Numeric, Value::Number(n)) => write_number(n, slot),
            (Kind::Numeric, Value::Bytes(digits)) => {
                slot.fill(b'0');
                fit(slot.len(), digits).map(|()| slot[spec.width - digits.len()..].copy_from_slice(digits))
            }
            (Kind::Alnum | Kind::Text, Value::Bytes(bytes)) => {
                fit(slot.len(), bytes).map(|()| slot[..bytes.len()].copy_from_slice(bytes))
            }
            (Kind::Alnum | Kind::Text, Value::Number(n)) => {
                let digits = n.to_string();
                fit(slot.len(), digits.as_bytes()).map(|()| slot[..digits.len()].copy_from_slice(digits.as_bytes()))
            }
        };
        written.map_err(|problem| FieldError { field: spec.field, problem })?;
    }
    Ok(())
}

fn fit(width: usize, bytes: &[u8]) -> Result<(), ValueError> {
    if bytes.len() > width {
        Err(ValueError::TooWide { width, len: bytes.len() })
    } else {
        Ok(())
    }
}

/// Where a decode went wrong: the field, the byte offset within DATA, and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field} at byte {offset}: {problem}")]
pub struct DecodeError {
    /// The field.
    pub field: Field,
    /// Byte offset within the frame's DATA.
    pub offset: usize,
    /// What is wrong.
    pub problem: ValueError,
}

impl DecodeError {
    pub(crate) fn new(field: Field, offset: usize, problem: ValueError) -> Self {
        // Problems that point inside the value move the offset onto the offending byte.
        let offset = offset
            + match problem {
                ValueError::NotDigit { index, .. }
                | ValueError::NotPrintable { index, .. }
                | ValueError::ControlInText { index } => index,
                _ => 0,
            };
        DecodeError { field, offset, problem }
    }
}

/// The fixed part of a message, its length and each field's kind checked against its layout.
pub(crate) struct Fixed<'a, const N: usize> {
    layout: &'static Layout<N>,
    input: &'a [u8],
}

impl<'a, const N: usize> Fixed<'a, N> {
    /// Takes the fixed part of `input` by `layout` with nom; returns the bytes after it. Each field's
    /// content is checked by the typed parser that reads it ([`Fixed::get`]), so no byte is read twice.
    pub(crate) fn parse(layout: &'static Layout<N>, input: &'a [u8]) -> Result<(Self, &'a [u8]), DecodeError> {
        let needed = layout.len();
        let taken: IResult<&[u8], &[u8]> = take(needed)(input);
        let Ok((rest, _)) = taken else {
            // Name the first field that does not fit.
            let spec = layout.specs.iter().find(|s| s.offset + s.width > input.len()).unwrap_or(&layout.specs[0]);
            return Err(DecodeError::new(
                spec.field,
                spec.offset,
                ValueError::Truncated { needed, available: input.len() },
            ));
        };
        Ok((Fixed { layout, input }, rest))
    }

    fn spec(&self, field: Field) -> Option<&'static FieldSpec> {
        self.layout.spec(field)
    }

    /// The raw bytes of `field` (empty for a field the layout lacks, a bug the tests would catch).
    #[inline]
    pub(crate) fn raw(&self, field: Field) -> &'a [u8] {
        self.spec(field).and_then(|s| self.input.get(s.offset..s.offset + s.width)).unwrap_or_default()
    }

    /// Byte offset of `field` within the message.
    pub(crate) fn offset(&self, field: Field) -> usize {
        self.spec(field).map_or(0, |s| s.offset)
    }

    /// Parses `field` with `parse`, naming the field and offset on failure.
    #[inline]
    pub(crate) fn get<T>(
        &self,
        field: Field,
        parse: impl FnOnce(&'a [u8]) -> Result<T, ValueError>,
    ) -> Result<T, DecodeError> {
        parse(self.raw(field)).map_err(|problem| DecodeError::new(field, self.offset(field), problem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-way table stays complete: every one- and two-byte sequence that decodes to text which
    /// encodes to other bytes decodes to a character of the table. (The four-byte space was scanned when
    /// the table was made; it adds nothing.)
    #[test]
    fn the_two_way_table_covers_every_short_sequence() {
        let seconds = (0x40u8..=0x7e).chain(0x80..=0xfe);
        let singles = (0x80u8..=0xff).map(|b| vec![b]);
        let pairs = (0x81u8..=0xfe).flat_map(|a| seconds.clone().map(move |b| vec![a, b]));
        for bytes in singles.chain(pairs) {
            let Some(text) = encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(&bytes) else {
                continue;
            };
            if encode_gb18030(&text).map_or(true, |again| again != bytes) {
                assert!(decodes_lossily(&bytes, &text), "{bytes:02x?} -> {text:?} is missing from the table");
            }
        }
    }
}

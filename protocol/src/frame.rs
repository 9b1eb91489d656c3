//! Frames and control bytes: `STX | LEN | DATA | ETX | CHECK` (wire-protocol.md §2, §3).
//!
//! The heart of this module is [`scan`], a pure function over a byte slice that finds the next item
//! (a frame, a control byte, or a broken frame) and says how many bytes it used. [`FrameDecoder`] wraps
//! it with an owned buffer for callers that receive bytes in pieces; the `tokio` codec wraps it over a
//! `BytesMut`. All three therefore skip noise and resynchronise identically.

use crc::{Crc, Table, CRC_16_IBM_3740};

/// Start of text: the first byte of every frame.
pub const STX: u8 = 0x02;
/// End of text: the byte after DATA.
pub const ETX: u8 = 0x03;
/// Acknowledge (§3).
pub const ACK: u8 = 0x06;
/// Negative acknowledge (§3).
pub const NAK: u8 = 0x15;
/// Enquiry, the link probe (§3).
pub const ENQ: u8 = 0x05;

/// The largest LEN the wire format can carry: four BCD digits.
pub const WIRE_MAX_DATA_LEN: usize = 9999;
/// The default receiver limit on LEN (§2).
pub const DEFAULT_MAX_DATA_LEN: usize = 4096;
/// Bytes of a frame around DATA before the check: STX, two LEN bytes, ETX.
const ENVELOPE: usize = 4;

/// Slice-by-16 tables: several times faster than the byte-wise table for whole frames.
const CRC16: Crc<u16, Table<16>> = Crc::<u16, Table<16>>::new(&CRC_16_IBM_3740);

/// The check dialect a terminal is configured for (§2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Check {
    /// One byte: XOR of LEN, DATA and ETX.
    #[default]
    Lrc,
    /// Two bytes big-endian: CRC-16/IBM-3740 over LEN, DATA and ETX.
    Crc16,
}

impl Check {
    /// How many bytes the check occupies.
    pub const fn check_len(self) -> usize {
        match self {
            Check::Lrc => 1,
            Check::Crc16 => 2,
        }
    }

    /// Bytes a frame with `data_len` bytes of DATA occupies on the wire.
    pub const fn frame_len(self, data_len: usize) -> usize {
        ENVELOPE + data_len + self.check_len()
    }

    /// The dialect's name as used in configuration and on the command line.
    pub const fn name(self) -> &'static str {
        match self {
            Check::Lrc => "lrc",
            Check::Crc16 => "crc16",
        }
    }

    /// Computes the check over `covered` (LEN, DATA and ETX), big-endian in the low bytes.
    fn compute(self, covered: &[u8]) -> u16 {
        match self {
            Check::Lrc => u16::from(covered.iter().fold(0u8, |acc, b| acc ^ b)),
            Check::Crc16 => CRC16.checksum(covered),
        }
    }

    fn read(self, bytes: &[u8]) -> u16 {
        match self {
            Check::Lrc => u16::from(bytes[0]),
            Check::Crc16 => u16::from_be_bytes([bytes[0], bytes[1]]),
        }
    }
}

impl std::str::FromStr for Check {
    type Err = UnknownCheck;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lrc" => Ok(Check::Lrc),
            "crc16" => Ok(Check::Crc16),
            _ => Err(UnknownCheck(s.to_owned())),
        }
    }
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A check dialect name that is neither `lrc` nor `crc16`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown check dialect {0:?}: expected \"lrc\" or \"crc16\"")]
pub struct UnknownCheck(pub String);

/// A single control byte sent outside frames (§3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    /// `06`: the frame was received well-formed, or the answer to ENQ.
    Ack,
    /// `15`: the frame was broken; send it again.
    Nak,
    /// `05`: link probe.
    Enq,
}

impl Control {
    /// The byte on the wire.
    pub const fn byte(self) -> u8 {
        match self {
            Control::Ack => ACK,
            Control::Nak => NAK,
            Control::Enq => ENQ,
        }
    }

    /// The control a byte stands for, if any.
    pub const fn from_byte(byte: u8) -> Option<Control> {
        match byte {
            ACK => Some(Control::Ack),
            NAK => Some(Control::Nak),
            ENQ => Some(Control::Enq),
            _ => None,
        }
    }

    /// The name used in the canonical JSON form (§6).
    pub const fn name(self) -> &'static str {
        match self {
            Control::Ack => "ACK",
            Control::Nak => "NAK",
            Control::Enq => "ENQ",
        }
    }
}

/// Receiver settings for frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameConfig {
    /// The check dialect.
    pub check: Check,
    /// The largest LEN accepted; larger frames are refused as soon as their LEN is read (§2).
    pub max_data_len: usize,
}

impl FrameConfig {
    /// The default limit with the given dialect.
    pub const fn new(check: Check) -> Self {
        FrameConfig { check, max_data_len: DEFAULT_MAX_DATA_LEN }
    }
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig::new(Check::Lrc)
    }
}

/// Why bytes that began with STX are not a frame. Every variant makes the receiver send NAK, drop the
/// STX and rescan the bytes after it (§4 rule 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A LEN byte holds a nibble above 9.
    #[error("LEN byte {byte:#04x} is not packed BCD")]
    LenNotBcd {
        /// The offending LEN byte.
        byte: u8,
    },
    /// LEN is 0; a frame carries 1..=9999 bytes.
    #[error("LEN is 0; a frame carries at least one byte")]
    LenZero,
    /// LEN is above the receiver's configured maximum.
    #[error("LEN {len} is above the maximum of {max}")]
    TooLong {
        /// LEN as read.
        len: usize,
        /// The receiver's limit.
        max: usize,
    },
    /// The byte where LEN puts ETX is something else.
    #[error("no ETX after {len} bytes of DATA: found {found:#04x}")]
    NoEtx {
        /// LEN as read.
        len: usize,
        /// The byte found where ETX belongs.
        found: u8,
    },
    /// The check does not match the frame.
    #[error("{check} check mismatch: frame carries {found:#06x}, bytes give {computed:#06x}")]
    BadCheck {
        /// The dialect.
        check: Check,
        /// The check the frame carries.
        found: u16,
        /// The check computed over LEN, DATA and ETX.
        computed: u16,
    },
    /// An STX and part of a frame followed by T_gap of silence, or the end of a capture.
    #[error("incomplete frame: LEN promises {expected} bytes in all, only {got} arrived")]
    Incomplete {
        /// Bytes the frame would occupy (0 while LEN itself is incomplete).
        expected: usize,
        /// Bytes that arrived, from STX on.
        got: usize,
    },
}

/// One thing found in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    /// A well-formed frame: its DATA.
    Frame(&'a [u8]),
    /// A control byte.
    Control(Control),
    /// Bytes from an STX that are not a frame.
    Broken(FrameError),
}

/// What [`scan`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned<'a> {
    /// Noise bytes skipped before `item` (or before the pending partial frame).
    pub noise: usize,
    /// Offset of the item in the buffer (the STX for frames and broken frames).
    pub at: usize,
    /// The item, or `None` when the buffer ends in noise or in a partial frame.
    pub item: Option<Item<'a>>,
    /// Bytes the caller may drop from the front of the buffer. For a broken frame this stops right
    /// after its STX, so the rest is scanned again.
    pub consumed: usize,
}

/// Finds the next item at the front of `buf` (§2, §3, §4 rules 1-2).
///
/// Noise before an STX or control byte is skipped and counted. A partial frame is left in place
/// (`item: None`, `consumed` stops at its STX) until more bytes arrive or the caller declares a gap with
/// [`scan_gap`]. A LEN that is not BCD, zero or above `cfg.max_data_len` is refused as soon as its two
/// bytes are present, so a hostile LEN never makes a buffer grow.
pub fn scan<'a>(buf: &'a [u8], cfg: &FrameConfig) -> Scanned<'a> {
    let Some(at) = buf.iter().position(|&b| b == STX || Control::from_byte(b).is_some()) else {
        return Scanned { noise: buf.len(), at: buf.len(), item: None, consumed: buf.len() };
    };
    let byte = buf[at];
    if let Some(control) = Control::from_byte(byte) {
        return Scanned { noise: at, at, item: Some(Item::Control(control)), consumed: at + 1 };
    }
    let pending = Scanned { noise: at, at, item: None, consumed: at };
    let broken = |error| Scanned { noise: at, at, item: Some(Item::Broken(error)), consumed: at + 1 };
    let rest = &buf[at..];
    if rest.len() < 3 {
        return pending;
    }
    let len = match bcd_len(rest[1], rest[2]) {
        Ok(0) => return broken(FrameError::LenZero),
        Ok(len) if len > cfg.max_data_len => return broken(FrameError::TooLong { len, max: cfg.max_data_len }),
        Ok(len) => len,
        Err(error) => return broken(error),
    };
    let total = cfg.check.frame_len(len);
    if rest.len() < total {
        return pending;
    }
    let etx_at = 3 + len;
    if rest[etx_at] != ETX {
        return broken(FrameError::NoEtx { len, found: rest[etx_at] });
    }
    let computed = cfg.check.compute(&rest[1..=etx_at]);
    let found = cfg.check.read(&rest[etx_at + 1..total]);
    if computed != found {
        return broken(FrameError::BadCheck { check: cfg.check, found, computed });
    }
    Scanned { noise: at, at, item: Some(Item::Frame(&rest[3..etx_at])), consumed: at + total }
}

/// Declares T_gap of silence (or the end of a capture) over a buffer that [`scan`] left holding a
/// partial frame at its front: the partial frame is reported broken and its STX dropped (§4 rule 2).
/// Returns `None` when `buf` does not start with STX.
pub fn scan_gap(buf: &[u8], cfg: &FrameConfig) -> Option<Scanned<'static>> {
    if buf.first() != Some(&STX) {
        return None;
    }
    let expected = if buf.len() >= 3 { bcd_len(buf[1], buf[2]).map_or(0, |len| cfg.check.frame_len(len)) } else { 0 };
    Some(Scanned {
        noise: 0,
        at: 0,
        item: Some(Item::Broken(FrameError::Incomplete { expected, got: buf.len() })),
        consumed: 1,
    })
}

/// Reads the two packed-BCD LEN bytes.
fn bcd_len(hi: u8, lo: u8) -> Result<usize, FrameError> {
    let mut len = 0usize;
    for byte in [hi, lo] {
        let (tens, units) = (byte >> 4, byte & 0x0f);
        if tens > 9 || units > 9 {
            return Err(FrameError::LenNotBcd { byte });
        }
        len = len * 100 + usize::from(tens) * 10 + usize::from(units);
    }
    Ok(len)
}

/// DATA longer than the wire format can carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("frame DATA of {len} bytes is outside 1..={max}")]
pub struct DataLenError {
    /// The DATA length asked for.
    pub len: usize,
    /// The largest the wire format carries.
    pub max: usize,
}

/// Appends the frame carrying `data` to `out` (§2).
pub fn encode_frame_into(data: &[u8], check: Check, out: &mut Vec<u8>) -> Result<(), DataLenError> {
    let len = data.len();
    if len == 0 || len > WIRE_MAX_DATA_LEN {
        return Err(DataLenError { len, max: WIRE_MAX_DATA_LEN });
    }
    out.reserve(check.frame_len(len));
    let start = out.len();
    out.push(STX);
    // Both halves are below 100, so each fits two BCD digits.
    let (hi, lo) = ((len / 100) as u8, (len % 100) as u8);
    out.push(((hi / 10) << 4) | (hi % 10));
    out.push(((lo / 10) << 4) | (lo % 10));
    out.extend_from_slice(data);
    out.push(ETX);
    let computed = check.compute(&out[start + 1..]);
    match check {
        Check::Lrc => out.push(computed as u8),
        Check::Crc16 => out.extend_from_slice(&computed.to_be_bytes()),
    }
    Ok(())
}

/// The frame carrying `data` (§2).
pub fn encode_frame(data: &[u8], check: Check) -> Result<Vec<u8>, DataLenError> {
    let mut out = Vec::with_capacity(check.frame_len(data.len()));
    encode_frame_into(data, check, &mut out)?;
    Ok(out)
}

/// Something a [`FrameDecoder`] found, with its offset in the whole stream it was fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A well-formed frame; `data` is its DATA, `offset` the stream offset of its STX.
    Frame {
        /// The DATA bytes.
        data: Vec<u8>,
        /// Stream offset of the STX.
        offset: u64,
    },
    /// A control byte at `offset`.
    Control {
        /// Which control.
        control: Control,
        /// Stream offset of the byte.
        offset: u64,
    },
    /// A broken frame whose STX is at `offset`; the receiver NAKs it.
    Broken {
        /// Why it is not a frame.
        error: FrameError,
        /// Stream offset of its STX.
        offset: u64,
    },
}

/// Counters kept by a [`FrameDecoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Well-formed frames.
    pub frames: u64,
    /// Control bytes.
    pub controls: u64,
    /// Broken frames (each one a NAK at a receiver).
    pub broken: u64,
    /// Bytes skipped as noise.
    pub noise_bytes: u64,
}

/// An incremental frame decoder that owns its buffer.
///
/// Feed bytes with [`push`](Self::push), then take events with [`next_event`](Self::next_event) until it
/// answers `None`. When the input falls silent for T_gap (the caller keeps time) or a capture ends,
/// call [`gap`](Self::gap) and take events again: a partial frame is then reported broken and the bytes
/// behind its STX rescanned. The buffer never holds more than one partial frame (at most
/// `max_data_len + 6` bytes) plus the bytes of the last `push`.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    cfg: FrameConfig,
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; dropped in one move when the buffer is compacted, not per event.
    pos: usize,
    /// Stream offset of `buf[pos]`.
    base: u64,
    gap_pending: bool,
    stats: DecoderStats,
}

impl FrameDecoder {
    /// A decoder with the given settings.
    pub fn new(cfg: FrameConfig) -> Self {
        FrameDecoder { cfg, buf: Vec::new(), pos: 0, base: 0, gap_pending: false, stats: DecoderStats::default() }
    }

    /// The settings.
    pub fn config(&self) -> &FrameConfig {
        &self.cfg
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        self.base += n as u64;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Declares T_gap of silence or the end of the input: a partial frame at the front is dropped.
    pub fn gap(&mut self) {
        self.gap_pending = true;
    }

    /// True while the buffer holds the start of a frame that has not completed.
    pub fn has_partial(&self) -> bool {
        self.pending().first() == Some(&STX)
    }

    /// Bytes held (a partial frame, or input not yet scanned).
    pub fn buffered(&self) -> usize {
        self.pending().len()
    }

    /// The counters so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// The next event, or `None` when more input (or a gap) is needed.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let scanned = scan(&self.buf[self.pos..], &self.cfg);
            self.stats.noise_bytes += scanned.noise as u64;
            let offset = self.base + scanned.at as u64;
            let event = match scanned.item {
                Some(Item::Frame(data)) => {
                    self.stats.frames += 1;
                    Some(Event::Frame { data: data.to_vec(), offset })
                }
                Some(Item::Control(control)) => {
                    self.stats.controls += 1;
                    Some(Event::Control { control, offset })
                }
                Some(Item::Broken(error)) => {
                    self.stats.broken += 1;
                    Some(Event::Broken { error, offset })
                }
                None => None,
            };
            self.consume(scanned.consumed);
            if event.is_some() {
                return event;
            }
            if !self.gap_pending {
                return None;
            }
            self.gap_pending = false;
            let scanned = scan_gap(self.pending(), &self.cfg)?;
            let offset = self.base;
            self.consume(scanned.consumed);
            if let Some(Item::Broken(error)) = scanned.item {
                self.stats.broken += 1;
                // The rest of the buffer is rescanned now; a second partial frame in it waits for a
                // gap of its own.
                return Some(Event::Broken { error, offset });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_lrc() {
        assert_eq!(encode_frame(b"ABC", Check::Lrc).unwrap(), [0x02, 0x00, 0x03, 0x41, 0x42, 0x43, 0x03, 0x40]);
    }

    #[test]
    fn crc16_check_value() {
        assert_eq!(CRC16.checksum(b"123456789"), 0x29B1);
    }

    #[test]
    fn len_is_bcd() {
        let frame = encode_frame(&[b'x'; 150], Check::Lrc).unwrap();
        assert_eq!(&frame[1..3], &[0x01, 0x50]);
        let frame = encode_frame(&[b'x'; 9999], Check::Crc16).unwrap();
        assert_eq!(&frame[1..3], &[0x99, 0x99]);
        assert!(encode_frame(&[], Check::Lrc).is_err());
        assert!(encode_frame(&[b'x'; 10000], Check::Lrc).is_err());
    }

    #[test]
    fn oversized_len_refused_from_three_bytes() {
        let cfg = FrameConfig::default();
        let s = scan(&[STX, 0x99, 0x99], &cfg);
        assert_eq!(s.item, Some(Item::Broken(FrameError::TooLong { len: 9999, max: 4096 })));
        assert_eq!(s.consumed, 1);
        let s = scan(&[STX, 0x1a, 0x00], &cfg);
        assert_eq!(s.item, Some(Item::Broken(FrameError::LenNotBcd { byte: 0x1a })));
        let s = scan(&[STX, 0x00, 0x00], &cfg);
        assert_eq!(s.item, Some(Item::Broken(FrameError::LenZero)));
    }

    #[test]
    fn gap_drops_partial_and_finds_frame_behind() {
        // A stray STX promising 40 bytes, then a real frame that fits inside those 40 bytes.
        let mut d = FrameDecoder::new(FrameConfig::default());
        d.push(&[0x41, STX, 0x00, 0x40]);
        d.push(&encode_frame(b"HI", Check::Lrc).unwrap());
        assert_eq!(d.next_event(), None);
        assert!(d.has_partial());
        d.gap();
        assert_eq!(
            d.next_event(),
            Some(Event::Broken { error: FrameError::Incomplete { expected: 45, got: 10 }, offset: 1 })
        );
        assert_eq!(d.next_event(), Some(Event::Frame { data: b"HI".to_vec(), offset: 4 }));
        assert_eq!(d.next_event(), None);
        assert_eq!(d.stats().noise_bytes, 3);
    }
}

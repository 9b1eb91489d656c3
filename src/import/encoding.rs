//! Text encodings of CSV files: detection and strict, streaming decoding to UTF-8.
//!
//! Office software in China writes CSV in UTF-8 (often with a byte order mark) or in GB18030/GBK
//! (roster-format.md). Detection (when the operator does not force an encoding):
//! a UTF-8 BOM means UTF-8; a file that is valid UTF-8 throughout is UTF-8; anything else is decoded as
//! GB18030, strictly. A byte sequence that the chosen encoding cannot decode is an error naming its byte
//! offset and line, never a replacement character: a name or an ID number must not silently change.

use std::fmt;
use std::io::{self, Read};

/// The UTF-8 byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
/// Size of the chunks read from the file.
const CHUNK: usize = 64 * 1024;

/// A text encoding of a CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TextEncoding {
    /// UTF-8, with or without a byte order mark.
    Utf8,
    /// GB18030 (a superset of GBK and GB2312).
    Gb18030,
}

impl TextEncoding {
    /// Parses the operator's `--encoding` value: `utf8`/`utf-8`, or `gb18030`/`gbk`/`gb2312`
    /// (case-insensitive).
    pub fn parse(s: &str) -> Option<TextEncoding> {
        match s.trim().to_ascii_lowercase().as_str() {
            "utf8" | "utf-8" => Some(TextEncoding::Utf8),
            "gb18030" | "gbk" | "gb2312" => Some(TextEncoding::Gb18030),
            _ => None,
        }
    }
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Gb18030 => "GB18030",
        })
    }
}

/// How a file's encoding was chosen, for the summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectedEncoding {
    /// The encoding used.
    pub encoding: TextEncoding,
    /// The file started with a UTF-8 byte order mark (which is skipped).
    pub bom: bool,
    /// The operator forced the encoding.
    pub forced: bool,
}

impl fmt::Display for DetectedEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.encoding)?;
        if self.bom {
            f.write_str(" with BOM")?;
        }
        if self.forced {
            f.write_str(", forced")?;
        }
        Ok(())
    }
}

/// Bytes that the file's encoding cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bytes not valid {encoding} at byte offset {offset} (line {line}){hint}")]
pub struct DecodeError {
    /// The encoding that was being decoded.
    pub encoding: TextEncoding,
    /// Byte offset of the first undecodable byte in the file.
    pub offset: u64,
    /// 1-based line (counting line feeds) of that byte.
    pub line: u64,
    /// A hint for the operator, empty or starting with "; ".
    hint: &'static str,
}

/// Why a file's encoding could not be determined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DetectError {
    /// Reading the file failed.
    #[error("cannot read the file: {0}")]
    Io(#[from] io::Error),
    /// The file is UTF-16 (what some spreadsheet programs call "Unicode text").
    #[error("the file is UTF-16 text, which is not supported: save it as CSV in UTF-8 or GB18030")]
    Utf16,
}

/// Chooses the encoding of the bytes `reader` yields (read to the end), or takes the forced one.
///
/// Only the validity of UTF-8 is checked here: a GB18030 file with undecodable bytes is reported by
/// [`DecodingReader`] with the offset of the bad bytes.
pub fn detect<R: Read>(mut reader: R, forced: Option<TextEncoding>) -> Result<DetectedEncoding, DetectError> {
    let mut buf = vec![0u8; CHUNK];
    let mut first = true;
    let mut bom = false;
    // Bytes of a UTF-8 sequence cut by the chunk boundary, carried into the next chunk.
    let mut carry = 0usize;
    loop {
        let n = read_full(&mut reader, &mut buf[carry..])?;
        let len = carry + n;
        if first {
            first = false;
            if buf[..len].starts_with(b"\xFF\xFE") || buf[..len].starts_with(b"\xFE\xFF") {
                return Err(DetectError::Utf16);
            }
            bom = buf[..len].starts_with(UTF8_BOM);
            if let Some(encoding) = forced {
                return Ok(DetectedEncoding { encoding, bom: bom && encoding == TextEncoding::Utf8, forced: true });
            }
            if bom {
                return Ok(DetectedEncoding { encoding: TextEncoding::Utf8, bom, forced: false });
            }
        }
        match std::str::from_utf8(&buf[..len]) {
            Ok(_) => carry = 0,
            Err(e) if e.error_len().is_none() && n > 0 => {
                let valid = e.valid_up_to();
                buf.copy_within(valid..len, 0);
                carry = len - valid;
            }
            Err(_) => return Ok(DetectedEncoding { encoding: TextEncoding::Gb18030, bom: false, forced: false }),
        }
        if n == 0 {
            return Ok(DetectedEncoding { encoding: TextEncoding::Utf8, bom, forced: false });
        }
    }
}

/// Reads until `buf` is full or the end of the input; returns the number of bytes read.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut total = 0;
    while total < buf.len() {
        match reader.read(&mut buf[total..]) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// A reader that decodes the bytes of an inner reader, strictly, into UTF-8.
///
/// Text that does not end in a line feed gets one, so that every record of a CSV file ends in one
/// (which keeps the count of spreadsheet rows simple: see `csv_source`).
///
/// An undecodable sequence makes `read` fail with an [`io::Error`] whose inner error is a
/// [`DecodeError`] (see [`DecodeError::from_io`]). A UTF-8 byte order mark at the start is skipped in
/// UTF-8 mode.
pub struct DecodingReader<R> {
    inner: R,
    mode: Mode,
    /// Raw bytes read from `inner` and not yet decoded: `raw[raw_start..raw_end]`.
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// Decoded UTF-8 not yet handed out: `out[out_start..out_end]`.
    out: Vec<u8>,
    out_start: usize,
    out_end: usize,
    /// File offset of `raw[0]`.
    raw_base: u64,
    /// Line feeds in the file before `raw[0]`, for error lines.
    lines_before: u64,
    eof: bool,
    done: bool,
    at_start: bool,
    failed: Option<DecodeError>,
    /// Raw bytes consumed from the file so far (for progress).
    consumed: u64,
    /// The last byte handed out, if any.
    last_out: Option<u8>,
}

enum Mode {
    Utf8,
    Gb18030(Box<encoding_rs::Decoder>),
}

impl<R: Read> DecodingReader<R> {
    /// Wraps `inner`, decoding it as `encoding`.
    pub fn new(inner: R, encoding: TextEncoding) -> DecodingReader<R> {
        let mode = match encoding {
            TextEncoding::Utf8 => Mode::Utf8,
            TextEncoding::Gb18030 => Mode::Gb18030(Box::new(encoding_rs::GB18030.new_decoder_without_bom_handling())),
        };
        DecodingReader {
            inner,
            mode,
            raw: vec![0u8; CHUNK],
            raw_start: 0,
            raw_end: 0,
            // GB18030 expands at most 2 bytes into 3 (and 4 into 4): room for a whole chunk.
            out: vec![0u8; CHUNK * 2],
            out_start: 0,
            out_end: 0,
            raw_base: 0,
            lines_before: 0,
            eof: false,
            done: false,
            at_start: true,
            failed: None,
            consumed: 0,
            last_out: None,
        }
    }

    /// Raw bytes of the file consumed so far.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    /// The error for undecodable bytes starting at file offset `offset`, which may lie before `raw`:
    /// the decoder keeps an unfinished sequence across chunks, and those bytes hold no line feed.
    fn error_at(&self, offset: u64, encoding: TextEncoding) -> DecodeError {
        let upto = offset.checked_sub(self.raw_base).map_or(0, |i| usize::try_from(i).unwrap_or(usize::MAX));
        let lines = self.raw[..upto.min(self.raw.len())].iter().filter(|&&b| b == b'\n').count() as u64;
        let hint = match encoding {
            TextEncoding::Utf8 => "; if the file is GBK/GB18030, use --encoding gb18030",
            TextEncoding::Gb18030 => "; if the file is UTF-8, use --encoding utf8",
        };
        DecodeError { encoding, offset, line: self.lines_before + lines + 1, hint }
    }

    /// Moves the undecoded tail of `raw` to its front and reads more bytes after it.
    fn refill(&mut self) -> io::Result<()> {
        let tail = self.raw_end - self.raw_start;
        self.lines_before += self.raw[..self.raw_start].iter().filter(|&&b| b == b'\n').count() as u64;
        self.raw_base += self.raw_start as u64;
        self.raw.copy_within(self.raw_start..self.raw_end, 0);
        self.raw_start = 0;
        self.raw_end = tail;
        if tail == self.raw.len() {
            // The decoder stopped for want of output space; the buffered bytes come first.
            return Ok(());
        }
        let n = read_full(&mut self.inner, &mut self.raw[tail..])?;
        if n == 0 {
            self.eof = true;
        }
        self.raw_end += n;
        self.consumed += n as u64;
        Ok(())
    }

    /// Decodes what is in `raw` into `out` (which is empty when this is called).
    fn decode_chunk(&mut self) -> Result<(), DecodeError> {
        self.out_start = 0;
        self.out_end = 0;
        if self.at_start {
            // The BOM is only skipped in UTF-8: GB18030 would decode its bytes as text.
            if self.raw_end - self.raw_start < UTF8_BOM.len() && !self.eof {
                return Ok(());
            }
            self.at_start = false;
            if matches!(self.mode, Mode::Utf8) && self.raw[self.raw_start..self.raw_end].starts_with(UTF8_BOM) {
                self.raw_start += UTF8_BOM.len();
            }
        }
        let src_start = self.raw_start;
        let src_end = self.raw_end;
        let last = self.eof;
        match &mut self.mode {
            Mode::Utf8 => {
                let src = &self.raw[src_start..src_end];
                let valid = match std::str::from_utf8(src) {
                    Ok(_) => src.len(),
                    Err(e) => match e.error_len() {
                        None if !last => e.valid_up_to(),
                        _ => {
                            let offset = self.raw_base + (src_start + e.valid_up_to()) as u64;
                            return Err(self.error_at(offset, TextEncoding::Utf8));
                        }
                    },
                };
                self.out[..valid].copy_from_slice(&self.raw[src_start..src_start + valid]);
                self.out_end = valid;
                self.raw_start += valid;
            }
            Mode::Gb18030(decoder) => {
                let (result, read, written) =
                    decoder.decode_to_utf8_without_replacement(&self.raw[src_start..src_end], &mut self.out, last);
                match result {
                    encoding_rs::DecoderResult::Malformed(bad, extra) => {
                        // The malformed bytes end `extra` bytes before what the decoder read, and may have
                        // begun in an earlier chunk (or call): count back in file offsets, not in `raw`.
                        let end = self.raw_base + (src_start + read) as u64;
                        let at = end.saturating_sub(u64::from(bad) + u64::from(extra));
                        return Err(self.error_at(at, TextEncoding::Gb18030));
                    }
                    encoding_rs::DecoderResult::InputEmpty | encoding_rs::DecoderResult::OutputFull => {
                        self.out_end = written;
                        self.raw_start += read;
                    }
                }
            }
        }
        if last && self.raw_start == self.raw_end {
            self.done = true;
        }
        Ok(())
    }
}

impl<R: Read> Read for DecodingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(io::Error::new(io::ErrorKind::InvalidData, e.clone()));
        }
        while self.out_start == self.out_end {
            if buf.is_empty() {
                return Ok(0);
            }
            if self.done {
                if self.last_out.is_some_and(|b| b != b'\n') {
                    self.last_out = Some(b'\n');
                    buf[0] = b'\n';
                    return Ok(1);
                }
                return Ok(0);
            }
            if !self.eof {
                self.refill()?;
            }
            if let Err(e) = self.decode_chunk() {
                self.failed = Some(e.clone());
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        let n = buf.len().min(self.out_end - self.out_start);
        buf[..n].copy_from_slice(&self.out[self.out_start..self.out_start + n]);
        self.out_start += n;
        if n > 0 {
            self.last_out = Some(buf[n - 1]);
        }
        Ok(n)
    }
}

impl DecodeError {
    /// The decode error inside an I/O error returned by a [`DecodingReader`], if it is one.
    pub fn from_io(err: &io::Error) -> Option<&DecodeError> {
        err.get_ref().and_then(|inner| inner.downcast_ref::<DecodeError>())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Text long enough to cross several chunk boundaries at every alignment of multi-byte characters.
    fn sample() -> String {
        let mut s = String::new();
        for i in 0..30_000 {
            s.push_str(&format!("{i},张三丰,卫东区€\n"));
        }
        s
    }

    fn decode_all(bytes: &[u8], enc: TextEncoding) -> Result<String, DecodeError> {
        let mut out = String::new();
        DecodingReader::new(bytes, enc)
            .read_to_string(&mut out)
            .map_err(|e| DecodeError::from_io(&e).cloned().unwrap())?;
        Ok(out)
    }

    #[test]
    fn utf8_with_and_without_bom_across_chunks() {
        let text = sample();
        assert!(text.len() > 4 * CHUNK);
        let plain = text.as_bytes().to_vec();
        let mut bom = UTF8_BOM.to_vec();
        bom.extend_from_slice(&plain);
        assert_eq!(
            detect(&plain[..], None).unwrap(),
            DetectedEncoding { encoding: TextEncoding::Utf8, bom: false, forced: false }
        );
        assert_eq!(
            detect(&bom[..], None).unwrap(),
            DetectedEncoding { encoding: TextEncoding::Utf8, bom: true, forced: false }
        );
        assert_eq!(decode_all(&plain, TextEncoding::Utf8).unwrap(), text);
        assert_eq!(decode_all(&bom, TextEncoding::Utf8).unwrap(), text);
    }

    #[test]
    fn gb18030_across_chunks() {
        let text = sample();
        let (bytes, _, unmappable) = encoding_rs::GB18030.encode(&text);
        assert!(!unmappable);
        assert_eq!(detect(&bytes[..], None).unwrap().encoding, TextEncoding::Gb18030);
        assert_eq!(decode_all(&bytes, TextEncoding::Gb18030).unwrap(), text);
    }

    #[test]
    fn bad_bytes_are_located() {
        let text = sample();
        let mut bytes = text.as_bytes().to_vec();
        // A lone continuation byte at the start of line 20000.
        let at = text.match_indices('\n').nth(19_998).unwrap().0 + 1;
        bytes[at] = 0x80;
        let e = decode_all(&bytes, TextEncoding::Utf8).unwrap_err();
        assert_eq!((e.offset, e.line), (at as u64, 20_000));

        let (gb, _, _) = encoding_rs::GB18030.encode(&text);
        let mut gb = gb.into_owned();
        let at = gb.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(9_999).unwrap().0 + 1;
        // 0xFF is never valid in GB18030.
        gb[at] = 0xFF;
        let e = decode_all(&gb, TextEncoding::Gb18030).unwrap_err();
        assert_eq!((e.offset, e.line), (at as u64, 10_001));
    }

    #[test]
    fn truncated_sequence_at_end_is_an_error() {
        let mut bytes = "a,b\n张".as_bytes().to_vec();
        bytes.pop();
        let e = decode_all(&bytes, TextEncoding::Utf8).unwrap_err();
        assert_eq!((e.offset, e.line), (4, 2));
        let e = decode_all(b"a,b\n\xD5", TextEncoding::Gb18030).unwrap_err();
        assert_eq!(e.line, 2);
    }

    /// Fuzzing found this: a GB18030 sequence left unfinished by one decode call and refused at the end
    /// of the file was reported at the file's length, past its last byte.
    #[test]
    fn unfinished_gb18030_sequence_is_located_at_its_start() {
        let e = decode_all(b"ab\x81\x30", TextEncoding::Gb18030).unwrap_err();
        assert_eq!((e.offset, e.line), (2, 1));
        let e = decode_all(b"a\nb\x81\x30", TextEncoding::Gb18030).unwrap_err();
        assert_eq!((e.offset, e.line), (3, 2));
        // Across a chunk boundary: the sequence begins in the first chunk, fails in the second.
        let mut bytes = vec![b'a'; CHUNK - 1];
        bytes.extend_from_slice(b"\x81\x30\x81\n");
        let e = decode_all(&bytes, TextEncoding::Gb18030).unwrap_err();
        assert_eq!((e.offset, e.line), (CHUNK as u64 - 1, 1));
    }

    #[test]
    fn utf16_is_refused() {
        assert!(matches!(detect(&b"\xFF\xFEa\0"[..], None), Err(DetectError::Utf16)));
    }
}

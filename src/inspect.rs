//! The frame inspector: captured bytes to canonical JSON lines, and canonical JSON back to frames.
//!
//! Decoding skips noise and resynchronises exactly as a receiver does, because it drives the same
//! [`FrameDecoder`]; the end of the capture counts as T_gap of silence (wire-protocol.md §4 rule 2).

use serde_json::json;
use zhengjiao_protocol::frame::{encode_frame, Event};
use zhengjiao_protocol::json::{JsonError, Line};
use zhengjiao_protocol::{FrameConfig, FrameDecoder, Request, Response};

/// Which side sent the bytes being decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// ECR -> terminal.
    Request,
    /// Terminal -> ECR.
    Response,
}

/// One line of decoder output.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A frame or control byte, as canonical JSON.
    Item(String),
    /// A broken frame or an undecodable message: what is wrong, and the byte offset in the capture.
    Broken {
        /// What is wrong.
        error: String,
        /// Offset of the offending byte (or the broken frame's STX) in the capture.
        offset: u64,
    },
}

impl Decoded {
    /// The line as printed: canonical JSON, or `{"error": ..., "offset": ...}`.
    pub fn to_json(&self) -> String {
        match self {
            Decoded::Item(line) => line.clone(),
            Decoded::Broken { error, offset } => json!({ "error": error, "offset": offset }).to_string(),
        }
    }
}

/// A hex capture that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// A character that is neither a hex digit nor white space.
    #[error("character {ch:?} at position {position} is not a hex digit")]
    BadDigit {
        /// The character.
        ch: char,
        /// Its position among the input's characters (0-based).
        position: usize,
    },
    /// An odd number of hex digits.
    #[error("odd number of hex digits ({0}); every byte takes two")]
    Odd(usize),
}

/// Reads hex digits, ignoring white space (spaces, tabs, newlines).
pub fn parse_hex(text: &str) -> Result<Vec<u8>, HexError> {
    let mut nibbles = Vec::with_capacity(text.len());
    for (position, ch) in text.chars().enumerate() {
        if ch.is_whitespace() {
            continue;
        }
        let nibble = ch.to_digit(16).ok_or(HexError::BadDigit { ch, position })?;
        // to_digit(16) is below 16.
        nibbles.push(nibble as u8);
    }
    if nibbles.len() % 2 != 0 {
        return Err(HexError::Odd(nibbles.len()));
    }
    Ok(nibbles.chunks_exact(2).map(|pair| (pair[0] << 4) | pair[1]).collect())
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Decodes a whole capture into output lines, in order.
pub fn decode_capture(bytes: &[u8], dir: Direction, cfg: FrameConfig) -> Vec<Decoded> {
    let mut decoder = FrameDecoder::new(cfg);
    decoder.push(bytes);
    let mut out = Vec::new();
    loop {
        while let Some(event) = decoder.next_event() {
            out.push(decode_event(event, dir));
        }
        if !decoder.has_partial() {
            return out;
        }
        // The end of the capture is silence: drop the partial frame's STX and rescan behind it.
        decoder.gap();
    }
}

fn decode_event(event: Event, dir: Direction) -> Decoded {
    match event {
        Event::Control { control, .. } => Decoded::Item(Line::Control(control).to_json()),
        Event::Broken { error, offset } => Decoded::Broken { error: error.to_string(), offset },
        Event::Frame { data, offset } => {
            let decoded = match dir {
                Direction::Request => Request::decode(&data).map(Line::Request),
                Direction::Response => Response::decode(&data).map(Line::Response),
            };
            match decoded {
                Ok(line) => Decoded::Item(line.to_json()),
                // DATA starts three bytes after STX.
                Err(e) => Decoded::Broken { error: e.to_string(), offset: offset + 3 + e.offset as u64 },
            }
        }
    }
}

/// Why a JSON line could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeLineError {
    /// The line is not a canonical message, or breaks the protocol.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The message does not fit the protocol.
    #[error(transparent)]
    Encode(#[from] zhengjiao_protocol::EncodeError),
    /// The message is longer than a frame can carry.
    #[error(transparent)]
    Frame(#[from] zhengjiao_protocol::frame::DataLenError),
}

/// Encodes one canonical JSON line as the complete frame (or control byte) in lower-case hex.
pub fn encode_line(line: &str, check: zhengjiao_protocol::Check) -> Result<String, EncodeLineError> {
    let data = match Line::from_json(line)? {
        Line::Control(control) => return Ok(to_hex(&[control.byte()])),
        Line::Request(request) => request.encode()?,
        Line::Response(response) => response.encode()?,
    };
    Ok(to_hex(&encode_frame(&data, check)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_with_white_space() {
        assert_eq!(parse_hex("02 00\n03\t41").unwrap(), [0x02, 0x00, 0x03, 0x41]);
        assert_eq!(parse_hex("0g").unwrap_err(), HexError::BadDigit { ch: 'g', position: 1 });
        assert_eq!(parse_hex("020").unwrap_err(), HexError::Odd(3));
    }
}

//! A tokio-util codec for frames (feature `tokio`): [`FrameCodec`] decodes a byte stream into
//! [`CodecItem`]s and encodes [`Outgoing`] frames and control bytes.
//!
//! It shares [`scan`] with [`crate::frame::FrameDecoder`], so noise skipping and resynchronisation are
//! identical. The codec has no clock: T_gap (§4 rule 2) is the driver's to keep; when the input has been
//! silent for T_gap while [`FrameCodec::has_partial`] holds, call [`FrameCodec::gap`] and decode again
//! (for `FramedRead`, through `decoder_mut()` and `read_buffer_mut()`). At the end of the stream a
//! partial frame is reported broken as if T_gap had passed.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{encode_frame_into, scan, scan_gap, Control, DataLenError, FrameConfig, FrameError, Item, STX};

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecItem {
    /// A well-formed frame's DATA.
    Frame(Bytes),
    /// A control byte.
    Control(Control),
    /// Bytes from an STX that are not a frame: the receiver sends NAK.
    Broken(FrameError),
}

/// What the encoder takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outgoing<'a> {
    /// DATA to frame.
    Frame(&'a [u8]),
    /// A control byte.
    Control(Control),
}

/// Codec errors: the transport's, or DATA that no frame can carry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The underlying I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// DATA too long or empty.
    #[error(transparent)]
    DataLen(#[from] DataLenError),
}

/// The frame codec.
#[derive(Debug, Clone, Default)]
pub struct FrameCodec {
    cfg: FrameConfig,
    noise_bytes: u64,
    gap: bool,
}

impl FrameCodec {
    /// A codec with the given receiver settings.
    pub fn new(cfg: FrameConfig) -> Self {
        FrameCodec { cfg, noise_bytes: 0, gap: false }
    }

    /// Noise bytes skipped so far.
    pub fn noise_bytes(&self) -> u64 {
        self.noise_bytes
    }

    /// True when `buf` (the read buffer) starts with a frame that has not completed.
    pub fn has_partial(&self, buf: &BytesMut) -> bool {
        buf.first() == Some(&STX)
    }

    /// Declares T_gap of silence: the next decode drops a partial frame at the front of the buffer.
    pub fn gap(&mut self) {
        self.gap = true;
    }
}

impl Decoder for FrameCodec {
    type Item = CodecItem;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<CodecItem>, CodecError> {
        let scanned = scan(src, &self.cfg);
        self.noise_bytes += scanned.noise as u64;
        let (at, consumed) = (scanned.at, scanned.consumed);
        let item = match scanned.item {
            Some(Item::Frame(data)) => {
                let len = data.len();
                // DATA starts after STX and LEN; ETX and the check follow it.
                src.advance(at + 3);
                let data = src.split_to(len).freeze();
                src.advance(consumed - at - 3 - len);
                return Ok(Some(CodecItem::Frame(data)));
            }
            Some(Item::Control(control)) => Some(CodecItem::Control(control)),
            Some(Item::Broken(error)) => Some(CodecItem::Broken(error)),
            None => None,
        };
        src.advance(consumed);
        if item.is_some() || !std::mem::take(&mut self.gap) {
            return Ok(item);
        }
        match scan_gap(src, &self.cfg) {
            Some(gap) => {
                src.advance(gap.consumed);
                Ok(gap.item.and_then(|i| match i {
                    Item::Broken(error) => Some(CodecItem::Broken(error)),
                    _ => None,
                }))
            }
            None => Ok(None),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<CodecItem>, CodecError> {
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if self.has_partial(src) {
            self.gap = true;
            return self.decode(src);
        }
        src.clear();
        Ok(None)
    }
}

impl Encoder<Outgoing<'_>> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Outgoing<'_>, dst: &mut BytesMut) -> Result<(), CodecError> {
        match item {
            Outgoing::Control(control) => dst.extend_from_slice(&[control.byte()]),
            Outgoing::Frame(data) => {
                let mut frame = Vec::with_capacity(self.cfg.check.frame_len(data.len()));
                encode_frame_into(data, self.cfg.check, &mut frame)?;
                dst.extend_from_slice(&frame);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{encode_frame, Check};

    #[test]
    fn decodes_frames_controls_and_noise_from_a_buffer() {
        let mut codec = FrameCodec::new(FrameConfig::new(Check::Crc16));
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0x41, 0x06]);
        buf.extend_from_slice(&encode_frame(b"ONE", Check::Crc16).unwrap());
        buf.extend_from_slice(&[STX, 0x00]);
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(CodecItem::Control(Control::Ack)));
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(CodecItem::Frame(Bytes::from_static(b"ONE"))));
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(codec.has_partial(&buf));
        assert_eq!(
            codec.decode_eof(&mut buf).unwrap(),
            Some(CodecItem::Broken(FrameError::Incomplete { expected: 0, got: 2 }))
        );
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert_eq!(codec.noise_bytes(), 2);
    }
}

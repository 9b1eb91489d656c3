//! The ECR link protocol between zhengjiao and UnionPay "全民付" POS terminals, sans-IO.
//!
//! This crate implements `wire-protocol.md` (v1) and nothing else: no sockets, no clock of its own.
//!
//! - [`frame`]: `STX | LEN | DATA | ETX | CHECK` framing in both check dialects, control bytes, noise
//!   skipping and resynchronisation (§2-§4 rules 1-2).
//! - [`message`] and [`memo`]: typed requests and responses for every message type, declared once in
//!   layout tables ([`field`]) that both the encoder and the decoder walk (§5).
//! - [`link`]: the link state machine (§4 rules 1-7): ACK/NAK, resends, duplicate suppression, ENQ,
//!   response timeouts and the explicit "outcome unknown" result for money requests.
//! - [`json`]: the canonical JSON form (§6).
//! - `codec` (feature `tokio`): a tokio-util `Decoder`/`Encoder` for frames.
//!
//! Errors keep "the link broke" apart from "the terminal said no": a response code is data
//! ([`message::ResponseCode`]), never an error.

pub mod field;
pub mod frame;
pub mod json;
pub mod link;
pub mod memo;
pub mod message;

#[cfg(feature = "tokio")]
pub mod codec;

pub use field::{Ascii, DecodeError, Digits, Field, FieldError, Text, ValueError};
pub use frame::{Check, Control, FrameConfig, FrameDecoder, FrameError};
pub use memo::{ContributionKind, EcrReference, MaskedIdNumber, Memo, PayerName, QueryState, SettleTotals};
pub use message::{Amount, EncodeError, MaskedPan, MessageType, Request, RequestBody, Response, ResponseCode, Token};

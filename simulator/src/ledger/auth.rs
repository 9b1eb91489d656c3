//! Request authentication (ledger-api.md, "Transport and authentication").
//!
//! The signed text is `<timestamp>\n<METHOD>\n<path>\n<body bytes>` where `<path>` is the request
//! target's path exactly as sent (percent-encoding kept) WITHOUT the query string: `GET
//! /v1/summary?date=2020-10-21` signs `/v1/summary`. The signature is lowercase hex of HMAC-SHA256 under the
//! key's secret, compared in constant time.

use std::collections::BTreeMap;
use std::fmt;

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header naming the client's key.
pub(crate) const KEY_ID_HEADER: &str = "x-zj-key-id";
/// Header carrying Unix seconds.
pub(crate) const TIMESTAMP_HEADER: &str = "x-zj-timestamp";
/// Header carrying the signature.
pub(crate) const SIGNATURE_HEADER: &str = "x-zj-signature";
/// Furthest a request's timestamp may be from the server clock, either way.
pub(crate) const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Hex digits of an HMAC-SHA256.
const SIGNATURE_HEX_LEN: usize = 64;

/// A shared secret. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret from its bytes (the CLI takes the UTF-8 bytes of `--secret`).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Secret {
        Secret(bytes.into())
    }

    /// The secret's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// True for a secret of no bytes (refused at start).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret::new(s))
    }
}

/// Why a request was answered `401`; the reason goes back in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// A required header is absent or not text.
    MissingHeader(&'static str),
    /// `X-ZJ-Key-Id` names no key the server knows.
    UnknownKey,
    /// `X-ZJ-Timestamp` is not a number of seconds.
    BadTimestamp,
    /// The timestamp is more than [`MAX_CLOCK_SKEW_SECS`] from the server clock.
    StaleTimestamp,
    /// The signature is not 64 lowercase hex digits, or not the right one.
    BadSignature,
}

impl AuthError {
    /// The reason written in the `401` body.
    pub(crate) fn reason(self) -> String {
        match self {
            AuthError::MissingHeader(h) => format!("missing_header:{h}"),
            AuthError::UnknownKey => "unknown_key".into(),
            AuthError::BadTimestamp => "bad_timestamp".into(),
            AuthError::StaleTimestamp => "stale_timestamp".into(),
            AuthError::BadSignature => "bad_signature".into(),
        }
    }
}

/// Checks a request's signature headers against `keys` and the server clock `now_unix`.
pub(crate) fn verify(
    keys: &BTreeMap<String, Secret>,
    headers: &HeaderMap,
    method: &str,
    path: &str,
    body: &[u8],
    now_unix: i64,
) -> Result<(), AuthError> {
    let header =
        |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(AuthError::MissingHeader(name));
    let key_id = header(KEY_ID_HEADER)?;
    let timestamp = header(TIMESTAMP_HEADER)?;
    let signature = header(SIGNATURE_HEADER)?;

    let secret = keys.get(key_id).ok_or(AuthError::UnknownKey)?;
    if timestamp.is_empty() || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthError::BadTimestamp);
    }
    let seconds: i64 = timestamp.parse().map_err(|_| AuthError::BadTimestamp)?;
    if seconds.abs_diff(now_unix) > MAX_CLOCK_SKEW_SECS.unsigned_abs() {
        return Err(AuthError::StaleTimestamp);
    }
    let expected = decode_hex(signature).ok_or(AuthError::BadSignature)?;

    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| AuthError::BadSignature)?;
    for part in [timestamp.as_bytes(), b"\n", method.as_bytes(), b"\n", path.as_bytes(), b"\n", body] {
        mac.update(part);
    }
    mac.verify_slice(&expected).map_err(|_| AuthError::BadSignature)
}

/// Decodes exactly 64 lowercase hex digits.
fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if hex.len() != SIGNATURE_HEX_LEN {
        return None;
    }
    hex.as_bytes().chunks(2).map(|pair| Some(nibble(pair[0])? << 4 | nibble(*pair.get(1)?)?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex() {
        let upper = "AB".repeat(32);
        assert_eq!(decode_hex(&upper), None);
        assert_eq!(decode_hex(&"ab".repeat(32)), Some(vec![0xab; 32]));
        assert_eq!(decode_hex("ab"), None);
    }

    #[test]
    fn debug_hides_secret() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(..)");
    }
}

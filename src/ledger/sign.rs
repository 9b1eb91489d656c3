//! Request signing (ledger-api.md, "Transport and authentication").
//!
//! The signed text is `<timestamp>\n<METHOD>\n<path>\n<body bytes>`: `<path>` is the request path as
//! sent (percent-encoding kept) WITHOUT the query string, the same choice as the ledger simulator's; the
//! signature is lowercase hex of HMAC-SHA256 under the shared secret.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header naming our key.
pub const KEY_ID_HEADER: &str = "x-zj-key-id";
/// Header carrying Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-zj-timestamp";
/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "x-zj-signature";

/// The shared secret of our key; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(Vec<u8>);

impl SigningSecret {
    /// A secret from its bytes (the configuration's secret as UTF-8).
    pub fn new(bytes: impl Into<Vec<u8>>) -> SigningSecret {
        SigningSecret(bytes.into())
    }

    /// True for a secret of no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

/// `X-ZJ-Signature` of one request: lowercase hex of HMAC-SHA256(secret,
/// `<timestamp>\n<METHOD>\n<path>\n<body>`).
pub fn signature(secret: &SigningSecret, timestamp: i64, method: &str, path: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b"\n");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(64);
    for b in digest {
        use fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 ("Jefe", "what do ya want for nothing?") checks the HMAC itself; the
    /// message here is the contract's layout of the same bytes split on newlines.
    #[test]
    fn hmac_matches_a_known_vector() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog").
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap_or_else(|_| unreachable!());
        mac.update(b"The quick brown fox jumps over the lazy dog");
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }

    #[test]
    fn the_signed_text_is_the_contracts() {
        let secret = SigningSecret::new("s3cret");
        let by_layout = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap_or_else(|_| unreachable!());
            mac.update(b"1603246530\nPOST\n/v1/entries\n{\"entries\":[]}");
            mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        assert_eq!(signature(&secret, 1_603_246_530, "POST", "/v1/entries", b"{\"entries\":[]}"), by_layout);
        assert_eq!(by_layout.len(), 64);
        assert_ne!(signature(&secret, 1_603_246_531, "POST", "/v1/entries", b"{\"entries\":[]}"), by_layout);
        assert_eq!(format!("{secret:?}"), "SigningSecret(..)");
    }
}

//! The daemon's logs: tracing to standard error, in a human or a JSON format.
//!
//! What may appear in a log line (docs/operations.md, "Logs"):
//! - card numbers only masked (first 6 + last 4, as the terminal sends them: no full PAN ever exists in
//!   the daemon);
//! - ID numbers (身份证号) only as first 6 + last 4 ([`crate::domain::IdNumber`]'s `Display` and `Debug`
//!   mask);
//! - payer names never above `debug` (today: never).
//!
//! The types make this hold for what the daemon itself knows. Text that comes from outside the process
//! (a ledger's error body, a rejection reason) goes through [`redact`] before it is logged, in case the
//! other side echoes an entry back.

use std::borrow::Cow;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields` with `message`, and the
    /// current `span`): for journald, Loki or any collector that reads JSON lines.
    Json,
}

/// Installs the global subscriber: standard error, `RUST_LOG` filter (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
        // No colour codes inside JSON; the span list repeats the current span, so only that is kept.
        LogFormat::Json => builder.json().with_ansi(false).with_current_span(true).with_span_list(false).init(),
    }
}

/// Masks what looks like a full ID number or a full card number in text from outside the process:
/// an 18-character ID number with a correct GB 11643 check character becomes first 6 + `********` +
/// last 4; a run of 13 to 19 digits that passes the Luhn check becomes first 6 + `*` + last 4. Digits
/// inside a longer word (a hex digest, a voucher number glued to letters) are left alone.
pub fn redact(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        let mut end = i + digits;
        // An ID number may end in X.
        if digits == 17 && bytes.get(end).is_some_and(|b| *b == b'X' || *b == b'x') {
            end += 1;
        }
        let word_ends = bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
        let token = &text[i..end];
        let masked = if !word_ends {
            None
        } else if token.len() == 18 && is_id_number(token) {
            Some(format!("{}********{}", &token[..6], &token[14..]))
        } else if (13..=19).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_digit()) && luhn(token) {
            Some(format!("{}{}{}", &token[..6], "*".repeat(token.len() - 10), &token[token.len() - 4..]))
        } else {
            None
        };
        if let Some(masked) = masked {
            let o = out.get_or_insert_with(|| String::with_capacity(text.len()));
            o.push_str(&text[copied..i]);
            o.push_str(&masked);
            copied = end;
        }
        i = end.max(i + 1);
    }
    match out {
        Some(mut o) => {
            o.push_str(&text[copied..]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(text),
    }
}

/// 17 digits and a GB 11643 (ISO 7064 MOD 11-2) check character.
fn is_id_number(s: &str) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let b = s.as_bytes();
    if b.len() != 18 || !b[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = b[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    b[17].to_ascii_uppercase() == check
}

/// The Luhn check of a string of digits.
fn luhn(s: &str) -> bool {
    let sum: u32 = s
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_masks_id_numbers_and_pans_only() {
        // 11010519491231002X is the standard's example; 6222021234567890128 passes Luhn.
        let text = "payer_id 11010519491231002X card 6222021234567890128 voucher 20201021000000000001";
        let r = redact(text);
        assert_eq!(r, "payer_id 110105********002X card 622202*********0128 voucher 20201021000000000001");
        // Already masked, a hex digest, a wrong check character: untouched and not copied.
        for same in ["622202*********0128", "110105********002X", "ab6222021234567890128cd", "110105194912310021"] {
            assert!(matches!(redact(same), Cow::Borrowed(_)), "{same}");
        }
    }
}

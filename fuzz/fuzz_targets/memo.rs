//! The TLV memo: any bytes as the memo of a response whose fixed part is good.
#![no_main]

#[path = "../../protocol/tests/fuzz_support/mod.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|memo: &[u8]| {
    let _ = oracle::memo(memo);
});

//! The request decoder: any bytes as a frame's DATA.
#![no_main]

#[path = "../../protocol/tests/fuzz_support/mod.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = oracle::request(data);
});

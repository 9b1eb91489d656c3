//! The frame decoder (`FrameDecoder` and the tokio codec, fed in chunks) and, behind it, the message
//! decoders on every frame found. Input: settings and chunk sizes, then the byte stream.
#![no_main]

#[path = "../../protocol/tests/fuzz_support/mod.rs"]
mod oracle;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (cfg, chunks, stream) = oracle::frames_raw(input);
    oracle::frames_then_messages(cfg, &chunks, stream);
});

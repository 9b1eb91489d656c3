//! The roster reader: any bytes written to a file and read by `read_roster` (there is no in-memory
//! entry point). Input: one byte for the encoding option (detect, UTF-8, GB18030), then the file.
#![no_main]

use std::sync::OnceLock;

#[path = "../../tests/import_fuzz_support/mod.rs"]
mod oracle;

/// One directory for the whole run: each input overwrites the same file.
fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("zhengjiao-fuzz-roster-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the temporary directory");
        dir
    })
}

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    oracle::roster_target(dir(), input);
});

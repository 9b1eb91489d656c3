//! The fuzz oracle of the roster reader: what must hold for any file handed to [`read_roster`]. Two
//! drivers share it: the proptest suite (`tests/import_fuzz.rs`, stable, in CI) and the cargo-fuzz
//! target `roster_csv` (`fuzz/`, nightly), which includes this file by path. It panics on a violation,
//! never on a bad file.
#![allow(dead_code)] // Each driver uses a subset.

use std::collections::HashSet;
use std::path::Path;

use zhengjiao::import::{read_roster, FileKind, ImportError, RosterFile, TextEncoding, MAX_LISTED_PROBLEMS, YEARS};

/// Splits a raw fuzz input: byte 0 picks the encoding option (detect, UTF-8, GB18030), the rest is
/// the file.
pub(crate) fn roster_raw(input: &[u8]) -> (Option<TextEncoding>, &[u8]) {
    let encoding = match input.first().map(|b| b % 3) {
        Some(1) => Some(TextEncoding::Utf8),
        Some(2) => Some(TextEncoding::Gb18030),
        _ => None,
    };
    (encoding, input.get(1..).unwrap_or_default())
}

/// Writes `bytes` to a file in `dir` and reads it as a roster with `encoding`, then checks the
/// result against the file (see [`check`]). Returns it for callers that expect more.
pub(crate) fn roster(dir: &Path, bytes: &[u8], encoding: Option<TextEncoding>) -> Result<RosterFile, ImportError> {
    let path = dir.join("roster.csv");
    std::fs::write(&path, bytes).expect("writing the temporary file");
    let result = read_roster(&path, encoding);
    check(bytes, &result);
    result
}

/// The promises of the reader about one file:
/// - rows come back in file order, each numbered as a spreadsheet would (after the header, at most
///   one past the last line feed), with no two lines sharing a key, every value inside its limits;
/// - a refusal names rows and offsets inside the file, lists at most [`MAX_LISTED_PROBLEMS`] problems
///   and has a bounded message.
pub(crate) fn check(bytes: &[u8], result: &Result<RosterFile, ImportError>) {
    // Line feeds are the same byte in UTF-8 and GB18030 (no GB18030 sequence contains 0x0A).
    let lines = bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    match result {
        Ok(file) => {
            assert!(matches!(file.kind, FileKind::Csv(_) | FileKind::Xlsx));
            assert_eq!(file.values.len(), file.rows.len(), "a row number per line");
            assert!(!file.values.is_empty(), "an import with no rows succeeded");
            if matches!(file.kind, FileKind::Csv(_)) {
                assert!(file.rows.len() as u64 <= lines, "more rows than lines");
                assert!(file.rows.iter().all(|&r| (2..=lines).contains(&r)), "row outside the file: {:?}", file.rows);
            }
            assert!(file.rows.windows(2).all(|w| w[0] < w[1]), "rows out of order: {:?}", file.rows);
            let mut keys = HashSet::new();
            for line in &file.values {
                assert!(YEARS.contains(&u16::try_from(line.year).expect("a year fits u16")));
                assert!(keys.insert((line.year, line.insurance, line.serial.clone())), "duplicate key accepted");
                for place in [&line.street, &line.community].into_iter().flatten() {
                    assert!(!place.is_empty() && place.chars().count() <= zhengjiao::import::MAX_PLACE_CHARS);
                }
                assert!(line.amount_due.is_none_or(|f| f.as_fen() >= 0), "negative amount due");
            }
        }
        Err(err) => {
            let text = err.to_string();
            assert!(text.len() <= 4 * bytes.len() + 256 * 1024, "error message of {} bytes", text.len());
            match err {
                ImportError::BadRows(bad) => {
                    assert!(!bad.problems.is_empty());
                    assert!(bad.problems.len() <= MAX_LISTED_PROBLEMS);
                    assert!(bad.problems.len() as u64 <= bad.total_problems);
                    assert!(bad.bad_rows <= bad.total_problems);
                    assert!(bad.problems.windows(2).all(|w| w[0].row <= w[1].row), "problems out of order");
                    for p in &bad.problems {
                        assert!((2..=lines).contains(&p.row), "problem on row {} of a {lines}-line file", p.row);
                    }
                }
                ImportError::Decode(e) => {
                    assert!(e.offset < bytes.len() as u64, "{e}, in a file of {} bytes: {bytes:02x?}", bytes.len());
                    assert!(e.line <= lines, "decode error on line {} of {lines}", e.line);
                    // The offset is that of the first bad byte: everything before it decodes.
                    let before = &bytes[..e.offset as usize];
                    assert_eq!(e.line, before.iter().filter(|&&b| b == b'\n').count() as u64 + 1, "{e}");
                    match e.encoding {
                        TextEncoding::Utf8 => {
                            let valid = std::str::from_utf8(bytes).err().map_or(bytes.len(), |u| u.valid_up_to());
                            assert_eq!(e.offset, valid as u64, "{e}: not the first bad UTF-8 byte");
                        }
                        _ => {
                            let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
                            let mut out = vec![0u8; before.len() * 3 + 16];
                            let (result, _, _) = decoder.decode_to_utf8_without_replacement(before, &mut out, false);
                            assert_eq!(result, encoding_rs::DecoderResult::InputEmpty, "{e}: bad bytes before it");
                        }
                    }
                }
                ImportError::Csv { row, .. } | ImportError::RecordTooLong { row, .. } => {
                    assert!(*row <= lines + 1, "CSV error on row {row} of {lines}");
                }
                _ => {}
            }
        }
    }
}

/// What a result amounts to, for comparing reads of one file with different encoding options.
pub(crate) fn summary(result: &Result<RosterFile, ImportError>) -> String {
    match result {
        Ok(file) => format!("{:?} {:?}", file.values, file.rows),
        Err(err) => err.to_string(),
    }
}

/// The full fuzz target: one file read with the option the input picks and, when the file is ASCII
/// (the same text in every encoding), with the other two as well: all three must agree.
pub(crate) fn roster_target(dir: &Path, input: &[u8]) {
    let (encoding, bytes) = roster_raw(input);
    let first = roster(dir, bytes, encoding);
    if bytes.is_ascii() && !bytes.starts_with(b"PK\x03\x04") {
        for other in [None, Some(TextEncoding::Utf8), Some(TextEncoding::Gb18030)] {
            let again = roster(dir, bytes, other);
            assert_eq!(summary(&again), summary(&first), "{other:?} and {encoding:?} disagree on ASCII");
        }
    }
}

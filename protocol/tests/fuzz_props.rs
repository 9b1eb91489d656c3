//! Fuzzing on stable: the oracles of the cargo-fuzz targets (`fuzz/`), driven by proptest at a high
//! case count so that CI runs them on every change. Inputs are the golden vectors mutated (bytes
//! flipped, inserted, deleted, the memo length fixed up so the memo is reached), streams of real,
//! broken and partial frames between noise, and memos built item by item from good and bad parts.
//!
//! `PROPTEST_CASES` overrides every case count here for a longer run (see `fuzz/README.md`).
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

mod fuzz_support;

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config;
use zhengjiao_protocol::frame::{encode_frame, scan, Item, ENQ, ETX, NAK, STX};
use zhengjiao_protocol::message::{REQUEST_FIXED_LEN, RESPONSE_FIXED_LEN};
use zhengjiao_protocol::{Check, FrameConfig};

/// Cases of the cheap targets (one decode and a few checks each).
const DECODER_CASES: u32 = 20_000;
/// Cases of the frame-stream target (two decoders over up to a few kilobytes).
const STREAM_CASES: u32 = 3_000;
/// Cases of the raw frame target (the cargo-fuzz input form: mostly noise, slow to scan in debug).
const RAW_CASES: u32 = 1_000;

/// `PROPTEST_CASES` when set, else `default`.
fn cases(default: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    Config { cases, failure_persistence: None, ..Config::default() }
}

/// The DATA of every golden frame (tests/vectors), requests and responses alike.
fn golden() -> &'static [Vec<u8>] {
    static GOLDEN: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
        let mut datas = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "hex")) {
            let text = std::fs::read_to_string(path).unwrap();
            let digits: Vec<u8> =
                text.chars().filter(|c| !c.is_whitespace()).map(|c| c.to_digit(16).unwrap() as u8).collect();
            let frame: Vec<u8> = digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect();
            let found = [Check::Lrc, Check::Crc16].into_iter().find_map(|check| {
                match scan(&frame, &FrameConfig::new(check)).item {
                    Some(Item::Frame(data)) => Some(data.to_vec()),
                    _ => None,
                }
            });
            datas.push(found.unwrap_or_else(|| panic!("{} holds no frame", path.display())));
        }
        assert!(datas.len() >= 20, "golden vectors missing");
        datas
    })
}

/// One edit of a message's bytes.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
    /// Copies a run of the message over another place (memo items move, fields shift).
    Splice(usize, usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        4 => any::<u8>(),
        2 => proptest::sample::select(b"0123456789 AF*".to_vec()),
        1 => proptest::sample::select(vec![0x00, 0x7f, 0x80, 0xa1, 0xfe, 0xff]),
    ];
    prop_oneof![
        6 => (any::<usize>(), byte.clone()).prop_map(|(at, b)| Edit::Set(at, b)),
        2 => (any::<usize>(), byte).prop_map(|(at, b)| Edit::Insert(at, b)),
        2 => any::<usize>().prop_map(Edit::Delete),
        1 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), any::<usize>(), 1usize..40).prop_map(|(from, to, len)| Edit::Splice(from, to, len)),
    ]
}

fn apply(data: &mut Vec<u8>, edits: &[Edit]) {
    for e in edits {
        let len = data.len();
        match *e {
            Edit::Set(at, b) if len > 0 => data[at % len] = b,
            Edit::Insert(at, b) => data.insert(at % (len + 1), b),
            Edit::Delete(at) if len > 0 => {
                data.remove(at % len);
            }
            Edit::Truncate(at) => data.truncate(at % (len + 1)),
            Edit::Splice(from, to, n) if len > 0 => {
                let from = from % len;
                let run: Vec<u8> = data[from..(from + n).min(len)].to_vec();
                let to = to % len;
                let end = (to + run.len()).min(len);
                data[to..end].copy_from_slice(&run[..end - to]);
            }
            _ => {}
        }
    }
}

/// Sets `memo_len` (the last 4 bytes of the fixed part) to the bytes after the fixed part, so an
/// edited memo is decoded rather than refused for its length.
fn fix_memo_len(data: &mut [u8], fixed: usize) {
    if data.len() >= fixed && data.len() - fixed <= 9999 {
        let len = format!("{:04}", data.len() - fixed);
        data[fixed - 4..fixed].copy_from_slice(len.as_bytes());
    }
}

/// A golden message with edits, the memo length fixed up or not; or plain random bytes.
fn message(fixed: usize) -> impl Strategy<Value = Vec<u8>> {
    let edited =
        (0..golden().len(), proptest::collection::vec(edit(), 0..8), any::<bool>()).prop_map(move |(i, edits, fix)| {
            let mut data = golden()[i].clone();
            apply(&mut data, &edits);
            if fix {
                fix_memo_len(&mut data, fixed);
            }
            data
        });
    prop_oneof![
        8 => edited,
        1 => proptest::collection::vec(any::<u8>(), 0..400),
    ]
}

/// `len` bytes drawn from `alphabet` (cheaper than a regex strategy, which matters at 20,000 cases).
fn drawn(alphabet: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> + Clone {
    proptest::collection::vec(proptest::sample::select(alphabet), len)
}

const DIGITS: &[u8] = b"0123456789";

/// A memo item's tag: a known one, an unknown one, or bytes that are no tag.
fn tag() -> impl Strategy<Value = Vec<u8>> {
    let known = proptest::sample::select(vec![
        "0F01", "0F02", "0F03", "0F04", "0F05", "0F06", "0F10", "0F11", "0F12", "0F13", "0F14", "0F15",
    ]);
    prop_oneof![
        8 => known.prop_map(|t| t.as_bytes().to_vec()),
        2 => drawn(b"0123456789ABCDEF", 4..5),
        1 => proptest::collection::vec(any::<u8>(), 4),
    ]
}

/// A memo item's value: one that some known tag accepts, or bytes.
fn value() -> impl Strategy<Value = Vec<u8>> {
    let name_chars = proptest::sample::select(vec!["王", "李", "张", "𠮷", "€", " ", "a", "·", "\u{3000}"]);
    let name = proptest::collection::vec(name_chars, 0..18)
        .prop_map(|chars| encoding_rs::GB18030.encode(&chars.concat()).0.into_owned());
    let masked_id = (drawn(DIGITS, 6..7), 0usize..9, drawn(b"0123456789X*", 4..5)).prop_map(|(head, stars, tail)| {
        let mut id = head;
        id.extend(std::iter::repeat_n(b'*', stars));
        id.extend(tail);
        id
    });
    prop_oneof![
        drawn(b"ABCXYZabcxyz0123456789-", 1..35),
        proptest::sample::select(vec!["01", "02", "00", "A", "V", "R", "D", "X", ""])
            .prop_map(|s| s.as_bytes().to_vec()),
        name,
        masked_id,
        prop_oneof![drawn(DIGITS, 6..7), drawn(DIGITS, 12..13), drawn(DIGITS, 5..14)],
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

/// How a memo item states its length.
#[derive(Debug, Clone)]
enum ItemLen {
    /// The value's length.
    Right,
    /// Any three digits.
    Said(usize),
    /// Three bytes that are not all digits.
    Garbage(Vec<u8>),
}

/// A memo: items with their length right or wrong, then perhaps stray bytes.
fn memo_bytes() -> impl Strategy<Value = Vec<u8>> {
    let len = prop_oneof![
        8 => Just(ItemLen::Right),
        1 => (0usize..1000).prop_map(ItemLen::Said),
        1 => drawn(b"0123456789 x", 3..4).prop_map(ItemLen::Garbage),
    ];
    let items = proptest::collection::vec((tag(), value(), len), 0..10);
    (items, proptest::collection::vec(any::<u8>(), 0..3)).prop_map(|(items, tail)| {
        let mut out = Vec::new();
        for (tag, value, len) in items {
            out.extend_from_slice(&tag);
            match len {
                ItemLen::Right => out.extend_from_slice(format!("{:03}", value.len().min(999)).as_bytes()),
                ItemLen::Said(n) => out.extend_from_slice(format!("{n:03}").as_bytes()),
                ItemLen::Garbage(bytes) => out.extend_from_slice(&bytes),
            }
            out.extend_from_slice(&value);
        }
        out.extend_from_slice(&tail);
        out
    })
}

/// A piece of a byte stream on the link.
fn piece(check: Check) -> impl Strategy<Value = Vec<u8>> {
    let other = match check {
        Check::Lrc => Check::Crc16,
        Check::Crc16 => Check::Lrc,
    };
    let frame_of = move |data: Vec<u8>, c: Check| encode_frame(&data, c).unwrap();
    let data = prop_oneof![
        3 => (0..golden().len()).prop_map(|i| golden()[i].clone()),
        2 => proptest::collection::vec(any::<u8>(), 1..300),
        1 => proptest::collection::vec(prop_oneof![Just(STX), Just(ETX), any::<u8>()], 1..40),
    ];
    prop_oneof![
        // Good frames in the configured dialect, some of them holding real messages.
        6 => data.clone().prop_map(move |d| frame_of(d, check)),
        // Frames in the other dialect: broken here.
        1 => data.clone().prop_map(move |d| frame_of(d, other)),
        // Cut short, or one byte changed.
        2 => (data.clone(), any::<usize>()).prop_map(move |(d, cut)| {
            let f = frame_of(d, check);
            f[..1 + cut % (f.len() - 1)].to_vec()
        }),
        2 => (data, any::<usize>(), 1u8..=255).prop_map(move |(d, at, x)| {
            let mut f = frame_of(d, check);
            let i = at % f.len();
            f[i] ^= x;
            f
        }),
        // STX and a hostile LEN.
        1 => (any::<u8>(), any::<u8>()).prop_map(|(hi, lo)| vec![STX, hi, lo]),
        2 => proptest::collection::vec(any::<u8>(), 0..20),
        2 => proptest::sample::select(vec![vec![0x06], vec![NAK], vec![ENQ], vec![STX], vec![ETX]]),
    ]
}

fn stream() -> impl Strategy<Value = (FrameConfig, Vec<usize>, Vec<u8>)> {
    let check = prop_oneof![Just(Check::Lrc), Just(Check::Crc16)];
    let limit = prop_oneof![Just(zhengjiao_protocol::frame::DEFAULT_MAX_DATA_LEN), 1usize..300];
    (check, limit).prop_flat_map(|(check, max_data_len)| {
        (
            Just(FrameConfig { check, max_data_len }),
            proptest::collection::vec(1usize..700, 1..6),
            proptest::collection::vec(piece(check), 0..12).prop_map(|p| p.concat()),
        )
    })
}

proptest! {
    #![proptest_config(cases(STREAM_CASES))]

    /// Frame decoder and tokio codec over streams of frames, broken frames and noise in any chunking.
    #[test]
    fn frame_streams((cfg, chunks, bytes) in stream()) {
        fuzz_support::frames_then_messages(cfg, &chunks, &bytes);
    }
}

proptest! {
    #![proptest_config(cases(RAW_CASES))]

    /// The raw form the cargo-fuzz target takes: settings and chunk sizes from the first bytes.
    #[test]
    fn frame_streams_raw(bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(STX), Just(0x00)], 0..600)) {
        let (cfg, chunks, stream) = fuzz_support::frames_raw(&bytes);
        fuzz_support::frames(cfg, &chunks, stream);
    }
}

proptest! {
    #![proptest_config(cases(DECODER_CASES))]

    /// Request DATA: golden requests and responses edited, or random bytes.
    #[test]
    fn request_decoder(data in message(REQUEST_FIXED_LEN)) {
        fuzz_support::request(&data);
    }

    /// Response DATA: golden requests and responses edited, or random bytes.
    #[test]
    fn response_decoder(data in message(RESPONSE_FIXED_LEN)) {
        fuzz_support::response(&data);
    }

    /// The TLV memo behind a good fixed part.
    #[test]
    fn memo_decoder(bytes in memo_bytes()) {
        fuzz_support::memo(&bytes);
    }
}

/// The oracles accept what they should: a golden message passes, and its memo is reached.
#[test]
fn oracles_see_the_golden_vectors() {
    let decoded =
        golden().iter().filter(|d| fuzz_support::request(d).is_some() || fuzz_support::response(d).is_some()).count();
    assert_eq!(decoded, golden().len());
    let memo = fuzz_support::memo(b"0F01003P01F0FF002xy0F020010");
    assert!(memo.is_none());
    let memo = fuzz_support::memo(b"0F01003P010F02002010ABC000").unwrap();
    assert_eq!(memo.reference.unwrap().as_str(), "P01");
}

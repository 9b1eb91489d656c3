//! Fuzzing the roster reader on stable: the oracle of the cargo-fuzz target `roster_csv` (`fuzz/`),
//! driven by many seeded random cases so that CI runs it on every change. Files are CSV-like byte
//! soup, valid rosters with bytes edited, and valid rosters written every way a spreadsheet program
//! might (header in Chinese or English and any order, extra columns, quoting, blank lines, CRLF, BOM,
//! GB18030), which must read back exactly, on the right row numbers.
//!
//! The root crate has no proptest (its manifest is not this file's to change), so cases come from
//! `fastrand` seeded by case number: a failure prints its seed, and `FUZZ_SEED=<seed>` replays that one
//! case. `PROPTEST_CASES` sets the number of cases, as for the protocol crate's suite (see
//! `fuzz/README.md`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod import_fuzz_support;

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use fastrand::Rng;
use zhengjiao::domain::{CollectionPointCode, CollectionSerial, Fen, Hardship, IdNumber, Insurance, PersonName};
use zhengjiao::import::TextEncoding;
use zhengjiao::journal::RosterLine;

/// Cases of each test: every case writes a file and reads it, several times for ASCII files.
const FILE_CASES: u64 = 1_500;

/// Runs `case` once per seed: `FUZZ_SEED` alone when set, else `PROPTEST_CASES` (or `default`) seeds
/// derived from the test's name. A failing case names its seed.
fn run(name: &str, default: u64, case: impl Fn(&mut Rng)) {
    let seeds: Vec<u64> = match std::env::var("FUZZ_SEED").ok().and_then(|v| v.parse().ok()) {
        Some(seed) => vec![seed],
        None => {
            let n = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
            let base =
                name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            (0..n).map(|i| base.wrapping_add(i)).collect()
        }
    };
    for seed in seeds {
        let outcome = catch_unwind(AssertUnwindSafe(|| case(&mut Rng::with_seed(seed))));
        if let Err(panic) = outcome {
            eprintln!("{name}: case failed; replay it with FUZZ_SEED={seed} cargo test --test import_fuzz {name}");
            std::panic::resume_unwind(panic);
        }
    }
}

/// `len` characters drawn from `alphabet`.
fn drawn(rng: &mut Rng, alphabet: &str, len: std::ops::RangeInclusive<usize>) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    (0..rng.usize(len)).map(|_| chars[rng.usize(..chars.len())]).collect()
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.usize(..items.len())]
}

const ZH: [&str; 10] =
    ["征集流水号", "险种", "身份证号", "姓名", "年度", "应缴金额", "困难类别", "征缴网点", "街道", "社区村"];
const EN: [&str; 10] = [
    "collection_serial",
    "insurance",
    "id_number",
    "name",
    "year",
    "amount_due",
    "hardship",
    "collection_point",
    "street",
    "community",
];

/// An 18-character ID number with its ISO 7064 MOD 11-2 check character.
fn id_number(region: u32, birth: (u32, u32, u32), seq: u32) -> String {
    let body = format!("{region:06}{:04}{:02}{:02}{seq:03}", birth.0, birth.1, birth.2);
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    format!("{body}{}", char::from(b"10X98765432"[(sum % 11) as usize]))
}

/// A valid roster row's cells, in the order of [`ZH`], as text a spreadsheet would write.
fn row(rng: &mut Rng) -> [String; 10] {
    let serial = drawn(rng, "0123456789ABCXYZabcxyz-", 1..=32);
    let insurance = *pick(rng, &["养老", "医疗", "pension", "MEDICAL"]);
    let birth = (rng.u32(1930..=2020), rng.u32(1..=12), rng.u32(1..=28));
    let id = id_number(rng.u32(110_000..=829_999), birth, rng.u32(0..1000));
    let name = loop {
        let name = drawn(rng, "王李张欧阳𠮷·abcXYZ", 1..=10);
        if PersonName::parse(&name).is_ok() {
            break name;
        }
    };
    let year = rng.u16(2000..=2099).to_string();
    let mut amount = match rng.u8(0..3) {
        0 => String::new(),
        1 => rng.u32(1..1_000_000).to_string(),
        _ => format!("{}.{}", rng.u32(0..1_000_000), drawn(rng, "0123456789", 1..=2)),
    };
    // A medical line needs an amount.
    if amount.is_empty() && matches!(insurance, "医疗" | "MEDICAL") {
        amount = "280".into();
    }
    let hardship = *pick(rng, &["", "低保", "特困", "none"]);
    let point = drawn(rng, "0123456789ABCabc_-", 1..=32);
    let mut place = || {
        // Inner spaces, commas and quotes; the reader trims the ends.
        if rng.bool() {
            String::new()
        } else {
            drawn(rng, "东西南北路街村社区 ,\"az09", 1..=20)
        }
    };
    let (street, community) = (place(), place());
    [serial, insurance.into(), id, name, year, amount, hardship.into(), point, street, community]
}

/// The line the journal gets for a row's cells.
fn expected(cells: &[String; 10]) -> RosterLine {
    let opt = |s: &String| (!s.trim().is_empty()).then(|| s.trim().to_owned());
    RosterLine {
        serial: CollectionSerial::parse(&cells[0]).unwrap(),
        insurance: Insurance::parse(&cells[1]).unwrap(),
        id_number: IdNumber::parse(&cells[2]).unwrap(),
        name: PersonName::parse(&cells[3]).unwrap(),
        year: cells[4].parse().unwrap(),
        amount_due: opt(&cells[5]).map(|a| Fen::from_yuan_str(&a).unwrap()),
        hardship: Hardship::parse(&cells[6]).unwrap(),
        collection_point: CollectionPointCode::parse(&cells[7]).unwrap(),
        street: opt(&cells[8]),
        community: opt(&cells[9]),
    }
}

/// How a roster is written out.
#[derive(Debug, Clone)]
struct Layout {
    /// File column of each field, or `None` for an optional column left out.
    order: Vec<Option<usize>>,
    english: bool,
    extra_column: bool,
    quote_all: bool,
    crlf: bool,
    bom: bool,
    gb18030: bool,
    /// Blank lines before each row (and after the last).
    blanks: Vec<u8>,
}

fn layout(rng: &mut Rng, rows: usize) -> Layout {
    let mut order: Vec<usize> = (0..10).collect();
    rng.shuffle(&mut order);
    // Optional columns (hardship, street, community) may be absent.
    order.retain(|&f| !(matches!(f, 6 | 8 | 9) && rng.bool()));
    let mut at = vec![None; 10];
    for (col, &field) in order.iter().enumerate() {
        at[field] = Some(col);
    }
    Layout {
        order: at,
        english: rng.bool(),
        extra_column: rng.bool(),
        quote_all: rng.bool(),
        crlf: rng.bool(),
        bom: rng.bool(),
        gb18030: rng.bool(),
        blanks: (0..=rows).map(|_| if rng.u8(0..7) == 0 { rng.u8(1..3) } else { 0 }).collect(),
    }
}

/// Writes rows as a CSV file the way `layout` says; returns the bytes and each row's spreadsheet row.
fn write(rows: &[[String; 10]], layout: &Layout) -> (Vec<u8>, Vec<u64>) {
    let columns = layout.order.iter().flatten().count() + usize::from(layout.extra_column);
    let names = if layout.english { EN } else { ZH };
    let mut header = vec![String::from("备注"); columns];
    for (field, col) in layout.order.iter().enumerate() {
        if let Some(col) = col {
            header[*col] = names[field].to_owned();
        }
    }
    let cell = |s: &str| {
        if layout.quote_all || s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let eol = if layout.crlf { "\r\n" } else { "\n" };
    let mut text: String = header.iter().map(|h| cell(h)).collect::<Vec<_>>().join(",") + eol;
    let mut line = 2u64;
    let mut numbers = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        for _ in 0..layout.blanks[i] {
            text.push_str(eol);
            line += 1;
        }
        let mut cells = vec![String::from("x"); columns];
        for (field, col) in layout.order.iter().enumerate() {
            if let Some(col) = col {
                cells[*col] = r[field].clone();
            }
        }
        text.push_str(&cells.iter().map(|c| cell(c)).collect::<Vec<_>>().join(","));
        text.push_str(eol);
        numbers.push(line);
        line += 1;
    }
    for _ in 0..layout.blanks[rows.len()] {
        text.push_str(eol);
    }
    let mut bytes = Vec::new();
    if layout.gb18030 {
        let (gb, _, unmappable) = encoding_rs::GB18030.encode(&text);
        assert!(!unmappable);
        bytes.extend_from_slice(&gb);
    } else {
        if layout.bom {
            bytes.extend_from_slice(b"\xEF\xBB\xBF");
        }
        bytes.extend_from_slice(text.as_bytes());
    }
    (bytes, numbers)
}

/// Rows whose keys differ, and a layout to write them.
fn roster(rng: &mut Rng) -> (Vec<[String; 10]>, Layout) {
    let mut seen = HashSet::new();
    let rows: Vec<[String; 10]> = (0..rng.usize(1..12))
        .map(|_| row(rng))
        .filter(|r| {
            let line = expected(r);
            seen.insert((line.year, line.insurance, line.serial))
        })
        .collect();
    let layout = layout(rng, rows.len());
    (rows, layout)
}

/// Bytes a CSV roster is made of, in runs: header names, separators, quotes, line ends, Chinese text
/// in both encodings, a BOM, bytes that decode in neither.
fn soup(rng: &mut Rng) -> Vec<u8> {
    let mut words: Vec<Vec<u8>> = ZH.iter().chain(EN.iter()).map(|w| w.as_bytes().to_vec()).collect();
    words.extend(ZH.iter().map(|w| encoding_rs::GB18030.encode(w).0.into_owned()));
    for w in [
        ",",
        ",",
        "\"",
        "\n",
        "\r\n",
        "\r",
        " ",
        "\u{3000}",
        "\u{FEFF}",
        "养老",
        "医疗",
        "低保",
        "2020",
        "280.5",
        "4.10402E+17",
        "110105194912310029",
        "11010519491231002X",
        "P-01",
        "\"\"",
        "\u{0}",
    ] {
        words.push(w.as_bytes().to_vec());
    }
    let mut out = Vec::new();
    for _ in 0..rng.usize(0..120) {
        match rng.u8(0..8) {
            0 => out.extend((0..rng.usize(1..6)).map(|_| rng.u8(..))),
            1 => {
                out.extend_from_slice(b"\xEF\xBB\xBF");
                out.extend((0..rng.usize(1..4)).map(|_| rng.u8(..)));
            }
            _ => out.extend_from_slice(pick::<Vec<u8>>(rng, &words)),
        }
    }
    out
}

/// A valid roster's bytes with a few bytes changed, inserted or removed.
fn mutated_roster(rng: &mut Rng) -> Vec<u8> {
    let (rows, layout) = roster(rng);
    let (mut bytes, _) = write(&rows, &layout);
    for _ in 0..rng.usize(1..6) {
        let byte = if rng.bool() { rng.u8(..) } else { *pick(rng, b",\"\n\r 0X") };
        let len = bytes.len();
        match rng.u8(0..3) {
            0 => bytes[rng.usize(..len)] = byte,
            1 => bytes.insert(rng.usize(..=len), byte),
            _ => {
                bytes.remove(rng.usize(..len));
            }
        }
    }
    bytes
}

fn encoding(rng: &mut Rng) -> Option<TextEncoding> {
    *pick(rng, &[None, Some(TextEncoding::Utf8), Some(TextEncoding::Gb18030)])
}

/// CSV-like byte soup: never a panic, every refusal inside the file.
#[test]
fn arbitrary_files() {
    let dir = tempfile::tempdir().unwrap();
    run("arbitrary_files", FILE_CASES, |rng| {
        let mut input = vec![rng.u8(0..3)];
        input.extend(soup(rng));
        import_fuzz_support::roster_target(dir.path(), &input);
    });
}

/// Valid rosters with bytes edited: whatever is accepted still keeps the reader's promises.
#[test]
fn mutated_rosters() {
    let dir = tempfile::tempdir().unwrap();
    run("mutated_rosters", FILE_CASES, |rng| {
        let bytes = mutated_roster(rng);
        let _ = import_fuzz_support::roster(dir.path(), &bytes, encoding(rng));
    });
}

/// Valid rosters, written any way a spreadsheet program might, read back line for line on the rows a
/// spreadsheet shows them.
#[test]
fn valid_rosters_read_back() {
    let dir = tempfile::tempdir().unwrap();
    run("valid_rosters_read_back", FILE_CASES, |rng| {
        let (mut rows, layout) = roster(rng);
        // A column left out of the file reads as empty.
        for row in &mut rows {
            for (field, col) in layout.order.iter().enumerate() {
                if col.is_none() {
                    row[field].clear();
                }
            }
        }
        let (bytes, numbers) = write(&rows, &layout);
        let file = import_fuzz_support::roster(dir.path(), &bytes, None)
            .unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&bytes)));
        let lines: Vec<RosterLine> = rows.iter().map(expected).collect();
        assert_eq!(file.values, lines, "{layout:?}");
        assert_eq!(file.rows, numbers, "{layout:?}");
    });
}

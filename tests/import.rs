//! The roster and collector-register importer (roster-format.md), end to end: files in every accepted
//! form (CSV in UTF-8 with and without BOM, CSV in GBK/GB18030, XLSX) are generated here, imported
//! into a fresh journal, and what the journal holds afterwards is checked.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use zhengjiao::domain::{
    CollectionPointCode, CollectionSerial, Fen, Hardship, IdNumber, Insurance, PersonName, StaffNumber,
};
use zhengjiao::import::{self, BadRows, FileKind, ImportError, ImportOptions, ImportSummary, Reason, TextEncoding};
use zhengjiao::journal::{
    Collector, ConflictKind, JournalOptions, LineKey, NewPayment, RosterLine, SqliteStore, Store, Terminal,
};

// ---------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------

/// An 18-character ID number: `region` (6 digits), `birth` (YYYYMMDD), `seq` (3 digits) and the
/// computed ISO 7064 MOD 11-2 check character.
fn id(region: &str, birth: &str, seq: &str) -> String {
    let body = format!("{region}{birth}{seq}");
    assert_eq!(body.len(), 17);
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    format!("{body}{}", char::from(check))
}

/// An ID number whose check character is X.
fn id_with_x() -> String {
    (0..1000).map(|s| id("410402", "19700101", &format!("{s:03}"))).find(|n| n.ends_with('X')).unwrap()
}

/// The same ID number with one digit changed in the body, so the check character no longer matches.
fn with_bad_check(n: &str) -> String {
    let mut b = n.as_bytes().to_vec();
    b[16] = if b[16] == b'9' { b'0' } else { b[16] + 1 };
    String::from_utf8(b).unwrap()
}

/// ASCII digits and X to full-width.
fn full_width(n: &str) -> String {
    n.chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(0xFF10 + (c as u32 - '0' as u32)).unwrap(),
            'X' => 'Ｘ',
            c => c,
        })
        .collect()
}

/// A cell value as a spreadsheet holds it.
#[derive(Debug, Clone)]
enum V {
    /// Text.
    S(String),
    /// A number cell (written as its shortest text in CSV).
    N(f64),
    /// A TRUE/FALSE cell.
    B(bool),
}

fn s(text: &str) -> V {
    V::S(text.to_owned())
}

const ROSTER_ZH: [&str; 10] =
    ["征集流水号", "险种", "身份证号", "姓名", "年度", "应缴金额", "困难类别", "征缴网点", "街道", "社区村"];
const ROSTER_EN: [&str; 10] = [
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

/// A roster row in the order of [`ROSTER_ZH`].
#[derive(Debug, Clone)]
struct Row {
    serial: V,
    insurance: &'static str,
    id_number: V,
    name: &'static str,
    year: V,
    amount: V,
    hardship: &'static str,
    point: &'static str,
    street: &'static str,
    community: &'static str,
}

impl Row {
    fn cells(&self) -> Vec<V> {
        vec![
            self.serial.clone(),
            s(self.insurance),
            self.id_number.clone(),
            s(self.name),
            self.year.clone(),
            self.amount.clone(),
            s(self.hardship),
            s(self.point),
            s(self.street),
            s(self.community),
        ]
    }

    /// The line the journal should hold for this row (its cells read as the importer should).
    fn expected(&self) -> RosterLine {
        let text = |v: &V| match v {
            V::S(t) => t.clone(),
            V::N(n) => n.to_string(),
            V::B(_) => unreachable!(),
        };
        let amount = text(&self.amount);
        RosterLine {
            serial: CollectionSerial::parse(&text(&self.serial)).unwrap(),
            insurance: Insurance::parse(self.insurance).unwrap(),
            id_number: IdNumber::parse(&text(&self.id_number)).unwrap(),
            name: PersonName::parse(self.name).unwrap(),
            year: text(&self.year).parse().unwrap(),
            amount_due: (!amount.trim().is_empty()).then(|| Fen::from_yuan_str(&amount).unwrap()),
            hardship: Hardship::parse(self.hardship).unwrap(),
            collection_point: CollectionPointCode::parse(self.point).unwrap(),
            street: (!self.street.is_empty()).then(|| self.street.to_owned()),
            community: (!self.community.is_empty()).then(|| self.community.to_owned()),
        }
    }
}

fn row(serial: &str, insurance: &'static str, id_number: &str, name: &'static str, amount: &str) -> Row {
    Row {
        serial: s(serial),
        insurance,
        id_number: s(id_number),
        name,
        year: s("2020"),
        amount: s(amount),
        hardship: "",
        point: "WD-01",
        street: "建设路街道",
        community: "东环路社区",
    }
}

/// Good rows covering both insurances, both hardship categories with reduced amounts, a pension line
/// without an amount, English insurance values, a lower-case x and full-width digits.
fn good_rows() -> Vec<Row> {
    let x = id_with_x();
    vec![
        row("ZJ2020-0001", "医疗", &id("410402", "19800115", "001"), "张三", "280"),
        Row {
            street: "", community: "", ..row("ZJ2020-0002", "养老", &id("410402", "19750302", "012"), "李四", "")
        },
        Row { hardship: "低保", ..row("ZJ2020-0003", "医疗", &x.to_lowercase(), "王五", "180") },
        Row { hardship: "特困", ..row("ZJ2020-0004", "medical", &id("410403", "19601231", "021"), "赵六", "0") },
        row("ZJ2020-0005", "pension", &id("410403", "19920229", "033"), "钱七", "500"),
        row("ZJ2020-0006", "医疗", &full_width(&id("410411", "20010909", "104")), "欧阳小明", "280.50"),
    ]
}

/// A 15-digit ID number of the old scheme.
const OLD_ID: &str = "410402800115001";

/// Bad rows, each with the one (column, reason fragment) it must be reported with.
fn bad_rows() -> Vec<(Row, &'static str, &'static str)> {
    let good = id("410402", "19851010", "055");
    // 1985-02-30 does not exist; the check character is computed, so only the date is wrong.
    let impossible = id("410402", "19850230", "056");
    vec![
        (row("ZJ2020-0101", "医疗", &with_bad_check(&good), "甲", "280"), "身份证号", "check character"),
        (row("ZJ2020-0102", "医疗", OLD_ID, "乙", "280"), "身份证号", "15-digit"),
        (row("ZJ2020-0103", "医疗", &impossible, "丙", "280"), "身份证号", "birth date"),
        (row("ZJ2020-0104", "工伤", &good, "丁", "280"), "险种", "养老"),
        (row("ZJ2020-0105", "医疗", &good, "戊", ""), "应缴金额", "needs an amount due"),
        (row("ZJ2020-0106", "医疗", &good, "己", "280.005"), "应缴金额", "two decimals"),
        (row("ZJ2020_0107#", "医疗", &good, "庚", "280"), "征集流水号", "not a letter, digit or '-'"),
        (Row { hardship: "五保", ..row("ZJ2020-0108", "医疗", &good, "辛", "280") }, "困难类别", "低保 or 特困"),
        (Row { year: s("20"), ..row("ZJ2020-0109", "医疗", &good, "壬", "280") }, "年度", "year like 2020"),
        (row("ZJ2020-0110", "医疗", &good, "", "280"), "姓名", "empty"),
        (row("ZJ2020-0001", "医疗", &good, "癸", "280"), "征集流水号", "already on row 2"),
    ]
}

/// A file's rows: header then data.
fn table(header: &[&str], rows: &[Vec<V>]) -> Vec<Vec<V>> {
    let mut t = vec![header.iter().map(|h| s(h)).collect::<Vec<_>>()];
    t.extend(rows.iter().cloned());
    t
}

fn csv_text(table: &[Vec<V>]) -> String {
    let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
    for r in table {
        let cells: Vec<String> = r
            .iter()
            .map(|v| match v {
                V::S(t) => t.clone(),
                V::N(n) => n.to_string(),
                V::B(b) => if *b { "TRUE" } else { "FALSE" }.to_owned(),
            })
            .collect();
        w.write_record(&cells).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

/// The forms a file can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Utf8,
    Utf8Bom,
    Gb18030,
    Xlsx,
}

const FORMS: [Form; 4] = [Form::Utf8, Form::Utf8Bom, Form::Gb18030, Form::Xlsx];

fn gb18030(text: &str) -> Vec<u8> {
    let (bytes, _, unmappable) = encoding_rs::GB18030.encode(text);
    assert!(!unmappable);
    bytes.into_owned()
}

fn write_file(dir: &Path, name: &str, form: Form, table: &[Vec<V>]) -> PathBuf {
    let ext = if form == Form::Xlsx { "xlsx" } else { "csv" };
    let path = dir.join(format!("{name}.{ext}"));
    match form {
        Form::Utf8 => std::fs::write(&path, csv_text(table)).unwrap(),
        Form::Utf8Bom => {
            let mut bytes = b"\xEF\xBB\xBF".to_vec();
            bytes.extend_from_slice(csv_text(table).as_bytes());
            std::fs::write(&path, bytes).unwrap();
        }
        Form::Gb18030 => std::fs::write(&path, gb18030(&csv_text(table))).unwrap(),
        Form::Xlsx => write_xlsx(&path, table),
    }
    path
}

fn write_xlsx(path: &Path, table: &[Vec<V>]) {
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    for (r, cells) in table.iter().enumerate() {
        for (c, v) in cells.iter().enumerate() {
            let (r, c) = (r as u32, c as u16);
            match v {
                V::S(t) if t.is_empty() => {}
                V::S(t) => {
                    sheet.write_string(r, c, t).unwrap();
                }
                V::N(n) => {
                    sheet.write_number(r, c, *n).unwrap();
                }
                V::B(b) => {
                    sheet.write_boolean(r, c, *b).unwrap();
                }
            }
        }
    }
    // A second sheet that must be ignored.
    workbook.add_worksheet().write_string(0, 0, "not this sheet").unwrap();
    workbook.save(path).unwrap();
}

/// In an XLSX file, cells that a spreadsheet user would type as numbers are numbers.
fn as_spreadsheet_numbers(rows: Vec<Row>) -> Vec<Row> {
    rows.into_iter()
        .map(|mut r| {
            if let V::S(y) = &r.year {
                if let Ok(n) = y.parse::<f64>() {
                    r.year = V::N(n);
                }
            }
            if let V::S(a) = &r.amount {
                if let Ok(n) = a.parse::<f64>() {
                    // Only amounts that survive a float exactly in their decimals.
                    if n.to_string() == *a || format!("{n:.2}") == *a {
                        r.amount = V::N(n);
                    }
                }
            }
            r
        })
        .collect()
}

fn expected_kind(form: Form) -> FileKind {
    let enc = |encoding, bom| import::DetectedEncoding { encoding, bom, forced: false };
    match form {
        Form::Utf8 => FileKind::Csv(enc(TextEncoding::Utf8, false)),
        Form::Utf8Bom => FileKind::Csv(enc(TextEncoding::Utf8, true)),
        Form::Gb18030 => FileKind::Csv(enc(TextEncoding::Gb18030, false)),
        Form::Xlsx => FileKind::Xlsx,
    }
}

async fn open_store(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("journal.sqlite"), JournalOptions::default()).await.unwrap()
}

fn opts() -> ImportOptions {
    ImportOptions::default()
}

fn bad_rows_of(result: Result<ImportSummary, ImportError>) -> BadRows {
    match result {
        Err(ImportError::BadRows(bad)) => bad,
        other => panic!("expected bad rows, got {other:?}"),
    }
}

async fn assert_holds(store: &SqliteStore, rows: &[Row]) {
    for r in rows {
        let want = r.expected();
        let got = store.roster_line(&want.serial, want.insurance, want.year).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("line {} missing", want.serial.as_str()));
        assert_eq!(got.line, want);
    }
}

// ---------------------------------------------------------------------------------------------------
// Roster: good files in every form
// ---------------------------------------------------------------------------------------------------

async fn good_file_imports(form: Form) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let mut rows = good_rows();
    if form == Form::Xlsx {
        rows = as_spreadsheet_numbers(rows);
        // A serial typed as a number: its integer text.
        rows.push(Row {
            serial: V::N(20_200_007.0),
            ..row("", "医疗", &id("410402", "19991111", "777"), "周九", "280")
        });
    }
    let cells: Vec<Vec<V>> = rows.iter().map(Row::cells).collect();
    let path = write_file(dir.path(), "roster", form, &table(&ROSTER_ZH, &cells));

    let summary = import::import_roster(&store, &path, opts()).await.unwrap();
    assert_eq!(summary.kind, expected_kind(form), "{form:?}");
    assert_eq!(summary.rows, rows.len());
    assert_eq!((summary.outcome.inserted, summary.outcome.unchanged, summary.outcome.updated), (rows.len(), 0, 0));
    assert_eq!(store.count_roster_lines().await.unwrap(), rows.len() as u64);
    assert_holds(&store, &rows).await;
    if form == Form::Xlsx {
        let serial = CollectionSerial::parse("20200007").unwrap();
        assert!(store.roster_line(&serial, Insurance::Medical, 2020).await.unwrap().is_some());
    }
}

#[tokio::test]
async fn utf8_csv_without_bom_imports() {
    good_file_imports(Form::Utf8).await;
}

#[tokio::test]
async fn utf8_csv_with_bom_imports() {
    good_file_imports(Form::Utf8Bom).await;
}

#[tokio::test]
async fn gb18030_csv_imports() {
    good_file_imports(Form::Gb18030).await;
}

#[tokio::test]
async fn xlsx_imports() {
    good_file_imports(Form::Xlsx).await;
}

// ---------------------------------------------------------------------------------------------------
// Roster: bad rows, every kind, in every form; nothing written
// ---------------------------------------------------------------------------------------------------

async fn bad_rows_reported(form: Form) {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    // Something in the journal already, so "nothing written" is a count that stays.
    let earlier = [row("OLD-1", "医疗", &id("410402", "19660606", "606"), "老户", "280")];
    let earlier_path = write_file(dir.path(), "earlier", Form::Utf8, &table(&ROSTER_ZH, &[earlier[0].cells()]));
    import::import_roster(&store, &earlier_path, opts()).await.unwrap();
    let before = store.count_roster_lines().await.unwrap();

    let good = good_rows();
    let bad = bad_rows();
    // Good rows first (rows 2..7), then the bad ones with one more good row between each pair.
    let mut cells: Vec<Vec<V>> = good.iter().map(Row::cells).collect();
    let mut expected = Vec::new();
    for (i, (r, column, reason)) in bad.iter().enumerate() {
        cells.push(r.cells());
        expected.push((cells.len() as u64 + 1, *column, *reason));
        let filler = row(&format!("FILL-{i}"), "养老", &id("410402", "19800101", &format!("{i:03}")), "填充", "");
        cells.push(filler.cells());
    }
    let path = write_file(dir.path(), "bad", form, &table(&ROSTER_ZH, &cells));

    let bad_found = bad_rows_of(import::import_roster(&store, &path, opts()).await);
    for (row, column, reason) in &expected {
        let p = bad_found.problems.iter().find(|p| p.row == *row && p.column == *column);
        let p = p.unwrap_or_else(|| panic!("{form:?}: no problem at row {row}, {column}; got:\n{bad_found}"));
        assert!(p.reason.to_string().contains(reason), "{form:?}: row {row}: {} lacks {reason:?}", p.reason);
    }
    // Exactly those: one problem per bad row, no good row blamed.
    assert_eq!(bad_found.bad_rows, expected.len() as u64, "{bad_found}");
    assert_eq!(bad_found.total_problems, expected.len() as u64, "{bad_found}");
    // The message lists every one as (row, column, reason).
    let text = ImportError::BadRows(bad_found.clone()).to_string();
    for (row, column, _) in &expected {
        assert!(text.contains(&format!("row {row}, {column}: ")), "{text}");
    }
    // Nothing written: not even the good rows of the file.
    assert_eq!(store.count_roster_lines().await.unwrap(), before);
    let first_good = good[0].expected();
    assert!(store.roster_line(&first_good.serial, first_good.insurance, 2020).await.unwrap().is_none());
}

#[tokio::test]
async fn bad_rows_utf8_all_reported_nothing_written() {
    bad_rows_reported(Form::Utf8).await;
}

#[tokio::test]
async fn bad_rows_utf8_bom_all_reported_nothing_written() {
    bad_rows_reported(Form::Utf8Bom).await;
}

#[tokio::test]
async fn bad_rows_gb18030_all_reported_nothing_written() {
    bad_rows_reported(Form::Gb18030).await;
}

#[tokio::test]
async fn bad_rows_xlsx_all_reported_nothing_written() {
    bad_rows_reported(Form::Xlsx).await;
}

#[test]
fn several_problems_in_one_row_are_all_listed() {
    let dir = tempfile::tempdir().unwrap();
    let r = Row { year: s("二〇二〇"), hardship: "五保", ..row("ZJ#1", "工伤", OLD_ID, "", "1.234") };
    let path = write_file(dir.path(), "r", Form::Utf8, &table(&ROSTER_ZH, &[r.cells()]));
    let bad = match import::read_roster(&path, None) {
        Err(ImportError::BadRows(b)) => b,
        other => panic!("{other:?}"),
    };
    let columns: Vec<&str> = bad.problems.iter().map(|p| p.column.as_str()).collect();
    assert_eq!(columns, ["征集流水号", "险种", "身份证号", "姓名", "年度", "应缴金额", "困难类别"]);
    assert!(bad.problems.iter().all(|p| p.row == 2));
    assert_eq!(bad.bad_rows, 1);
}

#[test]
fn xlsx_cell_types_are_read_sensibly() {
    let dir = tempfile::tempdir().unwrap();
    let n = id("410402", "19800115", "001");
    let rows = [
        // An ID number typed as a number: digits already lost; refused with a clear message.
        Row { id_number: V::N(n.parse::<f64>().unwrap()), ..row("X-1", "医疗", "", "甲", "280") },
        // A TRUE/FALSE cell where a year should be.
        Row { year: V::B(true), ..row("X-2", "医疗", &n, "乙", "280") },
        // A 16-digit number in a text column.
        Row { serial: V::N(1_234_567_890_123_456.0), ..row("", "医疗", &n, "丙", "280") },
        // Integer-valued floats are their integer text; 180.5 is 180.50 yuan.
        Row { serial: V::N(42.0), year: V::N(2020.0), amount: V::N(180.5), ..row("", "医疗", &n, "丁", "") },
    ];
    let cells: Vec<Vec<V>> = rows.iter().map(Row::cells).collect();
    let path = write_file(dir.path(), "types", Form::Xlsx, &table(&ROSTER_ZH, &cells));
    let bad = match import::read_roster(&path, None) {
        Err(ImportError::BadRows(b)) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(bad.bad_rows, 3, "{bad}");
    let reason = |row: u64| &bad.problems.iter().find(|p| p.row == row).unwrap().reason;
    assert_eq!(reason(2), &Reason::NumberCell);
    assert!(reason(2).to_string().contains("format the column as text"));
    assert!(matches!(reason(3), Reason::Unusable(what) if what.contains("TRUE/FALSE")));
    assert_eq!(reason(4), &Reason::NumberTooLong);
    assert!(!bad.has(5, "征集流水号") && !bad.has(5, "年度") && !bad.has(5, "应缴金额"));

    // The good row alone imports with serial "42" and 180.50 yuan.
    let path = write_file(dir.path(), "one", Form::Xlsx, &table(&ROSTER_ZH, &[rows[3].cells()]));
    let file = import::read_roster(&path, None).unwrap();
    assert_eq!(file.values[0].serial.as_str(), "42");
    assert_eq!(file.values[0].year, 2020);
    assert_eq!(file.values[0].amount_due, Some(Fen::from_yuan_str("180.50").unwrap()));
    assert_eq!(file.rows, [2]);
}

#[test]
fn scientific_notation_left_by_a_spreadsheet_program_is_named() {
    // A CSV opened and saved again in a spreadsheet program: the ID number and account became floats.
    let dir = tempfile::tempdir().unwrap();
    let r = Row { id_number: s("4.10402E+17"), ..row("S-1", "医疗", "", "甲", "280") };
    let path = write_file(dir.path(), "sci", Form::Utf8, &table(&ROSTER_ZH, &[r.cells()]));
    let bad = match import::read_roster(&path, None) {
        Err(ImportError::BadRows(b)) => b,
        other => panic!("{other:?}"),
    };
    assert_eq!(bad.problems.len(), 1, "{bad}");
    assert_eq!(bad.problems[0].reason, Reason::ScientificNotation("4.10402E+17".to_owned()));
    assert!(bad.to_string().contains("row 2, 身份证号: \"4.10402E+17\" is a number in scientific notation"), "{bad}");

    let a = id("410402", "19850101", "201");
    let c = collector(1, "001", &a, s("6.22202E+18"), s("13812345678"));
    let path = write_file(dir.path(), "csci", Form::Utf8, &table(&COLLECTORS_ZH, &[c]));
    match import::read_collectors(&path, None) {
        Err(ImportError::BadRows(b)) => assert!(matches!(b.problems[0].reason, Reason::ScientificNotation(_))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn csv_row_numbers_are_spreadsheet_rows() {
    // A blank line is a row of its own in a spreadsheet; a quoted cell's line break is not a new row.
    // LF and CRLF line ends, and a last line without one.
    let dir = tempfile::tempdir().unwrap();
    let n = id("410402", "19800115", "001");
    let crlf = format!(
        "\r\n{}\r\nA-1,医疗,{n},甲,2020,280,,P1\r\n\r\n\r\nA-2,医疗,{n},\"乙\r\n\r\n乙\",2020,280,,P1\r\nA-3,医疗,{n},丙,2020,9.999,,P1\r\n,,,,,,,\r\nA-4,医疗,{n},丁,1999,280,,P1",
        ROSTER_ZH[..8].join(",")
    );
    for text in [crlf.replace("\r\n", "\n"), crlf] {
        let path = dir.path().join("rows.csv");
        std::fs::write(&path, &text).unwrap();
        let bad = match import::read_roster(&path, None) {
            Err(ImportError::BadRows(b)) => b,
            other => panic!("{other:?}"),
        };
        // Header on row 2; A-1 row 3; blank rows 4 and 5; A-2 row 6 (its name has two line breaks: a
        // control character); A-3 row 7; a row of empty cells 8 (skipped); A-4 row 9.
        let rows: Vec<(u64, &str)> = bad.problems.iter().map(|p| (p.row, p.column.as_str())).collect();
        assert_eq!(rows, [(6, "姓名"), (7, "应缴金额"), (9, "年度")], "{text:?}: {bad}");
    }
}

// ---------------------------------------------------------------------------------------------------
// Roster: headers
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn english_headers_shuffled_with_spaces_and_an_unknown_column() {
    for form in FORMS {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let rows = good_rows();
        // Shuffled order, surrounding spaces (ASCII and full-width), mixed case, an unknown column.
        let order = [7, 3, 0, 9, 5, 1, 8, 2, 6, 4];
        let mut header: Vec<String> = order.iter().map(|&i| format!("  {} ", ROSTER_EN[i])).collect();
        header[1] = " NAME\u{3000}".to_owned();
        header.insert(4, "备注 (remarks)".to_owned());
        let header: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut bad = bad_rows()[0].0.clone();
        bad.serial = s("ZJ2020-0200");
        let cells: Vec<Vec<V>> = rows
            .iter()
            .chain(std::iter::once(&bad))
            .map(|r| {
                let c = r.cells();
                let mut out: Vec<V> = order.iter().map(|&i| c[i].clone()).collect();
                out.insert(4, s("whatever, ignored"));
                out
            })
            .collect();
        // With the bad row: reported under the file's own column name.
        let path = write_file(dir.path(), "en_bad", form, &table(&header, &cells));
        let problems = bad_rows_of(import::import_roster(&store, &path, opts()).await);
        assert_eq!(problems.problems.len(), 1, "{form:?}: {problems}");
        assert_eq!(problems.problems[0].row, rows.len() as u64 + 2);
        assert_eq!(problems.problems[0].column, "id_number");

        let path = write_file(dir.path(), "en", form, &table(&header, &cells[..rows.len()]));
        let summary = import::import_roster(&store, &path, opts()).await.unwrap();
        assert_eq!(summary.outcome.inserted, rows.len(), "{form:?}");
        assert_holds(&store, &rows).await;
    }
}

#[test]
fn missing_required_columns_are_named_in_one_error() {
    for form in FORMS {
        let dir = tempfile::tempdir().unwrap();
        // No serial, no year; amount_due (optional column) absent too.
        let header = ["insurance", "身份证号", "姓名", "征缴网点", "extra"];
        let path = write_file(dir.path(), "missing", form, &table(&header, &[vec![s("养老")]]));
        match import::read_roster(&path, None) {
            Err(ImportError::MissingColumns { missing, found }) => {
                assert_eq!(missing, ["征集流水号 (collection_serial)", "年度 (year)"], "{form:?}");
                assert!(found.contains(&"extra".to_owned()));
            }
            other => panic!("{form:?}: {other:?}"),
        }
    }
}

#[test]
fn a_column_given_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut header = ROSTER_ZH.to_vec();
    header.push("collection_serial");
    let path = write_file(dir.path(), "twice", Form::Utf8, &table(&header, &[]));
    match import::read_roster(&path, None) {
        Err(ImportError::DuplicateColumn { first, second, .. }) => {
            assert_eq!((first.as_str(), second.as_str()), ("A", "K"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn header_only_and_empty_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "header", Form::Utf8, &table(&ROSTER_ZH, &[]));
    assert!(matches!(import::read_roster(&path, None), Err(ImportError::NoRows)));
    let path = dir.path().join("empty.csv");
    std::fs::write(&path, "").unwrap();
    assert!(matches!(import::read_roster(&path, None), Err(ImportError::NoHeader)));
    std::fs::write(&path, "\n\n ,  ,\n").unwrap();
    assert!(matches!(import::read_roster(&path, None), Err(ImportError::NoHeader)));
}

// ---------------------------------------------------------------------------------------------------
// Encodings
// ---------------------------------------------------------------------------------------------------

#[test]
fn forced_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<V>> = good_rows().iter().map(Row::cells).collect();
    let gbk = write_file(dir.path(), "gbk", Form::Gb18030, &table(&ROSTER_ZH, &rows));
    let utf8 = write_file(dir.path(), "utf8", Form::Utf8Bom, &table(&ROSTER_ZH, &rows));

    // Forced to what it is: read, and said to be forced.
    let file = import::read_roster(&gbk, Some(TextEncoding::Gb18030)).unwrap();
    assert_eq!(file.values.len(), rows.len());
    assert!(matches!(file.kind, FileKind::Csv(e) if e.forced && e.encoding == TextEncoding::Gb18030));
    let file = import::read_roster(&utf8, Some(TextEncoding::Utf8)).unwrap();
    assert!(matches!(file.kind, FileKind::Csv(e) if e.forced && e.bom));

    // GBK forced as UTF-8: the first byte that is not UTF-8, in the header (row 1), is named.
    match import::read_roster(&gbk, Some(TextEncoding::Utf8)) {
        Err(ImportError::Decode(e)) => {
            assert_eq!((e.offset, e.line), (0, 1));
            assert!(e.to_string().contains("--encoding gb18030"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    // UTF-8 forced as GB18030 reads as other characters: no header name matches.
    assert!(matches!(
        import::read_roster(&utf8, Some(TextEncoding::Gb18030)),
        Err(ImportError::MissingColumns { .. }) | Err(ImportError::Decode(_))
    ));
    assert_eq!(TextEncoding::parse("GBK"), Some(TextEncoding::Gb18030));
    assert_eq!(TextEncoding::parse("utf-8"), Some(TextEncoding::Utf8));
    assert_eq!(TextEncoding::parse("latin1"), None);
}

#[test]
fn undecodable_bytes_are_located_by_offset_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<V>> = good_rows().iter().map(Row::cells).collect();
    let mut bytes = gb18030(&csv_text(&table(&ROSTER_ZH, &rows)));
    // Break the 4th line (row 4) with a byte GB18030 never has.
    let at = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').nth(2).unwrap().0 + 1;
    bytes[at] = 0xFF;
    let path = dir.path().join("broken.csv");
    std::fs::write(&path, &bytes).unwrap();
    match import::read_roster(&path, None) {
        Err(ImportError::Decode(e)) => {
            assert_eq!((e.encoding, e.offset, e.line), (TextEncoding::Gb18030, at as u64, 4));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_bytes_give_errors_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.csv");
    // xorshift64*: deterministic garbage.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let header = csv_text(&table(&ROSTER_ZH, &[]));
    for round in 0..300 {
        let len = (next() % 4000) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match round % 5 {
            // A real header first, garbage rows after.
            1 => bytes.splice(0..0, header.bytes()).for_each(drop),
            // Mostly text: commas, quotes, line breaks, digits.
            2 => bytes.iter_mut().for_each(|b| *b = b",\"\n\r0123456789Xx-"[(*b % 17) as usize]),
            // Looks like a workbook (ZIP magic) or a legacy .xls.
            3 => bytes.splice(0..0, *b"PK\x03\x04").for_each(drop),
            4 => bytes.splice(0..0, *b"\xD0\xCF\x11\xE0").for_each(drop),
            _ => {}
        }
        if round % 5 == 2 {
            bytes.splice(0..0, header.bytes()).for_each(drop);
        }
        std::fs::write(&path, &bytes).unwrap();
        for enc in [None, Some(TextEncoding::Utf8), Some(TextEncoding::Gb18030)] {
            let r = import::read_roster(&path, enc);
            assert!(r.is_err(), "round {round}: garbage accepted: {:?}", r.map(|f| f.values.len()));
            let _ = r.map_err(|e| e.to_string());
            assert!(import::read_collectors(&path, enc).is_err());
        }
    }
}

#[test]
fn utf16_and_legacy_xls_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("u16.csv");
    let mut bytes = vec![0xFF, 0xFE];
    for u in "征集流水号\t险种\r\n".encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(&path, &bytes).unwrap();
    let e = import::read_roster(&path, None).unwrap_err();
    assert!(matches!(e, ImportError::Unsupported(_)) && e.to_string().contains("UTF-16"), "{e}");
    std::fs::write(&path, b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1").unwrap();
    let e = import::read_roster(&path, None).unwrap_err();
    assert!(e.to_string().contains(".xls"), "{e}");
    let e = import::read_roster(&dir.path().join("absent.csv"), None).unwrap_err();
    assert!(matches!(e, ImportError::Open { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------------
// Re-import, conflicts, update
// ---------------------------------------------------------------------------------------------------

#[tokio::test]
async fn reimport_is_a_noop() {
    for form in FORMS {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let rows = good_rows();
        let cells: Vec<Vec<V>> = rows.iter().map(Row::cells).collect();
        let path = write_file(dir.path(), "roster", form, &table(&ROSTER_ZH, &cells));
        import::import_roster(&store, &path, opts()).await.unwrap();
        let stored_before = store.roster_line(&rows[0].expected().serial, Insurance::Medical, 2020).await.unwrap();
        let again = import::import_roster(&store, &path, opts()).await.unwrap();
        assert_eq!((again.outcome.inserted, again.outcome.unchanged, again.outcome.updated), (0, rows.len(), 0));
        let again = import::import_roster(&store, &path, ImportOptions { update: true, ..opts() }).await.unwrap();
        assert_eq!((again.outcome.inserted, again.outcome.unchanged, again.outcome.updated), (0, rows.len(), 0));
        assert_eq!(store.count_roster_lines().await.unwrap(), rows.len() as u64);
        let stored_after = store.roster_line(&rows[0].expected().serial, Insurance::Medical, 2020).await.unwrap();
        assert_eq!(stored_before, stored_after, "{form:?}");
    }
}

/// The good rows, then the same file with row 3 (ZJ2020-0002) given an amount and row 4 (ZJ2020-0003)
/// a new name, plus one new row 8.
fn changed_rows() -> (Vec<Row>, Vec<Row>) {
    let rows = good_rows();
    let mut changed = rows.clone();
    changed[1].amount = s("300");
    changed[2].name = "王五一";
    changed.push(row("ZJ2020-0099", "医疗", &id("410402", "19950505", "505"), "新户", "280"));
    (rows, changed)
}

#[tokio::test]
async fn a_conflict_is_reported_with_its_row_and_nothing_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let (rows, changed) = changed_rows();
    let cells = |rs: &[Row]| rs.iter().map(Row::cells).collect::<Vec<_>>();
    let first = write_file(dir.path(), "v1", Form::Utf8, &table(&ROSTER_ZH, &cells(&rows)));
    let second = write_file(dir.path(), "v2", Form::Utf8, &table(&ROSTER_ZH, &cells(&changed)));
    import::import_roster(&store, &first, opts()).await.unwrap();

    let conflicts = match import::import_roster(&store, &second, opts()).await {
        Err(ImportError::Conflicts(c)) => c,
        other => panic!("{other:?}"),
    };
    let found: Vec<(u64, &ConflictKind)> = conflicts.iter().map(|c| (c.row(), &c.conflict.kind)).collect();
    assert_eq!(found.len(), 2, "{conflicts:?}");
    assert!(matches!(found[0], (3, ConflictKind::Differs { fields }) if *fields == ["amount_due"]));
    assert!(matches!(found[1], (4, ConflictKind::Differs { fields }) if *fields == ["name"]));
    let text = ImportError::Conflicts(conflicts.clone()).to_string();
    assert!(text.contains("row 3 (2020/pension/ZJ2020-0002)") && text.contains("nothing was imported"), "{text}");

    // Not applied: the old content stays, and the new row 8 was not inserted either.
    assert_eq!(store.count_roster_lines().await.unwrap(), rows.len() as u64);
    assert_holds(&store, &rows).await;
}

#[tokio::test]
async fn update_applies_to_unpaid_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let (rows, changed) = changed_rows();
    let cells = |rs: &[Row]| rs.iter().map(Row::cells).collect::<Vec<_>>();
    let first = write_file(dir.path(), "v1", Form::Utf8, &table(&ROSTER_ZH, &cells(&rows)));
    let second = write_file(dir.path(), "v2", Form::Xlsx, &table(&ROSTER_ZH, &cells(&changed)));
    import::import_roster(&store, &first, opts()).await.unwrap();
    let summary = import::import_roster(&store, &second, ImportOptions { update: true, ..opts() }).await.unwrap();
    assert_eq!((summary.outcome.inserted, summary.outcome.unchanged, summary.outcome.updated), (1, 4, 2));
    assert_holds(&store, &changed).await;
    assert!(summary.to_string().contains("1 inserted, 4 unchanged, 2 updated"), "{summary}");
}

#[tokio::test]
async fn update_does_not_touch_a_line_with_a_payment_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let (rows, changed) = changed_rows();
    let cells = |rs: &[Row]| rs.iter().map(Row::cells).collect::<Vec<_>>();
    let first = write_file(dir.path(), "v1", Form::Utf8, &table(&ROSTER_ZH, &cells(&rows)));
    let second = write_file(dir.path(), "v2", Form::Utf8, &table(&ROSTER_ZH, &cells(&changed)));
    import::import_roster(&store, &first, opts()).await.unwrap();

    // A card payment for row 4's line (ZJ2020-0003) is recorded, its outcome not yet known.
    let terminal = zhengjiao_protocol::Ascii::<8>::new("T0000001").unwrap();
    store
        .register_terminal(Terminal {
            id: terminal,
            name: "T01".to_owned(),
            collection_point: CollectionPointCode::parse("WD-01").unwrap(),
            merchant_id: None,
            link: "tcp:127.0.0.1:9".to_owned(),
        })
        .await
        .unwrap();
    let line = rows[2].expected();
    store
        .record_payment_created(NewPayment {
            id: zhengjiao_protocol::EcrReference::new("PAY-0001").unwrap(),
            line: LineKey { serial: line.serial.clone(), insurance: line.insurance, year: line.year },
            amount: line.amount_due.unwrap(),
            terminal,
            till: zhengjiao_protocol::Ascii::<8>::new("1").unwrap(),
            operator: StaffNumber::parse("001").unwrap(),
        })
        .await
        .unwrap();

    let conflicts = match import::import_roster(&store, &second, ImportOptions { update: true, ..opts() }).await {
        Err(ImportError::Conflicts(c)) => c,
        other => panic!("{other:?}"),
    };
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].row(), 4);
    assert!(matches!(&conflicts[0].conflict.kind, ConflictKind::PaymentUnderWay { .. }));
    // All or nothing: the unpaid row 3 was not updated either.
    assert_holds(&store, &rows).await;
}

// ---------------------------------------------------------------------------------------------------
// Collector register
// ---------------------------------------------------------------------------------------------------

const COLLECTORS_ZH: [&str; 10] = [
    "序号",
    "代征点名称",
    "代征点编码",
    "代征人员姓名",
    "工号",
    "身份证号",
    "开户行名称",
    "开户行",
    "银行账号",
    "联系电话",
];

fn collector(no: u32, staff: &str, id_number: &str, account: V, phone: V) -> Vec<V> {
    vec![
        V::S(no.to_string()),
        s("光明路社区卫生服务站"),
        s("WD-01"),
        s("刘护士"),
        s(staff),
        s(id_number),
        s("中国工商银行"),
        s("平顶山卫东支行"),
        account,
        phone,
    ]
}

#[tokio::test]
async fn collector_register_good_and_bad() {
    for form in FORMS {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path()).await;
        let a = id("410402", "19850101", "201");
        let b = id("410402", "19860202", "202");
        let c = id_with_x();
        let good = vec![
            collector(1, "001", &a, s("6222 0217 0500 1234 567"), s("13812345678")),
            collector(2, "002", &b, s("410402010001234"), s("0375-2345678")),
            collector(3, "003", &c, s("622202170500123456"), s("03752345678")),
        ];
        let path = write_file(dir.path(), "collectors", form, &table(&COLLECTORS_ZH, &good));
        let summary = import::import_collectors(&store, &path, opts()).await.unwrap();
        assert_eq!(summary.outcome.inserted, 3, "{form:?}");
        let held = store.collectors().await.unwrap();
        assert_eq!(held.len(), 3);
        let first: &Collector = held.iter().find(|c| c.staff_no.as_str() == "001").unwrap();
        assert_eq!(first.bank_account, "6222021705001234567");
        assert_eq!(first.phone, "13812345678");
        assert_eq!(first.id_number.as_str(), a);
        assert_eq!(first.no, Some(1));
        // Again: a no-op.
        let again = import::import_collectors(&store, &path, opts()).await.unwrap();
        assert_eq!((again.outcome.inserted, again.outcome.unchanged), (0, 3));

        let bad = vec![
            collector(1, "011", &a, s("12345678901"), s("13812345678")),
            collector(2, "012", &a, s("6222-0217"), s("13812345678")),
            collector(3, "013", &a, s(&"1".repeat(31)), s("13812345678")),
            collector(4, "014", &a, s("622202170500123456"), s("1381234567")),
            collector(5, "015", &a, s("622202170500123456"), s("23812345678")),
            collector(6, "016", &a, s("622202170500123456"), s("375-2345678")),
            collector(7, "017", &with_bad_check(&a), s("622202170500123456"), s("13812345678")),
            collector(8, "018", OLD_ID, s("622202170500123456"), s("13812345678")),
            collector(9, "011", &b, s("622202170500123456"), s("13812345678")),
            collector(10, "", &b, s("622202170500123456"), s("13812345678")),
        ];
        let expected = [
            (2, "银行账号"),
            (3, "银行账号"),
            (4, "银行账号"),
            (5, "联系电话"),
            (6, "联系电话"),
            (7, "联系电话"),
            (8, "身份证号"),
            (9, "身份证号"),
            (10, "工号"),
            (11, "工号"),
        ];
        let path = write_file(dir.path(), "bad", form, &table(&COLLECTORS_ZH, &bad));
        let found = match import::import_collectors(&store, &path, opts()).await {
            Err(ImportError::BadRows(b)) => b,
            other => panic!("{form:?}: {other:?}"),
        };
        let got: Vec<(u64, &str)> = found.problems.iter().map(|p| (p.row, p.column.as_str())).collect();
        assert_eq!(got, expected, "{form:?}: {found}");
        assert!(found.problems[0].reason.to_string().contains("12 to 30 digits"));
        assert!(found.problems[8].reason.to_string().contains("already on row 2"));
        assert_eq!(store.collectors().await.unwrap().len(), 3, "nothing written");
    }
}

#[test]
fn collector_numbers_in_a_spreadsheet() {
    let dir = tempfile::tempdir().unwrap();
    let a = id("410402", "19850101", "201");
    let rows = vec![
        // A mobile number and a 15-digit account typed as numbers: exact, read as their digits.
        collector(1, "001", &a, V::N(410_402_010_001_234.0), V::N(13_812_345_678.0)),
        // A 19-digit account typed as a number has lost digits.
        collector(2, "002", &a, V::N(6_222_021_705_001_234_567.0), s("13812345678")),
        // A landline typed as a number has lost its leading 0.
        collector(3, "003", &a, s("622202170500123456"), V::N(37_523_456_789.0)),
    ];
    let path = write_file(dir.path(), "nums", Form::Xlsx, &table(&COLLECTORS_ZH, &rows));
    let bad = match import::read_collectors(&path, None) {
        Err(ImportError::BadRows(b)) => b,
        other => panic!("{other:?}"),
    };
    let got: Vec<(u64, &str)> = bad.problems.iter().map(|p| (p.row, p.column.as_str())).collect();
    assert_eq!(got, [(3, "银行账号"), (4, "联系电话")], "{bad}");
    assert_eq!(bad.problems[0].reason, Reason::NumberTooLong);
}

// ---------------------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------------------

fn count_lines(data_dir: &Path) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(import::journal_path(data_dir), JournalOptions::default()).await.unwrap();
        let n = store.count_roster_lines().await.unwrap();
        store.close().await;
        n
    })
}

#[test]
fn roster_import_command_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let rows: Vec<Vec<V>> = good_rows().iter().map(Row::cells).collect();
    let good = write_file(dir.path(), "good", Form::Gb18030, &table(&ROSTER_ZH, &rows));
    let mut with_bad = rows.clone();
    with_bad.push(bad_rows()[0].0.cells());
    let bad = write_file(dir.path(), "bad", Form::Utf8, &table(&ROSTER_ZH, &with_bad));

    // A bad file first: refused before the journal is even created.
    assert_eq!(import::roster_import_command(&data_dir, &bad, opts()), ExitCode::from(1));
    assert!(!import::journal_path(&data_dir).exists());

    assert_eq!(import::roster_import_command(&data_dir, &good, opts()), ExitCode::SUCCESS);
    assert_eq!(count_lines(&data_dir), rows.len() as u64);
    // Re-import: a no-op, still success.
    assert_eq!(import::roster_import_command(&data_dir, &good, opts()), ExitCode::SUCCESS);
    assert_eq!(import::roster_import_command(&data_dir, &bad, opts()), ExitCode::from(1));
    assert_eq!(count_lines(&data_dir), rows.len() as u64);

    // A conflict: exit 1, nothing applied; with update: applied, exit 0.
    let (_, changed) = changed_rows();
    let changed_cells: Vec<Vec<V>> = changed.iter().map(Row::cells).collect();
    let v2 = write_file(dir.path(), "v2", Form::Xlsx, &table(&ROSTER_ZH, &changed_cells));
    assert_eq!(import::roster_import_command(&data_dir, &v2, opts()), ExitCode::from(1));
    assert_eq!(count_lines(&data_dir), rows.len() as u64);
    let update = ImportOptions { update: true, ..opts() };
    assert_eq!(import::roster_import_command(&data_dir, &v2, update), ExitCode::SUCCESS);
    assert_eq!(count_lines(&data_dir), changed.len() as u64);

    // Forcing the wrong encoding: refused.
    let forced = ImportOptions { encoding: Some(TextEncoding::Utf8), ..opts() };
    assert_eq!(import::roster_import_command(&data_dir, &good, forced), ExitCode::from(1));
}

#[test]
fn collectors_import_command_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let a = id("410402", "19850101", "201");
    let good = write_file(
        dir.path(),
        "c",
        Form::Utf8Bom,
        &table(&COLLECTORS_ZH, &[collector(1, "001", &a, s("622202170500123456"), s("13812345678"))]),
    );
    let bad = write_file(
        dir.path(),
        "cbad",
        Form::Utf8,
        &table(&COLLECTORS_ZH, &[collector(1, "001", &a, s("6222"), s("13812345678"))]),
    );
    assert_eq!(import::collectors_import_command(&data_dir, &bad, opts()), ExitCode::from(1));
    assert_eq!(import::collectors_import_command(&data_dir, &good, opts()), ExitCode::SUCCESS);
    assert_eq!(import::collectors_import_command(&data_dir, &good, opts()), ExitCode::SUCCESS);
}

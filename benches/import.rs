//! Roster import throughput: a generated roster of 1,000,000 rows (CSV, UTF-8) is read and checked,
//! then imported in full into a fresh journal. Prints seconds and rows/s of each step.
//!
//! ```sh
//! cargo bench --bench import                      # 1,000,000 rows
//! ZJ_IMPORT_BENCH_ROWS=100000 cargo bench --bench import
//! ```
//!
//! The goal (issue 4): the full import of 1,000,000 rows in under 20 s on the 2-core machine.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use zhengjiao::import::{self, ImportOptions};
use zhengjiao::journal::{JournalOptions, SqliteStore, Store};

const DEFAULT_ROWS: usize = 1_000_000;
const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const REGIONS: [&str; 4] = ["410402", "410403", "410404", "410411"];
const SURNAMES: [&str; 8] = ["张", "王", "李", "赵", "刘", "陈", "杨", "欧阳"];
const GIVEN: [&str; 8] = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强"];
const TIERS: [u32; 15] = [200, 300, 400, 500, 600, 700, 800, 900, 1000, 1500, 2000, 2500, 3000, 4000, 5000];

/// A valid ID number for person `i`: region, a real birth date, a sequence number, the check character.
fn id_number(i: usize, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    let year = 1960 + (i % 45);
    let month = 1 + (i / 45) % 12;
    let day = 1 + (i / 540) % 28;
    let _ = write!(out, "{}{year:04}{month:02}{day:02}{:03}", REGIONS[i % 4], (i / 15_120) % 1000);
    let sum: u32 = out.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    out.push(char::from(b"10X98765432"[(sum % 11) as usize]));
}

/// Writes a roster of `rows` lines: every person has a medical line and, one in two, a pension line;
/// one in 20 is 低保 (medical 180 yuan) and one in 50 特困 (medical 0).
fn generate(path: &Path, rows: usize) -> usize {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    w.write_all("\u{feff}征集流水号,险种,身份证号,姓名,年度,应缴金额,困难类别,征缴网点,街道,社区村\n".as_bytes())
        .unwrap();
    let mut id = String::new();
    let (mut written, mut person) = (0, 0);
    while written < rows {
        id_number(person, &mut id);
        let name = format!("{}{}", SURNAMES[person % 8], GIVEN[(person / 8) % 8]);
        let (hardship, medical) = match person % 100 {
            0 | 50 => ("特困", "0"),
            n if n % 20 == 5 => ("低保", "180"),
            _ => ("", "280"),
        };
        let point = format!("WD-{:02}", person % 40);
        writeln!(w, "ZJ2020M{person:08},医疗,{id},{name},2020,{medical},{hardship},{point},建设路街道,东环路社区")
            .unwrap();
        written += 1;
        if person % 2 == 0 && written < rows {
            let tier = TIERS[(person / 2) % 15];
            writeln!(w, "ZJ2020P{person:08},养老,{id},{name},2020,{tier},,{point},建设路街道,东环路社区").unwrap();
            written += 1;
        }
        person += 1;
    }
    w.flush().unwrap();
    written
}

fn rate(rows: usize, d: Duration) -> String {
    format!("{:>7.2} s  {:>10.0} rows/s", d.as_secs_f64(), rows as f64 / d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let rows = std::env::var("ZJ_IMPORT_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ROWS);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("roster.csv");
    let t = Instant::now();
    let rows = generate(&path, rows);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "roster import bench: {rows} rows, {:.1} MB CSV (UTF-8 with BOM), generated in {:.2} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    // 1. Read and check alone (decode, CSV, domain types, duplicate keys).
    let t = Instant::now();
    let file = import::read_roster(&path, None).unwrap();
    let read = t.elapsed();
    assert_eq!(file.values.len(), rows);
    drop(file);
    println!("  read + check                {}", rate(rows, read));

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        // 2. The full import into a fresh journal: read + check + one import transaction.
        let t = Instant::now();
        let store = SqliteStore::open(dir.path().join("journal.sqlite"), JournalOptions::default()).await.unwrap();
        let opened = t.elapsed();
        let file = import::read_roster(&path, None).unwrap();
        let checked = t.elapsed();
        let summary = import::apply_roster(&store, file, false).await.unwrap();
        let full = t.elapsed();
        assert_eq!(summary.outcome.inserted, rows);
        println!("  full import (fresh journal) {}", rate(rows, full));
        println!(
            "    of which: open {:.2} s, read + check {:.2} s, journal write {:.2} s",
            opened.as_secs_f64(),
            (checked - opened).as_secs_f64(),
            (full - checked).as_secs_f64()
        );

        // 3. Re-importing the same file: every row unchanged.
        let t = Instant::now();
        let again = import::import_roster(&store, &path, ImportOptions::default()).await.unwrap();
        let reimport = t.elapsed();
        assert_eq!(again.outcome.unchanged, rows);
        println!("  re-import (all unchanged)   {}", rate(rows, reimport));
        assert_eq!(store.count_roster_lines().await.unwrap(), rows as u64);
        store.close().await;
        println!(
            "  goal: full import of 1,000,000 rows under 20 s: {}",
            if rows != DEFAULT_ROWS {
                "not measured (row count changed)"
            } else if full < Duration::from_secs(20) {
                "met"
            } else {
                "MISSED"
            }
        );
    });
}

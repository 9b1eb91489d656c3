//! The reports (issue 7, item 2) on a journal built through the `Store` API: three business days
//! (2020-10-21, 2020-10-22, 2020-11-02) at two collection points, with approvals, a decline, a payment
//! under way, a void, two refunds, forwarded entries, a dead letter and three settlements.
//!
//! What the test did is kept in a [`Model`], and every figure of every report is checked against
//! figures the test computes from that model (never by calling `src/report`). The CSV is parsed back
//! (csv crate) and the XLSX opened (calamine) and compared cell by cell; the API is served over real
//! HTTP on loopback, and the `zhengjiao report` verb runs as the real binary against it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod journal_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use calamine::{Data, Reader, Xlsx};
use journal_support::{approved, id_number, line, options, reference, terminal, POINT, TERMINAL};
use serde_json::{json, Value};
use time::macros::{date, datetime, offset};
use time::{Date, OffsetDateTime};
use zhengjiao::clock::Clock;
use zhengjiao::domain::{CollectionPointCode, CollectionSerial, Fen, Hardship, Insurance, PersonName, StaffNumber};
use zhengjiao::journal::{
    BatchTotals, JournalOptions, LineKey, NewPayment, NewReversal, PaymentState, ReversalKind, RosterLine, SqliteStore,
    Store, Terminal, TerminalSaid,
};
use zhengjiao::ledger::LedgerStatus;
use zhengjiao::policy::Policy;
use zhengjiao::report::{self, Cell, CellKind, Report};
use zhengjiao_protocol::message::{Batch, TerminalId, Till};
use zhengjiao_protocol::ResponseCode;

/// Collection point A (terminal T01) and B (terminal T02).
const A: &str = POINT;
const B: &str = "WD-002";
const TERMINAL_B: &str = "T0000002";
const DAY1: Date = date!(2020 - 10 - 21);
const DAY2: Date = date!(2020 - 10 - 22);
const DAY3: Date = date!(2020 - 11 - 02);
const NAMES: [&str; 4] = ["张三", "李四", "王五", "赵六"];

// ---- The model: what the test did, and the figures it expects ----

/// One payment the test made.
#[derive(Debug, Clone)]
struct Paid {
    id: String,
    line: RosterLine,
    point: &'static str,
    terminal: &'static str,
    fen: i64,
    day: Date,
    approved: bool,
    under_way: bool,
    forwarded: bool,
    reversal: Option<(ReversalKind, Date)>,
}

/// One settlement the test recorded.
#[derive(Debug, Clone)]
struct Settled {
    day: Date,
    point: &'static str,
    terminal: &'static str,
    terminal_totals: BatchTotals,
    journal_totals: BatchTotals,
}

#[derive(Debug, Default)]
struct Model {
    lines: Vec<RosterLine>,
    payments: Vec<Paid>,
    settlements: Vec<Settled>,
    /// Outbox entries in the order written, with their collection point.
    outbox: Vec<(String, &'static str)>,
    /// Entries forwarded, and dead letters.
    forwarded: BTreeSet<String>,
    dead: BTreeSet<String>,
}

impl Model {
    fn payment(&self, id: &str) -> &Paid {
        self.payments.iter().find(|p| p.id == id).unwrap()
    }

    fn payment_mut(&mut self, id: &str) -> &mut Paid {
        self.payments.iter_mut().find(|p| p.id == id).unwrap()
    }

    /// The totals of a terminal's (single) batch as of the end of `day`: approved sales, approved
    /// voids and refunds.
    fn batch_totals(&self, terminal: &str, day: Date) -> BatchTotals {
        let mut t = BatchTotals::default();
        for p in self.payments.iter().filter(|p| p.terminal == terminal && p.approved && p.day <= day) {
            t.sale_count += 1;
            t.sale_fen += p.fen;
            match p.reversal {
                Some((ReversalKind::Void, d)) if d <= day => {
                    t.void_count += 1;
                    t.void_fen += p.fen;
                }
                Some((ReversalKind::Refund, d)) if d <= day => {
                    t.refund_count += 1;
                    t.refund_fen += p.fen;
                }
                _ => {}
            }
        }
        t
    }
}

/// A line of the test roster.
fn roster_line(
    n: u32,
    point: &str,
    insurance: Insurance,
    due: Option<i64>,
    hardship: Hardship,
    street: Option<&str>,
    community: Option<&str>,
) -> RosterLine {
    RosterLine {
        serial: CollectionSerial::parse(&format!("ZJ-{n:07}")).unwrap(),
        insurance,
        name: PersonName::parse(NAMES[n as usize % NAMES.len()]).unwrap(),
        amount_due: due.map(Fen::from_fen),
        hardship,
        collection_point: CollectionPointCode::parse(point).unwrap(),
        street: street.map(str::to_owned),
        community: community.map(str::to_owned),
        ..line(n)
    }
}

fn medical(n: u32, point: &str, street: Option<&str>, community: Option<&str>) -> RosterLine {
    roster_line(n, point, Insurance::Medical, Some(28_000), Hardship::None, street, community)
}

fn pension(n: u32, point: &str, street: Option<&str>) -> RosterLine {
    roster_line(n, point, Insurance::Pension, None, Hardship::None, street, None)
}

/// The roster: lines of A and B, a person listed twice (line 50 is person 1's), a line of 2019.
fn roster() -> Vec<RosterLine> {
    let (gm, da) = (Some("光明路街道"), Some("东安路街道"));
    vec![
        medical(1, A, gm, Some("一社区")),
        medical(2, A, gm, Some("二社区")),
        medical(3, A, gm, Some("一社区")),
        roster_line(4, A, Insurance::Medical, Some(14_000), Hardship::Dibao, gm, Some("二社区")),
        medical(5, A, da, None),
        medical(6, A, None, None),
        medical(7, A, da, Some("三社区")),
        roster_line(8, A, Insurance::Medical, Some(0), Hardship::Tekun, da, Some("三社区")),
        medical(9, A, gm, Some("一社区")),
        RosterLine { id_number: id_number(1), ..medical(50, A, gm, Some("一社区")) },
        RosterLine { year: 2019, ..medical(60, A, gm, None) },
        pension(21, A, da),
        pension(22, A, da),
        pension(23, A, gm),
        pension(24, A, gm),
        pension(25, A, None),
        medical(31, B, Some("北环路街道"), None),
        medical(32, B, Some("北环路街道"), None),
        pension(33, B, Some("北环路街道")),
        medical(34, B, None, None),
        medical(35, B, Some("北环路街道"), Some("四社区")),
    ]
}

fn terminal_b() -> Terminal {
    Terminal {
        id: TerminalId::new(TERMINAL_B).unwrap(),
        name: "T02".to_owned(),
        collection_point: CollectionPointCode::parse(B).unwrap(),
        merchant_id: None,
        link: "tcp:127.0.0.1:9101".to_owned(),
    }
}

/// Opens the journal with its business clock at 09:00 of `day`.
async fn open_on(path: &Path, day: Date) -> SqliteStore {
    let clock = Clock::starting_at(day.with_hms(9, 0, 0).unwrap().assume_offset(offset!(+8)));
    SqliteStore::open(path, JournalOptions { clock, ..options() }).await.unwrap()
}

/// Builds the journal day by day, keeping the model.
struct Builder {
    store: SqliteStore,
    model: Model,
    day: Date,
    trace: u64,
}

impl Builder {
    fn serial_line(&self, n: u32) -> RosterLine {
        let serial = format!("ZJ-{n:07}");
        self.model.lines.iter().find(|l| l.serial.as_str() == serial && l.year == 2020).unwrap().clone()
    }

    /// Payment `id` of line `n` for `fen` on the terminal of `point`, ending as `end`.
    async fn pay(&mut self, id: &str, n: u32, fen: i64, end: PaymentState) {
        let line = self.serial_line(n);
        let point = if line.collection_point.as_str() == A { A } else { B };
        let terminal = if point == A { TERMINAL } else { TERMINAL_B };
        self.store
            .record_payment_created(NewPayment {
                id: reference(id),
                line: LineKey { serial: line.serial.clone(), insurance: line.insurance, year: line.year },
                amount: Fen::from_fen(fen),
                terminal: TerminalId::new(terminal).unwrap(),
                till: Till::new("01").unwrap(),
                operator: StaffNumber::parse("0001").unwrap(),
            })
            .await
            .unwrap();
        self.store.transition(&reference(id), PaymentState::Sent, TerminalSaid::default()).await.unwrap();
        match end {
            PaymentState::Approved => {
                self.trace += 1;
                self.store.transition(&reference(id), PaymentState::Approved, approved(fen, self.trace)).await.unwrap();
                self.model.outbox.push((id.to_owned(), point));
            }
            PaymentState::Declined => {
                let said = TerminalSaid {
                    code: Some(ResponseCode::new("51").unwrap()),
                    text: Some("余额不足".to_owned()),
                    ..TerminalSaid::default()
                };
                self.store.transition(&reference(id), PaymentState::Declined, said).await.unwrap();
            }
            // Left sent: its outcome is open.
            _ => {}
        }
        self.model.payments.push(Paid {
            id: id.to_owned(),
            line,
            point,
            terminal,
            fen,
            day: self.day,
            approved: end == PaymentState::Approved,
            under_way: end == PaymentState::Sent,
            forwarded: false,
            reversal: None,
        });
    }

    /// An approved void or refund of payment `id`, today.
    async fn reverse(&mut self, id: &str, kind: ReversalKind) {
        let p = self.model.payment(id).clone();
        let rid = reference(&format!("{id}-{}1", if kind == ReversalKind::Void { "V" } else { "R" }));
        self.store
            .record_reversal_created(NewReversal {
                id: rid,
                payment: reference(id),
                kind,
                amount: Fen::from_fen(p.fen),
                terminal: TerminalId::new(p.terminal).unwrap(),
                operator: StaffNumber::parse("9001").unwrap(),
            })
            .await
            .unwrap();
        self.store.transition_reversal(&rid, PaymentState::Sent, TerminalSaid::default()).await.unwrap();
        self.trace += 1;
        self.store.transition_reversal(&rid, PaymentState::Approved, approved(p.fen, self.trace)).await.unwrap();
        self.model.outbox.push((format!("{id}-reversal"), p.point));
        let day = self.day;
        self.model.payment_mut(id).reversal = Some((kind, day));
    }

    /// The ledger acknowledges entry `entry`.
    async fn forward(&mut self, entry: &str) {
        self.store.mark_forwarded(entry, &format!("3000{:016}", self.model.forwarded.len())).await.unwrap();
        self.model.forwarded.insert(entry.to_owned());
        if let Some(p) = self.model.payments.iter_mut().find(|p| p.id == entry) {
            p.forwarded = true;
        }
    }

    /// The ledger rejects entry `entry` for good.
    async fn reject(&mut self, entry: &str) {
        self.store.mark_forward_failed(entry, "exists_with_different_content", true).await.unwrap();
        self.model.dead.insert(entry.to_owned());
    }

    /// Settles the terminal of `point`; the terminal reports `extra_sale` more than the journal.
    async fn settle(&mut self, point: &'static str, extra_sale: i64) {
        let terminal = if point == A { TERMINAL } else { TERMINAL_B };
        let (id, batch) = (TerminalId::new(terminal).unwrap(), Batch::new("000001").unwrap());
        let journal_totals = self.store.batch_totals(&id, &batch).await.unwrap();
        assert_eq!(journal_totals, self.model.batch_totals(terminal, self.day), "the journal's batch totals");
        let mut terminal_totals = journal_totals;
        if extra_sale > 0 {
            terminal_totals.sale_count += 1;
            terminal_totals.sale_fen += extra_sale;
        }
        self.store.record_settlement(&id, &batch, terminal_totals, journal_totals).await.unwrap();
        self.model.settlements.push(Settled { day: self.day, point, terminal, terminal_totals, journal_totals });
    }

    async fn next_day(&mut self, path: &Path, day: Date) {
        self.store.close().await;
        self.store = open_on(path, day).await;
        self.day = day;
    }
}

/// The journal of the three days, open with its clock on the third; and the model.
async fn build(path: &Path) -> (SqliteStore, Model) {
    let store = open_on(path, DAY1).await;
    let lines = roster();
    store.import_roster(lines.clone(), false).await.unwrap();
    store.register_terminal(terminal()).await.unwrap();
    store.register_terminal(terminal_b()).await.unwrap();
    let mut b = Builder { store, model: Model { lines, ..Model::default() }, day: DAY1, trace: 0 };
    use PaymentState::{Approved, Declined, Sent};

    // Day 1, 2020-10-21.
    b.pay("P00001", 1, 28_000, Approved).await;
    b.pay("P00002", 2, 28_000, Approved).await;
    b.pay("P00003", 3, 28_000, Approved).await;
    b.pay("P00004", 4, 14_000, Approved).await;
    b.pay("P00005", 5, 28_000, Declined).await;
    b.pay("P00006", 6, 28_000, Sent).await;
    b.pay("P00021", 21, 30_000, Approved).await;
    b.pay("P00022", 22, 30_000, Approved).await;
    b.pay("P00023", 23, 50_000, Approved).await;
    b.pay("P00031", 31, 28_000, Approved).await;
    b.pay("P00032", 32, 28_000, Approved).await;
    b.pay("P00033", 33, 20_000, Approved).await;
    b.reverse("P00002", ReversalKind::Void).await;
    for entry in ["P00001", "P00003", "P00004", "P00021", "P00023", "P00031", "P00033"] {
        b.forward(entry).await;
    }
    b.reject("P00032").await;
    b.settle(A, 0).await;
    b.settle(B, 28_000).await;

    // Day 2, 2020-10-22: a refund of a payment of day 1, a new payment.
    b.next_day(path, DAY2).await;
    b.reverse("P00003", ReversalKind::Refund).await;
    b.pay("P00007", 7, 28_000, Approved).await;
    b.forward("P00007").await;
    b.settle(A, 0).await;

    // Day 3, 2020-11-02: a refund of an October payment the ledger holds, November payments.
    b.next_day(path, DAY3).await;
    b.pay("P00024", 24, 100_000, Approved).await;
    b.pay("P00034", 34, 28_000, Approved).await;
    b.reverse("P00021", ReversalKind::Refund).await;
    for entry in ["P00024", "P00034", "P00003-reversal"] {
        b.forward(entry).await;
    }
    (b.store, b.model)
}

// ---- Reading a report's cells ----

/// The rows of a report as maps from column key to cell.
fn rows(r: &Report) -> Vec<BTreeMap<String, Cell>> {
    r.rows.iter().map(|row| r.columns.iter().map(|c| c.key.clone()).zip(row.iter().cloned()).collect()).collect()
}

fn count(row: &BTreeMap<String, Cell>, key: &str) -> i64 {
    row[key].as_count().unwrap_or_else(|| panic!("{key} is not a count: {row:?}"))
}

fn fen(row: &BTreeMap<String, Cell>, key: &str) -> i64 {
    row[key].as_money().unwrap_or_else(|| panic!("{key} is not money: {row:?}")).as_fen()
}

fn text<'a>(row: &'a BTreeMap<String, Cell>, key: &str) -> &'a str {
    row[key].as_text().unwrap_or_else(|| panic!("{key} is not text: {row:?}"))
}

fn policy() -> Policy {
    Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/2020-weidong.toml")).unwrap()
}

// ---- Daily ----

/// Expected daily figures per (point, insurance, tier fen or 0): [approved n, fen, void n, fen,
/// refund n, fen].
fn expected_daily(m: &Model, day: Date, point: Option<&str>) -> BTreeMap<(String, String, i64), [i64; 6]> {
    let mut out: BTreeMap<(String, String, i64), [i64; 6]> = BTreeMap::new();
    for p in m.payments.iter().filter(|p| point.is_none_or(|q| q == p.point)) {
        let tier = if p.line.insurance == Insurance::Pension { p.fen } else { 0 };
        let key = (p.point.to_owned(), p.line.insurance.code().to_owned(), tier);
        if p.approved && p.day == day {
            let f = out.entry(key.clone()).or_default();
            f[0] += 1;
            f[1] += p.fen;
        }
        if let Some((kind, d)) = p.reversal {
            if d == day {
                let f = out.entry(key).or_default();
                let i = if kind == ReversalKind::Void { 2 } else { 4 };
                f[i] += 1;
                f[i + 1] += p.fen;
            }
        }
    }
    out
}

fn check_daily(r: &Report, m: &Model, day: Date, point: Option<&str>) {
    let expected = expected_daily(m, day, point);
    let all = rows(r);
    let detail: Vec<_> = all.iter().filter(|row| text(row, "insurance") != "total").collect();
    assert_eq!(detail.len(), expected.len(), "rows of {day} {point:?}: {all:#?}");
    let mut per_point: BTreeMap<String, [i64; 6]> = BTreeMap::new();
    for row in &detail {
        let tier = match &row["tier"] {
            Cell::Empty => 0,
            other => other.as_money().unwrap().as_fen(),
        };
        let key = (text(row, "collection_point").to_owned(), text(row, "insurance").to_owned(), tier);
        let f = expected.get(&key).unwrap_or_else(|| panic!("unexpected row {row:?}"));
        let got = [
            count(row, "approved_count"),
            fen(row, "approved_total"),
            count(row, "void_count"),
            fen(row, "void_total"),
            count(row, "refund_count"),
            fen(row, "refund_total"),
        ];
        assert_eq!(&got, f, "{key:?}");
        assert_eq!(count(row, "net_count"), f[0] - f[2] - f[4], "{key:?}");
        assert_eq!(fen(row, "net_total"), f[1] - f[3] - f[5], "{key:?}");
        assert_eq!(text(row, "channel"), "pos");
        let t = per_point.entry(key.0).or_default();
        for i in 0..6 {
            t[i] += f[i];
        }
    }
    // A total row per point, and a grand total when there is more than one point.
    let totals: Vec<_> = all.iter().filter(|row| text(row, "insurance") == "total").collect();
    let points: Vec<_> = totals.iter().filter(|row| text(row, "collection_point") != "total").collect();
    assert_eq!(points.len(), per_point.len());
    let mut grand = [0i64; 6];
    for row in points {
        let f = per_point[text(row, "collection_point")];
        assert_eq!(count(row, "approved_count"), f[0]);
        assert_eq!(fen(row, "approved_total"), f[1]);
        assert_eq!(fen(row, "net_total"), f[1] - f[3] - f[5]);
        for i in 0..6 {
            grand[i] += f[i];
        }
    }
    assert_eq!(totals.len() - per_point.len(), usize::from(per_point.len() > 1), "the grand total row");
    let s = |k: &str| r.summary_value(k).unwrap().clone();
    assert_eq!(s("approved_count"), Cell::Count(grand[0]));
    assert_eq!(s("approved_total"), Cell::Money(Fen::from_fen(grand[1])));
    assert_eq!(s("void_total"), Cell::Money(Fen::from_fen(grand[3])));
    assert_eq!(s("refund_total"), Cell::Money(Fen::from_fen(grand[5])));
    assert_eq!(s("net_count"), Cell::Count(grand[0] - grand[2] - grand[4]));
    assert_eq!(s("net_total"), Cell::Money(Fen::from_fen(grand[1] - grand[3] - grand[5])));
    assert_eq!(r.params["date"].as_deref(), Some(day.to_string().as_str()));
}

#[tokio::test]
async fn the_daily_report_counts_each_day_by_point_insurance_and_tier() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = build(&dir.path().join("journal.sqlite")).await;
    let (a, b) = (CollectionPointCode::parse(A).unwrap(), CollectionPointCode::parse(B).unwrap());
    for day in [DAY1, DAY2, DAY3, date!(2020 - 10 - 23)] {
        check_daily(&report::daily(&store, day, None).await.unwrap(), &m, day, None);
        check_daily(&report::daily(&store, day, Some(&a)).await.unwrap(), &m, day, Some(A));
        check_daily(&report::daily(&store, day, Some(&b)).await.unwrap(), &m, day, Some(B));
    }
    // The figures the model gives, spelled out once, so a wrong model cannot pass unnoticed.
    let day1 = report::daily(&store, DAY1, Some(&a)).await.unwrap();
    let med = rows(&day1).into_iter().find(|r| text(r, "insurance") == "medical").unwrap();
    assert_eq!((count(&med, "approved_count"), fen(&med, "approved_total")), (4, 98_000));
    assert_eq!((count(&med, "void_count"), fen(&med, "net_total")), (1, 70_000));
    // On day 3 the October tier-300 payment refunded shows as a negative net of its tier.
    let day3 = report::daily(&store, DAY3, Some(&a)).await.unwrap();
    let t300 = rows(&day3).into_iter().find(|r| r["tier"] == Cell::Money(Fen::from_fen(30_000))).unwrap();
    assert_eq!((count(&t300, "net_count"), fen(&t300, "net_total")), (-1, -30_000));
    assert!(day3.notes.iter().any(|n| n.contains("created_at")), "the day rule is said");
    assert!(day3.notes.iter().any(|n| n.contains("pos only")), "the channel rule is said");
    check_files(&day3);
    check_files(&report::daily(&store, DAY1, None).await.unwrap());
}

// ---- Commission ----

#[tokio::test]
async fn the_commission_report_pays_forwarded_payments_net_of_reversals() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = build(&dir.path().join("journal.sqlite")).await;
    let rate = policy().commission_per_person_time();
    assert_eq!(rate, Fen::from_fen(100), "the 2020 plan pays 1 yuan per person-time");
    let month_of = |d: Date| format!("{:04}-{:02}", d.year(), u8::from(d.month()));
    // (month, point) -> (forwarded, reversed, awaiting)
    let mut expected: BTreeMap<(String, String), (i64, i64, i64)> = BTreeMap::new();
    for p in m.payments.iter().filter(|p| p.approved) {
        let e = expected.entry((month_of(p.day), p.point.to_owned())).or_default();
        if p.forwarded {
            e.0 += 1;
            if p.reversal.is_some() {
                e.1 += 1;
            }
        } else if p.reversal.is_none() {
            e.2 += 1;
        }
    }
    assert_eq!(expected[&("2020-10".to_owned(), A.to_owned())], (6, 2, 1));
    for (month, point) in
        [(None, None), (Some("2020-10"), None), (Some("2020-11"), Some(A)), (Some("2020-10"), Some(B))]
    {
        let ym = month.map(|m| report::YearMonth::parse(m).unwrap());
        let code = point.map(|p| CollectionPointCode::parse(p).unwrap());
        let r = report::commission(&store, rate, ym, code.as_ref()).await.unwrap();
        let want: Vec<_> = expected
            .iter()
            .filter(|((mo, pt), _)| month.is_none_or(|x| x == mo) && point.is_none_or(|x| x == pt))
            .collect();
        let got = rows(&r);
        let detail: Vec<_> = got.iter().filter(|row| text(row, "month") != "total").collect();
        assert_eq!(detail.len(), want.len(), "{month:?} {point:?}: {got:#?}");
        let (mut persons, mut amount) = (0, 0);
        for (row, ((mo, pt), (fwd, rev, wait))) in detail.iter().zip(&want) {
            assert_eq!((text(row, "month"), text(row, "collection_point")), (mo.as_str(), pt.as_str()));
            assert_eq!(
                (count(row, "forwarded"), count(row, "reversed"), count(row, "awaiting_ledger")),
                (*fwd, *rev, *wait)
            );
            assert_eq!(count(row, "person_times"), fwd - rev);
            assert_eq!(fen(row, "rate"), 100);
            assert_eq!(fen(row, "commission"), (fwd - rev) * 100);
            persons += fwd - rev;
            amount += (fwd - rev) * 100;
        }
        assert_eq!(r.summary_value("person_times"), Some(&Cell::Count(persons)));
        assert_eq!(r.summary_value("commission"), Some(&Cell::Money(Fen::from_fen(amount))));
        if want.len() > 1 {
            let total = got.iter().find(|row| text(row, "month") == "total").unwrap();
            assert_eq!(fen(total, "commission"), amount);
        }
        check_files(&r);
    }
}

// ---- Settlement ----

#[tokio::test]
async fn the_settlement_report_lists_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = build(&dir.path().join("journal.sqlite")).await;
    let b = CollectionPointCode::parse(B).unwrap();
    for (day, point) in [(None, None), (Some(DAY1), None), (Some(DAY2), None), (Some(DAY3), None), (None, Some(B))] {
        let code = point.map(|_| b.clone());
        let r = report::settlement(&store, day, code.as_ref()).await.unwrap();
        let want: Vec<&Settled> = m
            .settlements
            .iter()
            .filter(|s| day.is_none_or(|d| d == s.day) && point.is_none_or(|p| p == s.point))
            .collect();
        let got = rows(&r);
        assert_eq!(got.len(), want.len(), "{day:?} {point:?}");
        for (row, s) in got.iter().zip(&want) {
            assert_eq!(text(row, "terminal_id"), s.terminal);
            assert_eq!(text(row, "collection_point"), s.point);
            assert_eq!(text(row, "batch"), "000001");
            assert!(text(row, "at").starts_with(&s.day.to_string()), "{row:?}");
            assert_eq!(row["balanced"], Cell::Flag(s.terminal_totals == s.journal_totals));
            for (side, t) in [("terminal", &s.terminal_totals), ("journal", &s.journal_totals)] {
                let k = |f: &str| format!("{side}_{f}");
                assert_eq!(count(row, &k("sale_count")), i64::from(t.sale_count));
                assert_eq!(fen(row, &k("sale_total")), t.sale_fen);
                assert_eq!(count(row, &k("void_count")), i64::from(t.void_count));
                assert_eq!(fen(row, &k("void_total")), t.void_fen);
                assert_eq!(count(row, &k("refund_count")), i64::from(t.refund_count));
                assert_eq!(fen(row, &k("refund_total")), t.refund_fen);
                assert_eq!(fen(row, &k("net")), t.sale_fen - t.void_fen - t.refund_fen);
            }
        }
        let unbalanced = want.iter().filter(|s| s.terminal_totals != s.journal_totals).count();
        assert_eq!(r.summary_value("not_balanced"), Some(&Cell::Count(unbalanced as i64)));
        check_files(&r);
    }
    // Spelled out: terminal A on day 1 sold 7 (2080.00) and voided 1; B's terminal claimed one sale more.
    let day1 = rows(&report::settlement(&store, Some(DAY1), None).await.unwrap());
    assert_eq!((count(&day1[0], "journal_sale_count"), fen(&day1[0], "journal_sale_total")), (7, 208_000));
    assert_eq!((fen(&day1[0], "journal_net"), day1[0]["balanced"].clone()), (180_000, Cell::Flag(true)));
    assert_eq!((count(&day1[1], "terminal_sale_count"), day1[1]["balanced"].clone()), (4, Cell::Flag(false)));
}

// ---- Ledger ----

fn status(state: &'static str) -> LedgerStatus {
    LedgerStatus {
        endpoint: "https://ledger.example".to_owned(),
        state,
        backlog: 0,
        held: 0,
        oldest_unsent: None,
        oldest_unsent_at: None,
        oldest_unsent_age_secs: None,
        dead_letters: 0,
        forwarded: 0,
        last_error: None,
        consecutive_failures: 2,
        next_attempt_in_ms: Some(1500),
        last_success_at: None,
        batches_answered: 0,
        entries_acknowledged: 0,
        entries_rejected: 0,
        in_flight: 0,
        recent_errors: Vec::new(),
    }
}

/// Per point: (backlog, held, dead letters, forwarded, oldest unsent entry).
fn expected_outbox(m: &Model) -> BTreeMap<&'static str, (i64, i64, i64, i64, Option<String>)> {
    let mut out: BTreeMap<&'static str, (i64, i64, i64, i64, Option<String>)> = BTreeMap::new();
    for (entry, point) in &m.outbox {
        let e = out.entry(point).or_default();
        if m.forwarded.contains(entry) {
            e.3 += 1;
        } else if m.dead.contains(entry) {
            e.2 += 1;
        } else {
            e.0 += 1;
            if let Some(payment) = entry.strip_suffix("-reversal") {
                if !m.forwarded.contains(payment) {
                    e.1 += 1;
                }
            }
            if e.4.is_none() {
                e.4 = Some(entry.clone());
            }
        }
    }
    out
}

fn check_ledger(r: &Report, m: &Model, now: OffsetDateTime, point: Option<&str>) {
    let expected = expected_outbox(m);
    let got = rows(r);
    let want: Vec<_> = expected.iter().filter(|(p, _)| point.is_none_or(|q| q == **p)).collect();
    let points: Vec<_> = got.iter().filter(|row| text(row, "collection_point") != "all").collect();
    assert_eq!(points.len(), want.len());
    let mut sum = (0, 0, 0, 0);
    for (row, (p, (backlog, held, dead, fwd, oldest))) in points.iter().zip(&want) {
        assert_eq!(text(row, "collection_point"), **p);
        assert_eq!(
            (count(row, "backlog"), count(row, "held"), count(row, "dead_letters"), count(row, "forwarded")),
            (*backlog, *held, *dead, *fwd),
            "{p}"
        );
        sum = (sum.0 + backlog, sum.1 + held, sum.2 + dead, sum.3 + fwd);
        assert_eq!(row["oldest_unsent"].as_text(), oldest.as_deref(), "{p}");
        if oldest.is_some() {
            let at = text(row, "oldest_unsent_at");
            let t = OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).unwrap();
            assert_eq!(count(row, "oldest_unsent_age_secs"), (now - t).whole_seconds(), "{p}");
        }
        assert_eq!(text(row, "forwarder_state"), "backing_off");
    }
    let all = got.iter().find(|row| text(row, "collection_point") == "all");
    match point {
        Some(_) => assert!(all.is_none(), "one point's report has no row for all points"),
        None => {
            let all = all.unwrap();
            assert_eq!(
                (count(all, "backlog"), count(all, "held"), count(all, "dead_letters"), count(all, "forwarded")),
                sum
            );
            let first_unsent =
                m.outbox.iter().map(|(e, _)| e).find(|e| !m.forwarded.contains(*e) && !m.dead.contains(*e));
            assert_eq!(all["oldest_unsent"].as_text(), first_unsent.map(String::as_str));
        }
    }
    assert_eq!(r.summary_value("state"), Some(&Cell::text("backing_off")));
    assert_eq!(r.summary_value("consecutive_failures"), Some(&Cell::Count(2)));
}

#[tokio::test]
async fn the_ledger_report_counts_the_outbox_per_point() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = build(&dir.path().join("journal.sqlite")).await;
    let e = expected_outbox(&m);
    assert_eq!(e[A], (4, 1, 0, 8, Some("P00002".to_owned())), "the model, spelled out");
    assert_eq!(e[B], (0, 0, 1, 3, None));
    let now = datetime!(2020-11-02 10:00 +8);
    let st = status("backing_off");
    check_ledger(&report::ledger(&store, &st, now, None).await.unwrap(), &m, now, None);
    for p in [A, B] {
        let code = CollectionPointCode::parse(p).unwrap();
        let r = report::ledger(&store, &st, now, Some(&code)).await.unwrap();
        check_ledger(&r, &m, now, Some(p));
        check_files(&r);
    }
    // A point with no entries has a row of zeros.
    let none = CollectionPointCode::parse("WD-999").unwrap();
    let r = report::ledger(&store, &st, now, Some(&none)).await.unwrap();
    assert_eq!(r.rows.len(), 1);
    assert_eq!(rows(&r)[0]["backlog"], Cell::Count(0));
}

// ---- Unpaid ----

fn expected_unpaid(m: &Model, point: &str) -> Vec<RosterLine> {
    let paid: BTreeSet<(String, Insurance)> = m
        .payments
        .iter()
        .filter(|p| p.approved && p.reversal.is_none())
        .map(|p| (p.line.id_number.as_str().to_owned(), p.line.insurance))
        .collect();
    let mut out: Vec<RosterLine> = m
        .lines
        .iter()
        .filter(|l| l.collection_point.as_str() == point && l.year == 2020)
        .filter(|l| !paid.contains(&(l.id_number.as_str().to_owned(), l.insurance)))
        .cloned()
        .collect();
    out.sort_by_key(|l| {
        (l.street.clone(), l.community.clone(), l.insurance.code().to_owned(), l.serial.as_str().to_owned())
    });
    out
}

#[tokio::test]
async fn the_unpaid_list_masks_id_numbers_and_leaves_out_who_paid() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = build(&dir.path().join("journal.sqlite")).await;
    let year = policy().year();
    for point in [A, B] {
        let code = CollectionPointCode::parse(point).unwrap();
        let r = report::unpaid(&store, year, Some(&code)).await.unwrap();
        let want = expected_unpaid(&m, point);
        let got = rows(&r);
        assert_eq!(got.len(), want.len(), "{point}: {got:#?}");
        let mut due = 0;
        for (row, l) in got.iter().zip(&want) {
            assert_eq!(text(row, "serial"), l.serial.as_str());
            assert_eq!(text(row, "insurance"), l.insurance.code());
            assert_eq!(count(row, "year"), 2020);
            assert_eq!(text(row, "name"), l.name.as_str());
            let id = l.id_number.as_str();
            assert_eq!(text(row, "id_number"), format!("{}********{}", &id[..6], &id[14..]));
            assert_eq!(row["amount_due"].as_money(), l.amount_due);
            assert_eq!(text(row, "hardship"), l.hardship.code());
            assert_eq!(row["street"].as_text(), l.street.as_deref());
            assert_eq!(row["community"].as_text(), l.community.as_deref());
            let under_way = m.payments.iter().any(|p| p.under_way && p.line.serial == l.serial);
            assert_eq!(text(row, "status"), if under_way { "under_way" } else { "unpaid" });
            due += l.amount_due.map_or(0, Fen::as_fen);
        }
        assert_eq!(r.summary_value("medical_due"), Some(&Cell::Money(Fen::from_fen(due))));
        // No full ID number anywhere in what is sent.
        for l in &m.lines {
            let full = l.id_number.as_str();
            assert!(!String::from_utf8_lossy(&r.to_csv()).contains(full));
            assert!(!r.to_json().to_string().contains(full));
        }
        check_files(&r);
    }
    // Spelled out for A: voided, refunded, declined, under way and never-paid lines; not line 50 (its
    // person paid on line 1) nor the 2019 line 60.
    let a = report::unpaid(&store, year, Some(&CollectionPointCode::parse(A).unwrap())).await.unwrap();
    let serials: BTreeSet<&str> = a.rows.iter().map(|r| r[3].as_text().unwrap()).collect();
    let want: BTreeSet<String> = [2, 3, 5, 6, 8, 9, 21, 25].iter().map(|n| format!("ZJ-{n:07}")).collect();
    assert_eq!(serials, want.iter().map(String::as_str).collect());
    assert_eq!(a.summary_value("medical_due"), Some(&Cell::Money(Fen::from_fen(140_000))));
    // Every point: both lists, by point.
    let all = report::unpaid(&store, year, None).await.unwrap();
    assert_eq!(all.rows.len(), expected_unpaid(&m, A).len() + expected_unpaid(&m, B).len());
}

// ---- CSV and XLSX carry the same cells ----

/// Parses signed yuan with two decimals into fen, as a spreadsheet user would read it.
fn yuan_to_fen(s: &str) -> i64 {
    let (sign, digits) = s.strip_prefix('-').map_or((1, s), |rest| (-1, rest));
    let (whole, frac) = digits.split_once('.').unwrap();
    assert_eq!(frac.len(), 2, "two decimals: {s}");
    sign * (whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap())
}

/// The CSV parses back to the report's cells; the XLSX holds the same cells.
fn check_files(r: &Report) {
    check_csv(r, &r.to_csv());
    check_xlsx(r, &r.to_xlsx().unwrap());
}

fn check_csv(r: &Report, bytes: &[u8]) {
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a UTF-8 BOM");
    let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(&bytes[3..]);
    let headers: Vec<String> = reader.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(headers, r.columns.iter().map(|c| format!("{} {}", c.title, c.key)).collect::<Vec<_>>());
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(records.len(), r.rows.len());
    for (record, row) in records.iter().zip(&r.rows) {
        for ((field, cell), column) in record.iter().zip(row).zip(&r.columns) {
            match cell {
                Cell::Empty => assert_eq!(field, ""),
                Cell::Money(f) => assert_eq!(yuan_to_fen(field), f.as_fen(), "{}", column.key),
                Cell::Count(n) => assert_eq!(field.parse::<i64>().unwrap(), *n, "{}", column.key),
                Cell::Text(t) => assert_eq!(field, t),
                Cell::Flag(b) => assert_eq!(field, if *b { "yes" } else { "no" }),
                other => panic!("unexpected cell {other:?}"),
            }
        }
    }
}

fn check_xlsx(r: &Report, bytes: &[u8]) {
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes.to_vec())).unwrap();
    let range = book.worksheet_range(r.kind.as_str()).unwrap();
    let cells: Vec<Vec<Data>> = range.rows().map(<[Data]>::to_vec).collect();
    assert_eq!(cells.len(), r.rows.len() + 1, "a header row and the rows");
    for (c, column) in r.columns.iter().enumerate() {
        assert_eq!(cells[0][c], Data::String(format!("{} {}", column.title, column.key)));
    }
    for (got, row) in cells[1..].iter().zip(&r.rows) {
        for (c, (cell, column)) in row.iter().zip(&r.columns).enumerate() {
            let data = got.get(c).cloned().unwrap_or(Data::Empty);
            match (cell, &data) {
                (Cell::Empty, Data::Empty) => {}
                (Cell::Money(f), Data::Float(x)) => {
                    assert_eq!((x * 100.0).round() as i64, f.as_fen(), "{}", column.key)
                }
                (Cell::Count(n), Data::Float(x)) => assert_eq!(*x, *n as f64, "{}", column.key),
                (Cell::Count(n), Data::Int(x)) => assert_eq!(x, n, "{}", column.key),
                (Cell::Text(t), Data::String(s)) => assert_eq!(s, t),
                (Cell::Flag(b), Data::String(s)) => assert_eq!(s, if *b { "yes" } else { "no" }),
                other => panic!("{}: {other:?}", column.key),
            }
            if column.kind == CellKind::Money && *cell != Cell::Empty {
                assert!(matches!(data, Data::Float(_)), "money is a number a spreadsheet can add up");
            }
        }
    }
    assert!(book.worksheet_range("about").is_ok(), "the about sheet");
}

// ---- The API over HTTP, and the CLI verb ----

const ADMIN_TOKEN: &str = "admin-token";
const COLLECTOR_TOKEN: &str = "collector-token";

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A port nothing listens on: the forwarder's ledger is unreachable, so nothing of the journal changes.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Serves the API on the journal at `path` (clock 2020-10-21 10:00): its address.
async fn serve(dir: &Path, store: &SqliteStore) -> (String, zhengjiao::ledger::Forwarder) {
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/2020-weidong.toml");
    let config_path = dir.join("zhengjiao.toml");
    std::fs::write(
        &config_path,
        format!(
            "data_dir = {data:?}\npolicy = {policy:?}\nclock = \"2020-10-21T10:00:00+08:00\"\n\n[api]\nlisten = \"127.0.0.1:0\"\n\n\
             [ledger]\nendpoint = \"http://127.0.0.1:{port}\"\nkey_id = \"district-1\"\nsecret = \"s3cret\"\n\n\
             [[operators]]\ntoken_sha256 = {admin:?}\nstaff_no = \"9001\"\nrole = \"admin\"\n\n\
             [[operators]]\ntoken_sha256 = {collector:?}\nstaff_no = \"1001\"\ncollection_point = {A:?}\nrole = \"collector\"\n",
            data = dir.display().to_string(),
            policy = policy.display().to_string(),
            port = closed_port(),
            admin = sha256_hex(ADMIN_TOKEN),
            collector = sha256_hex(COLLECTOR_TOKEN),
        ),
    )
    .unwrap();
    let config = zhengjiao::config::Config::load(&config_path).unwrap();
    let clock = || Clock::starting_at(datetime!(2020-10-21 10:00 +8));
    let collection =
        zhengjiao::collect::Collection::start(&config, store.clone(), clock(), Default::default()).await.unwrap();
    let forwarder = zhengjiao::ledger::Forwarder::start(
        store.clone(),
        zhengjiao::ledger::LedgerClient::from_config(&config.ledger, Default::default()).unwrap(),
        clock(),
        collection.outbox_signal(),
        Default::default(),
    );
    let app = zhengjiao::api::router(zhengjiao::api::ApiState::new(collection, forwarder.clone(), &config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (api, forwarder)
}

/// `GET` with a token: (status, content type, body).
async fn get(url: &str, token: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, kind, response.bytes().await.unwrap().to_vec())
}

async fn get_json(url: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = get(url, Some(token)).await;
    (status, serde_json::from_slice(&body).unwrap())
}

/// Runs `zhengjiao ARGS` against the API with `token`: (exit code, stdout bytes, stderr).
async fn cli(api: &str, token: &str, args: &[&str]) -> (i32, Vec<u8>, String) {
    let (api, token) = (api.to_owned(), token.to_owned());
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_zhengjiao"))
            .args(&args)
            .env("ZHENGJIAO_API", api)
            .env("ZHENGJIAO_TOKEN", token)
            .output()
            .unwrap();
        (out.status.code().unwrap_or(-1), out.stdout, String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_api_and_the_cli_serve_every_report_within_the_callers_point() {
    let dir = tempfile::tempdir().unwrap();
    let (store, m) = build(&dir.path().join("journal.sqlite")).await;
    let (api, forwarder) = serve(dir.path(), &store).await;
    let url = |path: &str| format!("{api}/v1/reports/{path}");

    // JSON, as the library makes it; its figures checked against the model.
    let (status, v) = get_json(&url("daily?date=2020-10-21"), ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{v}");
    let daily = Report::from_json(&v).unwrap();
    check_daily(&daily, &m, DAY1, None);
    assert_eq!(v["rows"][0]["collection_point"], json!(A));
    assert_eq!(v["params"], json!({"date": "2020-10-21", "collection_point": null}));
    let a_med = v["rows"].as_array().unwrap().iter().find(|r| r["insurance"] == json!("medical")).unwrap();
    assert_eq!((a_med["approved_total"].clone(), a_med["net_total"].clone()), (json!("980.00"), json!("700.00")));
    // Without a date, the business clock's day.
    let (_, v) = get_json(&url("daily"), ADMIN_TOKEN).await;
    assert_eq!(v["params"]["date"], json!("2020-10-21"));

    // CSV with its BOM and type; XLSX with its type; both as the library writes them.
    let (status, kind, csv_bytes) = get(&url("daily?date=2020-10-21&format=csv"), Some(ADMIN_TOKEN)).await;
    assert_eq!((status, kind.as_str()), (200, "text/csv; charset=utf-8"));
    assert_eq!(csv_bytes, daily.to_csv());
    check_csv(&daily, &csv_bytes);
    let (status, kind, xlsx) = get(&url("commission?month=2020-10&format=xlsx"), Some(ADMIN_TOKEN)).await;
    assert_eq!((status, kind.as_str()), (200, "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"));
    let rate = policy().commission_per_person_time();
    let oct = report::YearMonth::parse("2020-10").unwrap();
    let commission = report::commission(&store, rate, Some(oct), None).await.unwrap();
    check_xlsx(&commission, &xlsx);

    // The ledger report through the forwarder's real status (its ledger is unreachable: nothing moves).
    let (status, v) = get_json(&url("ledger"), ADMIN_TOKEN).await;
    assert_eq!(status, 200, "{v}");
    let ledger = Report::from_json(&v).unwrap();
    let e = expected_outbox(&m);
    let all = rows(&ledger).into_iter().find(|r| text(r, "collection_point") == "all").unwrap();
    assert_eq!(count(&all, "backlog"), e[A].0 + e[B].0);
    assert_eq!(count(&all, "forwarded"), e[A].3 + e[B].3);
    assert_eq!(count(&all, "dead_letters"), e[A].2 + e[B].2);

    // A collector sees their point only, by default; another point is refused.
    let (status, v) = get_json(&url("daily?date=2020-10-21"), COLLECTOR_TOKEN).await;
    assert_eq!(status, 200);
    let mine = Report::from_json(&v).unwrap();
    assert_eq!(mine.params["collection_point"].as_deref(), Some(A));
    check_daily(&mine, &m, DAY1, Some(A));
    assert!(!v.to_string().contains(B), "nothing of point B: {v}");
    let (status, v) = get_json(&url("unpaid?collection_point=WD-002"), COLLECTOR_TOKEN).await;
    assert_eq!((status, v["code"].as_str()), (403, Some("forbidden")));
    let (status, v) = get_json(&url("unpaid"), COLLECTOR_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(v["rows"].as_array().unwrap().len(), expected_unpaid(&m, A).len());
    let (status, v) = get_json(&url("ledger"), COLLECTOR_TOKEN).await;
    assert_eq!(status, 200);
    let points: Vec<&Value> = v["rows"].as_array().unwrap().iter().map(|r| &r["collection_point"]).collect();
    assert_eq!(points, [&json!(A)]);
    let (status, v) = get_json(&url("settlement"), COLLECTOR_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(v["rows"].as_array().unwrap().len(), m.settlements.iter().filter(|s| s.point == A).count());

    // Refusals name the parameter; an unknown kind is 404; no token is 401.
    for (query, field) in [
        ("daily?date=2020-13-01", "date"),
        ("daily?month=2020-10", "month"),
        ("daily?format=pdf", "format"),
        ("commission?month=2020-1", "month"),
        ("ledger?date=2020-10-21", "date"),
        ("settlement?bogus=1", "bogus"),
    ] {
        let (status, v) = get_json(&url(query), ADMIN_TOKEN).await;
        assert_eq!(
            (status, v["code"].as_str(), v["field"].as_str()),
            (400, Some("bad_request"), Some(field)),
            "{query}: {v}"
        );
    }
    let (status, v) = get_json(&url("weekly"), ADMIN_TOKEN).await;
    assert_eq!((status, v["code"].as_str(), v["what"].as_str()), (404, Some("not_found"), Some("report")));
    let (status, _, _) = get(&url("daily"), None).await;
    assert_eq!(status, 401);
    // An empty parameter is no parameter.
    let (status, v) = get_json(&url("unpaid?collection_point="), ADMIN_TOKEN).await;
    assert_eq!(status, 200);
    assert_eq!(v["params"]["collection_point"], Value::Null);

    // The CLI: a table by default, CSV to a file (the API's bytes), XLSX to a file, JSON.
    let (code, out, err) = cli(&api, ADMIN_TOKEN, &["report", "daily", "--date", "2020-10-21"]).await;
    assert_eq!(code, 0, "{err}");
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("日结 daily collection report\n"), "{out}");
    assert!(out.contains("980.00") && out.contains("700.00") && out.contains("note: channel: pos only"), "{out}");
    let csv_path = dir.path().join("daily.csv");
    let (code, out, err) = cli(
        &api,
        ADMIN_TOKEN,
        &["report", "daily", "--date", "2020-10-21", "--format", "csv", "--output", csv_path.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(String::from_utf8_lossy(&out).contains("rows written to"), "{}", String::from_utf8_lossy(&out));
    assert_eq!(std::fs::read(&csv_path).unwrap(), csv_bytes, "the CLI writes the API's CSV");
    let xlsx_path = dir.path().join("commission.xlsx");
    let (code, _, err) = cli(
        &api,
        ADMIN_TOKEN,
        &["report", "commission", "--month", "2020-10", "--format", "xlsx", "-o", xlsx_path.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    check_xlsx(&commission, &std::fs::read(&xlsx_path).unwrap());
    let (code, out, _) = cli(&api, COLLECTOR_TOKEN, &["report", "unpaid", "--format", "csv"]).await;
    assert_eq!(code, 0);
    let unpaid = report::unpaid(&store, 2020, Some(&CollectionPointCode::parse(A).unwrap())).await.unwrap();
    check_csv(&unpaid, &out);
    let (code, out, _) = cli(&api, ADMIN_TOKEN, &["report", "settlement", "--json"]).await;
    assert_eq!(code, 0);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), m.settlements.len());
    let (code, out, _) = cli(&api, ADMIN_TOKEN, &["report", "ledger", "--format", "json"]).await;
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap()["report"], json!("ledger"));

    // Exit statuses: 2 for usage (xlsx to the terminal, a bad date or kind), 1 when the API refuses.
    let (code, _, err) = cli(&api, ADMIN_TOKEN, &["report", "unpaid", "--format", "xlsx"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--output"), "{err}");
    let (code, _, _) = cli(&api, ADMIN_TOKEN, &["report", "daily", "--date", "2020-13-01"]).await;
    assert_eq!(code, 2);
    let (code, _, _) = cli(&api, ADMIN_TOKEN, &["report", "weekly"]).await;
    assert_eq!(code, 2);
    let (code, _, err) = cli(&api, COLLECTOR_TOKEN, &["report", "daily", "--collection-point", B]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("forbidden"), "{err}");
    let (code, _, err) = cli(&api, ADMIN_TOKEN, &["report", "daily", "--month", "2020-10"]).await;
    assert_eq!(code, 1, "the API refuses a month for the daily report: {err}");
    let (code, _, _) = cli("http://127.0.0.1:1", ADMIN_TOKEN, &["report", "daily"]).await;
    assert_eq!(code, 2, "an unreachable API");
    forwarder.shutdown().await;
}

/// An empty journal gives empty reports, not errors.
#[tokio::test]
async fn an_empty_journal_gives_empty_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_on(&dir.path().join("journal.sqlite"), DAY1).await;
    let r = report::daily(&store, DAY1, None).await.unwrap();
    assert!(r.rows.is_empty());
    assert_eq!(r.summary_value("net_total"), Some(&Cell::Money(Fen::ZERO)));
    assert!(r.to_text().contains("(no rows)"));
    check_files(&r);
    let r = report::commission(&store, Fen::from_fen(100), None, None).await.unwrap();
    assert!(r.rows.is_empty());
    let r = report::unpaid(&store, 2020, None).await.unwrap();
    assert!(r.rows.is_empty());
}

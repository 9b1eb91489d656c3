//! Builders shared by the journal tests and the journal bench: valid roster lines, collectors, a
//! terminal, payments.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use time::{Date, Month};
use zhengjiao::domain::{
    CollectionPointCode, CollectionSerial, Fen, Hardship, IdNumber, Insurance, PersonName, StaffNumber,
};
use zhengjiao::journal::{
    Collector, JournalOptions, LineKey, NewPayment, RosterLine, SqliteStore, Terminal, TerminalSaid,
};
use zhengjiao_protocol::message::{AuthCode, Batch, Rrn, TerminalId, Till, Trace};
use zhengjiao_protocol::{EcrReference, MaskedPan, ResponseCode};

/// The terminal every test payment goes to.
pub const TERMINAL: &str = "T0000001";
/// The collection point of every test line.
pub const POINT: &str = "WD-001";
/// The medical premium of 2020, in fen.
pub const MEDICAL_FEN: i64 = 28_000;

/// A valid ID number, distinct for each `n` below 36 500 000.
pub fn id_number(n: u32) -> IdNumber {
    let birth = Date::from_calendar_date(1960, Month::January, 1).unwrap() + time::Duration::days(i64::from(n / 1000));
    let body = format!("410402{:04}{:02}{:02}{:03}", birth.year(), u8::from(birth.month()), birth.day(), n % 1000);
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(b, w)| u32::from(b - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    IdNumber::parse(&format!("{body}{check}")).unwrap()
}

/// Medical line number `n` of 2020: serial `ZJ-<n>`, 280.00 due.
pub fn line(n: u32) -> RosterLine {
    RosterLine {
        serial: CollectionSerial::parse(&format!("ZJ-{n:07}")).unwrap(),
        insurance: Insurance::Medical,
        id_number: id_number(n),
        name: PersonName::parse("张三").unwrap(),
        year: 2020,
        amount_due: Some(Fen::from_fen(MEDICAL_FEN)),
        hardship: Hardship::None,
        collection_point: CollectionPointCode::parse(POINT).unwrap(),
        street: Some("光明路街道".to_owned()),
        community: None,
    }
}

/// Line `line`'s serial and content, for the person of line `person`: the roster listing one person
/// (ID number) on two lines of the same insurance and year.
pub fn same_person(person: u32, line_no: u32) -> RosterLine {
    RosterLine { id_number: id_number(person), ..line(line_no) }
}

/// Lines `from..to`.
pub fn lines(range: std::ops::Range<u32>) -> Vec<RosterLine> {
    range.map(line).collect()
}

/// Collector number `n` of the test point.
pub fn collector(n: u32) -> Collector {
    Collector {
        no: Some(n),
        collection_point_name: "卫东区光明路社区卫生服务中心".to_owned(),
        collection_point: CollectionPointCode::parse(POINT).unwrap(),
        name: PersonName::parse("李四").unwrap(),
        staff_no: StaffNumber::parse(&format!("{:04}", n)).unwrap(),
        id_number: id_number(900_000 + n),
        bank_name: "中国工商银行".to_owned(),
        bank_branch: "平顶山卫东支行".to_owned(),
        bank_account: format!("62220217050000{n:05}"),
        phone: "13800000000".to_owned(),
    }
}

/// The test terminal.
pub fn terminal() -> Terminal {
    Terminal {
        id: TerminalId::new(TERMINAL).unwrap(),
        name: "T01".to_owned(),
        collection_point: CollectionPointCode::parse(POINT).unwrap(),
        merchant_id: Some("898410473990001".to_owned()),
        link: "tcp:127.0.0.1:9100".to_owned(),
    }
}

/// An ECR reference.
pub fn reference(id: &str) -> EcrReference {
    EcrReference::new(id).unwrap()
}

/// A payment of `line`'s amount due with reference `id`.
pub fn new_payment(id: &str, line: &RosterLine) -> NewPayment {
    NewPayment {
        id: reference(id),
        line: LineKey { serial: line.serial.clone(), insurance: line.insurance, year: line.year },
        amount: line.amount_due.unwrap_or(Fen::from_fen(20_000)),
        terminal: TerminalId::new(TERMINAL).unwrap(),
        till: Till::new("01").unwrap(),
        operator: StaffNumber::parse("0001").unwrap(),
    }
}

/// What a terminal says when it approves `amount` fen.
pub fn approved(amount: i64, trace: u64) -> TerminalSaid {
    TerminalSaid {
        code: Some(ResponseCode::APPROVED),
        text: Some("交易成功".to_owned()),
        trace: Some(Trace::from_number(trace).unwrap()),
        batch: Some(Batch::new("000001").unwrap()),
        rrn: Some(Rrn::new("201021101530").unwrap()),
        auth: Some(AuthCode::new("A1B2C3").unwrap()),
        card: Some(MaskedPan::new("622202******1234").unwrap()),
        amount: Some(Fen::from_fen(amount)),
        date: Some(zhengjiao_protocol::message::Date::new("20201021").unwrap()),
        note: None,
    }
}

/// Options for tests: a short busy timeout, so a lock shows quickly.
pub fn options() -> JournalOptions {
    JournalOptions { busy_timeout: Duration::from_millis(300), ..JournalOptions::default() }
}

/// Opens (creating) the journal at `path` with [`options`].
pub async fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, options()).await.unwrap()
}

//! The demo's generated files: a roster (参保底册) of one collection point with valid GB 11643 ID
//! numbers, and the collector register (集中征缴工作人员登记表). Seeded, so every run writes the same
//! files.

use std::collections::HashSet;
use std::fmt::Write as _;

use time::{Date, Month};

use crate::domain::{Fen, Hardship, Insurance};
use crate::policy::Policy;

/// The region code of the ID numbers: 平顶山市卫东区.
const REGION: &str = "410403";
/// The street the collection point serves.
pub(super) const STREET: &str = "东高皇街道";
const COMMUNITIES: [&str; 6] = ["东高皇社区", "北苑社区", "湛河社区", "东环社区", "新华社区", "光明社区"];
const SURNAMES: [&str; 20] = [
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "胡", "朱", "高", "林", "何", "郭", "马",
    "罗",
];
const GIVEN: [&str; 30] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀", "霞",
    "平", "刚", "桂", "英", "华", "玉", "兰", "建", "国", "红", "文",
];

/// The personal share of a 低保 payer's medical premium in the demo (the rest is subsidised).
pub(super) const DIBAO_SHARE_YUAN: i64 = 180;
/// The personal share of a 特困 payer's medical premium in the demo.
pub(super) const TEKUN_SHARE_YUAN: i64 = 80;

/// One generated contribution line, as the collection day needs it.
#[derive(Debug, Clone)]
pub(super) struct GenLine {
    /// 征集流水号.
    pub(super) serial: String,
    /// 险种.
    pub(super) insurance: Insurance,
    /// 困难类别 (medical lines).
    pub(super) hardship: Hardship,
}

/// The generated roster.
pub(super) struct Roster {
    /// The lines, in file order.
    pub(super) lines: Vec<GenLine>,
    /// The CSV file (UTF-8, Chinese headers).
    pub(super) csv: String,
    /// Medical lines of 低保 payers.
    pub(super) dibao: usize,
    /// Medical lines of 特困 payers.
    pub(super) tekun: usize,
    /// People on the roster.
    pub(super) people: usize,
}

impl Roster {
    /// Lines of an insurance.
    pub(super) fn count(&self, insurance: Insurance) -> usize {
        self.lines.iter().filter(|l| l.insurance == insurance).count()
    }
}

/// An 18-character ID number (GB 11643): region, birth date, 3-digit sequence and the ISO 7064
/// MOD 11-2 check character.
pub(super) fn id_number(region: &str, birth: Date, seq: u32) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("{region}{:04}{:02}{:02}{:03}", birth.year(), u8::from(birth.month()), birth.day(), seq % 1000);
    let sum: u32 = body.bytes().zip(WEIGHTS).map(|(d, w)| u32::from(d.wrapping_sub(b'0')) * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    format!("{body}{}", char::from(check))
}

fn name(rng: &mut fastrand::Rng) -> String {
    let mut n = String::from(SURNAMES[rng.usize(..SURNAMES.len())]);
    for _ in 0..rng.usize(1..=2) {
        n.push_str(GIVEN[rng.usize(..GIVEN.len())]);
    }
    n
}

fn date(year: i32, month: u8, day: u8) -> Option<Date> {
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// A birth date: most people of working age, some children and some elderly, never after `today`.
fn birth(rng: &mut fastrand::Rng, today: Date) -> Date {
    let r = rng.f64();
    let year = if r < 0.7 {
        rng.i32(1961..=2003)
    } else if r < 0.85 {
        rng.i32(2004..=today.year())
    } else {
        rng.i32(1935..=1959)
    };
    let born = date(year, rng.u8(1..=12), rng.u8(1..=28)).unwrap_or(today);
    born.min(today)
}

/// Whether a person born on `born` may join the pension insurance on `today`.
fn pension_age_ok(policy: &Policy, born: Date, today: Date) -> bool {
    let min_age = i32::try_from(policy.pension_min_age()).unwrap_or(16);
    let birthday_reached = (u8::from(today.month()), today.day()) >= (u8::from(born.month()), born.day());
    let age = today.year() - born.year() - i32::from(!birthday_reached);
    born >= policy.pension_born_on_or_after() && age >= min_age
}

/// Generates `count` lines of `point` (its name `point_name`) for the policy's year, judged on `today`.
pub(super) fn generate(count: usize, seed: u64, policy: &Policy, point: &str, today: Date) -> Roster {
    let mut rng = fastrand::Rng::with_seed(seed);
    let year = policy.year();
    let medical = policy.medical_amount();
    let mut csv = String::from("征集流水号,险种,身份证号,姓名,年度,应缴金额,困难类别,征缴网点,街道,社区村\n");
    let mut lines = Vec::with_capacity(count);
    let mut ids = HashSet::new();
    let (mut dibao, mut tekun, mut people) = (0, 0, 0);
    let (mut medical_no, mut pension_no) = (0u32, 0u32);
    while lines.len() < count {
        let born = birth(&mut rng, today);
        let id = loop {
            let id = id_number(REGION, born, rng.u32(0..1000));
            if ids.insert(id.clone()) {
                break id;
            }
        };
        let who = name(&mut rng);
        let community = COMMUNITIES[rng.usize(..COMMUNITIES.len())];
        people += 1;
        // Everyone has a medical line; people of pension age most often a pension line too.
        let r = rng.f64();
        let (hardship, due) = if r < 0.05 {
            dibao += 1;
            (Hardship::Dibao, Fen::from_yuan(DIBAO_SHARE_YUAN).unwrap_or(medical))
        } else if r < 0.07 {
            tekun += 1;
            (Hardship::Tekun, Fen::from_yuan(TEKUN_SHARE_YUAN).unwrap_or(medical))
        } else {
            (Hardship::None, medical)
        };
        medical_no += 1;
        let serial = format!("ZJ-M{medical_no:06}");
        let _ = writeln!(
            csv,
            "{serial},医疗,{id},{who},{year},{},{},{point},{STREET},{community}",
            due.to_yuan_string(),
            hardship.zh()
        );
        lines.push(GenLine { serial, insurance: Insurance::Medical, hardship });
        if lines.len() < count && pension_age_ok(policy, born, today) && rng.f64() < 0.8 {
            pension_no += 1;
            let serial = format!("ZJ-P{pension_no:06}");
            let _ = writeln!(csv, "{serial},养老,{id},{who},{year},,,{point},{STREET},{community}");
            lines.push(GenLine { serial, insurance: Insurance::Pension, hardship: Hardship::None });
        }
    }
    Roster { lines, csv, dibao, tekun, people }
}

/// A collector of the register: staff number (工号) and the register row.
pub(super) struct GenCollector {
    /// 工号.
    pub(super) staff_no: &'static str,
}

/// The collector register of the point: two collectors. Returns the CSV and the collectors.
pub(super) fn collectors(point: &str, point_name: &str, today: Date) -> (String, Vec<GenCollector>) {
    let mut csv =
        String::from("序号,代征点名称,代征点编码,代征人员姓名,工号,身份证号,开户行名称,开户行,银行账号,联系电话\n");
    let people = [
        ("1001", "王静", 1982, "6217002430012345678", "13803751001"),
        ("1002", "李强", 1990, "6228480410012345672", "13903752002"),
    ];
    let mut out = Vec::new();
    for (i, (staff, who, born, account, phone)) in people.into_iter().enumerate() {
        let id = id_number(REGION, date(born, 3, 15).unwrap_or(today), 100 + u32::try_from(i).unwrap_or(0));
        let _ = writeln!(
            csv,
            "{},{point_name},{point},{who},{staff},{id},中国建设银行,平顶山卫东支行,{account},{phone}",
            i + 1
        );
        out.push(GenCollector { staff_no: staff });
    }
    (csv, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::IdNumber;

    #[test]
    fn generated_id_numbers_are_valid() {
        let mut rng = fastrand::Rng::with_seed(1);
        let today = date(2020, 10, 21).unwrap_or(Date::MIN);
        for seq in 0..500 {
            let id = id_number(REGION, birth(&mut rng, today), seq);
            assert!(IdNumber::parse(&id).is_ok(), "{id}");
        }
    }
}

//! The district's collection policy for one year (征缴政策), read from a file such as
//! `policy/2020-weidong.toml`: pension tiers, the medical amount, the pension age rule, the window and its
//! phases, the commission and the cash deposit rule. Nothing of it is hard-coded elsewhere: another year
//! or district is another file.
//!
//! Dates are calendar days in UTC+8; every range (`start`..`end`) includes both ends. The 2020 plan
//! writes its phases as 09-20..10-20, 10-20..11-30, 12-01..12-30, sharing 10-20; the policy file gives
//! that day to the collection phase (publicity ends 10-19), because phases may not overlap here.

use std::fmt;
use std::path::{Path, PathBuf};

use time::Date;
use toml::Value;

use crate::config::keys::{self, Problem, Problems, Table};
use crate::domain::{Fen, IdNumber, Insurance, PensionTier};

/// The most pension tiers a policy may list.
pub const MAX_TIERS: usize = 64;
/// The most phases a policy may list.
pub const MAX_PHASES: usize = 16;
/// The longest a cash deposit may wait, in days.
pub const MAX_DEPOSIT_DAYS: i64 = 31;

/// A collection policy, validated at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    district: String,
    year: i32,
    tiers: Vec<Fen>,
    pension_min_age: u32,
    pension_born_on_or_after: Date,
    medical_amount: Fen,
    window_start: Date,
    window_end: Date,
    phases: Vec<Phase>,
    commission: Fen,
    cash: CashRule,
}

/// A phase of the collection window (宣传发动, 集中征缴, 汇总).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    name: String,
    zh: Option<String>,
    start: Date,
    end: Date,
    accepts_payments: bool,
}

impl Phase {
    /// Its name, e.g. `collection`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its Chinese name, e.g. `集中征缴`, if the policy gives one.
    pub fn zh(&self) -> Option<&str> {
        self.zh.as_deref()
    }

    /// First day (inclusive).
    pub fn start(&self) -> Date {
        self.start
    }

    /// Last day (inclusive).
    pub fn end(&self) -> Date {
        self.end
    }

    /// Whether payments are taken on its days.
    pub fn accepts_payments(&self) -> bool {
        self.accepts_payments
    }

    /// Whether `date` lies in it.
    pub fn contains(&self, date: Date) -> bool {
        self.start <= date && date <= self.end
    }
}

/// Cash handling (现金, 四(二)): which insurances may be paid in cash at a collection point, and by when
/// the day's cash must be in the tax bureau's pending-settlement account (待报解账户).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CashRule {
    insurances: Vec<Insurance>,
    deposit_within_days: u32,
    remote_deposit_within_days: u32,
}

impl CashRule {
    /// Insurances that may be paid in cash (2020: medical only).
    pub fn insurances(&self) -> &[Insurance] {
        &self.insurances
    }

    /// Days after the collection day by which cash is deposited (1: the same or the next day, 日清日结).
    pub fn deposit_within_days(&self) -> u32 {
        self.deposit_within_days
    }

    /// The same for points marked remote (7: weekly, 日清周结).
    pub fn remote_deposit_within_days(&self) -> u32 {
        self.remote_deposit_within_days
    }
}

/// Why a policy cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file cannot be read.
    #[error("{}: cannot read the policy file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not a valid policy; every problem is listed.
    #[error("{}", ProblemList { path, problems })]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Each problem with its key path.
        problems: Vec<Problem>,
    },
}

impl PolicyError {
    /// The problems with their key paths (empty for [`PolicyError::Read`]).
    pub fn problems(&self) -> &[Problem] {
        match self {
            PolicyError::Read { .. } => &[],
            PolicyError::Invalid { problems, .. } => problems,
        }
    }
}

/// Displays problems one a line, each prefixed with the file.
struct ProblemList<'a> {
    path: &'a Path,
    problems: &'a [Problem],
}

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}: {p}", self.path.display())?;
        }
        Ok(())
    }
}

/// Why a payment is outside the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyViolation {
    /// Younger than the pension minimum age on the payment date.
    #[error("the payer is {age} on the payment date; the pension insurance takes payers from age {min_age}")]
    TooYoung {
        /// Age on the payment date.
        age: u32,
        /// The policy's minimum.
        min_age: u32,
    },
    /// Born before the policy's earliest birth date for the pension insurance (too old).
    #[error("the payer was born before {born_on_or_after}; the pension insurance takes payers born on or after it")]
    BornTooEarly {
        /// The policy's earliest birth date.
        born_on_or_after: Date,
    },
    /// Not one of the pension tiers.
    #[error("{amount} yuan is not one of the policy's pension tiers")]
    NotATier {
        /// The amount asked for.
        amount: Fen,
    },
    /// No payments are taken on that day.
    #[error("no payments are taken on {date}{}", match phase { Some(p) => format!(" (the {p} phase)"), None => " (outside the collection window)".to_owned() })]
    NoPaymentsOn {
        /// The day.
        date: Date,
        /// The phase it lies in, if any.
        phase: Option<String>,
    },
    /// Cash is not taken for this insurance.
    #[error("the {} insurance cannot be paid in cash at a collection point", insurance.code())]
    CashNotAccepted {
        /// The insurance.
        insurance: Insurance,
    },
}

impl Policy {
    /// Reads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| PolicyError::Read { path: path.to_owned(), source })?;
        Policy::parse(&text).map_err(|problems| PolicyError::Invalid { path: path.to_owned(), problems })
    }

    /// Validates a policy given as TOML text; every problem is returned with its key path.
    pub fn parse(text: &str) -> Result<Policy, Vec<Problem>> {
        let doc = keys::parse_document(text).map_err(|p| vec![p])?;
        let mut p = Problems::default();
        let policy = read(&doc, &mut p);
        match policy {
            Some(policy) if p.0.is_empty() => Ok(policy),
            _ => Err(p.0),
        }
    }

    /// The district, e.g. `平顶山市卫东区`.
    pub fn district(&self) -> &str {
        &self.district
    }

    /// The contribution year (年度).
    pub fn year(&self) -> i32 {
        self.year
    }

    /// The pension tiers, ascending.
    pub fn pension_tiers(&self) -> &[Fen] {
        &self.tiers
    }

    /// `amount` as a pension tier, if it is one.
    pub fn pension_tier(&self, amount: Fen) -> Option<PensionTier> {
        self.tiers.contains(&amount).then(|| PensionTier::checked(amount))
    }

    /// `amount` as a pension tier, or the violation.
    pub fn check_pension_tier(&self, amount: Fen) -> Result<PensionTier, PolicyViolation> {
        self.pension_tier(amount).ok_or(PolicyViolation::NotATier { amount })
    }

    /// The medical premium per person (before any hardship subsidy).
    pub fn medical_amount(&self) -> Fen {
        self.medical_amount
    }

    /// The pension minimum age on the payment date.
    pub fn pension_min_age(&self) -> u32 {
        self.pension_min_age
    }

    /// The earliest birth date the pension insurance takes.
    pub fn pension_born_on_or_after(&self) -> Date {
        self.pension_born_on_or_after
    }

    /// The pension age rule: born on or after the policy's date, and at least the minimum age on
    /// `payment_date` (the 16th birthday itself counts).
    pub fn check_pension_age(&self, id: &IdNumber, payment_date: Date) -> Result<(), PolicyViolation> {
        if id.birth_date() < self.pension_born_on_or_after {
            return Err(PolicyViolation::BornTooEarly { born_on_or_after: self.pension_born_on_or_after });
        }
        let age = id.age_on(payment_date);
        if age < self.pension_min_age {
            return Err(PolicyViolation::TooYoung { age, min_age: self.pension_min_age });
        }
        Ok(())
    }

    /// The collection window's first and last day (inclusive).
    pub fn window(&self) -> (Date, Date) {
        (self.window_start, self.window_end)
    }

    /// The phases, in date order.
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// The phase `date` lies in.
    pub fn phase_on(&self, date: Date) -> Option<&Phase> {
        self.phases.iter().find(|p| p.contains(date))
    }

    /// Whether payments are taken on `date`.
    pub fn accepts_payment_on(&self, date: Date) -> bool {
        self.phase_on(date).is_some_and(Phase::accepts_payments)
    }

    /// The phase of `date` if it takes payments, or the violation.
    pub fn check_payment_date(&self, date: Date) -> Result<&Phase, PolicyViolation> {
        match self.phase_on(date) {
            Some(phase) if phase.accepts_payments => Ok(phase),
            phase => Err(PolicyViolation::NoPaymentsOn { date, phase: phase.map(|p| p.name.clone()) }),
        }
    }

    /// The commission finance pays per person-time collected (每人次).
    pub fn commission_per_person_time(&self) -> Fen {
        self.commission
    }

    /// The cash rule.
    pub fn cash(&self) -> &CashRule {
        &self.cash
    }

    /// Whether `insurance` may be paid in cash, or the violation.
    pub fn check_cash(&self, insurance: Insurance) -> Result<(), PolicyViolation> {
        if self.cash.insurances.contains(&insurance) {
            Ok(())
        } else {
            Err(PolicyViolation::CashNotAccepted { insurance })
        }
    }

    /// The last day by which cash collected on `collected_on` must be deposited.
    pub fn cash_deposit_due(&self, collected_on: Date, remote_point: bool) -> Date {
        let days = if remote_point { self.cash.remote_deposit_within_days } else { self.cash.deposit_within_days };
        collected_on.checked_add(time::Duration::days(i64::from(days))).unwrap_or(Date::MAX)
    }
}

fn read(doc: &toml::Table, p: &mut Problems) -> Option<Policy> {
    let mut root = Table::root(doc);
    let district = root.parsed("district", true, "the district's name", p, |s| {
        if s.trim().is_empty() {
            Err("empty".to_owned())
        } else {
            Ok(s.trim().to_owned())
        }
    });
    let year = root.integer("year", true, 2000..=2100, p);

    let mut tiers = None;
    let mut min_age = None;
    let mut born = None;
    if let Some(mut pension) = root.table("pension", true, p) {
        tiers = read_tiers(&mut pension, p);
        min_age = pension.integer("min_age", true, 1..=120, p);
        born = pension.date("born_on_or_after", true, p);
        pension.finish(p);
    }

    let mut medical_amount = None;
    if let Some(mut medical) = root.table("medical", true, p) {
        medical_amount = positive(&mut medical, "amount_yuan", p);
        medical.finish(p);
    }

    let mut window = None;
    if let Some(mut w) = root.table("window", true, p) {
        let start = w.date("start", true, p);
        let end = w.date("end", true, p);
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                p.push(w.key("end"), format!("the window ends ({e}) before it starts ({s})"));
            } else {
                window = Some((s, e));
            }
        }
        w.finish(p);
    }

    let phases = read_phases(&mut root, window, p);

    let mut commission = None;
    if let Some(mut c) = root.table("commission", true, p) {
        commission = positive(&mut c, "per_person_time_yuan", p);
        c.finish(p);
    }

    let cash = root.table("cash", true, p).and_then(|mut c| {
        let rule = read_cash(&mut c, p);
        c.finish(p);
        rule
    });
    root.finish(p);

    let (window_start, window_end) = window?;
    Some(Policy {
        district: district?,
        year: i32::try_from(year?).ok()?,
        tiers: tiers?,
        pension_min_age: u32::try_from(min_age?).ok()?,
        pension_born_on_or_after: born?,
        medical_amount: medical_amount?,
        window_start,
        window_end,
        phases,
        commission: commission?,
        cash: cash?,
    })
}

fn positive(t: &mut Table<'_>, key: &'static str, p: &mut Problems) -> Option<Fen> {
    let amount = t.money(key, true, p)?;
    if amount.is_positive() {
        Some(amount)
    } else {
        p.push(t.key(key), "expected an amount above zero, got 0");
        None
    }
}

fn read_tiers(pension: &mut Table<'_>, p: &mut Problems) -> Option<Vec<Fen>> {
    let key = pension.key("tiers_yuan");
    let items = pension.array("tiers_yuan", true, "an array of amounts in yuan, ascending", p)?;
    if items.is_empty() || items.len() > MAX_TIERS {
        p.push(&key, format!("expected 1 to {MAX_TIERS} tiers, got {}", items.len()));
        return None;
    }
    let before = p.0.len();
    let mut tiers: Vec<Fen> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let Some(amount) = keys::money_value(&k, item, p) else { continue };
        if !amount.is_positive() {
            p.push(&k, "expected an amount above zero, got 0");
        } else if let Some(prev) = tiers.last().filter(|prev| **prev >= amount) {
            let why = if *prev == amount { "repeats the tier before it" } else { "is below the tier before it" };
            p.push(&k, format!("tiers must be ascending and unique: {amount} {why} ({prev})"));
        }
        tiers.push(amount);
    }
    (p.0.len() == before).then_some(tiers)
}

fn read_phases(root: &mut Table<'_>, window: Option<(Date, Date)>, p: &mut Problems) -> Vec<Phase> {
    let tables = root.tables("phases", true, p);
    let key = root.key("phases");
    if root.has("phases") && (tables.is_empty() || tables.len() > MAX_PHASES) {
        p.push(&key, format!("expected 1 to {MAX_PHASES} phases ([[phases]] tables), got {}", tables.len()));
    }
    let mut phases: Vec<Phase> = Vec::new();
    for mut t in tables {
        let name = t.parsed("name", true, "a name of 1 to 32 letters, digits, '_' or '-'", p, |s| {
            let ok =
                (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if ok {
                Ok(s.to_owned())
            } else {
                Err(String::new())
            }
        });
        let zh = t.string("zh", false, "the phase's Chinese name", p).map(str::to_owned);
        let start = t.date("start", true, p);
        let end = t.date("end", true, p);
        let accepts = t.boolean("accepts_payments", true, p);
        if let Some(n) = &name {
            if phases.iter().any(|ph| &ph.name == n) {
                p.push(t.key("name"), format!("the phase name {} is used twice", keys::quote(n)));
            }
        }
        if let (Some(s), Some(e)) = (start, end) {
            if s > e {
                p.push(t.key("end"), format!("the phase ends ({e}) before it starts ({s})"));
            } else if let Some((ws, we)) = window.filter(|(ws, we)| s < *ws || e > *we) {
                p.push(t.path(), format!("the phase {s}..{e} is not inside the window {ws}..{we}"));
            } else if let Some(prev) = phases.last().filter(|prev| s <= prev.end) {
                p.push(
                    t.key("start"),
                    format!(
                        "phases must be in date order and not overlap: starts {s}, but the phase before it ({}) runs to {}",
                        prev.name, prev.end
                    ),
                );
            }
        }
        t.finish(p);
        if let (Some(name), Some(start), Some(end), Some(accepts_payments)) = (name, start, end, accepts) {
            phases.push(Phase { name, zh, start, end, accepts_payments });
        }
    }
    if !phases.is_empty() && !phases.iter().any(|ph| ph.accepts_payments) {
        p.push(&key, "no phase accepts payments (set accepts_payments = true on at least one)");
    }
    phases
}

fn read_cash(c: &mut Table<'_>, p: &mut Problems) -> Option<CashRule> {
    let key = c.key("insurances");
    let items = c.array("insurances", true, "an array of \"pension\" / \"medical\"", p);
    let mut insurances = Vec::new();
    for (i, item) in items.unwrap_or(&[]).iter().enumerate() {
        let k = format!("{key}[{i}]");
        match item {
            Value::String(s) => match Insurance::parse(s) {
                Ok(ins) if insurances.contains(&ins) => p.push(k, format!("{} is listed twice", ins.code())),
                Ok(ins) => insurances.push(ins),
                Err(e) => p.push(k, e.to_string()),
            },
            other => p.push(k, format!("expected \"pension\" or \"medical\", got {}", keys::kind(other))),
        }
    }
    let days = c.integer("deposit_within_days", true, 0..=MAX_DEPOSIT_DAYS, p);
    let remote = c.integer("remote_deposit_within_days", true, 0..=MAX_DEPOSIT_DAYS, p);
    if let (Some(d), Some(r)) = (days, remote) {
        if r < d {
            p.push(
                c.key("remote_deposit_within_days"),
                format!("expected at least deposit_within_days ({d}): remote points get longer, not shorter, got {r}"),
            );
            return None;
        }
    }
    items?;
    Some(CashRule {
        insurances,
        deposit_within_days: u32::try_from(days?).ok()?,
        remote_deposit_within_days: u32::try_from(remote?).ok()?,
    })
}

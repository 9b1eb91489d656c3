//! The policy file: the 2020 Weidong numbers, a 2021 variant, and every kind of invalid policy.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use time::macros::date;
use time::Date;
use zhengjiao::domain::{Fen, IdNumber, Insurance};
use zhengjiao::policy::{Policy, PolicyError, PolicyViolation};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn policy_2020_text() -> String {
    std::fs::read_to_string(repo("policy/2020-weidong.toml")).unwrap()
}

fn yuan(s: &str) -> Fen {
    Fen::from_yuan_str(s).unwrap()
}

/// A valid ID number born on `birth` (check character computed here: weights 2^(17-i) mod 11).
fn id_born(birth: Date) -> IdNumber {
    let first17 = format!("410402{:04}{:02}{:02}123", birth.year(), u8::from(birth.month()), birth.day());
    let sum: u64 = first17.bytes().enumerate().map(|(i, b)| ((1u64 << (17 - i)) % 11) * u64::from(b - b'0')).sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    IdNumber::parse(&format!("{first17}{check}")).unwrap()
}

/// The problems of an invalid policy text, as `key: message` lines.
fn problems(text: &str) -> Vec<String> {
    Policy::parse(text).unwrap_err().iter().map(ToString::to_string).collect()
}

fn assert_problem(text: &str, key: &str, contains: &str) {
    let got = problems(text);
    assert!(
        got.iter().any(|p| p.starts_with(&format!("{key}: ")) && p.contains(contains)),
        "no problem at {key} mentioning {contains:?}; got {got:#?}"
    );
}

#[test]
fn the_2020_weidong_policy_loads_with_the_plans_numbers() {
    let p = Policy::load(&repo("policy/2020-weidong.toml")).unwrap();
    assert_eq!(p.year(), 2020);
    let tiers: Vec<String> = p.pension_tiers().iter().map(ToString::to_string).collect();
    let want: Vec<String> = [200, 300, 400, 500, 600, 700, 800, 900, 1000, 1500, 2000, 2500, 3000, 4000, 5000]
        .iter()
        .map(|y| format!("{y}.00"))
        .collect();
    assert_eq!(tiers, want);
    assert_eq!(p.medical_amount().to_string(), "280.00");
    assert_eq!(p.commission_per_person_time(), yuan("1"));
    assert_eq!(p.window(), (date!(2020 - 09 - 20), date!(2020 - 12 - 30)));
    assert_eq!(p.pension_min_age(), 16);
    assert_eq!(p.pension_born_on_or_after(), date!(1960 - 01 - 01));
    assert_eq!(p.cash().insurances(), &[Insurance::Medical]);
    assert_eq!(p.cash_deposit_due(date!(2020 - 10 - 21), false), date!(2020 - 10 - 22));
    assert_eq!(p.cash_deposit_due(date!(2020 - 10 - 21), true), date!(2020 - 10 - 28));
    assert!(p.check_cash(Insurance::Medical).is_ok());
    assert_eq!(
        p.check_cash(Insurance::Pension),
        Err(PolicyViolation::CashNotAccepted { insurance: Insurance::Pension })
    );
}

#[test]
fn pension_tiers_are_checked_against_the_policy() {
    let p = Policy::load(&repo("policy/2020-weidong.toml")).unwrap();
    assert_eq!(p.pension_tier(yuan("1500")).unwrap().amount(), yuan("1500"));
    assert_eq!(p.pension_tier(yuan("200.00")).unwrap().amount(), yuan("200"));
    for not_a_tier in ["1200", "199.99", "5000.01", "0", "280"] {
        assert!(p.pension_tier(yuan(not_a_tier)).is_none(), "{not_a_tier}");
    }
    assert_eq!(p.check_pension_tier(yuan("1200")), Err(PolicyViolation::NotATier { amount: yuan("1200") }));
}

#[test]
fn payments_are_taken_in_the_collection_phase_only_boundaries_included() {
    let p = Policy::load(&repo("policy/2020-weidong.toml")).unwrap();
    let cases = [
        (date!(2020 - 09 - 19), None, false),
        (date!(2020 - 09 - 20), Some("publicity"), false),
        (date!(2020 - 10 - 19), Some("publicity"), false),
        (date!(2020 - 10 - 20), Some("collection"), true),
        (date!(2020 - 11 - 30), Some("collection"), true),
        (date!(2020 - 12 - 01), Some("summary"), false),
        (date!(2020 - 12 - 30), Some("summary"), false),
        (date!(2020 - 12 - 31), None, false),
    ];
    for (day, phase, accepts) in cases {
        assert_eq!(p.phase_on(day).map(|ph| ph.name()), phase, "{day}");
        assert_eq!(p.accepts_payment_on(day), accepts, "{day}");
        assert_eq!(p.check_payment_date(day).is_ok(), accepts, "{day}");
    }
    assert_eq!(
        p.check_payment_date(date!(2020 - 12 - 01)),
        Err(PolicyViolation::NoPaymentsOn { date: date!(2020 - 12 - 01), phase: Some("summary".to_owned()) })
    );
}

#[test]
fn pension_age_rule_on_boundary_dates() {
    let p = Policy::load(&repo("policy/2020-weidong.toml")).unwrap();
    let pay = date!(2020 - 10 - 21);
    // The 16th birthday on the payment date itself counts.
    assert_eq!(p.check_pension_age(&id_born(date!(2004 - 10 - 21)), pay), Ok(()));
    assert_eq!(
        p.check_pension_age(&id_born(date!(2004 - 10 - 22)), pay),
        Err(PolicyViolation::TooYoung { age: 15, min_age: 16 })
    );
    // Born on 1960-01-01: in; a day earlier: out.
    assert_eq!(p.check_pension_age(&id_born(date!(1960 - 01 - 01)), pay), Ok(()));
    assert_eq!(
        p.check_pension_age(&id_born(date!(1959 - 12 - 31)), pay),
        Err(PolicyViolation::BornTooEarly { born_on_or_after: date!(1960 - 01 - 01) })
    );
}

#[test]
fn a_2021_variant_is_applied_not_the_2020_numbers() {
    let p = Policy::load(&repo("policy/2021-weidong-example.toml")).unwrap();
    assert_eq!(p.year(), 2021);
    assert_eq!(p.medical_amount(), yuan("320"));
    assert_eq!(p.medical_amount().to_string(), "320.00");
    assert!(p.accepts_payment_on(date!(2021 - 10 - 20)));
    assert!(!p.accepts_payment_on(date!(2020 - 10 - 20)));
    assert_eq!(
        p.check_pension_age(&id_born(date!(1960 - 06 - 01)), date!(2021 - 10 - 21)),
        Err(PolicyViolation::BornTooEarly { born_on_or_after: date!(1961 - 01 - 01) })
    );
    // The same checks run against an edited copy: the numbers come from the file.
    let edited = policy_2020_text().replace("amount_yuan = 280", "amount_yuan = \"333.30\"");
    assert_eq!(Policy::parse(&edited).unwrap().medical_amount().as_fen(), 33_330);
}

#[test]
fn each_invalid_policy_names_its_key() {
    let base = policy_2020_text();
    let tiers = "tiers_yuan = [200, 300, 400, 500, 600, 700, 800, 900, 1000, 1500, 2000, 2500, 3000, 4000, 5000]";
    let cases: Vec<(String, &str, &str)> = vec![
        (base.replace(tiers, "tiers_yuan = [200, 300, 400, 350]"), "pension.tiers_yuan[3]", "ascending"),
        (base.replace(tiers, "tiers_yuan = [200, 300, 300]"), "pension.tiers_yuan[2]", "repeats"),
        (base.replace(tiers, "tiers_yuan = [0, 300]"), "pension.tiers_yuan[0]", "above zero"),
        (base.replace(tiers, "tiers_yuan = [200, 300.5]"), "pension.tiers_yuan[1]", "float"),
        (base.replace(tiers, "tiers_yuan = []"), "pension.tiers_yuan", "1 to"),
        (base.replace("amount_yuan = 280", "amount_yuan = 0"), "medical.amount_yuan", "above zero"),
        (base.replace("amount_yuan = 280", "amount_yuan = -280"), "medical.amount_yuan", "negative"),
        (base.replace("amount_yuan = 280", "amount_yuan = 280.0"), "medical.amount_yuan", "float"),
        (base.replace("amount_yuan = 280", "amount_yuan = \"280.001\""), "medical.amount_yuan", "two decimals"),
        (
            base.replace("per_person_time_yuan = 1", "per_person_time_yuan = 0"),
            "commission.per_person_time_yuan",
            "above zero",
        ),
        (base.replace("year = 2020", "year = \"2020\""), "year", "an integer"),
        (base.replace("year = 2020\n", ""), "year", "missing"),
        (base.replace("min_age = 16", "min_age = 0"), "pension.min_age", "from 1 to 120"),
        (
            base.replace("born_on_or_after = 1960-01-01", "born_on_or_after = \"1960-02-30\""),
            "pension.born_on_or_after",
            "a date",
        ),
        (base.replace("end = 2020-12-30\n\n#", "end = 2020-09-01\n\n#"), "window.end", "before it starts"),
        (
            base.replace("start = 2020-09-20\nend = 2020-10-19", "start = 2020-09-01\nend = 2020-10-19"),
            "phases[0]",
            "not inside the window",
        ),
        (base.replace("end = 2020-10-19", "end = 2020-10-20"), "phases[1].start", "not overlap"),
        (
            base.replace("start = 2020-12-01\nend = 2020-12-30", "start = 2020-12-30\nend = 2020-12-01"),
            "phases[2].end",
            "before it starts",
        ),
        (base.replace("accepts_payments = true", "accepts_payments = false"), "phases", "no phase accepts payments"),
        (
            base.replace("accepts_payments = true", "accepts_payments = \"yes\""),
            "phases[1].accepts_payments",
            "true or false",
        ),
        (base.replace("name = \"summary\"", "name = \"publicity\""), "phases[2].name", "used twice"),
        (base.replace("min_age = 16", "min_age = 16\nmax_age = 59"), "pension.max_age", "unknown key"),
        (format!("colour = \"red\"\n{base}"), "colour", "unknown key"),
        (
            base.replace("insurances = [\"medical\"]", "insurances = [\"medical\", \"dental\"]"),
            "cash.insurances[1]",
            "dental",
        ),
        (
            base.replace("remote_deposit_within_days = 7", "remote_deposit_within_days = 0"),
            "cash.remote_deposit_within_days",
            "at least",
        ),
        (
            base.replace("deposit_within_days = 1\n", "deposit_within_days = 99\n"),
            "cash.deposit_within_days",
            "from 0 to 31",
        ),
    ];
    for (text, key, contains) in &cases {
        assert_problem(text, key, contains);
    }
}

#[test]
fn every_problem_is_reported_together() {
    let text = policy_2020_text()
        .replace("year = 2020", "year = 1900")
        .replace("amount_yuan = 280", "amount_yuan = 0")
        .replace("per_person_time_yuan = 1", "per_person_time_yuan = 1\nbonus = 2");
    let got = problems(&text);
    for key in ["year: ", "medical.amount_yuan: ", "commission.bonus: "] {
        assert!(got.iter().any(|p| p.starts_with(key)), "{key} missing from {got:#?}");
    }
}

#[test]
fn syntax_errors_name_the_line_and_load_errors_the_file() {
    let got = problems("year = 2020\ndistrict = \"x\nmedical = 1\n");
    assert_eq!(got.len(), 1);
    assert!(got[0].contains("line 2"), "{got:?}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, policy_2020_text().replace("amount_yuan = 280", "amount_yuan = 0")).unwrap();
    let e = Policy::load(&path).unwrap_err();
    assert!(matches!(e, PolicyError::Invalid { .. }));
    assert!(e.to_string().starts_with(&format!("{}: medical.amount_yuan: ", path.display())), "{e}");
    assert!(matches!(Policy::load(&dir.path().join("missing.toml")), Err(PolicyError::Read { .. })));
}

//! Domain types: ID numbers, serials, money, names and codes, parsed once.
#![allow(clippy::unwrap_used)]

use rust_decimal::Decimal;
use time::macros::date;
use zhengjiao::domain::{
    CollectionPointCode, CollectionSerial, Fen, FenError, Hardship, IdNumber, IdNumberError, Insurance, PersonName,
    PersonNameError, StaffNumber,
};

/// The GB 11643 check character of 17 digits, computed here independently of the library: weights
/// 2^(17-i) mod 11, check = (12 - sum mod 11) mod 11, 10 written as X.
fn check_char(first17: &str) -> char {
    assert_eq!(first17.len(), 17);
    let sum: u64 = first17
        .bytes()
        .enumerate()
        .map(|(i, b)| {
            let weight = (1u64 << (17 - i)) % 11;
            weight * u64::from(b - b'0')
        })
        .sum();
    let check = (12 - sum % 11) % 11;
    if check == 10 {
        'X'
    } else {
        char::from(b'0' + check as u8)
    }
}

fn make_id(region: &str, birth: &str, seq: &str) -> String {
    let first17 = format!("{region}{birth}{seq}");
    format!("{first17}{}", check_char(&first17))
}

/// A check character other than the right one.
fn wrong_check(id: &str) -> String {
    let (head, last) = id.split_at(17);
    let wrong = if last == "1" { '2' } else { '1' };
    format!("{head}{wrong}")
}

#[test]
fn check_char_helper_agrees_with_published_examples() {
    assert_eq!(check_char("11010519491231002"), 'X');
    assert_eq!(check_char("44052418800101001"), '4');
}

#[test]
fn known_valid_numbers_parse() {
    for (s, born) in [("11010519491231002X", date!(1949 - 12 - 31)), ("440524188001010014", date!(1880 - 01 - 01))] {
        let id = IdNumber::parse(s).unwrap();
        assert_eq!(id.as_str(), s);
        assert_eq!(id.birth_date(), born);
    }
    for (region, birth) in [("410402", "20041021"), ("810000", "19600101"), ("650102", "20000229")] {
        let s = make_id(region, birth, "123");
        assert_eq!(IdNumber::parse(&s).unwrap().as_str(), s, "{s}");
    }
}

#[test]
fn wrong_check_digit_is_refused() {
    for s in ["11010519491231002X", "440524188001010014", &make_id("410402", "20041021", "123")] {
        assert_eq!(IdNumber::parse(&wrong_check(s)), Err(IdNumberError::CheckDigit), "{s}");
    }
    // One digit mistyped in the middle.
    assert_eq!(IdNumber::parse("11010519491231012X"), Err(IdNumberError::CheckDigit));
}

#[test]
fn impossible_dates_are_refused() {
    for birth in ["19990230", "20010229", "19991301", "19990000", "19990132"] {
        let s = make_id("410402", birth, "123");
        assert_eq!(IdNumber::parse(&s), Err(IdNumberError::BirthDate), "{birth}");
    }
}

#[test]
fn fifteen_digit_numbers_are_refused_with_a_clear_message() {
    let e = IdNumber::parse("410402800101123").unwrap_err();
    assert_eq!(e, IdNumberError::FifteenDigit);
    assert_eq!(e.to_string(), "15-digit ID numbers (pre-1999) are not accepted; ask for the 18-digit number");
}

#[test]
fn bad_region_codes_are_refused() {
    for region in ["000000", "912345", "012345"] {
        let s = make_id(region, "19800101", "123");
        assert_eq!(IdNumber::parse(&s), Err(IdNumberError::Region), "{region}");
    }
}

#[test]
fn bad_length_and_characters_are_refused() {
    assert_eq!(IdNumber::parse(""), Err(IdNumberError::Empty));
    assert_eq!(IdNumber::parse("   "), Err(IdNumberError::Empty));
    assert_eq!(IdNumber::parse("11010519491231002"), Err(IdNumberError::Length { found: 17 }));
    assert_eq!(IdNumber::parse("11010519491231002X1"), Err(IdNumberError::Length { found: 19 }));
    assert_eq!(IdNumber::parse("1101051949123A002X"), Err(IdNumberError::Character { position: 14 }));
    assert_eq!(IdNumber::parse("1101051949123100X2"), Err(IdNumberError::Character { position: 17 }));
    assert_eq!(IdNumber::parse("11010519491231002Y"), Err(IdNumberError::Character { position: 18 }));
    // Non-ASCII of the right length.
    assert_eq!(IdNumber::parse("1101051949123100二X"), Err(IdNumberError::Character { position: 17 }));
}

#[test]
fn lower_case_x_and_full_width_characters_are_normalised() {
    let want = "11010519491231002X";
    for s in [
        "11010519491231002x",
        "１１０１０５１９４９１２３１００２Ｘ",
        "１１０１０５１９４９１２３１００２ｘ",
        " 11010519491231002X\t",
    ] {
        assert_eq!(IdNumber::parse(s).unwrap().as_str(), want, "{s}");
    }
}

#[test]
fn display_debug_and_errors_never_show_the_full_number() {
    let full = "11010519491231002X";
    let id = IdNumber::parse(full).unwrap();
    assert_eq!(id.masked(), "110105********002X");
    let shown = [format!("{id}"), format!("{id:?}"), format!("{:?}", Some(&id)), format!("{:#?}", vec![id.clone()])];
    for s in &shown {
        assert!(!s.contains(full), "{s}");
        assert!(!s.contains("19491231"), "{s}");
        assert!(s.contains("110105********002X"), "{s}");
    }
    for bad in [wrong_check(full), make_id("410402", "19990230", "123"), make_id("000000", "19800101", "123")] {
        let e = IdNumber::parse(&bad).unwrap_err();
        assert!(!e.to_string().contains(&bad) && !format!("{e:?}").contains(&bad), "{e}");
    }
}

#[test]
fn age_counts_completed_years() {
    let id = IdNumber::parse(&make_id("410402", "20041021", "123")).unwrap();
    assert_eq!(id.age_on(date!(2020 - 10 - 20)), 15);
    assert_eq!(id.age_on(date!(2020 - 10 - 21)), 16);
    assert_eq!(id.age_on(date!(2000 - 01 - 01)), 0);
    let leap = IdNumber::parse(&make_id("410402", "20040229", "123")).unwrap();
    assert_eq!(leap.age_on(date!(2020 - 02 - 28)), 15);
    assert_eq!(leap.age_on(date!(2020 - 02 - 29)), 16);
    assert_eq!(leap.age_on(date!(2021 - 02 - 28)), 16);
    assert_eq!(leap.age_on(date!(2021 - 03 - 01)), 17);
}

#[test]
fn fen_parsing_table() {
    let good = [
        ("280", 28_000),
        ("280.5", 28_050),
        ("280.50", 28_050),
        ("0", 0),
        ("0.01", 1),
        (" 5000 ", 500_000),
        ("007.10", 710),
    ];
    for (s, fen) in good {
        assert_eq!(Fen::from_yuan_str(s), Ok(Fen::from_fen(fen)), "{s:?}");
    }
    let bad =
        ["", "1.234", "-1", "+1", "1e3", "1,000", "１２", ".5", "5.", "1.2.3", "abc", "99999999999999999999", "NaN"];
    for s in bad {
        assert!(Fen::from_yuan_str(s).is_err(), "{s:?} accepted");
    }
    assert!(matches!(Fen::from_yuan_str("1.234"), Err(FenError::TooPrecise(_))));
    assert_eq!(Fen::from_yuan_str(""), Err(FenError::Empty));
    // An ID number in the wrong column is not quoted back whole.
    for e in [
        Fen::from_yuan_str("11010519491231002X").unwrap_err().to_string(),
        Insurance::parse("11010519491231002X").unwrap_err().to_string(),
        Hardship::parse("11010519491231002X").unwrap_err().to_string(),
    ] {
        assert!(!e.contains("11010519491231002X") && e.contains("1101051949..."), "{e}");
    }
}

#[test]
fn fen_display_decimal_and_arithmetic() {
    let f = Fen::from_yuan_str("280").unwrap();
    assert_eq!(f.to_string(), "280.00");
    assert_eq!(f.to_yuan_string(), "280.00");
    assert_eq!(f.as_fen(), 28_000);
    assert_eq!(Fen::from_fen(5).to_string(), "0.05");
    assert_eq!(Fen::from_fen(-150).to_string(), "-1.50");
    assert_eq!(Fen::from_decimal(Decimal::new(28050, 2)), Ok(Fen::from_fen(28_050)));
    assert_eq!(Fen::from_decimal(Decimal::new(2805000, 4)), Ok(Fen::from_fen(28_050)));
    assert!(Fen::from_decimal(Decimal::new(1234, 3)).is_err());
    assert!(Fen::from_decimal(Decimal::new(-1, 0)).is_err());
    assert_eq!(f.to_decimal(), Decimal::new(28000, 2));
    assert_eq!(f.checked_add(Fen::from_fen(1)), Some(Fen::from_fen(28_001)));
    assert_eq!(Fen::from_fen(1).checked_sub(f), Some(Fen::from_fen(-27_999)));
    assert_eq!(Fen::from_fen(i64::MAX).checked_add(Fen::from_fen(1)), None);
}

#[test]
fn collection_serials() {
    assert_eq!(CollectionSerial::parse(" YL2020-000001 ").unwrap().as_str(), "YL2020-000001");
    assert!(CollectionSerial::parse(&"A".repeat(32)).is_ok());
    for bad in ["", &"A".repeat(33), "YL 1", "YL_1", "流水1"] {
        assert!(CollectionSerial::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn insurance_and_hardship() {
    for (s, want) in [
        ("养老", Insurance::Pension),
        (" pension ", Insurance::Pension),
        ("医疗", Insurance::Medical),
        ("medical", Insurance::Medical),
    ] {
        assert_eq!(Insurance::parse(s).unwrap(), want);
    }
    assert!(Insurance::parse("工伤").is_err());
    assert_eq!(Insurance::Pension.code(), "pension");
    assert_eq!(Insurance::Medical.zh(), "医疗");
    assert_eq!(Hardship::parse("").unwrap(), Hardship::None);
    assert_eq!(Hardship::parse("低保").unwrap(), Hardship::Dibao);
    assert_eq!(Hardship::parse(" 特困 ").unwrap(), Hardship::Tekun);
    assert!(Hardship::parse("五保").is_err());
}

#[test]
fn staff_numbers_and_collection_point_codes() {
    assert_eq!(StaffNumber::parse("1001").unwrap().as_str(), "1001");
    assert!(StaffNumber::parse("ABCDEFGH").is_ok());
    for bad in ["", "ABCDEFGHI", "10 01", "工号", "a\tb"] {
        assert!(StaffNumber::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(CollectionPointCode::parse("WD_DX-001").unwrap().as_str(), "WD_DX-001");
    for bad in ["", &"P".repeat(33), "WD DX", "WD.1"] {
        assert!(CollectionPointCode::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn person_names() {
    let name = PersonName::parse(" 张三 ").unwrap();
    assert_eq!(name.as_str(), "张三");
    assert_eq!(format!("{name:?}"), "PersonName(..)");
    assert!(PersonName::parse(&"王".repeat(15)).is_ok());
    assert!(matches!(PersonName::parse(&"王".repeat(16)), Err(PersonNameError::TooLong { found: 32, max: 30 })));
    assert!(PersonName::parse(&"a".repeat(30)).is_ok());
    assert_eq!(PersonName::parse(""), Err(PersonNameError::Empty));
    assert_eq!(PersonName::parse("张\u{7}三"), Err(PersonNameError::Control { position: 2 }));
    assert_eq!(PersonName::parse("张\u{e5e5}"), Err(PersonNameError::Unencodable { position: 2 }));
    // Rare characters outside the BMP take 4 bytes in GB18030.
    assert!(PersonName::parse("𠮷野").is_ok());
}

#[test]
fn arbitrary_inputs_never_panic() {
    let alphabet: Vec<char> = "0123456789xXＸｘ０９.-+ e张王\u{0}\u{7f}\u{e5e5}𠮷 \t".chars().collect();
    let mut seed: u64 = 0x2020_0920;
    for _ in 0..20_000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let len = (seed >> 59) as usize + ((seed >> 20) % 3) as usize * 6;
        let s: String = (0..len).map(|i| alphabet[((seed >> (i % 50)) as usize + i * 7) % alphabet.len()]).collect();
        let _ = IdNumber::parse(&s).map(|id| (id.masked(), id.age_on(time::Date::MIN), id.age_on(time::Date::MAX)));
        let _ = Fen::from_yuan_str(&s);
        let _ = CollectionSerial::parse(&s);
        let _ = CollectionPointCode::parse(&s);
        let _ = StaffNumber::parse(&s);
        let _ = PersonName::parse(&s);
        let _ = Insurance::parse(&s);
        let _ = Hardship::parse(&s);
    }
}

//! The configuration file: the example passes; every bad value, unknown key and missing secret is
//! reported with its key path, all of them together.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use time::macros::datetime;
use zhengjiao::config::{check_config_command, prepare_serve, ClockSetting, Config, ConfigErrors, Role, Transport};
use zhengjiao::domain::Fen;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A minimal valid configuration, with the policy file given by absolute path.
fn base(policy: &str) -> String {
    format!(
        r#"
data_dir = "data"
policy = {policy:?}

[api]
listen = "127.0.0.1:0"

[ledger]
endpoint = "https://ledger.example.cn/api/"
key_id = "district-1"
secret = "inline-secret-value"

[[terminals]]
id = "T01"
collection_point = "WD-DX-001"
till = "01"
transport = "tcp:127.0.0.1:9100"

[[terminals]]
id = "T02"
collection_point = "WD-DX-001"
till = "02"
transport = "serial:/dev/ttyUSB0?baud=9600"
check = "crc16"

[[operators]]
token_sha256 = "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"
staff_no = "1001"
collection_point = "WD-DX-001"
role = "collector"
"#,
        policy = repo(policy).display().to_string()
    )
}

fn valid() -> String {
    base("policy/2020-weidong.toml")
}

struct Written {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn write(text: &str) -> Written {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zhengjiao.toml");
    std::fs::write(&path, text).unwrap();
    Written { dir, path }
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::load(&write(text).path)
}

fn problems(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn assert_problem(text: &str, key: &str, contains: &str) {
    let got = problems(text);
    assert!(
        got.iter().any(|p| p.starts_with(&format!("{key}: ")) && p.contains(contains)),
        "no problem at {key} mentioning {contains:?}; got {got:#?}"
    );
}

fn code(c: ExitCode) -> String {
    format!("{c:?}")
}

#[test]
fn the_example_file_passes_check_config() {
    let example = repo("zhengjiao.example.toml");
    let c = Config::load(&example).unwrap();
    assert_eq!(c.terminals.len(), 2);
    assert_eq!(c.operators.len(), 2);
    assert_eq!(c.policy.year(), 2020);
    assert_eq!(c.policy.medical_amount(), Fen::from_yuan(280).unwrap());
    assert_eq!(c.data_dir, repo("data"));
    assert_eq!(c.clock, ClockSetting::StartAt(datetime!(2020-10-21 09:00:00 +08:00)));
    assert_eq!(c.terminals[1].transport, Transport::Serial { path: "/dev/ttyUSB0".to_owned(), baud: 9600 });
    assert_eq!(c.operators[1].role, Role::Admin);
    assert_eq!(code(check_config_command(&example)), code(ExitCode::SUCCESS));
}

#[test]
fn a_valid_config_is_read_whole() {
    let w = write(&valid());
    let c = Config::load(&w.path).unwrap();
    assert_eq!(c.data_dir, w.dir.path().join("data"));
    assert_eq!(c.clock, ClockSetting::Real);
    assert!(c.clock.start().is_real());
    assert_eq!(c.ledger.endpoint, "https://ledger.example.cn/api");
    assert_eq!(c.ledger.secret.expose(), "inline-secret-value");
    assert_eq!(c.terminals[0].transport, Transport::Tcp { host: "127.0.0.1".to_owned(), port: 9100 });
    assert_eq!(c.terminals[0].ecr.link.frame.check, zhengjiao_protocol::Check::Lrc);
    assert_eq!(c.terminals[1].ecr.link.frame.check, zhengjiao_protocol::Check::Crc16);
    assert_eq!(c.operators[0].token_sha256, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
    assert_eq!(c.operators[0].staff_no.as_str(), "1001");
    // The secret never shows in debug output.
    assert!(!format!("{c:?}").contains("inline-secret-value"));
}

#[test]
fn timeouts_are_read_and_checked() {
    let text = valid().replace(
        "transport = \"tcp:127.0.0.1:9100\"\n",
        "transport = \"tcp:127.0.0.1:9100\"\ntimeouts = { t_ack_ms = 2000, money_ms = 120000, max_resends = 5 }\n",
    );
    let c = load(&text).unwrap();
    assert_eq!(c.terminals[0].ecr.link.t_ack, std::time::Duration::from_millis(2000));
    assert_eq!(c.terminals[0].ecr.timeouts.money, std::time::Duration::from_secs(120));
    assert_eq!(c.terminals[0].ecr.link.max_resends, 5);
    assert_eq!(c.terminals[1].ecr.timeouts.money, std::time::Duration::from_secs(90));
    let bad = text.replace("t_ack_ms = 2000", "t_ack_ms = 5");
    assert_problem(&bad, "terminals[0].timeouts.t_ack_ms", "from 100 to 60000, got 5");
    let unknown = text.replace("t_ack_ms = 2000", "t_akc_ms = 2000");
    assert_problem(&unknown, "terminals[0].timeouts.t_akc_ms", "unknown key");
}

#[test]
fn each_bad_value_names_its_key_path() {
    let v = valid();
    let cases: Vec<(String, &str, &str)> = vec![
        (
            v.replace("serial:/dev/ttyUSB0?baud=9600", "udp:x"),
            "terminals[1].transport",
            r#"expected "serial:/dev/...?baud=N" or "tcp:HOST:PORT", got "udp:x""#,
        ),
        (
            v.replace("serial:/dev/ttyUSB0?baud=9600", "serial:/dev/ttyUSB0?baud=9601"),
            "terminals[1].transport",
            "baud must be one of",
        ),
        (v.replace("serial:/dev/ttyUSB0?baud=9600", "serial:/dev/ttyUSB0"), "terminals[1].transport", "no ?baud=N"),
        (v.replace("tcp:127.0.0.1:9100", "tcp:127.0.0.1:0"), "terminals[0].transport", "port"),
        (v.replace("tcp:127.0.0.1:9100", "tcp:127.0.0.1"), "terminals[0].transport", "tcp:HOST:PORT"),
        (v.replace("check = \"crc16\"", "check = \"crc32\""), "terminals[1].check", "\"lrc\" or \"crc16\""),
        (v.replace("till = \"02\"", "till = \"123456789\""), "terminals[1].till", "1 to 8"),
        (v.replace("id = \"T02\"", "id = \"T01\""), "terminals[1].id", "used twice"),
        (
            v.replace("collection_point = \"WD-DX-001\"\ntill = \"01\"", "collection_point = \"网点\"\ntill = \"01\""),
            "terminals[0].collection_point",
            "collection point code",
        ),
        (v.replace("listen = \"127.0.0.1:0\"", "listen = \"localhost\""), "api.listen", "an address like"),
        (v.replace("staff_no = \"1001\"", "staff_no = \"123456789\""), "operators[0].staff_no", "at most 8"),
        (v.replace("role = \"collector\"", "role = \"boss\""), "operators[0].role", "\"collector\" or \"admin\""),
        (
            v.replace("9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", "abc"),
            "operators[0].token_sha256",
            "64 hex digits",
        ),
        (
            v.replace("collection_point = \"WD-DX-001\"\nrole", "role"),
            "operators[0].collection_point",
            "a collector needs",
        ),
        (v.replace("key_id = \"district-1\"", "key_id = \"\""), "ledger.key_id", "printable ASCII"),
        (v.replace("data_dir = \"data\"", "data_dir = 5"), "data_dir", "got an integer"),
        (v.replace("data_dir = \"data\"\n", ""), "data_dir", "missing"),
        (v.replace("[api]\nlisten = \"127.0.0.1:0\"\n", ""), "api", "missing"),
        (format!("clock = \"yesterday\"\n{v}"), "clock", "2020-10-21T09:00:00+08:00"),
        (format!("clock = 2020-10-21T09:00:00\n{v}"), "clock", "with its offset"),
    ];
    for (text, key, contains) in &cases {
        assert_problem(text, key, contains);
    }
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    assert_problem(&format!("colour = \"red\"\n{}", valid()), "colour", "unknown key; expected one of:");
    assert_problem(&valid().replace("till = \"01\"", "till = \"01\"\nspeed = 3"), "terminals[0].speed", "unknown key");
    assert_problem(&valid().replace("key_id =", "keyid = \"x\"\nkey_id ="), "ledger.keyid", "unknown key");
}

#[test]
fn the_clock_starts_at_the_configured_instant_and_runs_on() {
    let c = load(&format!("clock = \"2020-10-21T01:00:00Z\"\n{}", valid())).unwrap();
    let ClockSetting::StartAt(at) = c.clock else { panic!("{:?}", c.clock) };
    assert_eq!(at, datetime!(2020-10-21 09:00:00 +08:00));
    assert_eq!(at.offset(), time::macros::offset!(+8));
    let clock = c.clock.start();
    let now = clock.now();
    assert!(now >= at && now < datetime!(2020-10-21 10:00:00 +08:00), "{now}");
    assert_eq!(now.offset(), time::macros::offset!(+8));
    assert_eq!(clock.today(), time::macros::date!(2020 - 10 - 21));
    let native = load(&format!("clock = 2020-10-21T09:00:00+08:00\n{}", valid())).unwrap();
    assert_eq!(native.clock, ClockSetting::StartAt(at));
}

#[test]
fn the_secret_may_come_from_the_environment() {
    let var = "ZHENGJIAO_TEST_SECRET_FROM_ENV_4";
    std::env::set_var(var, "env-secret");
    let text = valid().replace("secret = \"inline-secret-value\"", &format!("secret_env = \"{var}\""));
    assert_eq!(load(&text).unwrap().ledger.secret.expose(), "env-secret");

    let unset = valid().replace("secret = \"inline-secret-value\"", "secret_env = \"ZHENGJIAO_TEST_SURELY_UNSET_4\"");
    assert_problem(&unset, "ledger.secret_env", "ZHENGJIAO_TEST_SURELY_UNSET_4 is not set");
}

#[test]
fn the_secret_may_come_from_a_file() {
    let text = valid().replace("secret = \"inline-secret-value\"", "secret_file = \"ledger.secret\"");
    let w = write(&text);
    std::fs::write(w.dir.path().join("ledger.secret"), "file-secret\n").unwrap();
    assert_eq!(Config::load(&w.path).unwrap().ledger.secret.expose(), "file-secret");

    let missing = write(&text);
    let e = Config::load(&missing.path).unwrap_err();
    assert!(e.problems().iter().any(|p| p.key == "ledger.secret_file" && p.message.contains("cannot read")), "{e}");

    let empty = write(&text);
    std::fs::write(empty.dir.path().join("ledger.secret"), "\n").unwrap();
    let e = Config::load(&empty.path).unwrap_err();
    assert!(e.problems().iter().any(|p| p.key == "ledger.secret_file" && p.message.contains("empty")), "{e}");
}

#[test]
fn exactly_one_secret_source() {
    let both = valid().replace("secret = \"inline-secret-value\"", "secret = \"a\"\nsecret_env = \"B\"");
    assert_problem(&both, "ledger.secret", "exactly one of secret, secret_env or secret_file");
    let none = valid().replace("secret = \"inline-secret-value\"\n", "");
    assert_problem(&none, "ledger.secret", "missing");
}

#[test]
fn a_secret_is_never_echoed_in_problems() {
    let text = valid().replace("secret = \"inline-secret-value\"", "secret = 123456789");
    let got = problems(&text);
    assert!(got.iter().any(|p| p.starts_with("ledger.secret: ")), "{got:?}");
    assert!(!got.iter().any(|p| p.contains("123456789")), "{got:?}");
    // A syntax error on the secret's line does not quote the line.
    let broken = valid().replace("secret = \"inline-secret-value\"", "secret = \"inline-secret-value");
    let got = problems(&broken);
    assert!(got.iter().all(|p| !p.contains("inline-secret-value")), "{got:?}");
    assert!(got.iter().any(|p| p.contains("line ")), "{got:?}");
}

#[test]
fn plain_http_is_refused_except_to_loopback() {
    for bad in
        ["http://ledger.example.cn", "http://10.0.0.5:8400", "ftp://ledger.example.cn", "https://", "https://user:pw@h"]
    {
        assert_problem(
            &valid().replace("https://ledger.example.cn/api/", bad),
            "ledger.endpoint",
            "expected an https:// URL",
        );
    }
    assert_problem(
        &valid().replace("https://ledger.example.cn/api/", "http://ledger.example.cn"),
        "ledger.endpoint",
        "needs https://",
    );
    // A password in the URL is refused without being repeated.
    let with_password = valid().replace("https://ledger.example.cn/api/", "https://alice:hunter2pw@ledger.example.cn/");
    let got = problems(&with_password);
    assert!(got.iter().any(|p| p.contains("credentials in the URL are not accepted")), "{got:#?}");
    assert!(got.iter().all(|p| !p.contains("hunter2pw")), "the password was echoed: {got:#?}");
    for good in ["http://127.0.0.1:8400", "http://localhost:8400/", "http://[::1]:8400", "https://10.0.0.5"] {
        assert!(load(&valid().replace("https://ledger.example.cn/api/", good)).is_ok(), "{good}");
    }
}

#[test]
fn multiple_problems_are_all_reported() {
    let text = valid()
        .replace("serial:/dev/ttyUSB0?baud=9600", "udp:x")
        .replace("https://ledger.example.cn/api/", "http://ledger.example.cn")
        .replace("role = \"collector\"", "role = \"boss\"")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"nowhere\"\nbacklog = 5");
    let got = problems(&text);
    for key in ["terminals[1].transport: ", "ledger.endpoint: ", "operators[0].role: ", "api.listen: ", "api.backlog: "]
    {
        assert!(got.iter().any(|p| p.starts_with(key)), "{key} missing from {got:#?}");
    }
    assert_eq!(got.len(), 5, "{got:#?}");
}

#[test]
fn policy_problems_are_reported_with_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    let text = std::fs::read_to_string(repo("policy/2020-weidong.toml"))
        .unwrap()
        .replace("amount_yuan = 280", "amount_yuan = 0");
    std::fs::write(&policy, text).unwrap();
    let config =
        valid().replace(&repo("policy/2020-weidong.toml").display().to_string(), &policy.display().to_string());
    assert_problem(&config, &format!("{}: medical.amount_yuan", policy.display()), "above zero");
    let missing = valid().replace("2020-weidong.toml", "1999-nowhere.toml");
    assert_problem(&missing, "policy", "cannot read the policy file");
}

#[test]
fn the_policy_named_in_the_config_is_the_one_applied() {
    let c = load(&base("policy/2021-weidong-example.toml")).unwrap();
    assert_eq!(c.policy.year(), 2021);
    assert_eq!(c.policy.medical_amount(), Fen::from_yuan(320).unwrap());
}

#[test]
fn check_config_exit_codes() {
    assert_eq!(code(check_config_command(&write(&valid()).path)), code(ExitCode::SUCCESS));
    let bad = write(&valid().replace("role = \"collector\"", "role = \"boss\""));
    assert_eq!(code(check_config_command(&bad.path)), code(ExitCode::FAILURE));
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(code(check_config_command(&dir.path().join("absent.toml"))), code(ExitCode::from(2)));
    assert!(matches!(Config::load(&dir.path().join("absent.toml")), Err(ConfigErrors::Unreadable { .. })));
}

#[test]
fn serve_refuses_a_bad_config_and_prepares_the_data_directory() {
    let bad = write(&valid().replace("role = \"collector\"", "role = \"boss\""));
    assert!(prepare_serve(&bad.path).is_err());
    assert!(!bad.dir.path().join("data").exists());

    let good = write(&valid());
    let c = prepare_serve(&good.path).unwrap();
    assert!(c.data_dir.is_dir());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&c.data_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
}

//! The frame inspector as a field engineer runs it: the real `zhengjiao` binary, hex in, JSON out.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use zhengjiao::inspect::to_hex;

fn vector(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol/tests/vectors").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zhengjiao"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn decodes_a_frame_given_as_arguments() {
    let hex = vector("sale-response.lrc.hex");
    let words: Vec<&str> = hex.split_whitespace().collect();
    let mut args = vec!["frame", "decode", "--dir", "response"];
    args.extend(&words);
    let out = run(&args, None);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout_lines(&out), vec![vector("sale-response.json").trim_end().to_owned()]);
}

#[test]
fn decodes_a_multi_line_capture_from_stdin_in_either_dialect() {
    for (file, check) in [("sale-request.lrc.hex", "lrc"), ("sale-request.crc16.hex", "crc16")] {
        let out = run(&["frame", "decode", "--dir", "request", "--check", check], Some(&vector(file)));
        assert_eq!(out.status.code(), Some(0), "{check}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(stdout_lines(&out), vec![vector("sale-request.json").trim_end().to_owned()]);
    }
}

#[test]
fn the_wrong_dialect_is_a_broken_frame() {
    let out = run(&["frame", "decode", "--dir", "request", "--check", "crc16"], Some(&vector("sale-request.lrc.hex")));
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout_lines(&out);
    assert!(lines[0].starts_with(r#"{"error":"#) && lines[0].ends_with(r#""offset":0}"#), "{lines:?}");
}

#[test]
fn skips_noise_reports_controls_and_broken_frames_with_offsets() {
    // noise 41 | ACK | a frame with a corrupted check at offset 2 | ENQ | a frame at offset 11
    let capture = "41 06  02 00 03 41 42 43 03 41  05  02 00 03 41 42 43 03 40";
    let out = run(&["frame", "decode", "--dir", "request", capture], None);
    assert_eq!(out.status.code(), Some(1));
    let lines = stdout_lines(&out);
    assert_eq!(lines[0], r#"{"control":"ACK"}"#);
    assert_eq!(lines[1], r#"{"error":"lrc check mismatch: frame carries 0x0041, bytes give 0x0040","offset":2}"#);
    assert_eq!(lines[2], r#"{"control":"ENQ"}"#);
    // The frame at 11 is well-formed but "ABC" is no request: the error points into its DATA.
    assert_eq!(lines[3], r#"{"error":"field type at byte 3: message ends after 3 bytes; 63 needed","offset":17}"#);
    assert_eq!(lines.len(), 4);
}

#[test]
fn a_message_error_names_the_field_and_the_capture_offset() {
    // A valid request frame behind 3 noise bytes, with the amount's first digit replaced by 'X'.
    let mut bytes = hex_bytes(&vector("sale-request.lrc.hex"));
    let amount_at = 3 + 3 + 2 + 8 + 8; // STX+LEN, token, type, till, operator
    bytes[amount_at] = b'X';
    let lrc = bytes[1..bytes.len() - 1].iter().fold(0u8, |a, b| a ^ b);
    let last = bytes.len() - 1;
    bytes[last] = lrc;
    let capture = format!("aa bb cc {}", to_hex(&bytes));
    let out = run(&["frame", "decode", "--dir", "request", &capture], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout_lines(&out),
        vec![format!(
            r#"{{"error":"field amount_fen at byte 21: byte 0x58 at index 0 is not a decimal digit","offset":{}}}"#,
            3 + amount_at
        )]
    );
}

#[test]
fn a_partial_frame_at_the_end_of_the_capture_is_dropped_and_the_rest_rescanned() {
    // A stray STX promising 150 bytes swallows an ENQ and a complete 68-byte frame; at the end of the
    // capture it is dropped, and both are found behind it.
    let frame = to_hex(&hex_bytes(&vector("status-request.lrc.hex")));
    let capture = format!("02 01 50 05 {frame}");
    let out = run(&["frame", "decode", "--dir", "request", &capture], None);
    let lines = stdout_lines(&out);
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0], r#"{"error":"incomplete frame: LEN promises 155 bytes in all, only 72 arrived","offset":0}"#);
    assert_eq!(lines[1], r#"{"control":"ENQ"}"#);
    assert_eq!(lines[2], vector("status-request.json").trim_end());
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn bad_usage_exits_2() {
    assert_eq!(run(&["frame", "decode", "--dir", "request", "02 0g"], None).status.code(), Some(2));
    assert_eq!(run(&["frame", "decode", "--dir", "request", "020"], None).status.code(), Some(2));
    assert_eq!(run(&["frame", "decode", "02"], None).status.code(), Some(2));
    assert_eq!(run(&["frame", "decode", "--dir", "sideways", "02"], None).status.code(), Some(2));
    assert_eq!(run(&["frame", "encode", "--check", "md5"], Some("")).status.code(), Some(2));
}

#[test]
fn encodes_json_lines_to_frames() {
    let input = format!(
        "{}\n\n{}\n{{\"control\":\"NAK\"}}\n",
        vector("sale-request.json").trim_end(),
        vector("settle-response.json").trim_end()
    );
    let out = run(&["frame", "encode"], Some(&input));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout_lines(&out),
        vec![
            to_hex(&hex_bytes(&vector("sale-request.lrc.hex"))),
            to_hex(&hex_bytes(&vector("settle-response.lrc.hex"))),
            "15".to_owned(),
        ]
    );
    let out = run(&["frame", "encode", "--check", "crc16"], Some(&vector("query-response.json")));
    assert_eq!(stdout_lines(&out), vec![to_hex(&hex_bytes(&vector("query-response.crc16.hex")))]);
}

#[test]
fn encode_refuses_what_breaks_the_protocol_naming_the_field() {
    let sale = vector("sale-request.json");
    let cases = [
        (sale.replace("DESK01", "DESK0123X"), "line 1: field till: 9 bytes, wider than the field's 8"),
        (sale.replace("\"sale\"", "\"deposit\""), "line 1: field type: expected one of sale"),
        (sale.replace("28000", "1234567890123"), "line 1: field amount_fen: 13 bytes, wider than the field's 12"),
        (sale.replace("\"0F02\":\"02\"", "\"0F02\":\"03\""), "line 1: field memo.0F02: expected 01 (pension)"),
        (sale.replace("\"token\":\"123\"", "\"token\":\"099\""), "line 1: field token: expected a token"),
        ("not json".to_owned(), "line 1: not JSON"),
    ];
    for (input, expected) in cases {
        let out = run(&["frame", "encode"], Some(&input));
        assert_eq!(out.status.code(), Some(1), "{input}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with(expected), "{stderr:?} does not start with {expected:?}");
        assert!(out.stdout.is_empty());
    }
}

fn hex_bytes(text: &str) -> Vec<u8> {
    zhengjiao::inspect::parse_hex(text).unwrap()
}

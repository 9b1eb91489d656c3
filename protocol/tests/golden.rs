//! Golden vectors (tests/vectors/): every frame decodes to its JSON and every JSON encodes to its frame.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};

use zhengjiao_protocol::frame::{encode_frame, scan, Item};
use zhengjiao_protocol::json::Line;
use zhengjiao_protocol::{Check, FrameConfig, Request, Response};

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn parse_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_digit(16).unwrap_or_else(|| panic!("bad hex digit {c:?}")) as u8)
        .collect();
    assert_eq!(digits.len() % 2, 0, "odd number of hex digits");
    digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
}

struct Vector {
    name: String,
    json: String,
    frames: Vec<(Check, bool, Vec<u8>)>,
}

fn load() -> Vec<Vector> {
    let dir = vectors_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".json").map(str::to_owned))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let json = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap().trim_end().to_owned();
            let mut frames = Vec::new();
            for (check, ext) in [(Check::Lrc, "lrc"), (Check::Crc16, "crc16")] {
                for decode_only in [false, true] {
                    let file =
                        if decode_only { format!("{name}.{ext}.decode-only.hex") } else { format!("{name}.{ext}.hex") };
                    if let Ok(text) = std::fs::read_to_string(dir.join(file)) {
                        frames.push((check, decode_only, parse_hex(&text)));
                    }
                }
            }
            assert!(!frames.is_empty(), "vector {name} has no frame");
            Vector { name, json, frames }
        })
        .collect()
}

fn decode_frame(bytes: &[u8], check: Check) -> Vec<u8> {
    let scanned = scan(bytes, &FrameConfig::new(check));
    assert_eq!(scanned.noise, 0);
    assert_eq!(scanned.consumed, bytes.len(), "the file holds exactly one frame");
    match scanned.item {
        Some(Item::Frame(data)) => data.to_vec(),
        other => panic!("not a frame: {other:?}"),
    }
}

#[test]
fn the_vector_set_covers_both_dialects_and_directions() {
    let vectors = load();
    assert!(vectors.len() >= 19, "only {} vectors", vectors.len());
    let frames: Vec<_> = vectors.iter().flat_map(|v| v.frames.iter().map(move |f| (v, f))).collect();
    assert!(frames.iter().any(|(_, (c, _, _))| *c == Check::Crc16));
    assert!(frames.iter().any(|(v, _)| v.json.contains("\"dir\":\"request\"")));
    assert!(frames.iter().any(|(v, _)| v.json.contains("\"dir\":\"response\"")));
    assert!(frames.iter().any(|(_, (_, decode_only, _))| *decode_only));
}

#[test]
fn every_frame_decodes_to_its_json() {
    for v in load() {
        for (check, _, bytes) in &v.frames {
            let data = decode_frame(bytes, *check);
            let line = if v.json.contains("\"dir\":\"request\"") {
                Line::Request(Request::decode(&data).unwrap_or_else(|e| panic!("{} ({check}): {e}", v.name)))
            } else {
                Line::Response(Response::decode(&data).unwrap_or_else(|e| panic!("{} ({check}): {e}", v.name)))
            };
            assert_eq!(line.to_json(), v.json, "{} ({check})", v.name);
        }
    }
}

#[test]
fn every_json_encodes_to_its_frame() {
    for v in load() {
        let line = Line::from_json(&v.json).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        let data = match &line {
            Line::Request(r) => r.encode().unwrap(),
            Line::Response(r) => r.encode().unwrap(),
            Line::Control(_) => unreachable!(),
        };
        for (check, decode_only, bytes) in &v.frames {
            let encoded = encode_frame(&data, *check).unwrap();
            if *decode_only {
                // What the JSON drops (unknown memo tags) makes these frames longer than the canonical
                // frame of the same dialect, which the vector must also have and which is checked here.
                assert!(encoded.len() < bytes.len(), "{}: a decode-only frame must carry something more", v.name);
                assert!(
                    v.frames.iter().any(|(c, only, b)| c == check && !only && *b == encoded),
                    "{} ({check}): no canonical frame beside the decode-only one",
                    v.name
                );
            } else {
                assert_eq!(&encoded, bytes, "{} ({check})", v.name);
            }
        }
    }
}

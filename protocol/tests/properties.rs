//! Property tests: round trips for every message type, and hostile bytes that never panic, never loop
//! and never yield a frame whose check is wrong.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.

use proptest::prelude::*;
use zhengjiao_protocol::frame::{encode_frame, Event, STX};
use zhengjiao_protocol::json::Line;
use zhengjiao_protocol::memo::{ContributionKind, MaskedIdNumber, PayerName, QueryState, SettleTotals};
use zhengjiao_protocol::{
    Amount, Ascii, Check, Digits, FrameConfig, FrameDecoder, MaskedPan, Memo, MessageType, Request, RequestBody,
    Response, ResponseCode, Text, Token,
};

fn ascii<const N: usize>() -> impl Strategy<Value = Ascii<N>> {
    // Printable ASCII, inner spaces allowed, never a trailing one.
    proptest::string::string_regex(&format!("([ -~]{{0,{}}}[!-~])?", N - 1))
        .unwrap()
        .prop_map(|s| Ascii::new(&s).unwrap())
}

fn digits<const N: usize>() -> impl Strategy<Value = Digits<N>> {
    proptest::string::string_regex(&format!("[0-9]{{{N}}}")).unwrap().prop_map(|s| Digits::new(&s).unwrap())
}

fn nonzero_digits<const N: usize>() -> impl Strategy<Value = Digits<N>> {
    digits::<N>().prop_filter("not zero", |d| !d.is_zero())
}

fn text<const N: usize>() -> impl Strategy<Value = Text<N>> {
    // '€' and U+E5E5 are where the WHATWG GB18030 codec is not one-to-one; Text::new refuses the latter.
    "[a-zA-Z0-9 交易成功余额不足撤销王𠮷€\u{e5e5}、（）]{0,24}"
        .prop_filter_map("fits the field", |s| Text::new(&s).ok())
}

fn token() -> impl Strategy<Value = Token> {
    (100u16..=999).prop_map(|n| Token::new(n).unwrap())
}

fn amount() -> impl Strategy<Value = Amount> {
    prop_oneof![1u64..=10_000_000, 1u64..=999_999_999_999].prop_map(|f| Amount::from_fen(f).unwrap())
}

fn reference() -> impl Strategy<Value = Ascii<32>> {
    "[A-Za-z0-9-]{1,32}".prop_map(|s| Ascii::new(&s).unwrap())
}

fn memo() -> impl Strategy<Value = Memo> {
    (
        proptest::option::of(reference()),
        proptest::option::of(prop_oneof![Just(ContributionKind::Pension), Just(ContributionKind::Medical)]),
        proptest::option::of("[王李张𠮷a-z·]{1,7}".prop_filter_map("name", |s| PayerName::new(&s).ok())),
        proptest::option::of("[0-9]{6}\\*{8}[0-9]{3}[0-9X]".prop_map(|s| MaskedIdNumber::new(&s).unwrap())),
        proptest::option::of(prop_oneof![
            Just(QueryState::Approved),
            Just(QueryState::Voided),
            Just(QueryState::Refunded),
            Just(QueryState::Declined)
        ]),
        proptest::option::of(prop_oneof![Just(MessageType::Sale), Just(MessageType::Void), Just(MessageType::Refund)]),
        proptest::option::of(
            (0u32..=999_999, 0u64..=MAX12, 0u32..=999_999, 0u64..=MAX12, 0u32..=999_999, 0u64..=MAX12).prop_map(
                |(a, b, c, d, e, f)| SettleTotals {
                    sale_count: a,
                    sale_total: b,
                    void_count: c,
                    void_total: d,
                    refund_count: e,
                    refund_total: f,
                },
            ),
        ),
    )
        .prop_map(|(reference, contribution, payer_name, payer_id, query_state, query_type, settle)| {
            let mut memo = Memo::new();
            memo.reference = reference;
            memo.contribution = contribution;
            memo.payer_name = payer_name;
            memo.payer_id = payer_id;
            memo.query_state = query_state;
            memo.query_type = query_type;
            memo.settle = settle;
            memo
        })
}

const MAX12: u64 = 999_999_999_999;

fn body() -> impl Strategy<Value = RequestBody> {
    prop_oneof![
        amount().prop_map(|amount| RequestBody::Sale { amount }),
        (amount(), nonzero_digits::<6>()).prop_map(|(amount, orig_trace)| RequestBody::Void { amount, orig_trace }),
        (amount(), nonzero_digits::<8>(), ascii::<12>().prop_filter("rrn", |r| !r.is_empty()))
            .prop_map(|(amount, orig_date, orig_rrn)| RequestBody::Refund { amount, orig_date, orig_rrn }),
        Just(RequestBody::Settle),
        Just(RequestBody::SignIn),
        Just(RequestBody::Query),
        Just(RequestBody::Status),
    ]
}

fn request() -> impl Strategy<Value = Request> {
    (token(), ascii::<8>(), ascii::<8>(), body(), memo(), reference()).prop_map(
        |(token, till, operator, body, mut memo, reference)| {
            if matches!(
                body.message_type(),
                MessageType::Sale | MessageType::Void | MessageType::Refund | MessageType::Query
            ) {
                memo.reference.get_or_insert(reference);
            }
            Request { token, till, operator, body, memo }
        },
    )
}

fn card() -> impl Strategy<Value = Option<MaskedPan>> {
    proptest::option::of("[0-9]{6}\\*{1,10}[0-9]{4}".prop_map(|s| MaskedPan::new(&s).unwrap()))
}

fn response() -> impl Strategy<Value = Response> {
    let kind = proptest::sample::select(MessageType::ALL.to_vec());
    let code = "[0-9A-Z]{2}".prop_map(|s| ResponseCode::new(&s).unwrap());
    (
        (token(), kind, code, text::<40>(), card(), 0u64..=MAX12),
        (digits::<6>(), digits::<6>(), digits::<8>(), digits::<6>()),
        (ascii::<12>(), ascii::<6>(), ascii::<15>(), ascii::<8>(), memo()),
    )
        .prop_map(
            |(
                (token, kind, code, text, card, amount),
                (trace, batch, date, time),
                (rrn, auth, merchant, terminal, memo),
            )| {
                Response {
                    token,
                    kind,
                    code,
                    text,
                    card,
                    amount: Amount::from_fen(amount).unwrap(),
                    trace,
                    batch,
                    date,
                    time,
                    rrn,
                    auth,
                    merchant,
                    terminal,
                    memo,
                }
            },
        )
}

fn check() -> impl Strategy<Value = Check> {
    prop_oneof![Just(Check::Lrc), Just(Check::Crc16)]
}

/// Feeds `bytes` in chunks of the given sizes, with a gap at the end, and collects every event.
fn decode_all(bytes: &[u8], cfg: FrameConfig, chunks: &[usize]) -> Vec<Event> {
    let mut decoder = FrameDecoder::new(cfg);
    let mut events = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        decoder.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(e) = decoder.next_event() {
            events.push(e);
            assert!(events.len() <= bytes.len(), "more events than bytes: the decoder loops");
        }
        assert!(decoder.buffered() <= cfg.check.frame_len(cfg.max_data_len) + n, "buffer grew past one frame");
    }
    for _ in 0..=bytes.len() {
        decoder.gap();
        while let Some(e) = decoder.next_event() {
            events.push(e);
            assert!(events.len() <= bytes.len(), "more events than bytes: the decoder loops");
        }
        if !decoder.has_partial() {
            break;
        }
    }
    assert!(!decoder.has_partial());
    events
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn request_round_trips(req in request(), check in check()) {
        let data = req.encode().unwrap();
        prop_assert_eq!(&Request::decode(&data).unwrap(), &req);
        let frame = encode_frame(&data, check).unwrap();
        let events = decode_all(&frame, FrameConfig::new(check), &[frame.len()]);
        prop_assert_eq!(events, vec![Event::Frame { data, offset: 0 }]);
        let json = Line::Request(req.clone()).to_json();
        prop_assert_eq!(Line::from_json(&json).unwrap(), Line::Request(req));
    }

    #[test]
    fn response_round_trips(resp in response()) {
        let data = resp.encode().unwrap();
        prop_assert_eq!(&Response::decode(&data).unwrap(), &resp);
        let json = Line::Response(resp.clone()).to_json();
        prop_assert_eq!(Line::from_json(&json).unwrap(), Line::Response(resp));
    }

    #[test]
    fn frames_survive_noise_and_any_chunking(
        datas in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 1..5),
        noise in proptest::collection::vec(any::<u8>().prop_filter("no STX", |b| *b != STX), 0..40),
        chunks in proptest::collection::vec(1usize..64, 1..8),
        check in check(),
    ) {
        // Noise without STX (controls included) before each frame: every frame must be found.
        let mut stream = Vec::new();
        let mut expected = Vec::new();
        for data in &datas {
            stream.extend_from_slice(&noise);
            let offset = stream.len() as u64;
            stream.extend_from_slice(&encode_frame(data, check).unwrap());
            expected.push(Event::Frame { data: data.clone(), offset });
        }
        let frames: Vec<Event> = decode_all(&stream, FrameConfig::new(check), &chunks)
            .into_iter()
            .filter(|e| matches!(e, Event::Frame { .. }))
            .collect();
        prop_assert_eq!(frames, expected);
    }

    #[test]
    fn arbitrary_bytes_never_yield_a_wrong_frame(
        bytes in proptest::collection::vec(prop_oneof![any::<u8>(), Just(STX), Just(0x03), Just(0x00)], 0..2000),
        chunks in proptest::collection::vec(1usize..200, 1..8),
        check in check(),
        max in 1usize..200,
    ) {
        let cfg = FrameConfig { check, max_data_len: max };
        for event in decode_all(&bytes, cfg, &chunks) {
            if let Event::Frame { data, offset } = event {
                let frame = encode_frame(&data, check).unwrap();
                let at = offset as usize;
                prop_assert!(data.len() <= max);
                prop_assert_eq!(&bytes[at..at + frame.len()], &frame[..]);
                // Nothing decoded from hostile bytes panics either.
                let _ = Request::decode(&data);
                let _ = Response::decode(&data);
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(
        resp in response(),
        req in request(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        for mut data in [resp.encode().unwrap(), req.encode().unwrap()] {
            for (at, byte) in &flips {
                let i = at % data.len();
                data[i] = *byte;
            }
            let len = data.len();
            for candidate in [&data[..], &data[..cut % len]] {
                if let Ok(r) = Response::decode(candidate) {
                    let again = r.encode().unwrap();
                    prop_assert_eq!(Response::decode(&again).unwrap(), r);
                }
                if let Ok(r) = Request::decode(candidate) {
                    let again = r.encode().unwrap();
                    prop_assert_eq!(Request::decode(&again).unwrap(), r);
                }
            }
        }
    }

    #[test]
    fn arbitrary_json_never_panics(text in ".{0,200}") {
        let _ = Line::from_json(&text);
    }

    #[test]
    fn mutated_canonical_json_never_panics_and_what_it_accepts_encodes(
        resp in response(),
        req in request(),
        cuts in proptest::collection::vec((any::<usize>(), any::<usize>(), "[\"0-9a-z:,{}\\[\\] ]{0,6}"), 1..4),
    ) {
        // Canonical lines with a few splices: most stay objects with the right keys, so the field
        // readers (not just the JSON parser) meet wrong types, widths and values.
        for mut json in [Line::Response(resp.clone()).to_json(), Line::Request(req.clone()).to_json()] {
            for (at, len, with) in &cuts {
                let chars: Vec<char> = json.chars().collect();
                let at = at % chars.len();
                let end = (at + len % 8).min(chars.len());
                json = chars[..at].iter().chain(with.chars().collect::<Vec<_>>().iter()).chain(&chars[end..]).collect();
            }
            match Line::from_json(&json) {
                Ok(Line::Request(r)) => prop_assert_eq!(Request::decode(&r.encode().unwrap()).unwrap(), r),
                Ok(Line::Response(r)) => prop_assert_eq!(Response::decode(&r.encode().unwrap()).unwrap(), r),
                Ok(Line::Control(_)) | Err(_) => {}
            }
        }
    }
}

#[test]
fn a_valid_frame_behind_garbage_and_half_frames_is_found() {
    let real = encode_frame(b"REAL FRAME", Check::Lrc).unwrap();
    let half = &encode_frame(&[b'h'; 40], Check::Lrc).unwrap()[..20];
    let mut corrupt = encode_frame(b"CORRUPT", Check::Lrc).unwrap();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    let mut stream = vec![0x41, 0x42, 0x99];
    stream.extend_from_slice(half);
    stream.extend_from_slice(&corrupt);
    stream.extend_from_slice(&[STX, 0x12]);
    stream.extend_from_slice(half);
    let real_at = stream.len() as u64;
    stream.extend_from_slice(&real);
    stream.extend_from_slice(&[0x77, STX]);
    let events = decode_all(&stream, FrameConfig::default(), &[7]);
    let frames: Vec<_> = events.iter().filter(|e| matches!(e, Event::Frame { .. })).collect();
    assert_eq!(frames, vec![&Event::Frame { data: b"REAL FRAME".to_vec(), offset: real_at }]);
    assert!(events.iter().filter(|e| matches!(e, Event::Broken { .. })).count() >= 3);
}

#[test]
fn gb18030_text_that_would_not_survive_a_round_trip_is_refused() {
    use zhengjiao_protocol::ValueError;
    // U+E5E5 has no GB18030 bytes in the WHATWG encoder: refused, not written as "&#58853;".
    assert_eq!(Text::<40>::new("\u{e5e5}"), Err(ValueError::NotGb18030));
    assert!(PayerName::new("王\u{e5e5}").is_err());
    // The euro sign has real GB18030 bytes (A2 E3) and survives.
    let mut resp = Response::decode(&sample_response().encode().unwrap()).unwrap();
    resp.text = Text::new("€100").unwrap();
    assert_eq!(Response::decode(&resp.encode().unwrap()).unwrap(), resp);
    // The lone byte 0x80 and the pair A3 A0 decode (WHATWG) to '€' and U+3000, which encode back to
    // other bytes: refused as not GB18030, in the text field and in the payer name alike.
    let text_at = 3 + 2 + 2;
    for bad in [&[0x80u8][..], &[0xa3, 0xa0]] {
        let mut data = sample_response().encode().unwrap();
        data[text_at..text_at + 40].fill(b' ');
        data[text_at..text_at + bad.len()].copy_from_slice(bad);
        let err = Response::decode(&data).unwrap_err();
        assert_eq!((err.field, err.problem), (zhengjiao_protocol::Field::Text, ValueError::NotGb18030));
    }
    let mut req = Request::decode(&sample_response_request().encode().unwrap()).unwrap();
    req.memo.payer_name = Some(PayerName::new("李").unwrap());
    let mut data = req.encode().unwrap();
    let name_at = data.len() - 2;
    data[name_at..].copy_from_slice(&[0x80, 0x80]);
    assert_eq!(Request::decode(&data).unwrap_err().problem, ValueError::NotGb18030);
}

#[test]
fn canonical_json_carries_numeric_fields_at_full_width() {
    let json = Line::Response(sample_response()).to_json();
    assert!(Line::from_json(&json).is_ok());
    let short = json.replace("\"date\":\"20201021\"", "\"date\":\"2020101\"");
    assert_eq!(Line::from_json(&short).unwrap_err().to_string(), "field date: expected exactly 8 digits");
    let short = json.replace("\"token\":\"123\"", "\"token\":\"12\"");
    assert!(Line::from_json(&short).unwrap_err().to_string().starts_with("field token:"));
}

fn sample_response() -> Response {
    let json = r#"{"dir":"response","token":"123","type":"sale","code":"00","text":"交易成功","card":"622848******1234","amount_fen":28000,"trace":"000123","batch":"000001","date":"20201021","time":"101530","rrn":"201021101530","auth":"A1B2C3","merchant":"898410153990001","terminal":"41000001","memo":{"0F01":"P20201021000001"}}"#;
    match Line::from_json(json).unwrap() {
        Line::Response(r) => r,
        other => panic!("{other:?}"),
    }
}

fn sample_response_request() -> Request {
    let json = r#"{"dir":"request","token":"123","type":"sale","till":"DESK01","operator":"C0001","amount_fen":28000,"orig_trace":null,"orig_date":null,"orig_rrn":null,"memo":{"0F01":"P20201021000001"}}"#;
    match Line::from_json(json).unwrap() {
        Line::Request(r) => r,
        other => panic!("{other:?}"),
    }
}

//! The fuzz oracles of the protocol crate: what must hold for any input to the frame decoder, the
//! request and response decoders and the TLV memo. Two drivers share them: the proptest suite
//! (`tests/fuzz_props.rs`, stable, in CI) and the cargo-fuzz targets (`fuzz/fuzz_targets/`, nightly),
//! which include this file by path. Each oracle panics on a violation; it never panics on bad input.
//!
//! Only the crate's public API is used, so the oracles see what a caller sees.
#![allow(dead_code)] // Each driver uses a subset.

use bytes::BytesMut;
use tokio_util::codec::Decoder;
use zhengjiao_protocol::codec::{CodecItem, FrameCodec};
use zhengjiao_protocol::frame::{encode_frame, scan, Event, Item, WIRE_MAX_DATA_LEN};
use zhengjiao_protocol::json::Line;
use zhengjiao_protocol::message::RESPONSE_FIXED_LEN;
use zhengjiao_protocol::{
    Check, DecodeError, Field, FrameConfig, FrameDecoder, Memo, MessageType, Request, Response, ResponseCode, Token,
};

/// Memo items a message can carry once each: tags 0F01-0F06 and 0F10-0F15.
const KNOWN_TAGS: usize = 12;

/// Splits a raw fuzz input into frame-decoder settings, chunk sizes and the byte stream:
/// byte 0 picks the check (low bit) and the limit (`max_data_len`, from byte 1, 1..=256, or the
/// default when byte 0's second bit is set); bytes 2..6 are chunk sizes (0 reads as 1).
pub(crate) fn frames_raw(input: &[u8]) -> (FrameConfig, Vec<usize>, &[u8]) {
    let head = |i: usize| input.get(i).copied().unwrap_or(0);
    let check = if head(0) & 1 == 0 { Check::Lrc } else { Check::Crc16 };
    let mut cfg = FrameConfig::new(check);
    if head(0) & 2 == 0 {
        cfg.max_data_len = usize::from(head(1)) + 1;
    }
    let chunks = (2..6).map(|i| usize::from(head(i)).max(1)).collect();
    (cfg, chunks, input.get(6..).unwrap_or_default())
}

/// Feeds `stream` to a [`FrameDecoder`] and to the tokio codec in pieces of `chunks` (cycled), then
/// declares gaps until nothing is pending, and checks:
/// - neither loops (at most one event per byte) nor buffers more than one frame plus the last piece;
/// - each frame is exactly the frame its DATA encodes to, at the offset reported, within the limit;
/// - both see the same events in the same order, and [`scan`] on the whole stream agrees on the first;
/// - nothing is left pending at the end, and the counters add up.
///
/// Returns the frames' DATA, for callers that decode them further.
pub(crate) fn frames(cfg: FrameConfig, chunks: &[usize], stream: &[u8]) -> Vec<Vec<u8>> {
    let bound = stream.len();
    let mut decoder = FrameDecoder::new(cfg);
    let mut codec = FrameCodec::new(cfg);
    let mut read_buf = BytesMut::new();
    let mut events = Vec::new();
    let mut items = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().copied().cycle();
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(1).clamp(1, rest.len());
        decoder.push(&rest[..n]);
        read_buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(event) = decoder.next_event() {
            events.push(event);
            assert!(events.len() <= bound, "more events than bytes: the decoder loops");
        }
        while let Some(item) = codec.decode(&mut read_buf).expect("decoding from memory cannot fail") {
            items.push(item);
            assert!(items.len() <= bound, "more items than bytes: the codec loops");
        }
        let one_frame = cfg.check.frame_len(cfg.max_data_len);
        assert!(decoder.buffered() <= one_frame + n, "decoder buffer grew past one frame and a piece");
        assert!(read_buf.len() <= one_frame + n, "codec buffer grew past one frame and a piece");
    }
    // Each gap drops one partial frame; what is behind it is scanned again and may hold another.
    for _ in 0..=bound {
        decoder.gap();
        while let Some(event) = decoder.next_event() {
            events.push(event);
            assert!(events.len() <= bound, "more events than bytes: the decoder loops");
        }
        if !decoder.has_partial() {
            break;
        }
    }
    assert!(!decoder.has_partial(), "a partial frame survived a gap per byte");
    assert_eq!(decoder.buffered(), 0, "bytes left in the decoder after the gaps");
    for _ in 0..=bound {
        match codec.decode_eof(&mut read_buf).expect("decoding from memory cannot fail") {
            Some(item) => items.push(item),
            None => break,
        }
        assert!(items.len() <= bound, "more items than bytes: the codec loops");
    }
    assert!(read_buf.is_empty(), "bytes left in the codec's buffer at the end");

    let mut datas = Vec::new();
    let stats = decoder.stats();
    assert_eq!(stats.frames + stats.controls + stats.broken, events.len() as u64);
    let mut covered = 0u64;
    for event in &events {
        match event {
            Event::Frame { data, offset } => {
                assert!(!data.is_empty() && data.len() <= cfg.max_data_len, "frame DATA outside 1..=limit");
                let frame = encode_frame(data, cfg.check).expect("a decoded frame fits the wire format");
                let at = usize::try_from(*offset).expect("offset fits usize");
                assert_eq!(stream.get(at..at + frame.len()), Some(&frame[..]), "frame differs from the bytes");
                covered += frame.len() as u64;
                datas.push(data.clone());
            }
            Event::Control { offset, control } => {
                assert_eq!(stream.get(*offset as usize), Some(&control.byte()), "control at a wrong offset");
                covered += 1;
            }
            Event::Broken { offset, .. } => {
                assert_eq!(stream.get(*offset as usize), Some(&zhengjiao_protocol::frame::STX), "broken, not at STX");
                covered += 1;
            }
        }
    }
    assert_eq!(covered + stats.noise_bytes, bound as u64, "bytes neither noise nor in an item");

    assert_eq!(items.len(), events.len(), "codec and decoder disagree on the number of items");
    for (item, event) in items.iter().zip(&events) {
        match (item, event) {
            (CodecItem::Frame(a), Event::Frame { data, .. }) => assert_eq!(&a[..], &data[..]),
            (CodecItem::Control(a), Event::Control { control, .. }) => assert_eq!(a, control),
            (CodecItem::Broken(a), Event::Broken { error, .. }) => assert_eq!(a, error),
            (item, event) => panic!("codec gave {item:?} where the decoder gave {event:?}"),
        }
    }

    // `scan` over the whole stream finds what the incremental decoders found first, unless the first
    // thing is a partial frame only a gap could resolve.
    let first = scan(stream, &cfg);
    assert!(first.consumed <= stream.len() && first.at <= stream.len());
    match (first.item, events.first()) {
        (Some(Item::Frame(data)), Some(Event::Frame { data: d, .. })) => assert_eq!(data, &d[..]),
        (Some(Item::Control(c)), Some(Event::Control { control, .. })) => assert_eq!(&c, control),
        (Some(Item::Broken(e)), Some(Event::Broken { error, .. })) => assert_eq!(&e, error),
        (None, _) => {}
        (item, event) => panic!("scan found {item:?} where the decoder found {event:?} first"),
    }
    datas
}

/// A decode error must point into the message (or just past its end, for what is missing) and
/// display without panicking.
fn check_error(err: &DecodeError, data: &[u8]) {
    assert!(err.offset <= data.len(), "error offset {} past {} bytes: {err}", err.offset, data.len());
    let _ = err.to_string();
}

/// Any DATA as a request: an error that points into it, or a request that encodes, is no longer than
/// the DATA (unknown memo items are dropped), decodes back to itself and survives the JSON form.
pub(crate) fn request(data: &[u8]) -> Option<Request> {
    let req = match Request::decode(data) {
        Ok(req) => req,
        Err(err) => {
            check_error(&err, data);
            return None;
        }
    };
    let again = req.encode().unwrap_or_else(|e| panic!("a decoded request does not encode: {e}; {req:?}"));
    assert!(again.len() <= data.len(), "re-encoding grew the request: {} > {}", again.len(), data.len());
    assert_eq!(Request::decode(&again).as_ref(), Ok(&req), "request does not round-trip");
    let json = Line::Request(req.clone()).to_json();
    assert_eq!(Line::from_json(&json), Ok(Line::Request(req.clone())), "request JSON does not round-trip: {json}");
    memo_items_round_trip(&req.memo);
    Some(req)
}

/// Any DATA as a response: the same promises as [`request`], and its token is what
/// [`zhengjiao_protocol::message::peek_token`] reads.
pub(crate) fn response(data: &[u8]) -> Option<Response> {
    let resp = match Response::decode(data) {
        Ok(resp) => resp,
        Err(err) => {
            check_error(&err, data);
            return None;
        }
    };
    assert_eq!(zhengjiao_protocol::message::peek_token(data), Some(resp.token));
    let again = resp.encode().unwrap_or_else(|e| panic!("a decoded response does not encode: {e}; {resp:?}"));
    assert!(again.len() <= data.len(), "re-encoding grew the response: {} > {}", again.len(), data.len());
    assert_eq!(Response::decode(&again).as_ref(), Ok(&resp), "response does not round-trip");
    let json = Line::Response(resp.clone()).to_json();
    assert_eq!(Line::from_json(&json), Ok(Line::Response(resp.clone())), "response JSON does not round-trip: {json}");
    memo_items_round_trip(&resp.memo);
    Some(resp)
}

/// The memo's (tag, text) items, as JSON carries them, build the same memo again.
fn memo_items_round_trip(memo: &Memo) {
    let items = memo.items();
    assert!(items.len() <= KNOWN_TAGS, "{} memo items", items.len());
    let rebuilt = Memo::from_items(items.iter().map(|(tag, text)| (*tag, text.as_str())));
    assert_eq!(rebuilt.as_ref(), Ok(memo), "memo items do not rebuild the memo");
}

/// A well-formed response header (STATUS, approved, every other field empty) for `memo_len` bytes of
/// memo: the memo decoder is reached only behind a fixed part that decodes.
pub(crate) fn response_with_memo(memo: &[u8]) -> Vec<u8> {
    let memo = &memo[..memo.len().min(9999)];
    let token = Token::new(100).expect("100 is a token");
    let empty = Response::empty(token, MessageType::Status, ResponseCode::APPROVED);
    let mut data = empty.encode().expect("an empty response encodes");
    assert_eq!(data.len(), RESPONSE_FIXED_LEN);
    data[RESPONSE_FIXED_LEN - 4..].copy_from_slice(format!("{:04}", memo.len()).as_bytes());
    data.extend_from_slice(memo);
    data
}

/// Any bytes as a TLV memo (behind a good header): a memo that round-trips as [`response`] checks, or
/// an error that names the memo and points inside it.
pub(crate) fn memo(bytes: &[u8]) -> Option<Memo> {
    let data = response_with_memo(bytes);
    match Response::decode(&data) {
        Ok(_) => response(&data).map(|r| r.memo),
        Err(err) => {
            check_error(&err, &data);
            assert!(
                matches!(err.field, Field::Memo | Field::MemoItem(_)),
                "the memo's error names {} instead of the memo: {err}",
                err.field
            );
            assert!(err.offset >= RESPONSE_FIXED_LEN, "memo error before the memo: {err}");
            None
        }
    }
}

/// Frames whose DATA the decoders then read as requests and responses: the whole receive path.
pub(crate) fn frames_then_messages(cfg: FrameConfig, chunks: &[usize], stream: &[u8]) {
    for data in frames(cfg, chunks, stream) {
        assert!(data.len() <= WIRE_MAX_DATA_LEN);
        let _ = request(&data);
        let _ = response(&data);
    }
}

//! Decode speed of the protocol crate, beside a memcpy of the same bytes measured in the same run.
//!
//! `cargo bench -p zhengjiao-protocol --bench decode` runs the criterion groups and then prints a
//! summary: frames per second, MB/s and the ratio to memcpy for
//! - `frame`: finding one SALE-response frame in a buffer and verifying its check;
//! - `sale_response`: the same plus the full decode of the response with its memo;
//! - `stream`: 1000 SALE responses through the incremental `FrameDecoder` and the message decoder.
//!
//! Goal (issue 2): at least 3 million SALE responses decoded per second on one core.

#![allow(missing_docs)] // criterion_group! generates an undocumented function.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion, Throughput};
use zhengjiao_protocol::frame::{encode_frame, scan, Event, Item};
use zhengjiao_protocol::json::Line;
use zhengjiao_protocol::{Check, FrameConfig, FrameDecoder, Response};

const SALE_RESPONSE: &str = r#"{"dir":"response","token":"123","type":"sale","code":"00","text":"交易成功","card":"622848******1234","amount_fen":28000,"trace":"000123","batch":"000001","date":"20201021","time":"101530","rrn":"201021101530","auth":"A1B2C3","merchant":"898410153990001","terminal":"41000001","memo":{"0F01":"P20201021000001","0F02":"02"}}"#;
const STREAM_FRAMES: usize = 1000;

fn sale_response_frame(check: Check) -> Vec<u8> {
    let Ok(Line::Response(response)) = Line::from_json(SALE_RESPONSE) else {
        panic!("the benchmark's response does not parse");
    };
    encode_frame(&response.encode().expect("encodes"), check).expect("frames")
}

fn frame_only(frame: &[u8], cfg: &FrameConfig) -> usize {
    match scan(frame, cfg).item {
        Some(Item::Frame(data)) => data.len(),
        _ => 0,
    }
}

fn full_decode(frame: &[u8], cfg: &FrameConfig) -> Option<Response> {
    match scan(frame, cfg).item {
        Some(Item::Frame(data)) => Response::decode(data).ok(),
        _ => None,
    }
}

fn stream_decode(stream: &[u8], cfg: FrameConfig) -> usize {
    let mut decoder = FrameDecoder::new(cfg);
    decoder.push(stream);
    let mut n = 0;
    while let Some(event) = decoder.next_event() {
        if let Event::Frame { data, .. } = event {
            n += usize::from(Response::decode(&data).is_ok());
        }
    }
    n
}

fn memcpy(src: &[u8], dst: &mut [u8]) {
    dst.copy_from_slice(src);
}

fn benches(c: &mut Criterion) {
    for check in [Check::Lrc, Check::Crc16] {
        let cfg = FrameConfig::new(check);
        let frame = sale_response_frame(check);
        let mut dst = vec![0u8; frame.len()];
        assert!(full_decode(&frame, &cfg).is_some());

        let mut group = c.benchmark_group(format!("sale_response_{check}"));
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_function("memcpy", |b| b.iter(|| memcpy(black_box(&frame), black_box(&mut dst))));
        group.bench_function("frame", |b| b.iter(|| frame_only(black_box(&frame), &cfg)));
        group.bench_function("full_decode", |b| b.iter(|| full_decode(black_box(&frame), &cfg)));
        group.finish();

        let stream: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * STREAM_FRAMES).collect();
        let mut dst = vec![0u8; stream.len()];
        let mut group = c.benchmark_group(format!("stream_{check}"));
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_function("memcpy", |b| b.iter(|| memcpy(black_box(&stream), black_box(&mut dst))));
        group.bench_function("decoder", |b| b.iter(|| stream_decode(black_box(&stream), cfg)));
        group.finish();
    }
}

/// Runs `f` (which handles `per_call` frames) for about `budget` and returns frames per second.
fn rate(budget: Duration, per_call: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..1000 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < budget {
        for _ in 0..1000 {
            f();
        }
        calls += 1000;
    }
    (calls as f64 * per_call as f64) / start.elapsed().as_secs_f64()
}

fn summary() {
    let budget = Duration::from_millis(1500);
    println!("\nsummary (one core; each figure beside a memcpy of the same bytes, same run):");
    println!("{:<28} {:>14} {:>10} {:>12}", "case", "frames/s", "MB/s", "vs memcpy");
    for check in [Check::Lrc, Check::Crc16] {
        let cfg = FrameConfig::new(check);
        let frame = sale_response_frame(check);
        let len = frame.len() as f64;
        let stream: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * STREAM_FRAMES).collect();
        let mut dst = vec![0u8; stream.len()];
        let copy_one = rate(budget, 1, || memcpy(black_box(&frame), black_box(&mut dst[..frame.len()])));
        let copy_stream = rate(budget, STREAM_FRAMES, || memcpy(black_box(&stream), black_box(&mut dst)));
        let rows = [
            ("memcpy (one frame)", copy_one, copy_one),
            (
                "frame + check",
                rate(budget, 1, || {
                    black_box(frame_only(black_box(&frame), &cfg));
                }),
                copy_one,
            ),
            (
                "frame + full decode",
                rate(budget, 1, || {
                    black_box(full_decode(black_box(&frame), &cfg));
                }),
                copy_one,
            ),
            ("memcpy (1000-frame stream)", copy_stream, copy_stream),
            (
                "FrameDecoder stream + decode",
                rate(budget, STREAM_FRAMES, || {
                    black_box(stream_decode(black_box(&stream), cfg));
                }),
                copy_stream,
            ),
        ];
        println!("-- {check}, {} bytes per frame", frame.len());
        for (name, frames, baseline) in rows {
            println!("{name:<28} {frames:>14.0} {:>10.1} {:>11.3}x", frames * len / 1e6, frames / baseline);
        }
    }
}

criterion_group! {
    name = decode;
    config = Criterion::default();
    targets = benches
}

fn main() {
    decode();
    criterion::Criterion::default().configure_from_args().final_summary();
    summary();
}

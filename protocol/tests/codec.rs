//! The tokio codec over an in-memory duplex stream: frames written by one side are read by the other,
//! whatever noise and broken frames lie between them.
#![allow(clippy::unwrap_used)] // Test code: a failed unwrap is a failed test.
#![cfg(feature = "tokio")]

use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};
use zhengjiao_protocol::codec::{CodecItem, FrameCodec, Outgoing};
use zhengjiao_protocol::{Check, Control, FrameConfig, FrameError};

#[tokio::test]
async fn frames_cross_a_duplex_stream() {
    let cfg = FrameConfig::new(Check::Lrc);
    let (ecr, terminal) = tokio::io::duplex(64);
    let mut writer = FramedWrite::new(ecr, FrameCodec::new(cfg));
    let reader = FramedRead::new(terminal, FrameCodec::new(cfg));
    let sending = tokio::spawn(async move {
        writer.send(Outgoing::Control(Control::Enq)).await.unwrap();
        writer.send(Outgoing::Frame(&[b'x'; 300])).await.unwrap();
        writer.get_mut().write_all(&[0x55, 0x02, 0x00, 0x05, 0x41, 0x41, 0x41, 0x41, 0x41, 0x42, 0x00]).await.unwrap();
        writer.send(Outgoing::Frame(b"AFTER")).await.unwrap();
        writer.get_mut().write_all(&[0x02, 0x01]).await.unwrap();
    });
    let items: Vec<CodecItem> = reader.map(|r| r.unwrap()).collect().await;
    sending.await.unwrap();
    assert_eq!(
        items,
        vec![
            CodecItem::Control(Control::Enq),
            CodecItem::Frame(vec![b'x'; 300].into()),
            CodecItem::Broken(FrameError::NoEtx { len: 5, found: 0x42 }),
            // The rescan after a broken frame starts right behind its STX (§4 rule 2), so the low LEN
            // byte 05 reads as ENQ, exactly as a receiver sees it.
            CodecItem::Control(Control::Enq),
            CodecItem::Frame(b"AFTER".to_vec().into()),
            CodecItem::Broken(FrameError::Incomplete { expected: 0, got: 2 }),
        ]
    );
}

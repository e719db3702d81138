//! The exec bridge against a scripted runtime: stdin reaches the runtime
//! only after its `SYN_REPLY`, the v5 CLOSE signal becomes a FIN, output
//! and the error `Status` come back on their channels, and the WebSocket is
//! closed normally when the runtime says GOAWAY.

use super::*;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};

/// A masked client frame carrying one binary message.
fn ws_binary(payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut v = vec![0x82, 0x80 | payload.len() as u8];
    v.extend_from_slice(&key);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    v
}

/// Reads one raw SPDY frame: (control type or None for data, stream id,
/// flags, payload).
async fn read_raw<R: AsyncReadExt + Unpin>(r: &mut R) -> (Option<u16>, u32, u8, Vec<u8>) {
    let mut head = [0u8; 8];
    r.read_exact(&mut head).await.unwrap();
    let len = (usize::from(head[5]) << 16) | (usize::from(head[6]) << 8) | usize::from(head[7]);
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await.unwrap();
    if head[0] & 0x80 != 0 {
        let ty = u16::from_be_bytes([head[2], head[3]]);
        let id = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
        (Some(ty), id, head[4], payload)
    } else {
        let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        (None, id, head[4], payload)
    }
}

fn syn_reply(id: u32) -> Vec<u8> {
    let mut v = vec![0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04];
    v.extend_from_slice(&id.to_be_bytes());
    v
}

#[tokio::test]
async fn exec_with_stdin_round_trip() {
    let (client, mut kubectl) = duplex(64 * 1024);
    let (runtime, mut containerd) = duplex(64 * 1024);
    let opts = StreamOptions {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let task = tokio::spawn(bridge(client, runtime, V5, opts));

    // The runtime sees error, stdin, stdout, stderr streams, in that order.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let (ty, id, _, _) = read_raw(&mut containerd).await;
        assert_eq!(ty, Some(1), "SYN_STREAM");
        ids.push(id);
    }
    assert_eq!(ids, vec![1, 3, 5, 7]);

    // stdin sent before the reply is held back, then delivered with FIN.
    kubectl.write_all(&ws_binary(b"\x00hi\n")).await.unwrap();
    kubectl.write_all(&ws_binary(&[255, 0])).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    for id in &ids {
        containerd.write_all(&syn_reply(*id)).await.unwrap();
    }
    let (ty, id, flags, data) = read_raw(&mut containerd).await;
    assert_eq!((ty, id, data.as_slice()), (None, 3, &b"hi\n"[..]));
    if flags & 1 == 0 {
        let (_, id, flags, data) = read_raw(&mut containerd).await;
        assert_eq!((id, flags & 1, data.len()), (3, 1, 0));
    }

    // Output, then the exit status, then GOAWAY.
    containerd
        .write_all(&spdy::data(5, true, b"hi\n"))
        .await
        .unwrap();
    containerd
        .write_all(&spdy::data(7, true, b""))
        .await
        .unwrap();
    let status = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#;
    containerd
        .write_all(&spdy::data(1, true, status))
        .await
        .unwrap();
    task.await.unwrap();

    let mut out = Vec::new();
    kubectl.read_to_end(&mut out).await.unwrap();
    // Server frames: [0x82, len, channel, data...]; the last is close 1000.
    let mut frames = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let len = usize::from(out[at + 1]);
        frames.push((out[at], out[at + 2..at + 2 + len].to_vec()));
        at += 2 + len;
    }
    assert_eq!(frames[0], (0x82, b"\x01hi\n".to_vec()));
    assert_eq!(frames[1].1[0], channel::ERROR);
    assert_eq!(&frames[1].1[1..], &status[..]);
    assert_eq!(frames[2], (0x88, 1000u16.to_be_bytes().to_vec()));
}

#[test]
fn protocol_choice_prefers_v5() {
    assert_eq!(choose_protocol(["v4.channel.k8s.io", V5]), Some(V5));
    assert_eq!(choose_protocol(["v4.channel.k8s.io"]), Some(V4));
    assert_eq!(choose_protocol(["base64.channel.k8s.io"]), None);
}

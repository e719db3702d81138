//! `kubectl exec`/`attach` over WebSocket, translated to the runtime's SPDY
//! streaming server (what kube-apiserver's `StreamTranslatorProxy` does,
//! KEP-4006; here it runs on the node).
//!
//! ```text
//!  kubectl ──WebSocket v5.channel.k8s.io──► agent ──SPDY/3.1 v4.channel.k8s.io──► containerd
//!   [0|stdin bytes]                          stream "stdin"  (data; FIN on close)
//!   [255|0]  (v5: stdin closed)              FIN on stdin
//!   [4|{"Width":80,"Height":24}]             stream "resize"
//!   [1|…] [2|…] ◄──────────────────────────  streams "stdout", "stderr"
//!   [3|Status JSON] ◄──────────────────────  stream "error" (exit code in the Status)
//!   close 1000 ◄───────────────────────────  GOAWAY / end of the connection
//! ```
//!
//! Every WebSocket message is one channel byte and data (`channel.k8s.io`);
//! v5 adds the CLOSE signal `[255, channel]` so that `echo hi | kubectl exec
//! -i … cat` can end: v4 has no way to close stdin. The error channel
//! carries the runtime's `Status` unchanged, so a command's exit code
//! (`NonZeroExitCode`, cause `ExitCode`) reaches kubectl, which exits with it.

use std::collections::HashMap;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::spdy::{self, ClientSession, Frame};
use super::websocket::{Message, MessageReader, MessageWriter, WsError, CLOSE_NORMAL};

/// The v5 sub-protocol: v4 plus the CLOSE signal (kubectl ≥ 1.30 asks only
/// for this one).
pub const V5: &str = "v5.channel.k8s.io";
/// The v4 sub-protocol (older clients, the Python client).
pub const V4: &str = "v4.channel.k8s.io";
/// What the agent asks the runtime's SPDY server for: v4, whose error
/// stream carries a `Status`.
pub const RUNTIME_PROTOCOL: &str = "v4.channel.k8s.io";

/// Channel numbers (POSIX file descriptors, then error and resize).
mod channel {
    pub const STDIN: u8 = 0;
    pub const STDOUT: u8 = 1;
    pub const STDERR: u8 = 2;
    pub const ERROR: u8 = 3;
    pub const RESIZE: u8 = 4;
    /// v5: `[CLOSE, n]` half-closes channel n.
    pub const CLOSE: u8 = 255;
}

/// Which streams the client asked for (`stdin`, `stdout`, `stderr`, `tty`
/// query parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamOptions {
    /// Send the client's stdin.
    pub stdin: bool,
    /// Return stdout.
    pub stdout: bool,
    /// Return stderr (never with a tty, where it is merged into stdout).
    pub stderr: bool,
    /// Allocate a terminal; resize messages are accepted.
    pub tty: bool,
}

/// The first of the client's offered sub-protocols the agent speaks.
pub fn choose_protocol<'a>(offered: impl IntoIterator<Item = &'a str>) -> Option<&'static str> {
    let offered: Vec<&str> = offered.into_iter().collect();
    [V5, V4].into_iter().find(|p| offered.contains(p))
}

/// One SPDY stream the agent opened.
struct Opened {
    channel: u8,
    replied: bool,
    /// Bytes from the client waiting for the server's `SYN_REPLY`
    /// (spdystream drops data on a stream it has not replied to yet).
    pending: Vec<u8>,
    /// FIN waiting for the reply too.
    fin_pending: bool,
    /// The server sent FIN.
    remote_done: bool,
}

/// Bridges a client WebSocket (already upgraded, sub-protocol `protocol`)
/// to an upgraded SPDY connection to the runtime, until either ends.
pub async fn bridge<C, R>(client: C, runtime: R, protocol: &'static str, opts: StreamOptions)
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + AsyncWrite + Send + 'static,
{
    if let Err(e) = run(client, runtime, protocol, opts).await {
        debug!("exec stream ended: {e}");
    }
}

async fn run<C, R>(
    client: C,
    runtime: R,
    protocol: &'static str,
    opts: StreamOptions,
) -> Result<(), String>
where
    C: AsyncRead + AsyncWrite + Send + 'static,
    R: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_r, client_w) = tokio::io::split(client);
    let (runtime_r, mut runtime_w) = tokio::io::split(runtime);
    let mut ws = MessageWriter::new(client_w);
    let mut from_client = spawn_ws_reader(client_r);
    let mut from_runtime = spawn_spdy_reader(runtime_r);

    // Open the streams the runtime's server waits for (kubelet's
    // `waitStreamReply`): error first, then the requested ones.
    let mut session = ClientSession::default();
    let mut streams: HashMap<u32, Opened> = HashMap::new();
    let mut by_channel: HashMap<u8, u32> = HashMap::new();
    let wanted = [
        (true, "error", channel::ERROR),
        (opts.stdin, "stdin", channel::STDIN),
        (opts.stdout, "stdout", channel::STDOUT),
        (opts.stderr && !opts.tty, "stderr", channel::STDERR),
        (opts.tty, "resize", channel::RESIZE),
    ];
    for (on, name, ch) in wanted {
        if !on {
            continue;
        }
        let (id, frame) = session
            .syn_stream(&[("streamtype", name)])
            .map_err(|e| e.to_string())?;
        runtime_w
            .write_all(&frame)
            .await
            .map_err(|e| e.to_string())?;
        streams.insert(
            id,
            Opened {
                channel: ch,
                replied: false,
                pending: Vec::new(),
                fin_pending: false,
                remote_done: false,
            },
        );
        by_channel.insert(ch, id);
    }
    runtime_w.flush().await.map_err(|e| e.to_string())?;

    let runtime_finished = loop {
        tokio::select! {
            msg = from_client.recv() => match msg {
                Some(Ok(Message::Binary(data))) => {
                    let Some((&ch, rest)) = data.split_first() else { continue };
                    let (target, payload, fin) = match ch {
                        channel::CLOSE if protocol == V5 => match rest.first() {
                            Some(&closed) => (closed, &[][..], true),
                            None => continue,
                        },
                        channel::STDIN | channel::RESIZE => (ch, rest, false),
                        _ => continue,
                    };
                    let Some(&id) = by_channel.get(&target) else { continue };
                    let Some(s) = streams.get_mut(&id) else { continue };
                    if !matches!(s.channel, channel::STDIN | channel::RESIZE) {
                        continue;
                    }
                    if s.replied {
                        runtime_w.write_all(&spdy::data(id, fin, payload)).await.map_err(|e| e.to_string())?;
                        runtime_w.flush().await.map_err(|e| e.to_string())?;
                    } else {
                        if s.pending.len() + payload.len() > super::websocket::MAX_MESSAGE_BYTES {
                            return Err("stdin before the runtime accepted the stream exceeds the buffer".into());
                        }
                        s.pending.extend_from_slice(payload);
                        s.fin_pending |= fin;
                    }
                }
                Some(Ok(Message::Ping(p))) => ws.pong(&p).await.map_err(|e| e.to_string())?,
                Some(Ok(Message::Pong(_) | Message::Text(_))) => {}
                Some(Ok(Message::Close(_))) | None => break false,
                Some(Err(e)) => return Err(e.to_string()),
            },
            frame = from_runtime.recv() => match frame {
                Some(Ok(Frame::Data { stream_id, fin, data })) => {
                    let Some(s) = streams.get_mut(&stream_id) else { continue };
                    if !data.is_empty() && matches!(s.channel, channel::STDOUT | channel::STDERR | channel::ERROR) {
                        ws.binary(&[&[s.channel], &data]).await.map_err(|e| e.to_string())?;
                    }
                    if fin {
                        s.remote_done = true;
                        let outputs_done = streams.values().all(|s| {
                            s.remote_done || !matches!(s.channel, channel::STDOUT | channel::STDERR | channel::ERROR)
                        });
                        if outputs_done {
                            break true;
                        }
                    }
                }
                Some(Ok(Frame::SynReply { stream_id, fin })) => {
                    let Some(s) = streams.get_mut(&stream_id) else { continue };
                    s.replied = true;
                    s.remote_done |= fin;
                    if !s.pending.is_empty() || s.fin_pending {
                        let data = std::mem::take(&mut s.pending);
                        runtime_w.write_all(&spdy::data(stream_id, s.fin_pending, &data)).await.map_err(|e| e.to_string())?;
                        runtime_w.flush().await.map_err(|e| e.to_string())?;
                    }
                }
                Some(Ok(Frame::Ping(id))) => {
                    runtime_w.write_all(&spdy::ping(id)).await.map_err(|e| e.to_string())?;
                    runtime_w.flush().await.map_err(|e| e.to_string())?;
                }
                Some(Ok(Frame::RstStream { stream_id, status })) => {
                    debug!(stream_id, status, "runtime reset a stream");
                    if let Some(s) = streams.get_mut(&stream_id) {
                        s.remote_done = true;
                        s.pending.clear();
                    }
                }
                Some(Ok(Frame::GoAway)) | None => break true,
                Some(Ok(Frame::Other)) => {}
                Some(Err(e)) => return Err(e),
            },
        }
    };
    if runtime_finished {
        // Everything the runtime sent is forwarded; a normal closure ends
        // every channel on the client, which then reads the error channel.
        let _ = ws.close(CLOSE_NORMAL).await;
    } else {
        let _ = runtime_w.write_all(&spdy::goaway(0)).await;
        let _ = runtime_w.shutdown().await;
        let _ = ws.close(CLOSE_NORMAL).await;
    }
    Ok(())
}

/// Reads WebSocket messages in a task, so the bridge can `select!` on them
/// without losing a half-read frame.
pub(super) fn spawn_ws_reader<R>(r: R) -> mpsc::Receiver<Result<Message, WsError>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut reader = MessageReader::new(r);
        loop {
            let m = reader.next().await;
            let end = !matches!(m, Ok(Some(ref msg)) if !matches!(msg, Message::Close(_)));
            let item = match m {
                Ok(Some(msg)) => Ok(msg),
                Ok(None) => return,
                Err(e) => Err(e),
            };
            if tx.send(item).await.is_err() || end {
                return;
            }
        }
    });
    rx
}

/// Reads SPDY frames in a task.
fn spawn_spdy_reader<R>(mut r: R) -> mpsc::Receiver<Result<Frame, String>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            loop {
                match spdy::decode(&mut buf) {
                    Ok(Some(f)) => {
                        if tx.send(Ok(f)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string())).await;
                        return;
                    }
                }
            }
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    rx
}

#[cfg(test)]
#[path = "remotecommand_test.rs"]
mod tests;

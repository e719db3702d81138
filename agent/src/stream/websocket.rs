//! WebSocket (RFC 6455), the server side: the opening handshake's
//! `Sec-WebSocket-Accept`, and frames read from a byte stream and written to
//! one. Only what the Kubernetes streaming protocols need: binary and text
//! messages, fragmentation, ping/pong and close; no extensions
//! (`permessage-deflate` is never negotiated, so RSV bits must be zero).
//!
//! ```text
//!  0                   1                   2                   3
//!  |F|R R R| opcode|M| len 7 | extended len 16/64 | mask key (client→server) | payload
//! ```
//!
//! Frames from a client are always masked (§5.3), frames from the server
//! never are. A message is one or more frames: the first carries the
//! opcode, the rest `Continuation`, the last has FIN set (§5.4); control
//! frames (close, ping, pong) may come between fragments and are at most
//! 125 bytes (§5.5).

use base64::Engine;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The GUID appended to the client's key (§1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Largest message accepted from a peer. kubectl sends stdin in messages of
/// at most 32 KiB; the bound keeps one connection's memory small.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Close code for a normal closure (§7.4.1): the Kubernetes clients read it
/// as end-of-stream on every channel.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code for a protocol error (§7.4.1).
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`:
/// base64(SHA-1(key ++ GUID)) (§4.2.2).
pub fn accept_key(key: &str) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{}{ACCEPT_GUID}", key.trim()).as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Frame opcodes (§5.2).
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A whole message (or control frame) from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message (not checked for UTF-8: no Kubernetes protocol here
    /// uses text).
    Text(Vec<u8>),
    /// A ping; answer with a pong carrying the same bytes.
    Ping(Vec<u8>),
    /// A pong.
    Pong(Vec<u8>),
    /// A close frame, with its status code if it had one.
    Close(Option<u16>),
}

/// Why reading frames failed.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The connection failed or ended in the middle of a frame.
    #[error("websocket I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The peer broke the protocol (§7.4.1 code 1002).
    #[error("websocket protocol error: {0}")]
    Protocol(&'static str),
    /// A message bigger than [`MAX_MESSAGE_BYTES`].
    #[error("websocket message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooBig,
}

/// One decoded frame.
#[derive(Debug, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// Decodes one client frame from the front of `buf`: `Ok(None)` when more
/// bytes are needed, else the frame and how many bytes it used.
fn decode_frame(buf: &[u8]) -> Result<Option<(Frame, usize)>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let fin = buf[0] & 0x80 != 0;
    if buf[0] & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set without an extension"));
    }
    let opcode = buf[0] & 0x0F;
    let masked = buf[1] & 0x80 != 0;
    if !masked {
        return Err(WsError::Protocol("client frame not masked"));
    }
    let (len, mut at) = match buf[1] & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            (u64::from_be_bytes(a), 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode >= 0x8 && (len > 125 || !fin) {
        return Err(WsError::Protocol(
            "control frame fragmented or longer than 125 bytes",
        ));
    }
    let len = usize::try_from(len).map_err(|_| WsError::TooBig)?;
    if len > MAX_MESSAGE_BYTES {
        return Err(WsError::TooBig);
    }
    let Some(key) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let key = [key[0], key[1], key[2], key[3]];
    at += 4;
    let Some(data) = buf.get(at..at + len) else {
        return Ok(None);
    };
    let payload = data
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )))
}

/// Encodes one unmasked server frame with FIN set.
fn encode_frame(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Reads whole messages from the client side of a connection.
pub struct MessageReader<R> {
    io: R,
    buf: BytesMut,
    /// Opcode and bytes of a fragmented message in progress.
    partial: Option<(u8, Vec<u8>)>,
}

impl<R: AsyncRead + Unpin> MessageReader<R> {
    /// Reads from `io`.
    pub fn new(io: R) -> Self {
        MessageReader {
            io,
            buf: BytesMut::with_capacity(8 * 1024),
            partial: None,
        }
    }

    /// The next message; `Ok(None)` when the connection ended cleanly
    /// between frames.
    pub async fn next(&mut self) -> Result<Option<Message>, WsError> {
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf)? {
                self.buf.advance(used);
                if let Some(m) = self.assemble(frame)? {
                    return Ok(Some(m));
                }
                continue;
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() && self.partial.is_none() {
                    Ok(None)
                } else {
                    Err(WsError::Io(std::io::ErrorKind::UnexpectedEof.into()))
                };
            }
        }
    }

    /// Joins fragments; control frames pass through at once.
    fn assemble(&mut self, f: Frame) -> Result<Option<Message>, WsError> {
        match f.opcode {
            opcode::PING => return Ok(Some(Message::Ping(f.payload))),
            opcode::PONG => return Ok(Some(Message::Pong(f.payload))),
            opcode::CLOSE => {
                let code = (f.payload.len() >= 2)
                    .then(|| u16::from_be_bytes([f.payload[0], f.payload[1]]));
                return Ok(Some(Message::Close(code)));
            }
            _ => {}
        }
        let (op, mut data) = match (f.opcode, self.partial.take()) {
            (opcode::CONTINUATION, Some(p)) => p,
            (opcode::CONTINUATION, None) => {
                return Err(WsError::Protocol("continuation without a message"))
            }
            (opcode::TEXT | opcode::BINARY, None) => (f.opcode, Vec::new()),
            (opcode::TEXT | opcode::BINARY, Some(_)) => {
                return Err(WsError::Protocol("new message inside a fragmented one"))
            }
            _ => return Err(WsError::Protocol("unknown opcode")),
        };
        if data.len() + f.payload.len() > MAX_MESSAGE_BYTES {
            return Err(WsError::TooBig);
        }
        data.extend_from_slice(&f.payload);
        if !f.fin {
            self.partial = Some((op, data));
            return Ok(None);
        }
        Ok(Some(if op == opcode::TEXT {
            Message::Text(data)
        } else {
            Message::Binary(data)
        }))
    }
}

/// Writes server frames.
pub struct MessageWriter<W> {
    io: W,
    out: Vec<u8>,
}

impl<W: AsyncWrite + Unpin> MessageWriter<W> {
    /// Writes to `io`.
    pub fn new(io: W) -> Self {
        MessageWriter {
            io,
            out: Vec::new(),
        }
    }

    async fn send(&mut self, opcode: u8, parts: &[&[u8]]) -> std::io::Result<()> {
        let payload: Vec<u8> = parts.concat();
        self.out.clear();
        encode_frame(opcode, &payload, &mut self.out);
        self.io.write_all(&self.out).await?;
        self.io.flush().await
    }

    /// A binary message made of `parts` (e.g. a channel byte, then data).
    pub async fn binary(&mut self, parts: &[&[u8]]) -> std::io::Result<()> {
        self.send(opcode::BINARY, parts).await
    }

    /// A pong answering a ping's `payload`.
    pub async fn pong(&mut self, payload: &[u8]) -> std::io::Result<()> {
        self.send(opcode::PONG, &[payload]).await
    }

    /// A close frame with `code`, then the end of the write side.
    pub async fn close(&mut self, code: u16) -> std::io::Result<()> {
        self.send(opcode::CLOSE, &[&code.to_be_bytes()]).await?;
        self.io.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [1u8, 2, 3, 4];
        let mut v = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => v.push(0x80 | n as u8),
            n if n <= 65535 => {
                v.push(0x80 | 126);
                v.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                v.push(0x80 | 127);
                v.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        v.extend_from_slice(&key);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        v
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[tokio::test]
    async fn reads_fragmented_and_control_frames() {
        let big = vec![7u8; 70_000];
        let mut wire = Vec::new();
        wire.extend(client_frame(false, opcode::BINARY, b"he"));
        wire.extend(client_frame(true, opcode::PING, b"p"));
        wire.extend(client_frame(true, opcode::CONTINUATION, b"llo"));
        wire.extend(client_frame(true, opcode::BINARY, &big));
        wire.extend(client_frame(true, opcode::CLOSE, &1000u16.to_be_bytes()));
        let mut r = MessageReader::new(&wire[..]);
        assert_eq!(r.next().await.unwrap(), Some(Message::Ping(b"p".to_vec())));
        assert_eq!(
            r.next().await.unwrap(),
            Some(Message::Binary(b"hello".to_vec()))
        );
        assert_eq!(r.next().await.unwrap(), Some(Message::Binary(big)));
        assert_eq!(r.next().await.unwrap(), Some(Message::Close(Some(1000))));
        assert_eq!(r.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn rejects_bad_frames() {
        let unmasked = [0x82u8, 0x01, 0x00];
        let mut r = MessageReader::new(&unmasked[..]);
        assert!(matches!(r.next().await, Err(WsError::Protocol(_))));
        let mut huge = vec![0x82u8, 0x80 | 127];
        huge.extend_from_slice(&(u64::MAX).to_be_bytes());
        let mut r = MessageReader::new(&huge[..]);
        assert!(matches!(r.next().await, Err(WsError::TooBig)));
        let cut = &client_frame(true, opcode::BINARY, b"abc")[..5];
        let mut r = MessageReader::new(cut);
        assert!(matches!(r.next().await, Err(WsError::Io(_))));
    }

    #[test]
    fn encodes_lengths() {
        for (n, header) in [(5usize, 2usize), (200, 4), (70_000, 10)] {
            let mut out = Vec::new();
            encode_frame(opcode::BINARY, &vec![0; n], &mut out);
            assert_eq!(out.len(), header + n);
            assert_eq!(out[0], 0x82);
        }
    }
}

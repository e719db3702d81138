//! SPDY/3.1 framing, the subset a client of a CRI streaming server needs
//! (draft-mbelshe-httpbis-spdy-00 §2.2, §2.6; the Kubernetes streaming
//! protocols ride on it through `moby/spdystream`).
//!
//! ```text
//!  control frame: |1| version=3 (15) | type (16) | flags (8) | length (24) | payload
//!  data frame:    |0| stream id (31)             | flags (8) | length (24) | data
//! ```
//!
//! The agent opens streams (`SYN_STREAM`, odd ids as the client), sends data
//! and a FIN to half-close stdin, answers `PING`s, and reads data,
//! `SYN_REPLY`, `RST_STREAM` and `GOAWAY`.
//!
//! Header blocks are zlib streams, one per direction for the whole
//! connection, each block ended by a sync flush (§2.6.10.1). The agent
//! compresses its own blocks without the SPDY preset dictionary (a zlib
//! stream without `FDICT` is legal, and Go's `zlib.NewReaderDict`, which
//! spdystream uses, accepts it); it never needs the names in the server's
//! replies, so it does not decompress them at all.

use bytes::BytesMut;
use flate2::{Compress, Compression, FlushCompress};

/// The protocol version in every control frame.
const VERSION: u16 = 3;
/// Control frame types (§2.6).
mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
}
/// `FLAG_FIN` on data, `SYN_STREAM` and `SYN_REPLY` frames.
const FLAG_FIN: u8 = 0x01;
/// Largest frame payload: the length field has 24 bits.
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;

/// A frame read from the server, as far as the agent cares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Data on a stream; `fin` half-closes the server's side of it.
    Data {
        /// The stream.
        stream_id: u32,
        /// Last data on this stream.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// The server accepted a stream the agent opened.
    SynReply {
        /// The stream.
        stream_id: u32,
        /// The server will send nothing on it.
        fin: bool,
    },
    /// A stream was reset.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// The status code (§2.4.2).
        status: u32,
    },
    /// A ping to answer with the same id.
    Ping(u32),
    /// The server is closing the session.
    GoAway,
    /// A control frame the agent ignores (SETTINGS, WINDOW_UPDATE,
    /// HEADERS, server-opened streams).
    Other,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// A control frame of another SPDY version.
    #[error("SPDY: unsupported version {0}")]
    Version(u16),
    /// A control frame too short for its type.
    #[error("SPDY: malformed {0} frame")]
    Malformed(&'static str),
    /// Compressing a header block failed.
    #[error("SPDY: compressing headers: {0}")]
    Compress(String),
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Decodes one frame from the front of `buf`: `Ok(None)` when more bytes
/// are needed; the frame's bytes are consumed otherwise.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
    if buf.len() < 8 {
        return Ok(None);
    }
    let flags = buf[4];
    let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
    if buf.len() < 8 + len {
        buf.reserve(8 + len - buf.len());
        return Ok(None);
    }
    let control = buf[0] & 0x80 != 0;
    let head = buf.split_to(8);
    let payload = buf.split_to(len);
    if !control {
        return Ok(Some(Frame::Data {
            stream_id: be32(&head[0..4]) & 0x7FFF_FFFF,
            fin: flags & FLAG_FIN != 0,
            data: payload.to_vec(),
        }));
    }
    let version = u16::from_be_bytes([head[0] & 0x7F, head[1]]);
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let ty = u16::from_be_bytes([head[2], head[3]]);
    let need = |n: usize, what| {
        if payload.len() < n {
            Err(SpdyError::Malformed(what))
        } else {
            Ok(())
        }
    };
    Ok(Some(match ty {
        kind::SYN_REPLY => {
            need(4, "SYN_REPLY")?;
            Frame::SynReply {
                stream_id: be32(&payload) & 0x7FFF_FFFF,
                fin: flags & FLAG_FIN != 0,
            }
        }
        kind::RST_STREAM => {
            need(8, "RST_STREAM")?;
            Frame::RstStream {
                stream_id: be32(&payload) & 0x7FFF_FFFF,
                status: be32(&payload[4..]),
            }
        }
        kind::PING => {
            need(4, "PING")?;
            Frame::Ping(be32(&payload))
        }
        kind::GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }))
}

fn control_header(out: &mut Vec<u8>, ty: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&ty.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
}

/// Data frames for `data` on `stream_id`, split at the 24-bit length limit;
/// `fin` on the last (an empty frame when `data` is empty).
pub fn data(stream_id: u32, fin: bool, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + data.len());
    let mut chunks: Vec<&[u8]> = data.chunks(MAX_FRAME_PAYLOAD).collect();
    if chunks.is_empty() {
        chunks.push(&[]);
    }
    let last = chunks.len() - 1;
    for (i, c) in chunks.into_iter().enumerate() {
        out.extend_from_slice(&(stream_id & 0x7FFF_FFFF).to_be_bytes());
        out.push(if fin && i == last { FLAG_FIN } else { 0 });
        out.extend_from_slice(&(c.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(c);
    }
    out
}

/// A `PING` frame (also the answer to one).
pub fn ping(id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(12);
    control_header(&mut out, kind::PING, 0, 4);
    out.extend_from_slice(&id.to_be_bytes());
    out
}

/// A `GOAWAY` frame with status OK: the agent opens no more streams.
pub fn goaway(last_good_stream_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    control_header(&mut out, kind::GOAWAY, 0, 8);
    out.extend_from_slice(&(last_good_stream_id & 0x7FFF_FFFF).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

/// The agent's side of one SPDY session: its header compressor and the
/// next stream id.
pub struct ClientSession {
    compress: Compress,
    next_stream_id: u32,
}

impl Default for ClientSession {
    fn default() -> Self {
        ClientSession {
            compress: Compress::new(Compression::default(), true),
            next_stream_id: 1,
        }
    }
}

impl ClientSession {
    /// A `SYN_STREAM` opening a new stream with `headers` (names lower
    /// case, §2.6.10); returns its id and the frame.
    pub fn syn_stream(&mut self, headers: &[(&str, &str)]) -> Result<(u32, Vec<u8>), SpdyError> {
        let id = self.next_stream_id;
        self.next_stream_id += 2;
        let block = self.header_block(headers)?;
        let mut out = Vec::with_capacity(18 + block.len());
        control_header(&mut out, kind::SYN_STREAM, 0, 10 + block.len());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes()); // associated-to: none
        out.extend_from_slice(&[0, 0]); // priority 0, slot 0
        out.extend_from_slice(&block);
        Ok((id, out))
    }

    /// The last stream id handed out (0 before any).
    pub fn last_stream_id(&self) -> u32 {
        self.next_stream_id.saturating_sub(2)
    }

    /// Serialises and compresses a name/value block (§2.6.10).
    fn header_block(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.compress.total_in();
            self.compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compress(e.to_string()))?;
            let used = (self.compress.total_in() - before) as usize;
            input = &input[used..];
            // Done once all input is in and the flush fitted in the space.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    #[test]
    fn syn_stream_header_block_round_trips() {
        let mut s = ClientSession::default();
        let (id1, f1) = s.syn_stream(&[("streamType", "error")]).unwrap();
        let (id2, f2) = s.syn_stream(&[("streamtype", "stdin")]).unwrap();
        assert_eq!((id1, id2, s.last_stream_id()), (1, 3, 3));
        // Control bit, version 3, type 1.
        assert_eq!(&f1[..4], &[0x80, 0x03, 0x00, 0x01]);
        let len =
            |f: &[u8]| (usize::from(f[5]) << 16) | (usize::from(f[6]) << 8) | usize::from(f[7]);
        assert_eq!(len(&f1), f1.len() - 8);
        // One zlib stream across both blocks.
        let mut d = Decompress::new(true);
        let mut text = Vec::with_capacity(4096);
        for f in [&f1, &f2] {
            d.decompress_vec(&f[18..], &mut text, FlushDecompress::Sync)
                .unwrap();
        }
        let want = |n: &str, v: &str| {
            let mut b = 1u32.to_be_bytes().to_vec();
            b.extend_from_slice(&(n.len() as u32).to_be_bytes());
            b.extend_from_slice(n.as_bytes());
            b.extend_from_slice(&(v.len() as u32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
            b
        };
        assert_eq!(
            text,
            [want("streamtype", "error"), want("streamtype", "stdin")].concat()
        );
    }

    #[test]
    fn decodes_frames_in_pieces() {
        let mut wire = Vec::new();
        wire.extend(data(5, false, b"hello"));
        wire.extend(data(5, true, b""));
        wire.extend(ping(2));
        let mut reply = Vec::new();
        control_header(&mut reply, kind::SYN_REPLY, FLAG_FIN, 4);
        reply.extend_from_slice(&7u32.to_be_bytes());
        wire.extend(reply);
        wire.extend(goaway(0));
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                Frame::Data {
                    stream_id: 5,
                    fin: false,
                    data: b"hello".to_vec()
                },
                Frame::Data {
                    stream_id: 5,
                    fin: true,
                    data: vec![]
                },
                Frame::Ping(2),
                Frame::SynReply {
                    stream_id: 7,
                    fin: true
                },
                Frame::GoAway,
            ]
        );
    }

    #[test]
    fn rejects_other_versions_and_short_frames() {
        let mut b = BytesMut::from(&[0x80u8, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(decode(&mut b), Err(SpdyError::Version(2))));
        let mut b = BytesMut::from(&[0x80u8, 0x03, 0x00, 0x06, 0, 0, 0, 1, 0][..]);
        assert!(matches!(decode(&mut b), Err(SpdyError::Malformed("PING"))));
    }
}

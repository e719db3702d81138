//! HTTP response bodies and builders. [`error`] is the one place an
//! [`ApiError`] becomes an HTTP response (its body from
//! [`ApiError::to_status`]).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, SizeHint};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::codec::{encode, Output};
use crate::error::ApiError;
use crate::registry::ListBody;

/// Every response body: a whole buffer, a list's pieces ([`chunks`]) or a
/// stream (watch, logs).
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Frames of a [`chunks`] body are filled up to this many bytes: a list
/// is two pieces per item (the item and a comma), and a frame each cost
/// HTTP/2 and TLS a header and a write per piece.
const FRAME_TARGET: usize = 64 * 1024;

/// A body sent as `chunks`, with its length known up front (so HTTP/1.1
/// answers with `Content-Length`, not chunked). The chunks may be shared
/// with the watch cache: a chunk of 64 KiB or more goes out as it is,
/// smaller ones are copied together into frames of about that size, so at
/// most one frame's worth is ever copied at a time.
pub fn chunks(chunks: Vec<Bytes>) -> Body {
    let remaining = chunks.iter().map(|c| c.len() as u64).sum();
    Chunks {
        chunks: chunks.into_iter(),
        remaining,
    }
    .boxed()
}

/// The body of [`chunks`].
struct Chunks {
    chunks: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let Some(first) = self.chunks.by_ref().find(|c| !c.is_empty()) else {
            return Poll::Ready(None);
        };
        let frame = if first.len() >= FRAME_TARGET {
            first
        } else {
            let mut frame = bytes::BytesMut::with_capacity(FRAME_TARGET);
            frame.extend_from_slice(&first);
            // Small pieces join the frame; a large one starts the next.
            while let Some(next) = self.chunks.as_slice().first() {
                if frame.len() + next.len() > FRAME_TARGET && next.len() >= FRAME_TARGET / 2 {
                    break;
                }
                frame.extend_from_slice(next);
                self.chunks.next();
                if frame.len() >= FRAME_TARGET {
                    break;
                }
            }
            frame.freeze()
        };
        self.remaining -= frame.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// A streamed body fed by `rx`; each chunk is sent (and flushed) as it
/// arrives, and the body ends when every sender is dropped.
pub fn streaming(rx: mpsc::Receiver<Bytes>) -> Body {
    let frames = ReceiverStream::new(rx).map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
    BodyExt::boxed(StreamBody::new(frames))
}

fn build(code: u16, content_type: &str, body: Body, warnings: &[String]) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).unwrap_or(HeaderValue::from_static("application/json")),
    );
    for w in warnings {
        // RFC 7234 warn-code 299 "Miscellaneous persistent warning", the
        // form kube-apiserver uses and kubectl prints as "Warning: …".
        let text = format!("299 - \"{}\"", w.replace('\\', "\\\\").replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// A JSON (or YAML) object response.
pub fn object(
    code: u16,
    value: &(impl serde::Serialize + ?Sized),
    output: Output,
    warnings: &[String],
) -> Response<Body> {
    let (ct, bytes) = encode(value, output);
    build(code, ct, full(bytes), warnings)
}

/// A list response: JSON sent from the items' cached bytes (shared, not
/// copied), YAML from the decoded items.
pub fn list(code: u16, body: &ListBody<'_>, output: Output, warnings: &[String]) -> Response<Body> {
    match output {
        Output::Yaml => object(code, &body.to_value(), output, warnings),
        Output::Json | Output::Table | Output::Metadata | Output::MetadataList => {
            build(code, "application/json", chunks(body.to_chunks()), warnings)
        }
    }
}

/// A JSON response.
pub fn json(code: u16, value: &Value) -> Response<Body> {
    object(code, value, Output::Json, &[])
}

/// A response with a ready-made body.
pub fn raw(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    build(code, content_type, full(body), &[])
}

/// A plain-text response.
pub fn text(code: u16, body: impl Into<Bytes>) -> Response<Body> {
    build(code, "text/plain; charset=utf-8", full(body), &[])
}

/// A streamed response.
pub fn stream(code: u16, content_type: &str, rx: mpsc::Receiver<Bytes>) -> Response<Body> {
    let mut resp = build(code, content_type, streaming(rx), &[]);
    // Stop proxies from buffering the stream (as kube-apiserver's watch).
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    resp
}

/// The response for an error: its `metav1.Status`, with `Retry-After`
/// where the error is retryable.
pub fn error(e: &ApiError) -> Response<Body> {
    let mut resp = json(e.status_code(), &e.to_status());
    if let Some(secs) = e.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if matches!(e, ApiError::Unauthorized) {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if matches!(e, ApiError::RequestEntityTooLarge) {
        // The rest of the body was not read, so the HTTP/1 connection is
        // closed after this answer; say so, or a client reuses it and its
        // next request fails (Go's MaxBytesReader does the same).
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// A `metav1.Status` of success (e.g. after a binding).
pub fn success(code: u16) -> Response<Body> {
    json(
        code,
        &serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": code}),
    )
}

#[cfg(test)]
mod chunks_tests {
    use hyper::body::Body as _;

    use super::*;

    /// The frames of a [`chunks`] body, in order.
    fn frames(pieces: Vec<Bytes>) -> Vec<Bytes> {
        let mut body = chunks(pieces);
        let mut out = Vec::new();
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut body).poll_frame(&mut cx) {
            if let Ok(data) = f.into_data() {
                out.push(data);
            }
        }
        out
    }

    #[test]
    fn small_pieces_are_joined_into_frames_and_large_ones_pass_whole() {
        let item = Bytes::from(vec![b'x'; 3000]);
        let mut pieces = vec![Bytes::from_static(b"[")];
        for i in 0..100 {
            if i > 0 {
                pieces.push(Bytes::from_static(b","));
            }
            pieces.push(item.clone());
        }
        let big = Bytes::from(vec![b'y'; 3 * FRAME_TARGET]);
        pieces.push(Bytes::new());
        pieces.push(big.clone());
        pieces.push(Bytes::from_static(b"]"));
        let whole: Vec<u8> = pieces.concat();

        let out = frames(pieces);
        assert_eq!(out.concat(), whole, "same bytes, same order");
        // 100 items of 3,000 bytes: five frames of ~64 KiB, then the large
        // piece as it is (no copy: the same buffer), then the tail.
        assert!(out.len() <= 8, "{} frames", out.len());
        assert!(out
            .iter()
            .any(|f| f.len() == big.len() && f.as_ptr() == big.as_ptr()));
        assert!(out[..out.len() - 2]
            .iter()
            .filter(|f| f.as_ptr() != big.as_ptr())
            .all(|f| f.len() >= FRAME_TARGET / 2));
    }

    #[test]
    fn an_empty_list_of_pieces_is_an_empty_body() {
        assert!(frames(vec![Bytes::new()]).is_empty());
        assert_eq!(chunks(Vec::new()).size_hint().exact(), Some(0));
    }
}

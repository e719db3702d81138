//! The agent as an HTTP/1.1 client of the runtime's streaming server:
//! `POST <url>` with `Connection: Upgrade`, `Upgrade: SPDY/3.1` and the
//! sub-protocols offered in `X-Stream-Protocol-Version`, answered by `101
//! Switching Protocols` naming the one chosen. After that the TCP
//! connection carries SPDY frames.

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

/// The header naming streaming sub-protocols (offered by the client, the
/// chosen one in the server's answer).
pub const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";

/// How long connecting and upgrading may take (kubelet's streaming
/// connection timeout is also counted in seconds, not minutes).
const UPGRADE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Most bytes of the streaming server's refusal kept for the message.
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// Why the upgrade to the runtime's streaming server failed.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The URL CRI returned is not `http://host:port/path`.
    #[error("streaming URL {0:?} is not http://host:port/path")]
    BadUrl(String),
    /// Connecting or talking HTTP failed.
    #[error("streaming server {url}: {message}")]
    Transport {
        /// The URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// The server answered something other than 101.
    #[error("streaming server refused the upgrade ({status}): {body}")]
    Refused {
        /// Its status.
        status: StatusCode,
        /// Its body, trimmed.
        body: String,
    },
}

/// An upgraded connection and the protocol the server chose.
pub struct UpgradedStream {
    /// The raw connection, now carrying SPDY.
    pub io: TokioIo<Upgraded>,
    /// The chosen `X-Stream-Protocol-Version`.
    pub protocol: String,
}

/// Upgrades a connection to `url` offering `protocols` (best first).
pub async fn spdy(url: &str, protocols: &[&str]) -> Result<UpgradedStream, UpgradeError> {
    tokio::time::timeout(UPGRADE_TIMEOUT, spdy_inner(url, protocols))
        .await
        .map_err(|_| UpgradeError::Transport {
            url: url.into(),
            message: "timed out".into(),
        })?
}

async fn spdy_inner(url: &str, protocols: &[&str]) -> Result<UpgradedStream, UpgradeError> {
    let uri: http::Uri = url.parse().map_err(|_| UpgradeError::BadUrl(url.into()))?;
    if uri.scheme_str() != Some("http") {
        return Err(UpgradeError::BadUrl(url.into()));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| UpgradeError::BadUrl(url.into()))?
        .clone();
    let port = authority.port_u16().unwrap_or(80);
    let transport = |e: &dyn std::fmt::Display| UpgradeError::Transport {
        url: url.into(),
        message: e.to_string(),
    };
    let tcp = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| transport(&e))?;
    let _ = tcp.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| transport(&e))?;
    tokio::spawn(async move {
        // Hands the connection over to `hyper::upgrade::on` after the 101.
        let _ = conn.with_upgrades().await;
    });
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = Request::post(path)
        .header(header::HOST, authority.as_str())
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    for p in protocols {
        req = req.header(STREAM_PROTOCOL_HEADER, *p);
    }
    let req = req.body(Empty::<Bytes>::new()).map_err(|e| transport(&e))?;
    let mut resp = sender.send_request(req).await.map_err(|e| transport(&e))?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let mut body = Vec::new();
        let mut incoming = resp.into_body();
        while let Some(Ok(frame)) = incoming.frame().await {
            if let Some(d) = frame.data_ref() {
                body.extend_from_slice(d);
                if body.len() > MAX_ERROR_BYTES {
                    break;
                }
            }
        }
        body.truncate(MAX_ERROR_BYTES);
        return Err(UpgradeError::Refused {
            status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    let protocol = resp
        .headers()
        .get(STREAM_PROTOCOL_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let upgraded = hyper::upgrade::on(&mut resp)
        .await
        .map_err(|e| transport(&e))?;
    Ok(UpgradedStream {
        io: TokioIo::new(upgraded),
        protocol,
    })
}

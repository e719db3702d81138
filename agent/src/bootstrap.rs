//! Joining the cluster: from a node token to a trusted API client.
//!
//! The node token is `SK10<sha256 hex of the CA certificate DER>::node:<secret>`
//! (the shape of k3s's `K10` tokens). Its hash pins the cluster CA, so the
//! agent can fetch the CA over an unverified TLS connection from
//! `<server>/cacerts`, check it against the hash, and from then on verify the
//! API server normally. The whole token string is the agent's bearer token.
//!
//! ```text
//!  token ──parse──► ca_hash ──► GET /cacerts (TLS, unverified) ──sha256(DER)==ca_hash?──►
//!        kube::Config { root_cert = CA, bearer = token } ──► kube::Client
//! ```

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use rustls::pki_types::ServerName;
use sha2::{Digest, Sha256};

/// Token prefix: Skiff token format version 1.0.
pub const TOKEN_PREFIX: &str = "SK10";
/// How long fetching `/cacerts` may take.
const CACERTS_TIMEOUT: Duration = Duration::from_secs(15);

/// Why joining failed. Only [`BootstrapError::Fetch`] is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The token is not `SK10<64 hex>::node:<secret>`.
    #[error("malformed node token: {0} (expected SK10<sha256-hex>::node:<secret>)")]
    MalformedToken(&'static str),
    /// The server URL does not parse or is not https.
    #[error("bad server URL {url:?}: {reason}")]
    BadServerUrl {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// `/cacerts` could not be fetched.
    #[error("fetching {url}/cacerts: {reason}")]
    Fetch {
        /// The server URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The CA has no certificate in it.
    #[error("the CA PEM holds no certificate")]
    NoCertificate,
    /// The CA the server sent is not the one the token names: either the
    /// token is for another cluster or someone is in the middle.
    #[error(
        "the server's CA does not match the node token: token pins sha256 {expected}, \
         server sent {actual}; refusing to join (wrong token for this server, or the \
         connection is intercepted)"
    )]
    CaMismatch {
        /// Hash from the token.
        expected: String,
        /// Hash of what the server sent.
        actual: String,
    },
    /// Building the client failed.
    #[error("building the API client: {0}")]
    Client(String),
}

/// A parsed node token.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeToken {
    /// sha256 of the CA certificate DER, lowercase hex.
    pub ca_hash: String,
    /// The secret after `node:`.
    pub secret: String,
    /// The whole token as given (the bearer token).
    pub raw: String,
}

impl std::fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("NodeToken")
            .field("ca_hash", &self.ca_hash)
            .finish_non_exhaustive()
    }
}

impl NodeToken {
    /// Parses `SK10<sha256 hex>::node:<secret>`.
    pub fn parse(token: &str) -> Result<NodeToken, BootstrapError> {
        let token = token.trim();
        let rest = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(BootstrapError::MalformedToken("missing SK10 prefix"))?;
        let (hash, rest) = rest
            .split_once("::")
            .ok_or(BootstrapError::MalformedToken("missing '::'"))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BootstrapError::MalformedToken(
                "CA hash is not 64 hex digits",
            ));
        }
        let secret = rest
            .strip_prefix("node:")
            .ok_or(BootstrapError::MalformedToken("missing 'node:'"))?;
        if secret.is_empty() {
            return Err(BootstrapError::MalformedToken("empty secret"));
        }
        Ok(NodeToken {
            ca_hash: hash.to_ascii_lowercase(),
            secret: secret.into(),
            raw: token.into(),
        })
    }
}

/// sha256 of a DER certificate, lowercase hex: what a token pins.
pub fn ca_hash(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// All certificates of a PEM bundle, as DER.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, BootstrapError> {
    skiff_client::pem_certs(pem).map_err(|_| BootstrapError::NoCertificate)
}

/// Checks that a CA bundle contains the certificate the token pins; returns
/// the bundle's certificates (DER) on success.
pub fn verify_ca(pem: &str, token: &NodeToken) -> Result<Vec<Vec<u8>>, BootstrapError> {
    let certs = pem_certs(pem)?;
    if certs.iter().any(|c| ca_hash(c) == token.ca_hash) {
        return Ok(certs);
    }
    Err(BootstrapError::CaMismatch {
        expected: token.ca_hash.clone(),
        actual: ca_hash(&certs[0]),
    })
}

fn parse_https(url: &str) -> Result<(http::Uri, String, u16), BootstrapError> {
    let bad = |reason: &str| BootstrapError::BadServerUrl {
        url: url.into(),
        reason: reason.into(),
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad("the API server URL must be https"));
    }
    let host = uri
        .host()
        .ok_or_else(|| bad("no host"))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(443);
    Ok((uri, host, port))
}

/// `GET <server>/cacerts` over TLS without verifying the server; returns
/// the body (PEM).
pub async fn fetch_cacerts(server_url: &str) -> Result<String, BootstrapError> {
    let (_, host, port) = parse_https(server_url)?;
    let fail = |reason: String| BootstrapError::Fetch {
        url: server_url.into(),
        reason,
    };
    let fetch = async {
        // Not verified: the answer is checked against the token's hash.
        let tls = skiff_client::unverified_tls_config(&[]).map_err(|e| fail(e.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let name = ServerName::try_from(host.clone()).map_err(|e| fail(e.to_string()))?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| fail(e.to_string()))?;
        let stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| fail(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = if port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let req = http::Request::get("/cacerts")
            .header(http::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(fail(format!("HTTP {}", resp.status())));
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        String::from_utf8(body.to_vec()).map_err(|_| fail("body is not UTF-8 PEM".into()))
    };
    tokio::time::timeout(CACERTS_TIMEOUT, fetch)
        .await
        .map_err(|_| fail("timed out".into()))?
}

/// The CA certificates (DER) to trust: the given PEM, or the fetched one;
/// either way checked against the token's hash.
pub async fn cluster_ca(
    server_url: &str,
    token: &NodeToken,
    ca_pem: Option<&str>,
) -> Result<Vec<Vec<u8>>, BootstrapError> {
    match ca_pem {
        Some(pem) => verify_ca(pem, token),
        None => verify_ca(&fetch_cacerts(server_url).await?, token),
    }
}

/// A `kube::Config` for the cluster: CA pinned, the whole token as bearer.
pub fn kube_config(
    server_url: &str,
    token: &NodeToken,
    ca_der: Vec<Vec<u8>>,
) -> Result<kube::Config, BootstrapError> {
    // An agent only talks to its server over https.
    parse_https(server_url)?;
    skiff_client::kube_config(server_url, ca_der, &token.raw)
        .map_err(|e| BootstrapError::Client(e.to_string()))
}

/// From token (and maybe CA) to a ready API client.
pub async fn connect(
    server_url: &str,
    token: &str,
    ca_pem: Option<&str>,
) -> Result<kube::Client, BootstrapError> {
    let token = NodeToken::parse(token)?;
    let ca = cluster_ca(server_url, &token, ca_pem).await?;
    let config = kube_config(server_url, &token, ca)?;
    kube::Client::try_from(config).map_err(|e| BootstrapError::Client(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_ca() -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), cert.der().to_vec())
    }

    #[test]
    fn parses_tokens() {
        let h = "ab".repeat(32);
        let t = NodeToken::parse(&format!("SK10{h}::node:s3cret")).unwrap();
        assert_eq!(t.ca_hash, h);
        assert_eq!(t.secret, "s3cret");
        assert!(!format!("{t:?}").contains("s3cret"));
        for bad in [
            "K10abc::node:x".to_string(),
            format!("SK10{h}node:x"),
            format!("SK10{}::node:x", "zz".repeat(32)),
            format!("SK10{h}::server:x"),
            format!("SK10{h}::node:"),
            "SK10ab::node:x".to_string(),
        ] {
            assert!(NodeToken::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn verifies_ca_against_token_hash() {
        let (pem, der) = test_ca();
        let good = NodeToken::parse(&format!("SK10{}::node:x", ca_hash(&der))).unwrap();
        assert_eq!(verify_ca(&pem, &good).unwrap(), vec![der]);
        let wrong = NodeToken::parse(&format!("SK10{}::node:x", "00".repeat(32))).unwrap();
        let err = verify_ca(&pem, &wrong).unwrap_err();
        assert!(matches!(err, BootstrapError::CaMismatch { .. }));
        assert!(err.to_string().contains("refusing to join"));
        assert!(matches!(
            verify_ca("junk", &good),
            Err(BootstrapError::NoCertificate)
        ));
    }

    #[test]
    fn builds_client_config() {
        let (_, der) = test_ca();
        let raw = format!("SK10{}::node:x", ca_hash(&der));
        let t = NodeToken::parse(&raw).unwrap();
        let c = kube_config("https://127.0.0.1:6443", &t, vec![der]).unwrap();
        assert_eq!(c.cluster_url.port_u16(), Some(6443));
        assert!(c.auth_info.token.is_some());
        assert!(kube_config("http://127.0.0.1:6443", &t, vec![]).is_err());
    }
}

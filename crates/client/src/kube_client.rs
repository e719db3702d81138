//! A kube-rs client from an API server URL, a CA and a bearer token.

use std::time::Duration;

/// How long to wait for a TCP+TLS connection to the API server.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may take to send. Reads have no timeout: watches
/// stay open for minutes.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a client could not be built. None of these is retryable: the input
/// is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server URL does not parse.
    #[error("server URL {url:?}: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The CA bundle holds no certificate.
    #[error("no certificate in the CA bundle")]
    NoCertificate,
    /// kube-rs refused the configuration.
    #[error("building the API client: {0}")]
    Kube(String),
}

/// All certificates of a PEM bundle, as DER; unreadable blocks are skipped.
pub fn pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, ClientError> {
    let certs: Vec<Vec<u8>> = rustls_pemfile::certs(&mut pem.as_bytes())
        .filter_map(Result::ok)
        .map(|c| c.as_ref().to_vec())
        .collect();
    if certs.is_empty() {
        return Err(ClientError::NoCertificate);
    }
    Ok(certs)
}

/// A `kube::Config` for `url` that trusts `ca_der` and sends `token` as a
/// bearer token, with [`CONNECT_TIMEOUT`] and [`WRITE_TIMEOUT`].
pub fn kube_config(
    url: &str,
    ca_der: Vec<Vec<u8>>,
    token: &str,
) -> Result<kube::Config, ClientError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| ClientError::BadUrl {
            url: url.into(),
            reason: e.to_string(),
        })?;
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(ca_der);
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    config.read_timeout = None;
    // AuthInfo's token is a secrecy::SecretString; building it through serde
    // avoids another direct dependency.
    config.auth_info = serde_json::from_value(serde_json::json!({ "token": token }))
        .map_err(|e| ClientError::Kube(e.to_string()))?;
    Ok(config)
}

/// A ready kube-rs client: [`kube_config`] with the CA given as PEM.
pub fn kube_client(url: &str, ca_pem: &str, token: &str) -> Result<kube::Client, ClientError> {
    let config = kube_config(url, pem_certs(ca_pem)?, token)?;
    kube::Client::try_from(config).map_err(|e| ClientError::Kube(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_from_pem_and_refuses_garbage() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let certs = pem_certs(&cert.pem()).unwrap();
        assert_eq!(certs, vec![cert.der().to_vec()]);
        assert!(matches!(
            pem_certs("not pem"),
            Err(ClientError::NoCertificate)
        ));
        assert!(matches!(
            kube_config("not a url at all", certs.clone(), "t"),
            Err(ClientError::BadUrl { .. })
        ));
        let config = kube_config("https://127.0.0.1:6443", certs, "t").unwrap();
        assert_eq!(config.connect_timeout, Some(CONNECT_TIMEOUT));
    }
}

//! The agent's serving certificate: self-signed, like kubelet's default
//! (`--tls-cert-file` unset → kubelet writes `kubelet.crt` for itself),
//! kept under `<data_dir>/pki/` and reused across restarts.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Why the serving certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing the key files failed.
    #[error("agent TLS files in {dir}: {source}")]
    Io {
        /// The pki dir.
        dir: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Generating the certificate failed.
    #[error("generating the agent certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the key or certificate.
    #[error("agent TLS config: {0}")]
    Rustls(#[from] rustls::Error),
    /// The files exist but hold no usable certificate or key.
    #[error("agent TLS files hold no usable certificate or key")]
    Unusable,
}

const CERT_FILE: &str = "agent.crt";
const KEY_FILE: &str = "agent.key";

fn load(
    dir: &Path,
) -> Option<(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let cert = std::fs::read(dir.join(CERT_FILE)).ok()?;
    let key = std::fs::read(dir.join(KEY_FILE)).ok()?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut cert.as_slice())
        .filter_map(Result::ok)
        .collect();
    let key = rustls_pemfile::private_key(&mut key.as_slice()).ok()??;
    (!certs.is_empty()).then_some((certs, key))
}

/// Loads `<pki_dir>/agent.{crt,key}`, generating them first if missing,
/// and returns a rustls server config offering HTTP/2 and HTTP/1.1.
pub fn server_config(
    pki_dir: &Path,
    node_name: &str,
    node_ip: IpAddr,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let io = |source| TlsError::Io {
        dir: pki_dir.display().to_string(),
        source,
    };
    if load(pki_dir).is_none() {
        std::fs::create_dir_all(pki_dir).map_err(io)?;
        let key = rcgen::KeyPair::generate()?;
        let mut names = vec![node_name.to_string(), "localhost".to_string()];
        names.push(node_ip.to_string());
        names.push("127.0.0.1".to_string());
        names.dedup();
        // rcgen turns names that parse as IPs into IP SANs.
        let mut params = rcgen::CertificateParams::new(names)?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("{node_name}@skiff-agent"),
        );
        let cert = params.self_signed(&key)?;
        std::fs::write(pki_dir.join(CERT_FILE), cert.pem()).map_err(io)?;
        write_private(&pki_dir.join(KEY_FILE), key.serialize_pem().as_bytes()).map_err(io)?;
    }
    let (certs, key) = load(pki_dir).ok_or(TlsError::Unusable)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

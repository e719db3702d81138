//! The server's certificates and tokens, created on first start and reused
//! after.
//!
//! Layout under the data directory (every secret file mode 0600, every file
//! written atomically: temp file, fsync, rename):
//!
//! ```text
//! DATA_DIR/pki/ca.crt, ca.key          self-signed cluster CA (ECDSA P-256)
//! DATA_DIR/pki/server.crt, server.key  serving certificate signed by the CA
//! DATA_DIR/pki/server.sans             the SANs server.crt was made for
//! DATA_DIR/pki/admin.token             the admin bearer token
//! DATA_DIR/pki/sa.key                  ServiceAccount token signing key (ECDSA P-256, PKCS#8)
//! DATA_DIR/node-token                  SK10<sha256(CA DER) hex>::node:<32 hex>
//! DATA_DIR/admin.kubeconfig            written by the server once it has bound
//! ```
//!
//! The node token follows k3s's design: an agent that only knows the token
//! fetches `/cacerts` without verification, checks that the SHA-256 of the
//! CA's DER equals the hash in the token ([`ca_matches_token`]), and from
//! then on trusts that CA. The whole token string is the agent's bearer
//! token. The serving certificate is re-issued (same CA) when the wanted
//! SANs change, e.g. new `extra_sans`.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::Rng;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// The node token's prefix and version, as k3s's `K10` (`SK10` = Skiff, v1).
pub const NODE_TOKEN_PREFIX: &str = "SK10";

/// What can go wrong creating or loading the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Generating or parsing a certificate or key failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// A stored PEM file holds no certificate.
    #[error("{0}: no certificate in PEM file")]
    NoCertificate(PathBuf),
}

/// The loaded certificates and tokens.
#[derive(Clone, Debug)]
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The serving certificate, PEM.
    pub server_cert_pem: String,
    /// The serving key, PEM (PKCS#8).
    pub server_key_pem: String,
    /// The admin bearer token.
    pub admin_token: String,
    /// The node token (the whole `SK10…::node:…` string).
    pub node_token: String,
    /// The key ServiceAccount tokens are signed with, PEM (PKCS#8 P-256).
    pub service_account_key_pem: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` atomically (temp file in the same directory,
/// fsync, rename, fsync of the directory) with permission `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    if let Ok(d) = std::fs::File::open(dir) {
        // Persist the rename; failure here only weakens durability.
        let _ = d.sync_all();
    }
    Ok(())
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::Io {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// SHA-256 (hex) of the first certificate's DER in `pem`.
pub fn ca_hash(pem: &str) -> Option<String> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let der = rustls_pemfile::certs(&mut reader).next()?.ok()?;
    Some(hex::encode(Sha256::digest(der.as_ref())))
}

/// Whether `ca_pem` is the CA a node token was made for.
pub fn ca_matches_token(token: &str, ca_pem: &str) -> bool {
    let Some(rest) = token.strip_prefix(NODE_TOKEN_PREFIX) else {
        return false;
    };
    let Some((hash, _)) = rest.split_once("::") else {
        return false;
    };
    ca_hash(ca_pem).is_some_and(|h| h == hash)
}

/// The SANs the serving certificate carries: loopback, localhost, the
/// in-cluster service names kube-apiserver also serves, this host's name,
/// then `extra`.
pub fn serving_sans(extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = [
        "127.0.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let h = h.trim().to_string();
        if !h.is_empty() {
            sans.push(h);
        }
    }
    for s in extra {
        if !s.is_empty() && !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    sans
}

/// Loads the PKI from `data_dir`, creating whatever is missing.
pub fn load_or_create(data_dir: &Path, extra_sans: &[String]) -> Result<Pki, PkiError> {
    let pki = data_dir.join("pki");
    let (ca_crt, ca_key) = (pki.join("ca.crt"), pki.join("ca.key"));

    // The CA: reuse it if both halves exist, else make a new one.
    let (ca_pem, ca_key_pem) = match (read_opt(&ca_crt)?, read_opt(&ca_key)?) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "skiff-ca");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let cert = params.self_signed(&key)?;
            let (c, k) = (cert.pem(), key.serialize_pem());
            write_atomic(&ca_key, k.as_bytes(), 0o600)?;
            write_atomic(&ca_crt, c.as_bytes(), 0o644)?;
            (c, k)
        }
    };

    // The serving certificate: re-issue when missing or made for other SANs.
    let sans = serving_sans(extra_sans);
    let sans_text = sans.join("\n");
    let (srv_crt, srv_key, srv_sans) = (
        pki.join("server.crt"),
        pki.join("server.key"),
        pki.join("server.sans"),
    );
    let (server_cert_pem, server_key_pem) = match (
        read_opt(&srv_crt)?,
        read_opt(&srv_key)?,
        read_opt(&srv_sans)?,
    ) {
        (Some(c), Some(k), Some(s)) if s == sans_text => (c, k),
        _ => {
            let ca_signing_key = KeyPair::from_pem(&ca_key_pem)?;
            let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_signing_key)?;
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(sans.clone())?;
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "skiff-apiserver");
            params.distinguished_name = dn;
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.use_authority_key_identifier_extension = true;
            let cert = params.signed_by(&key, &issuer)?;
            let (c, k) = (cert.pem(), key.serialize_pem());
            write_atomic(&srv_key, k.as_bytes(), 0o600)?;
            write_atomic(&srv_crt, c.as_bytes(), 0o644)?;
            write_atomic(&srv_sans, sans_text.as_bytes(), 0o644)?;
            (c, k)
        }
    };

    let admin_path = pki.join("admin.token");
    let admin_token = match read_opt(&admin_path)? {
        Some(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let t = random_hex(32);
            write_atomic(&admin_path, t.as_bytes(), 0o600)?;
            t
        }
    };

    // The node token embeds the CA hash, so it is remade if the CA changed.
    let node_path = data_dir.join("node-token");
    let node_token = match read_opt(&node_path)? {
        Some(t) if ca_matches_token(t.trim(), &ca_pem) => t.trim().to_string(),
        _ => {
            let hash = ca_hash(&ca_pem).ok_or_else(|| PkiError::NoCertificate(ca_crt.clone()))?;
            let t = format!("{NODE_TOKEN_PREFIX}{hash}::node:{}", random_hex(16));
            write_atomic(&node_path, t.as_bytes(), 0o600)?;
            t
        }
    };

    // Kept apart from the CA key: rotating one must not invalidate the other.
    let sa_path = pki.join("sa.key");
    let service_account_key_pem = match read_opt(&sa_path)? {
        Some(k) if !k.trim().is_empty() => k,
        _ => {
            let k = KeyPair::generate()?.serialize_pem();
            write_atomic(&sa_path, k.as_bytes(), 0o600)?;
            k
        }
    };

    Ok(Pki {
        ca_pem,
        server_cert_pem,
        server_key_pem,
        admin_token,
        node_token,
        service_account_key_pem,
    })
}

/// A kubeconfig for the admin user (token auth) against `server_url`.
pub fn kubeconfig(server_url: &str, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca_b64}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: admin\ncurrent-context: skiff\npreferences: {{}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), &["10.0.0.9".into()]).unwrap();
        let b = load_or_create(dir.path(), &["10.0.0.9".into()]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.server_cert_pem, b.server_cert_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert_eq!(a.node_token, b.node_token);
        assert_eq!(a.service_account_key_pem, b.service_account_key_pem);
        assert!(ca_matches_token(&a.node_token, &a.ca_pem));
        assert!(a.node_token.starts_with("SK10"));
        assert_eq!(a.node_token.rsplit("::node:").next().unwrap().len(), 32);

        use std::os::unix::fs::PermissionsExt;
        for f in [
            "pki/ca.key",
            "pki/server.key",
            "pki/admin.token",
            "node-token",
        ] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f}");
        }

        // New SANs: same CA, new serving certificate.
        let c = load_or_create(dir.path(), &["other.example".into()]).unwrap();
        assert_eq!(a.ca_pem, c.ca_pem);
        assert_ne!(a.server_cert_pem, c.server_cert_pem);
    }

    #[test]
    fn token_hash_rejects_other_ca() {
        let d1 = tempfile::tempdir().unwrap();
        let d2 = tempfile::tempdir().unwrap();
        let a = load_or_create(d1.path(), &[]).unwrap();
        let b = load_or_create(d2.path(), &[]).unwrap();
        assert!(!ca_matches_token(&a.node_token, &b.ca_pem));
        assert!(!ca_matches_token("garbage", &a.ca_pem));
    }
}

//! Building the kube-rs client that in-process components (scheduler, the
//! embedded agent) use to talk to the API server, like any other client.

use anyhow::Context;

/// A client for `url` that trusts `ca_pem` and presents `token`.
pub fn kube_client(url: &str, ca_pem: &str, token: &str) -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::new(url.parse().context("API server URL")?);
    config.root_cert = Some(pem_to_der(ca_pem)?);
    config.auth_info.token = Some(token.to_string().into());
    kube::Client::try_from(config).context("building the API client")
}

fn pem_to_der(pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::Engine;
    let mut out = Vec::new();
    let mut body = String::new();
    let mut inside = false;
    for line in pem.lines() {
        let line = line.trim();
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
            body.clear();
        } else if line.starts_with("-----END CERTIFICATE") {
            inside = false;
            out.push(
                base64::engine::general_purpose::STANDARD
                    .decode(&body)
                    .context("CA certificate is not valid PEM")?,
            );
        } else if inside {
            body.push_str(line);
        }
    }
    anyhow::ensure!(!out.is_empty(), "no certificate in the CA PEM");
    Ok(out)
}

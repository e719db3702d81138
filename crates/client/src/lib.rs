//! How Skiff's components connect to each other, in one place.
//!
//! ```text
//!  scheduler, controllers, agent, `skiff bench` ──kube_client(url, CA, token)──> API server
//!  agent bootstrap (GET /cacerts, then pinned) ──unverified_tls_config──┐
//!  API server log proxy (→ agent's HTTPS)      ──unverified_tls_config──┴─> self-signed peers
//! ```
//!
//! - [`kube_client`] / [`kube_config`]: a kube-rs client for an API server
//!   URL that trusts the given CA and presents a bearer token, as every
//!   in-cluster component of Skiff uses.
//! - [`pem_certs`]: the certificates of a PEM bundle, as DER.
//! - [`slim_pod`]: what the scheduler's and the controllers' slim pod types
//!   share (a `kube::Resource` as core/v1 pods, conversion from a `Pod`).
//! - [`quantile`]: the nearest-rank latency quantile of `skiff bench` tables.
//! - [`leader`]: leader election on a Lease (client-go's
//!   `leaderelection`), shared by the scheduler and the controllers.
//! - [`unverified_tls_config`]: a rustls client config that accepts any
//!   server certificate but still verifies handshake signatures. Two callers
//!   need it, each for a stated reason: the agent fetching `/cacerts` before
//!   it knows the CA (the answer is then checked against the hash pinned in
//!   its token), and the API server proxying logs to an agent's
//!   self-signed endpoint (as kube-apiserver without
//!   `--kubelet-certificate-authority`).
//!
//! Caveats: no client-certificate authentication; the token is the only
//! credential.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod kube_client;
pub mod leader;
mod quantile;
pub mod slim_pod;
mod tls;

pub use kube_client::{
    kube_client, kube_config, pem_certs, ClientError, CONNECT_TIMEOUT, WRITE_TIMEOUT,
};
pub use quantile::quantile;
pub use tls::unverified_tls_config;

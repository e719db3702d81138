//! Skiff's Kubernetes-compatible API server: the REST front door that stock
//! kubectl, client-go and kube-rs programs talk to, over the etcd-model
//! store ([`skiff_store::Kv`]).
//!
//! # The request pipeline
//!
//! ```text
//!  HTTPS (rustls, ALPN h2/http1.1)                       server.rs
//!    │
//!    ▼
//!  route ── /healthz /livez /readyz /version /cacerts ──► answered, no auth
//!    │                                                   router.rs, dispatch.rs
//!    ▼
//!  authenticate (Bearer: admin / node token) ── 401      auth.rs
//!    ▼
//!  authorize (Authorizer trait; allow-all today) ── 403  auth.rs
//!    ▼
//!  discovery / OpenAPI (GET only) ──────────────────────► discovery.rs, openapi.rs
//!    ▼
//!  read body (≤ 3 MiB, 413) · negotiate Accept (JSON, YAML, Table)
//!    ▼                                                   dispatch.rs, codec.rs
//!  REST verb on the resource      rest.rs, delete.rs, pods.rs, watch.rs, logs.rs
//!    decode (JSON, YAML, protobuf for a few kinds; 400)   codec.rs, protobuf.rs
//!    → kind/identity checks → fieldValidation (Strict 400 / Warn header)
//!    → server-set fields (strategy.rs) → defaults (defaults.rs)
//!    → validate (validation.rs, 422) → admission (auth.rs)
//!    → store Txn (registry.rs: create-if-absent 409, mod_revision 409)
//!    ▼
//!  response: object / list / Table / watch stream; errors → metav1.Status
//!  (error.rs is the only place that builds one)
//! ```
//!
//! # Contracts
//! - `resourceVersion` is the store revision: an object's is its key's
//!   `mod_revision`, a list's is the snapshot revision. It is never stored
//!   inside the object.
//! - Objects are stored as JSON at [`resources::ResourceInfo::storage_key`]
//!   (`/registry/<group|core>/<plural>/<ns>/<name>`).
//! - Create is a Txn on `create_revision == 0`; update/delete Txns compare
//!   `mod_revision`. PATCH retries lost races; PUT with a resourceVersion
//!   gets 409 Conflict.
//! - Pods bound to a node delete gracefully: `deletionTimestamp` and
//!   `deletionGracePeriodSeconds` are set and the agent finishes with a
//!   delete with `gracePeriodSeconds=0`. Unbound or terminal pods go at
//!   once. Objects with finalizers only get `deletionTimestamp`; removing
//!   the last finalizer deletes them.
//! - `GET pods/<name>/log` is proxied to the agent at the Node's
//!   InternalIP and `daemonEndpoints.kubeletEndpoint.Port`, path
//!   `/containerLogs/<ns>/<pod>/<container>`, with the node token as Bearer.
//! - Embedding: [`ApiServer::start`] (or [`ApiServer::start_with_hooks`]
//!   with an [`auth::Authorizer`] and [`auth::Admission`]) over any
//!   `Arc<dyn Kv>`; [`ApiServer::shutdown`] returns once no request or
//!   watch holds the store any more, so the store can be closed next.
//! - On start: PKI under `DATA_DIR/pki/`, `DATA_DIR/node-token`
//!   (`SK10<sha256 of CA DER>::node:<hex>`), `DATA_DIR/admin.kubeconfig`,
//!   and the namespaces `default`, `kube-system`, `kube-public`,
//!   `kube-node-lease`.
//!
//! # Caveats (what Kubernetes does that Skiff does not, yet)
//! - No watch cache: each watch opens a store watch; bookmarks every 30 s;
//!   watches without `timeoutSeconds` end after 30 min.
//! - Strategic merge patch knows merge keys by field name, not from the
//!   Go type's tags (see [`patch`]); server-side apply is 415.
//! - Authorization allows every authenticated user; no admission plugins;
//!   no client-certificate authentication.
//! - Deleting a namespace removes its contents at once (no Terminating
//!   phase); `propagationPolicy` is accepted but there is no garbage
//!   collector yet.
//! - The agent's serving certificate is not verified when proxying logs
//!   (like kube-apiserver without `--kubelet-certificate-authority`).
//! - Responses are JSON (or YAML) only; protobuf request bodies are
//!   decoded only for Namespace, ConfigMap, Secret and ServiceAccount
//!   (what `kubectl create <kind>` sends; see [`protobuf`]). No aggregated
//!   discovery (clients fall back to `/api` and `/apis`).
#![deny(missing_docs)]

pub mod auth;
pub mod codec;
pub mod defaults;
pub mod delete;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod logs;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod pods;
pub mod protobuf;
pub mod registry;
pub mod request;
pub mod resources;
pub mod response;
pub mod rest;
pub mod router;
pub mod selectors;
pub mod server;
pub mod strategy;
pub mod table;
pub mod validation;
pub mod watch;

pub use auth::UserInfo;
pub use error::ApiError;
pub use server::{ApiServer, ApiServerConfig, ApiServerError, Hooks};

//! Skiff's Kubernetes-compatible API server: the REST front door that stock
//! kubectl, client-go and kube-rs programs talk to, over the etcd-model
//! store ([`skiff_store::Kv`]).
//!
//! # The request pipeline
//!
//! ```text
//!  HTTPS (rustls, ALPN h2/http1.1)                       server.rs
//!  or, for the scheduler and controllers in this process,
//!  an in-memory pipe (HTTP/1.1, no TLS)                  local.rs
//!    │
//!    ▼
//!  route ── /healthz /livez /readyz /version /cacerts ──► answered, no auth
//!    │  (custom resources: crd_registry.rs)              router.rs, dispatch.rs
//!    ▼
//!  authenticate (Bearer: admin / node token,            auth.rs,
//!    ServiceAccount JWT) ── 401                          serviceaccount_token.rs
//!    ▼
//!  authorize (RBAC from the watch cache) ── 403           rbac.rs, rbac_authorizer.rs
//!    ▼
//!  discovery / OpenAPI (GET only) ──────────────────────► discovery.rs, openapi.rs
//!    ▼
//!  read body (≤ 3 MiB, 413) · negotiate Accept (JSON, YAML, Table)
//!    ▼                                                   dispatch.rs, codec.rs
//!  REST verb on the resource      rest.rs, delete.rs, pods.rs, watch.rs, logs.rs, streams.rs
//!    decode (JSON, YAML, protobuf; 400)   codec.rs, protobuf.rs, k8s_schema.rs
//!    → kind/identity checks → fieldValidation (Strict 400 / Warn header;
//!      unknown fields then dropped)
//!    → server-set fields (strategy.rs) → defaults (defaults.rs)
//!    → validate (validation.rs, 422; custom objects by their CRD's
//!      schema: crd_schema.rs) → RBAC escalation check
//!    (rbac_escalation.rs, 403) → admission (auth.rs)
//!    → creates: NamespaceLifecycle (rest.rs), ServiceAccount for pods
//!      (serviceaccount_admission.rs: default account, token volume),
//!      ResourceQuota (quota.rs:
//!      403 over a quota, else status.used charged by mod_revision Txn)
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
//! - `pods/<name>/exec`, `attach` and `portforward` ([`streams`]) proxy the
//!   HTTP upgrade to the same agent (`/exec/…`, `/attach/…`,
//!   `/portForward/…`) and then copy bytes; the agent speaks WebSocket
//!   (`v5.channel.k8s.io`, SPDY-over-WebSocket for port-forward) and SPDY.
//! - `metrics.k8s.io/v1beta1` ([`metrics`]) is answered from the agents'
//!   `/stats/summary`, cached for a few seconds, for `kubectl top`.
//! - Lists and watches are served from one in-memory watch cache
//!   ([`watchcache`]) fed by a single store watch over every key: a list
//!   without resourceVersion first waits until the cache has the store's
//!   current revision (KEP-2340), so it sees every write acknowledged
//!   before it; `continue` tokens carry the snapshot revision and work from
//!   the cache or the store alike; a watch resumes from the cache's ring
//!   (410 Expired when older than the ring or compacted in the store);
//!   a watcher more than [`watchcache::WatchCacheConfig::watcher_buffer`]
//!   events behind is closed and its client rewatches. Gets are read from
//!   the store; a PATCH starts from the cache's copy and reads the store
//!   after a conflict. Until the cache has loaded, the store serves everything.
//!   The cache holds each object as its JSON plus the labels and
//!   field-selector values of its kind ([`cached_object`]): list bodies
//!   and watch events are written from those bytes, and only Table, YAML,
//!   custom-object conversion and the RBAC policy decode them.
//! - CustomResourceDefinitions ([`crd`]) are served like the built-in
//!   kinds; each served version of each CRD in the store becomes a
//!   [`resources::ResourceInfo`] with `custom` set ([`crd_registry`], fed
//!   by a store watch on the CRD prefix, so every server serves a CRD
//!   created through any of them). Custom objects are pruned, defaulted
//!   and validated by the version's `openAPIV3Schema` ([`crd_schema`]),
//!   printed with its `additionalPrinterColumns`, and appear in discovery
//!   and OpenAPI v3, and are cached like the built-ins once the watch cache
//!   has loaded their prefix. Deleting a CRD deletes its objects.
//! - Embedding: [`ApiServer::start`] (or [`ApiServer::start_with_hooks`]
//!   with an [`auth::Authorizer`] and [`auth::Admission`], or
//!   [`ApiServer::start_with_cache`] with watch cache sizes) over any
//!   `Arc<dyn Kv>`; [`ApiServer::shutdown`] returns once no request or
//!   watch holds the store any more, so the store can be closed next.
//! - On start: PKI under `DATA_DIR/pki/` (with `sa.key`, the
//!   ServiceAccount token signing key), `DATA_DIR/node-token`
//!   (`SK10<sha256 of CA DER>::node:<hex>`), `DATA_DIR/admin.kubeconfig`,
//!   the namespaces `default`, `kube-system`, `kube-public`,
//!   `kube-node-lease`, and the default RBAC policy ([`rbac_bootstrap`]).
//! - Authorization ([`rbac_authorizer`]) reads Roles, ClusterRoles and
//!   their bindings from the watch cache, rebuilding its [`rbac::Policy`]
//!   only when one of them changed; a denied request is asked again once
//!   the cache has the store's current revision, so a binding written
//!   just before counts. `system:masters` bypasses RBAC; a 403 carries
//!   kube-apiserver's message. Writing a role or binding needs the
//!   permissions it grants, or `escalate`/`bind` ([`rbac_escalation`]).
//! - `serviceaccounts/<name>/token` issues ES256 JWTs
//!   ([`serviceaccount_token`]); the review APIs ([`reviews`]) answer
//!   `kubectl auth can-i` / `whoami` and are never stored.
//! - Events expire `--event-ttl` (1 h) after their last write: the
//!   registry attaches each Event write to a store lease shared by writes
//!   within a short window ([`event_ttl`]), and the store's lessor deletes
//!   them.
//!
//! # Caveats (what Kubernetes does that Skiff does not, yet)
//! - The watch cache ([`watchcache`]) keeps a fixed number of events per
//!   resource (default 4,096), not kube-apiserver's time-sized window, and
//!   tests each change against every watcher of the resource (no index by
//!   namespace or `spec.nodeName`). `resourceVersion="0"` lists are served
//!   as consistent reads (the list handler passes "0" and unset alike).
//!   Bookmarks every 30 s; watches without `timeoutSeconds` end after
//!   30 min.
//! - Strategic merge patch knows merge keys by field name, not from the
//!   Go type's tags (see [`patch`]). Server-side apply ([`apply`],
//!   [`apply_rest`]) merges lists by the generated schema's list types
//!   and tracks `managedFields` on every write; no version conversion of
//!   field sets.
//! - Authorization is RBAC only (no Node authorizer: the agent's node token
//!   is `system:node` in `system:nodes`, bound to a `system:node`
//!   ClusterRole by [`rbac_bootstrap`]); no anonymous requests (401), no
//!   impersonation, no admission plugins besides NamespaceLifecycle,
//!   ServiceAccount ([`serviceaccount_admission`]) and ResourceQuota
//!   (which charges creates only; see [`quota`]), no client-certificate
//!   authentication. ServiceAccount tokens: no OIDC discovery/JWKS, no
//!   legacy Secret tokens.
//! - Deleting a namespace marks it Terminating; the namespace controller
//!   (`crates/controllers/src/namespace/`) empties it and then finalizes
//!   it, so without controllers (`--no-controllers`) it stays Terminating.
//! - The agent's serving certificate is not verified when proxying logs
//!   (like kube-apiserver without `--kubelet-certificate-authority`).
//! - Responses are JSON (or YAML) only; protobuf request bodies are
//!   decoded for every kind in the generated schema table
//!   ([`k8s_schema`], [`protobuf`]). No aggregated discovery (clients
//!   fall back to `/api` and `/apis`). Metadata-only answers
//!   (`as=PartialObjectMetadata[List]`, [`codec`]) for gets, lists,
//!   watches and writes answered with the object; not for `*/scale`,
//!   reviews, TokenRequests or `deletecollection`, which answer whole.
//! - Resources served ([`resources::RESOURCES`]): core/v1, apps/v1,
//!   batch/v1, autoscaling/v2 and v1, policy/v1, coordination, discovery,
//!   events.k8s.io, scheduling and RBAC kinds, with Kubernetes' defaults,
//!   basic validation and `kubectl get` columns. autoscaling/v1
//!   HorizontalPodAutoscalers are stored as v2 and converted on each
//!   request (`rest.rs` → `schema_hpa_v1.rs`); events.k8s.io/v1 Events are
//!   stored apart from core/v1 Events (Kubernetes stores one and converts).
//! - Custom resources: versions convert only by the `None` strategy
//!   (`apiVersion` rewritten), no conversion webhooks, no CEL
//!   rules, no `format` checks (see [`crd`], [`crd_schema`]).
//! - `*/scale` ([`scale`]) sets only `spec.replicas`; `pods/eviction`
//!   ([`eviction`]) spends one of the selecting PodDisruptionBudget's
//!   `disruptionsAllowed` (computed by the disruption controller) or
//!   answers 429, then deletes the pod gracefully.
//! - Services get a cluster IP from the service CIDR and node ports from
//!   30000–32767 ([`service_ranges`], [`services`]): IPv4 only, one store
//!   key per allocation written in the Service's own Txn. The `kubernetes`
//!   Service points at this server's listen address.
#![deny(missing_docs)]

pub mod apply;
pub mod apply_rest;
pub mod auth;
pub mod bench;
pub mod cached_object;
pub mod codec;
pub mod crd;
pub mod crd_registry;
pub mod crd_schema;
pub mod defaults;
pub mod delete;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod event_ttl;
pub mod eviction;
pub mod fieldpath;
pub mod k8s_schema;
pub mod local;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod patch;
pub mod pki;
pub mod pods;
pub mod protobuf;
pub mod quota;
pub mod rbac;
pub mod rbac_authorizer;
pub mod rbac_bootstrap;
pub mod rbac_escalation;
pub mod registry;
pub mod request;
pub mod resources;
pub mod response;
pub mod rest;
pub mod reviews;
pub mod router;
pub mod scale;
pub mod selectors;
pub mod server;
pub mod service_ranges;
pub mod serviceaccount_admission;
pub mod serviceaccount_token;
pub mod services;
pub mod strategy;
pub mod streams;
pub mod table;
pub mod validation;
pub mod watch;
pub mod watchcache;
mod watchcache_state;

pub use auth::UserInfo;
pub use error::ApiError;
pub use server::{ApiServer, ApiServerConfig, ApiServerError, Hooks};

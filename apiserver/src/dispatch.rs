//! The request pipeline in front of the handlers: route → authenticate →
//! authorize → read the body → negotiate → handler, with every error
//! answered through [`response::error`].

use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;

use crate::auth::{Admission, Authorizer, RequestAttributes, TokenAuthenticator};
use crate::codec::negotiate;
use crate::error::{ApiError, MAX_REQUEST_BODY_BYTES};
use crate::rbac::{Attributes, ResourceAttributes};
use crate::registry::Registry;
use crate::request::{Query, RequestContext};
use crate::resources::find;
use crate::response::{self, Body};
use crate::router::Route;
use crate::{discovery, openapi, pods, rest};

/// The Kubernetes version Skiff's API corresponds to (what `/version`
/// reports and kubectl compares with its own for the skew warning).
pub const KUBERNETES_MINOR: &str = "32";

/// How long `/readyz` waits for the store (kube-apiserver's etcd readiness
/// check also times out rather than hang a load balancer's probe).
const READYZ_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Server-wide state shared by every request.
pub struct ApiState {
    /// The store, as objects.
    pub registry: Registry,
    /// Bearer-token authentication.
    pub authn: TokenAuthenticator,
    /// Authorization.
    pub authz: Arc<dyn Authorizer>,
    /// Admission.
    pub admission: Arc<dyn Admission>,
    /// The node token (sent to agents when proxying).
    pub node_token: String,
    /// The CA bundle served at `/cacerts`.
    pub ca_pem: String,
    /// `host:port` clients reach this server at (for `/api`).
    pub server_address: String,
    /// Turns `true` when the server shuts down; long-lived tasks (watches)
    /// end on it so that they release the store.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Where Services' cluster IPs and node ports come from.
    pub service_ranges: crate::service_ranges::ServiceRanges,
    /// The custom resources CRDs define.
    pub crds: Arc<crate::crd_registry::CrdRegistry>,
    /// Run the ServiceAccount admission plugin on pod creation
    /// ([`crate::serviceaccount_admission`]).
    pub service_account_admission: bool,
}

/// The `/version` body (`version.Info`).
pub fn version_info() -> serde_json::Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-skiff"),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

/// Go's name for this architecture (what kubectl prints).
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Serves one HTTP request. Never fails: errors become Status responses.
pub async fn serve(state: Arc<ApiState>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match handle(state, req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %path, code = e.status_code(), error = %e, "request failed");
            response::error(&e)
        }
    }
}

async fn handle(state: Arc<ApiState>, req: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    let route = state
        .crds
        .route(state.registry.kv().as_ref(), req.uri().path())
        .await;
    if let Ok(r) = &route {
        if r.is_public() {
            return public(&state, r).await;
        }
    }
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let user = state
        .authn
        .authenticate(&state.registry, auth_header)
        .await?;
    // metrics.k8s.io is served here rather than from the resource table
    // (no storage behind it).
    if crate::metrics::is_metrics_path(req.uri().path()) {
        if req.method() != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        let query = Query::parse(req.uri().query());
        let path = req.uri().path();
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        state
            .authz
            .authorize(&user, &metrics_attributes(path, &segs, &query))
            .await?;
        return crate::metrics::serve(&state, path, &query).await;
    }
    let route = route?;

    let method = req.method().clone();
    let uri_path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query());
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let attrs_verb;
    let attrs = match &route {
        Route::Resource(p) => rest::attributes(&method, p, &uri_path, query.flag("watch")),
        Route::Bindings { namespace } => RequestAttributes {
            verb: "create",
            resource: find("", "v1", "pods"),
            subresource: Some("binding"),
            namespace: Some(namespace),
            name: None,
            path: &uri_path,
        },
        Route::NodeProxy { node, .. } => RequestAttributes {
            verb: "get",
            resource: find("", "v1", "nodes"),
            subresource: Some("proxy"),
            namespace: None,
            name: Some(node),
            path: &uri_path,
        },
        _ => {
            attrs_verb = method.as_str().to_ascii_lowercase();
            RequestAttributes {
                verb: &attrs_verb,
                resource: None,
                subresource: None,
                namespace: None,
                name: None,
                path: &uri_path,
            }
        }
    };
    state.authz.authorize(&user, &attrs.rbac()).await?;

    // exec/attach/portforward take over the connection: no body to read.
    if let Route::Resource(p) = &route {
        if crate::streams::is_stream(p) {
            return crate::streams::serve(state.clone(), req, p).await;
        }
    }

    if let Route::NodeProxy { node, path } = &route {
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        return crate::logs::proxy_to_node(&state, node, path, req.uri().query()).await;
    }

    if !matches!(route, Route::Resource(_) | Route::Bindings { .. }) {
        if method != Method::GET {
            return Err(ApiError::MethodNotAllowed);
        }
        return non_resource(&state, &route, accept.as_deref());
    }

    let body = read_body(req).await?;
    let output = negotiate(accept.as_deref())?;
    let mut ctx = RequestContext {
        state: state.clone(),
        user,
        query,
        output,
        body,
        content_type,
        user_agent,
        warnings: Vec::new(),
    };
    match &route {
        Route::Resource(p) if p.resource.is_create_only() => {
            if method != Method::POST || p.name.is_some() {
                return Err(ApiError::MethodNotAllowed);
            }
            crate::reviews::create(&mut ctx, p.resource, p.namespace.as_deref()).await
        }
        Route::Resource(p) => rest::handle(&mut ctx, &method, p).await,
        Route::Bindings { namespace } if method == Method::POST => {
            pods::bind(&mut ctx, namespace, None).await
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// What a `metrics.k8s.io` request asks, for authorization: `get`/`list`
/// of `pods` or `nodes` in that group, or a non-resource `get` of the
/// group's discovery paths. `segs` are the path's segments.
fn metrics_attributes<'a>(path: &'a str, segs: &[&'a str], query: &Query) -> Attributes<'a> {
    let (namespace, rest) = match segs.get(3..).unwrap_or(&[]) {
        ["namespaces", ns, rest @ ..] => (Some(*ns), rest),
        rest => (None, rest),
    };
    let resource = match rest {
        [plural] | [plural, _] => Some(ResourceAttributes {
            group: "metrics.k8s.io",
            resource: plural,
            subresource: None,
            name: rest.get(1).copied(),
            namespace,
        }),
        _ => None,
    };
    let verb = match (&resource, rest.len(), query.flag("watch")) {
        (None, _, _) => "get",
        (Some(_), _, true) => "watch",
        (Some(_), 1, _) => "list",
        _ => "get",
    };
    Attributes {
        verb,
        resource,
        path,
    }
}

/// Bodies up to this size past the limit are still read (and dropped)
/// before the 413: a client gets the answer only if it could send its
/// whole body; a connection closed under a sending HTTP/1 client is reset
/// and the client sees a broken pipe instead of the 413. Bigger bodies
/// are cut off.
const MAX_DRAINED_BODY_BYTES: usize = 4 * MAX_REQUEST_BODY_BYTES;

/// Reads the whole body, 413 past the limit. The body is read up to the
/// limit rather than refused from `Content-Length` alone: answering before
/// reading makes HTTP/2 clients see a reset stream instead of the 413. An
/// over-long body is drained up to [`MAX_DRAINED_BODY_BYTES`] for the same
/// reason (HTTP/1), and the 413 closes the connection.
async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    let mut body = req.into_body();
    let mut kept = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen <= MAX_REQUEST_BODY_BYTES {
            kept.extend_from_slice(&data);
        } else if seen > MAX_DRAINED_BODY_BYTES {
            break;
        } else {
            kept = Vec::new();
        }
    }
    if seen > MAX_REQUEST_BODY_BYTES {
        return Err(ApiError::RequestEntityTooLarge);
    }
    Ok(Bytes::from(kept))
}

async fn public(state: &ApiState, route: &Route) -> Result<Response<Body>, ApiError> {
    match route {
        Route::Health => Ok(response::text(200, "ok")),
        Route::Ready => {
            let check =
                tokio::time::timeout(READYZ_STORE_TIMEOUT, state.registry.kv().current_revision());
            match check.await {
                Ok(Ok(_)) => Ok(response::text(200, "ok")),
                Ok(Err(e)) => Ok(response::text(
                    500,
                    format!("[-]etcd failed: {e}\nreadyz check failed\n"),
                )),
                Err(_) => Ok(response::text(
                    500,
                    "[-]etcd failed: timed out\nreadyz check failed\n",
                )),
            }
        }
        Route::Version => Ok(response::json(200, &version_info())),
        Route::CaCerts => Ok(response::text(200, state.ca_pem.clone())),
        _ => Err(ApiError::PathNotFound),
    }
}

fn non_resource(
    state: &ApiState,
    route: &Route,
    accept: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    if let Some(answer) = state.crds.answer(route) {
        return answer;
    }
    let found = |v: Option<serde_json::Value>| {
        v.map(|v| response::json(200, &v))
            .ok_or(ApiError::PathNotFound)
    };
    match route {
        Route::CoreVersions => Ok(response::json(
            200,
            &discovery::core_api_versions(&state.server_address),
        )),
        Route::GroupList => Ok(response::json(200, &discovery::api_group_list())),
        Route::Group(g) => found(discovery::api_group(g)),
        Route::ResourceList { group, version } => {
            found(discovery::api_resource_list(group, version))
        }
        Route::OpenApiIndex => Ok(response::json(200, &openapi::v3_index())),
        Route::OpenApiV2 => {
            let protobuf = accept.is_some_and(|a| a.contains(openapi::v2::PROTOBUF_ACCEPT));
            let (content_type, doc) = if protobuf {
                (openapi::v2::PROTOBUF, openapi::v2::protobuf())
            } else {
                ("application/json", openapi::v2::json())
            };
            Ok(response::raw(
                200,
                content_type,
                Bytes::from_owner(SharedDoc(doc)),
            ))
        }
        Route::OpenApiDocument(p) => {
            let doc = openapi::v3_document(p).ok_or(ApiError::PathNotFound)?;
            // Shares the cached document instead of copying it per request.
            Ok(response::raw(
                200,
                "application/json",
                Bytes::from_owner(SharedDoc(doc)),
            ))
        }
        _ => Err(ApiError::PathNotFound),
    }
}

/// A cached OpenAPI document as a `Bytes` owner.
struct SharedDoc(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedDoc {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

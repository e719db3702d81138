//! The request path's one error type, [`ApiError`], and the one place it
//! becomes a Kubernetes `metav1.Status` response ([`ApiError::to_status`],
//! [`ApiError::status_code`]).
//!
//! Handlers return `Err(ApiError::…)` and never build error bodies by hand.
//! Messages follow apimachinery's `k8s.io/apimachinery/pkg/api/errors`
//! constructors word for word where clients or people match on them
//! (`pods "x" not found`, `Operation cannot be fulfilled on …`).

use serde_json::{json, Value};
use skiff_store::StoreError;

use crate::resources::ResourceInfo;
use crate::validation::FieldError;

/// Seconds a client should wait before retrying when the store has no leader
/// (sent as `Retry-After` and `details.retryAfterSeconds`). One raft election
/// timeout is well under this on a healthy cluster.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// The largest request body accepted, 3 MiB: kube-apiserver's limit
/// (`MaxRequestBodyBytes`, sized to etcd's 1.5 MiB value limit plus headroom).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Names the resource an error is about, as apimachinery's
/// `schema.GroupResource` plus the object name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Plural resource, e.g. `pods`.
    pub resource: String,
    /// API group, `""` for core.
    pub group: String,
    /// Object name.
    pub name: String,
}

impl Target {
    /// The target for one object of `resource`.
    pub fn new(resource: &ResourceInfo, name: &str) -> Self {
        Target {
            resource: resource.plural.to_string(),
            group: resource.group.to_string(),
            name: name.to_string(),
        }
    }

    /// `pods` or `leases.coordination.k8s.io` (GroupResource's `String()`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// Everything a request can fail with. Each variant maps to one HTTP code
/// and one `Status.reason`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 404 `NotFound` for an object.
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(Target),
    /// 404 `NotFound` for a path that names no resource.
    #[error("the server could not find the requested resource")]
    PathNotFound,
    /// 409 `AlreadyExists`.
    #[error("{} \"{}\" already exists", .0.qualified(), .0.name)]
    AlreadyExists(Target),
    /// 409 `Conflict`: an optimistic-concurrency failure or another
    /// conflicting state (`detail` says which). Retryable after a re-read.
    #[error("Operation cannot be fulfilled on {} \"{}\": {detail}", .target.qualified(), .target.name)]
    Conflict {
        /// The object.
        target: Target,
        /// Why, e.g. the "object has been modified" sentence.
        detail: String,
    },
    /// 422 `Invalid`: validation failed.
    #[error("{kind} \"{name}\" is invalid: {}", invalid_summary(.causes))]
    Invalid {
        /// Kind, e.g. `Pod`.
        kind: String,
        /// API group.
        group: String,
        /// Object name.
        name: String,
        /// Every field error.
        causes: Vec<FieldError>,
    },
    /// 422 `Invalid` without field causes, e.g. a JSON patch whose `test`
    /// or path fails.
    #[error("{0}")]
    Unprocessable(String),
    /// 400 `BadRequest`, e.g. a body that does not parse.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `Unauthorized`: no or unknown credentials.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403 `Forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 403 `Forbidden` about one object, with details (apimachinery's
    /// `NewForbidden`): `<resource> "<name>" is forbidden: <detail>`.
    #[error("{} \"{}\" is forbidden: {detail}", .target.qualified(), .target.name)]
    ForbiddenObject {
        /// The object.
        target: Target,
        /// Why.
        detail: String,
        /// (`StatusCause.reason`, message, field) per cause.
        causes: Vec<(String, String, String)>,
    },
    /// 405 `MethodNotAllowed`.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 406 `NotAcceptable`: no response media type the client accepts.
    #[error("only the following media types are accepted: application/json, application/yaml")]
    NotAcceptable,
    /// 406 `NotAcceptable`: the client asked for a form this response cannot
    /// take (`PartialObjectMetadataList` of one object, or
    /// `PartialObjectMetadata` of a list), worded as kube-apiserver does.
    #[error("{0}")]
    NotAcceptableAs(String),
    /// 410 `Expired`: the asked-for resourceVersion was compacted away.
    /// Clients relist (client-go's reflector, kube-rs's watcher).
    #[error("{0}")]
    Gone(String),
    /// 413 `RequestEntityTooLarge`.
    #[error("Request entity too large: limit is {MAX_REQUEST_BODY_BYTES}")]
    RequestEntityTooLarge,
    /// 415 `UnsupportedMediaType`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 500 `InternalError`.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 503 `ServiceUnavailable` with `Retry-After`: the store has no leader
    /// right now. Retryable.
    #[error("{0}")]
    Unavailable(String),
    /// 504 `Timeout`: a resourceVersion newer than the store's
    /// ("Too large resource version"). Retryable.
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The revision asked for.
        requested: i64,
        /// The store's revision.
        current: i64,
    },
    /// 409 `Conflict` of a server-side apply: fields other managers own.
    #[error("{message}")]
    ApplyConflict {
        /// Kubernetes' "Apply failed with N conflicts: …" text.
        message: String,
        /// (`conflict with "manager" …`, field path) per conflict.
        causes: Vec<(String, String)>,
    },
    /// 429 `TooManyRequests`, e.g. an eviction a PodDisruptionBudget
    /// blocks. Retryable later.
    #[error("{message}")]
    TooManyRequests {
        /// The Status message.
        message: String,
        /// (`StatusCause.reason`, message) per cause.
        causes: Vec<(String, String)>,
    },
    /// An error answered by a node agent while proxying (logs), passed on
    /// with the agent's code and text, as kube-apiserver's
    /// `GenericHttpResponseChecker` does.
    #[error("{message}")]
    Upstream {
        /// The agent's HTTP status.
        code: u16,
        /// The agent's body text.
        message: String,
    },
}

/// `a` for one cause, `[a, b]` for several: apimachinery's
/// `ErrorList.ToAggregate()` rendering used in `NewInvalid`.
fn invalid_summary(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.message(),
        many => format!(
            "[{}]",
            many.iter()
                .map(FieldError::message)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The part of a field error's message after the field (`ErrorBody()`),
/// used as `StatusCause.message`.
fn cause_body(e: &FieldError) -> String {
    let full = e.message();
    let prefix = format!("{}: ", e.field);
    full.strip_prefix(&prefix)
        .map(str::to_string)
        .unwrap_or(full)
}

impl ApiError {
    /// The "object has been modified" conflict of an optimistic update.
    pub fn modified(resource: &ResourceInfo, name: &str) -> Self {
        ApiError::Conflict {
            target: Target::new(resource, name),
            detail: "the object has been modified; please apply your changes to the latest version and try again"
                .to_string(),
        }
    }

    /// `NotFound` for one object.
    pub fn not_found(resource: &ResourceInfo, name: &str) -> Self {
        ApiError::NotFound(Target::new(resource, name))
    }

    /// `Invalid` for one object.
    pub fn invalid(resource: &ResourceInfo, name: &str, causes: Vec<FieldError>) -> Self {
        ApiError::Invalid {
            kind: resource.kind.to_string(),
            group: resource.group.to_string(),
            name: name.to_string(),
            causes,
        }
    }

    /// The HTTP status code.
    pub fn status_code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) | ApiError::PathNotFound => 404,
            ApiError::AlreadyExists(_) | ApiError::Conflict { .. } => 409,
            ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) | ApiError::ForbiddenObject { .. } => 403,
            ApiError::MethodNotAllowed => 405,
            ApiError::NotAcceptable | ApiError::NotAcceptableAs(_) => 406,
            ApiError::Gone(_) => 410,
            ApiError::RequestEntityTooLarge => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::TooManyRequests { .. } => 429,
            ApiError::Upstream { code, .. } => *code,
        }
    }

    /// `Status.reason` (apimachinery's `metav1.StatusReason`).
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::PathNotFound => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) | ApiError::ForbiddenObject { .. } => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable | ApiError::NotAcceptableAs(_) => "NotAcceptable",
            ApiError::Gone(_) => "Expired",
            ApiError::RequestEntityTooLarge => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Upstream { code, .. } => match code {
                400 => "BadRequest",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                _ => "InternalError",
            },
        }
    }

    /// Seconds to wait before retrying, for the `Retry-After` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::Unavailable(_) | ApiError::TooLargeResourceVersion { .. } => {
                Some(RETRY_AFTER_SECONDS)
            }
            _ => None,
        }
    }

    /// The `metav1.Status` body: the only place an error becomes JSON.
    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        match self {
            ApiError::NotFound(t)
            | ApiError::AlreadyExists(t)
            | ApiError::Conflict { target: t, .. } => {
                details.insert("name".into(), json!(t.name));
                if !t.group.is_empty() {
                    details.insert("group".into(), json!(t.group));
                }
                details.insert("kind".into(), json!(t.resource));
            }
            ApiError::ForbiddenObject { target, causes, .. } => {
                details.insert("name".into(), json!(target.name));
                if !target.group.is_empty() {
                    details.insert("group".into(), json!(target.group));
                }
                details.insert("kind".into(), json!(target.resource));
                if !causes.is_empty() {
                    let causes: Vec<Value> = causes
                        .iter()
                        .map(|(r, m, f)| json!({"reason": r, "message": m, "field": f}))
                        .collect();
                    details.insert("causes".into(), Value::Array(causes));
                }
            }
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
            } => {
                details.insert("name".into(), json!(name));
                if !group.is_empty() {
                    details.insert("group".into(), json!(group));
                }
                details.insert("kind".into(), json!(kind));
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({"reason": c.kind.reason(), "message": cause_body(c), "field": c.field}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            ApiError::ApplyConflict { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(m, f)| json!({"type": "FieldManagerConflict", "message": m, "field": f}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            ApiError::TooManyRequests { causes, .. } => {
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|(r, m)| json!({"reason": r, "message": m}))
                    .collect();
                details.insert("causes".into(), Value::Array(causes));
            }
            ApiError::Internal(m) => {
                details.insert("causes".into(), json!([{ "message": m }]));
            }
            ApiError::TooLargeResourceVersion { .. } => {
                details.insert(
                    "causes".into(),
                    json!([{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }]),
                );
                details.insert("retryAfterSeconds".into(), json!(RETRY_AFTER_SECONDS));
            }
            ApiError::Unavailable(_) => {
                details.insert("retryAfterSeconds".into(), json!(RETRY_AFTER_SECONDS));
            }
            _ => {}
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.status_code(),
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted {
                requested,
                compact_revision,
            } => ApiError::Gone(format!(
                "too old resource version: {requested} ({compact_revision})"
            )),
            StoreError::FutureRevision { requested, current } => {
                ApiError::TooLargeResourceVersion { requested, current }
            }
            StoreError::InvalidRequest(m) => ApiError::BadRequest(m),
            StoreError::NoLeader(m) => {
                ApiError::Unavailable(format!("the storage has no leader: {m}"))
            }
            StoreError::Stopped(m) => ApiError::Unavailable(format!("the storage is stopped: {m}")),
            StoreError::Timeout(m) => ApiError::Unavailable(format!(
                "the storage did not commit the write in time (it may still be applied): {m}"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
#[path = "error_test.rs"]
mod tests;

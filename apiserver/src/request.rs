//! One API request as the handlers see it: who sent it, its query
//! parameters, its body, the chosen response form, and the warnings to
//! return.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::auth::UserInfo;
use crate::codec::{decode_body, Output};
use crate::dispatch::ApiState;
use crate::error::ApiError;
use crate::resources::ResourceInfo;
use crate::table::IncludeObject;

/// Decoded query parameters (`+` and `%XX` unescaped).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: Option<&str>) -> Self {
        let mut map = HashMap::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            map.insert(percent_decode(k), percent_decode(v));
        }
        Query(map)
    }

    /// A parameter's value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean parameter: present and not `0` or `false` (any case), as
    /// kube-apiserver's `Convert_Slice_string_To_bool`. The Python client
    /// sends `watch=True`.
    pub fn flag(&self, key: &str) -> bool {
        self.get(key)
            .is_some_and(|v| v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    /// An integer parameter; 400 if malformed.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }
}

/// How to treat fields the schema does not know (`fieldValidation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject with 400.
    Strict,
    /// Accept, with a `Warning` header per field (the default).
    Warn,
    /// Accept silently.
    Ignore,
}

/// Everything a handler needs about the request.
pub struct RequestContext {
    /// Server-wide state.
    pub state: Arc<ApiState>,
    /// The authenticated user.
    pub user: UserInfo,
    /// Query parameters.
    pub query: Query,
    /// The response form.
    pub output: Output,
    /// The request body (empty for GET).
    pub body: Bytes,
    /// The body's `Content-Type`.
    pub content_type: Option<String>,
    /// The `User-Agent` header (the default field manager comes from it).
    pub user_agent: Option<String>,
    /// Warnings for the response's `Warning` headers.
    pub warnings: Vec<String>,
}

impl RequestContext {
    /// The body as a JSON object (JSON or YAML by `Content-Type`).
    pub fn body_object(&self) -> Result<Value, ApiError> {
        decode_body(self.content_type.as_deref(), &self.body)
    }

    /// Whether `dryRun=All` was asked; 400 for other values, as Kubernetes.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.query.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(v) => Err(ApiError::BadRequest(format!(
                "Invalid dryRun value {v:?}: supported values are: All"
            ))),
        }
    }

    /// `includeObject` for Tables (default `Metadata`).
    pub fn include_object(&self) -> Result<IncludeObject, ApiError> {
        match self.query.get("includeObject") {
            None | Some("") | Some("Metadata") => Ok(IncludeObject::Metadata),
            Some("None") => Ok(IncludeObject::None),
            Some("Object") => Ok(IncludeObject::Object),
            Some(v) => Err(ApiError::BadRequest(format!(
                "includeObject: unsupported value {v:?}"
            ))),
        }
    }

    /// `fieldValidation` (default `Warn`, kube-apiserver's default since 1.27).
    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.query.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(v) => Err(ApiError::BadRequest(format!(
                "fieldValidation: unsupported value {v:?}: supported values are: Ignore, Warn, Strict"
            ))),
        }
    }

    /// Applies `fieldValidation` to `obj`: 400 on unknown fields when
    /// Strict, warnings when Warn; then drops them (Ignore and Warn), as
    /// kube-apiserver does by decoding into its types. Custom resources are
    /// pruned by their schema elsewhere.
    pub fn check_unknown_fields(
        &mut self,
        resource: &ResourceInfo,
        obj: &mut Value,
    ) -> Result<(), ApiError> {
        // The mode first: a bad `fieldValidation` is refused either way.
        self.field_validation()?;
        let unknown = crate::validation::unknown_fields(resource, obj);
        if self.report_unknown_fields(resource, &unknown)? && resource.custom.is_none() {
            crate::validation::prune_unknown_fields(resource, obj);
        }
        Ok(())
    }

    /// Reports `unknown` fields as `fieldValidation` asks: an error for
    /// Strict, a warning each for Warn. Returns whether there were any (a
    /// built-in object drops them before it is stored).
    pub fn report_unknown_fields(
        &mut self,
        resource: &ResourceInfo,
        unknown: &[String],
    ) -> Result<bool, ApiError> {
        let mode = self.field_validation()?;
        if unknown.is_empty() {
            return Ok(false);
        }
        match mode {
            FieldValidation::Strict => {
                return Err(ApiError::BadRequest(
                    crate::validation::strict_decoding_message(resource, unknown),
                ))
            }
            FieldValidation::Warn => self.warnings.extend(
                unknown
                    .iter()
                    .map(|p| format!("unknown field \"{}\"", p.trim_start_matches('.'))),
            ),
            FieldValidation::Ignore => {}
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a)&watch=1&limit=5&x",
        ));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("watch"));
        for (raw, want) in [
            ("watch=True", true),
            ("watch=TRUE", true),
            ("watch", true),
            ("watch=False", false),
            ("watch=0", false),
            ("other=1", false),
        ] {
            assert_eq!(Query::parse(Some(raw)).flag("watch"), want, "{raw}");
        }
        assert_eq!(q.int("limit").unwrap(), Some(5));
        assert_eq!(q.get("x"), Some(""));
        assert!(Query::parse(Some("limit=abc")).int("limit").is_err());
        assert_eq!(Query::parse(Some("a=%zz%4")).get("a"), Some("%zz%4"));
    }
}

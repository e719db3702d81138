//! Content negotiation: decoding request bodies (JSON or YAML) and choosing
//! the response form from `Accept` (JSON, YAML, a `meta.k8s.io` Table, or
//! metadata only).
//!
//! kubectl's human-readable `get` sends
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json`;
//! discovery asks for aggregated discovery
//! (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,…,application/json`),
//! which Skiff does not serve: the plain `application/json` answer makes
//! client-go fall back to `/api` and `/apis`. Metadata-only clients (the
//! garbage collector's metadata informers, kube-rs `Api::list_metadata`)
//! send `application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1`
//! for lists and `as=PartialObjectMetadata` for single objects and
//! watches; any other `as=` with no fallback is 406, as in Kubernetes. Protobuf is never chosen
//! for responses (clients always list JSON as a fallback); protobuf
//! request bodies are decoded by the kind's generated schema
//! ([`crate::protobuf`]).

use serde_json::Value;

use crate::error::ApiError;

/// The response form chosen for a resource request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `application/json`.
    Json,
    /// `application/yaml`.
    Yaml,
    /// A `meta.k8s.io/v1` Table (JSON).
    Table,
    /// A `meta.k8s.io/v1` `PartialObjectMetadata`: an object's `metadata`
    /// only (JSON). Answers single objects and watch events.
    Metadata,
    /// A `meta.k8s.io/v1` `PartialObjectMetadataList`: a list of
    /// [`Output::Metadata`] items (JSON). Answers lists.
    MetadataList,
}

/// One media range of an `Accept` header: type and parameters.
fn media_ranges(accept: &str) -> impl Iterator<Item = (String, Vec<(String, String)>)> + '_ {
    accept.split(',').map(|range| {
        let mut parts = range.split(';');
        let ty = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let params = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| {
                (
                    k.trim().to_ascii_lowercase(),
                    v.trim().trim_matches('"').to_string(),
                )
            })
            .collect();
        (ty, params)
    })
}

/// Chooses the response form from an `Accept` header, taking the first
/// range Skiff can serve (clients list their preference first).
pub fn negotiate(accept: Option<&str>) -> Result<Output, ApiError> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Ok(Output::Json);
    };
    for (ty, params) in media_ranges(accept) {
        let param = |k: &str| {
            params
                .iter()
                .find(|(pk, _)| pk == k)
                .map(|(_, v)| v.as_str())
        };
        match ty.as_str() {
            "application/json" | "application/*" | "*/*" => match param("as") {
                None => return Ok(Output::Json),
                Some(kind) if matches!(param("g"), None | Some("meta.k8s.io")) => {
                    // The versions kube-apiserver serves these in.
                    if !matches!(param("v"), None | Some("v1" | "v1beta1")) {
                        continue;
                    }
                    match kind {
                        "Table" => return Ok(Output::Table),
                        "PartialObjectMetadata" => return Ok(Output::Metadata),
                        "PartialObjectMetadataList" => return Ok(Output::MetadataList),
                        _ => continue,
                    }
                }
                // Aggregated discovery: not served.
                Some(_) => continue,
            },
            "application/yaml" if param("as").is_none() => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::NotAcceptable)
}

/// An object's `PartialObjectMetadata` (`meta.k8s.io/v1`) around its
/// `metadata`: what [`Output::Metadata`] answers, and what a Table row
/// carries with `includeObject=Metadata`.
pub fn partial_object_metadata(metadata: Value) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
    })
}

/// Decodes a request body by `Content-Type` (JSON when absent) into a JSON
/// object. Malformed input is a 400 worded as kube-apiserver's decoder.
pub fn decode_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ApiError> {
    let base = content_type
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let value: Value = match base.as_str() {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            let y: serde_yaml::Value = serde_yaml::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: yaml: {e}")))?;
            serde_json::to_value(y)
                .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: {e}")))?
        }
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(body)?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {other:?})"
            )))
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(format!(
            "couldn't get version/kind; json parse error: expected an object, got {}",
            type_name(&value)
        )));
    }
    Ok(value)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Serializes a response body in the chosen form (`Table` bodies are
/// already built as JSON). Returns the `Content-Type` and bytes.
pub fn encode(value: &(impl serde::Serialize + ?Sized), output: Output) -> (&'static str, Vec<u8>) {
    match output {
        Output::Yaml => match serde_yaml::to_string(value) {
            Ok(s) => ("application/yaml", s.into_bytes()),
            // A serde_json::Value always has a YAML form; fall back to JSON.
            Err(_) => (
                "application/json",
                serde_json::to_vec(value).unwrap_or_default(),
            ),
        },
        Output::Json | Output::Table | Output::Metadata | Output::MetadataList => (
            "application/json",
            serde_json::to_vec(value).unwrap_or_default(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_headers() {
        let table = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(negotiate(Some(table)).unwrap(), Output::Table);
        let discovery = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(discovery)).unwrap(), Output::Json);
        assert_eq!(
            negotiate(Some("application/json, */*")).unwrap(),
            Output::Json
        );
        assert_eq!(negotiate(None).unwrap(), Output::Json);
        assert_eq!(negotiate(Some("application/yaml")).unwrap(), Output::Yaml);
        // kube-rs's list_metadata / get_metadata (and client-go's metadata
        // client, which adds a JSON fallback).
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(Some(list)).unwrap(), Output::MetadataList);
        let one = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(negotiate(Some(one)).unwrap(), Output::Metadata);
        for unknown in [
            "application/json;as=Foo;g=meta.k8s.io;v=v1",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v2",
            "application/json;as=PartialObjectMetadata;g=apps;v=v1",
        ] {
            assert_eq!(
                negotiate(Some(unknown)).unwrap_err().status_code(),
                406,
                "{unknown}"
            );
        }
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf,application/json")).unwrap(),
            Output::Json
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"))
                .unwrap_err()
                .status_code(),
            406
        );
    }

    #[test]
    fn bodies_decode_or_400() {
        assert_eq!(decode_body(None, br#"{"a":1}"#).unwrap()["a"], 1);
        assert_eq!(
            decode_body(Some("application/yaml"), b"a: 1\nb: [x]\n").unwrap()["b"][0],
            "x"
        );
        let e = decode_body(Some("application/json"), b"{not json").unwrap_err();
        assert_eq!(e.status_code(), 400);
        assert!(e
            .to_string()
            .starts_with("couldn't get version/kind; json parse error"));
        assert_eq!(
            decode_body(Some("application/yaml"), b"a: [\n")
                .unwrap_err()
                .status_code(),
            400
        );
        assert_eq!(decode_body(None, b"[1]").unwrap_err().status_code(), 400);
        assert_eq!(
            decode_body(Some("application/vnd.kubernetes.protobuf"), b"x")
                .unwrap_err()
                .status_code(),
            400
        );
        assert_eq!(
            decode_body(Some("text/plain"), b"x")
                .unwrap_err()
                .status_code(),
            415
        );
    }
}

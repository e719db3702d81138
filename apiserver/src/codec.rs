//! Content negotiation: decoding request bodies (JSON or YAML) and choosing
//! the response form from `Accept` (JSON, YAML, or a `meta.k8s.io` Table).
//!
//! kubectl's human-readable `get` sends
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json`;
//! discovery asks for aggregated discovery
//! (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,…,application/json`),
//! which Skiff does not serve: the plain `application/json` answer makes
//! client-go fall back to `/api` and `/apis`. Protobuf is never chosen
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
                Some("Table") if matches!(param("g"), None | Some("meta.k8s.io")) => {
                    return Ok(Output::Table)
                }
                // PartialObjectMetadata, aggregated discovery: not served.
                Some(_) => continue,
            },
            "application/yaml" if param("as").is_none() => return Ok(Output::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::NotAcceptable)
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
        Output::Json | Output::Table => (
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

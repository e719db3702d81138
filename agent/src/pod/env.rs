//! A container's environment, as kubelet builds it
//! (`kubelet_pods.go`, `makeEnvironmentVariables`): `envFrom` sources in
//! order, then `env` entries (later ones win), each `value` expanded with
//! the `$(VAR)` rules of `third_party/forked/golang/expansion`, and
//! `valueFrom` read from ConfigMaps, Secrets, the pod's own fields
//! (downward API) and its resources. Pure: the worker fetches the objects
//! first ([`referenced_objects`]) and passes them in [`EnvSources`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};

use super::resources::{parse_milli, ContainerResources};

/// Why a container cannot be created from its spec: kubelet's
/// `CreateContainerConfigError`, with Kubernetes' message. Not retryable
/// until the referenced object appears or the spec changes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The waiting reason kubelet shows for a [`ConfigError`].
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";

/// What environment values may be read from, besides the pod itself.
#[derive(Clone, Debug, Default)]
pub struct EnvSources {
    /// ConfigMaps of the pod's namespace by name (only those that exist).
    pub config_maps: HashMap<String, ConfigMap>,
    /// Secrets of the pod's namespace by name (only those that exist).
    pub secrets: HashMap<String, Secret>,
    /// Claims by name: the host path of the bound volume, or why there is
    /// none yet (kubelet's message).
    pub claims: HashMap<String, Result<String, String>>,
    /// `status.podIP` (first sandbox IP).
    pub pod_ip: String,
    /// `status.hostIP`.
    pub host_ip: String,
    /// Node allocatable CPU in millicores (for `limits.cpu` without a limit).
    pub node_cpu_milli: i64,
    /// Node allocatable memory in bytes (for `limits.memory` without a limit).
    pub node_memory_bytes: i64,
    /// Service-account tokens of projected volumes, or kubelet's message
    /// why there is none.
    pub tokens: HashMap<super::token::TokenKey, Result<String, String>>,
}

/// Names of the ConfigMaps and Secrets a pod refers to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// ConfigMap names.
    pub config_maps: BTreeSet<String>,
    /// Secret names.
    pub secrets: BTreeSet<String>,
    /// PersistentVolumeClaim names.
    pub claims: BTreeSet<String>,
    /// Service-account tokens of projected volumes.
    pub tokens: BTreeSet<super::token::TokenKey>,
}

/// Every ConfigMap and Secret named in env, envFrom and volumes (projected
/// ones included), every claim a volume mounts, and every token a
/// projected volume holds.
pub fn referenced_objects(pod: &Pod) -> Refs {
    let mut r = Refs::default();
    let Some(spec) = pod.spec.as_ref() else {
        return r;
    };
    let containers = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers);
    for c in containers {
        for e in c.env.iter().flatten() {
            let Some(vf) = e.value_from.as_ref() else {
                continue;
            };
            if let Some(k) = &vf.config_map_key_ref {
                r.config_maps.insert(k.name.clone());
            }
            if let Some(k) = &vf.secret_key_ref {
                r.secrets.insert(k.name.clone());
            }
        }
        for ef in c.env_from.iter().flatten() {
            if let Some(cm) = &ef.config_map_ref {
                r.config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &ef.secret_ref {
                r.secrets.insert(s.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            r.config_maps.insert(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            r.secrets.insert(s);
        }
        if let Some(c) = &v.persistent_volume_claim {
            r.claims.insert(c.claim_name.clone());
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                r.config_maps.insert(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                r.secrets.insert(s.name.clone());
            }
        }
    }
    r.tokens = super::token::TokenKey::of_pod(pod).into_iter().collect();
    r
}

/// ConfigMap data as strings (binaryData decoded lossily, as env values must be text).
pub fn config_map_data(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .binary_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in cm.data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// Secret data (`stringData` is merged by the API server on write; it is
/// read here too for objects that carry it).
pub fn secret_data(s: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone().into_bytes());
    }
    out
}

/// Expands `$(VAR)` in `input` from `vars`: `$$` is an escaped `$`, an
/// unknown `$(VAR)` and any other `$` stay as written (Kubernetes'
/// `expansion.Expand`).
pub fn expand(input: &str, vars: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars(name) {
                        Some(v) => out.push_str(&v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Whether `key` may be an environment variable name (Kubernetes
/// `IsEnvVarName`: letters, digits, `_`, `-`, `.`, not starting with a digit).
fn is_env_var_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Reads a downward API field path of the pod (`fieldRef.fieldPath`).
pub fn field_ref(pod: &Pod, path: &str, src: &EnvSources) -> Result<String, ConfigError> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let subscript = |prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(key.to_string())
    };
    let v = match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.podIP" | "status.podIPs" => src.pod_ip.clone(),
        "status.hostIP" | "status.hostIPs" => src.host_ip.clone(),
        _ => {
            if let Some(k) = subscript("metadata.labels['") {
                meta.labels
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else if let Some(k) = subscript("metadata.annotations['") {
                meta.annotations
                    .as_ref()
                    .and_then(|l| l.get(&k).cloned())
                    .unwrap_or_default()
            } else {
                return Err(ConfigError(format!("unsupported fieldPath: {path}")));
            }
        }
    };
    Ok(v)
}

/// Reads `resourceFieldRef` for container `c` (kubelet
/// `ExtractContainerResourceValue`): CPU rounded up to the divisor, memory
/// in units of the divisor; an unset limit reads as node allocatable.
pub fn resource_field_ref(
    c: &Container,
    resource: &str,
    divisor: Option<&str>,
    src: &EnvSources,
) -> Result<String, ConfigError> {
    let r = ContainerResources::of(c).map_err(|e| ConfigError(e.to_string()))?;
    let div = match divisor {
        Some(d) => parse_milli(d).map_err(|e| ConfigError(e.to_string()))?,
        None => 1000,
    };
    if div <= 0 {
        return Err(ConfigError(format!("invalid divisor for {resource}")));
    }
    let ceil = |milli: i128| (milli + div - 1) / div;
    let v = match resource {
        "limits.cpu" => ceil(i128::from(r.cpu_limit_milli.unwrap_or(src.node_cpu_milli))),
        "requests.cpu" => ceil(i128::from(r.cpu_request_milli.unwrap_or(0))),
        "limits.memory" => ceil(i128::from(r.memory_limit.unwrap_or(src.node_memory_bytes)) * 1000),
        "requests.memory" => ceil(i128::from(r.memory_request.unwrap_or(0)) * 1000),
        other => {
            return Err(ConfigError(format!(
                "unsupported container resource: {other}"
            )))
        }
    };
    Ok(v.max(if resource.ends_with("cpu") { 1 } else { 0 })
        .to_string())
}

/// The container's environment, in order, as (name, value).
pub fn container_env(
    pod: &Pod,
    c: &Container,
    src: &EnvSources,
) -> Result<Vec<(String, String)>, ConfigError> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut out: Vec<(String, String)> = vec![];
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(e) = out.iter_mut().find(|e| e.0 == k) {
            e.1 = v;
        } else {
            out.push((k, v));
        }
    };
    for ef in c.env_from.iter().flatten() {
        let prefix = ef.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &ef.config_map_ref {
            match src.config_maps.get(&r.name) {
                Some(cm) => config_map_data(cm),
                None if r.optional == Some(true) => continue,
                None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
            }
        } else if let Some(r) = &ef.secret_ref {
            match src.secrets.get(&r.name) {
                Some(s) => secret_data(s),
                None if r.optional == Some(true) => continue,
                None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            let key = format!("{prefix}{k}");
            // Kubelet skips invalid names (and records an event).
            if is_env_var_name(&key) {
                set(&mut out, key, String::from_utf8_lossy(&v).into_owned());
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            let snapshot = out.clone();
            let lookup = move |name: &str| {
                snapshot
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            expand(v, &lookup)
        } else if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                let optional = r.optional == Some(true);
                match src.config_maps.get(&r.name) {
                    None if optional => continue,
                    None => return Err(ConfigError(format!("configmap \"{}\" not found", r.name))),
                    Some(cm) => match config_map_data(cm).remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in ConfigMap {ns}/{}",
                                r.key, r.name
                            )))
                        }
                    },
                }
            } else if let Some(r) = &vf.secret_key_ref {
                let optional = r.optional == Some(true);
                match src.secrets.get(&r.name) {
                    None if optional => continue,
                    None => return Err(ConfigError(format!("secret \"{}\" not found", r.name))),
                    Some(s) => match secret_data(s).remove(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v).into_owned(),
                        None if optional => continue,
                        None => {
                            return Err(ConfigError(format!(
                                "couldn't find key {} in Secret {ns}/{}",
                                r.key, r.name
                            )))
                        }
                    },
                }
            } else if let Some(f) = &vf.field_ref {
                field_ref(pod, &f.field_path, src)?
            } else if let Some(rf) = &vf.resource_field_ref {
                let target = match rf.container_name.as_deref().filter(|n| !n.is_empty()) {
                    None => c,
                    Some(n) => pod
                        .spec
                        .iter()
                        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
                        .find(|x| x.name == n)
                        .ok_or_else(|| ConfigError(format!("container {n} not found")))?,
                };
                resource_field_ref(
                    target,
                    &rf.resource,
                    rf.divisor.as_ref().map(|d| d.0.as_str()),
                    src,
                )?
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        set(&mut out, e.name.clone(), value);
    }
    Ok(out)
}

/// `command` and `args` with `$(VAR)` expanded from the container's final
/// environment (kubelet `ExpandContainerCommandAndArgs`).
pub fn expand_command(c: &Container, env: &[(String, String)]) -> (Vec<String>, Vec<String>) {
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let ex = |v: &Option<Vec<String>>| -> Vec<String> {
        v.iter().flatten().map(|s| expand(s, &lookup)).collect()
    };
    (ex(&c.command), ex(&c.args))
}

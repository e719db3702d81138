//! kube-apiserver's `ServiceAccount` admission plugin
//! (`plugin/pkg/admission/serviceaccount/admission.go`), on pod creation:
//!
//! ```text
//!  pod without spec.serviceAccountName ──► "default"
//!  the ServiceAccount must exist ───────── else 403 "error looking up service account ns/sa: …"
//!  automount? (pod's automountServiceAccountToken, else the account's, else true)
//!    └─► volume kube-api-access-<5 chars>: projected {
//!          serviceAccountToken {path: token, expirationSeconds: 3607},
//!          configMap kube-root-ca.crt {ca.crt},
//!          downwardAPI {namespace: metadata.namespace} }
//!        mounted read-only at /var/run/secrets/kubernetes.io/serviceaccount
//!        in every container and init container that has nothing there yet
//!  no spec.imagePullSecrets ──► the account's
//! ```
//!
//! On when [`crate::ApiServerConfig::service_account_admission`] is (`skiff
//! server` sets it; it needs the controllers that create the accounts).
//! The account is looked up in the watch cache first, then in the store;
//! the `default` account is tried for a while (10 times, 100–200 ms apart,
//! as upstream) because the ServiceAccount controller creates it just
//! after its namespace. The node agent fills the volume
//! (`agent/src/pod/projected.rs`); the `kube-root-ca.crt` ConfigMap comes
//! from the controllers' root CA publisher.
//!
//! Caveats: mirror pods are left alone (upstream also validates that they
//! name no account); Secret-based (legacy) token volumes are not made; the
//! token's 3607 s are not extended to a year (kube-apiserver's
//! `--service-account-extend-token-expiration`).

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ApiError, Target};
use crate::registry::Registry;
use crate::resources::{find, ResourceInfo};

/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Where the token volume is mounted (`DefaultAPITokenMountPath`).
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Name prefix of the token volume (`ServiceAccountVolumeName`).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";

/// The token's lifetime: an hour and 7 s, which kube-apiserver recognises
/// as an admission-made token (`WarnOnlyBoundTokenExpirationSeconds`).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;

/// The ConfigMap with the cluster's CA that every namespace gets.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";

/// Annotation marking a static pod's mirror.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Lookups of the `default` account before giving up.
const DEFAULT_ACCOUNT_ATTEMPTS: u32 = 10;

/// Whether a token volume is mounted: the pod's choice, else the
/// account's, else yes (`shouldAutomount`).
pub fn should_automount(account: &Value, pod: &Value) -> bool {
    let flag = |v: &Value, p: &str| v.pointer(p).and_then(Value::as_bool);
    flag(pod, "/spec/automountServiceAccountToken")
        .or_else(|| flag(account, "/automountServiceAccountToken"))
        .unwrap_or(true)
}

/// The projected volume source of the token volume (`TokenVolumeSource`).
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"path": "token", "expirationSeconds": TOKEN_EXPIRATION_SECONDS}},
            {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ]
    })
}

/// Adds the token volume and its mounts to `pod` (`mountServiceAccountToken`):
/// an existing `kube-api-access-*` volume is reused, containers with
/// something already at [`TOKEN_MOUNT_PATH`] are left alone, and the volume
/// is added only if some container mounts it. `suffix` names a new volume.
pub fn mount_token(pod: &mut Value, suffix: impl FnOnce() -> String) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing
        .clone()
        .unwrap_or_else(|| format!("{TOKEN_VOLUME_PREFIX}{}", suffix()));
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let taken = mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH));
            if !taken {
                mounts.push(mount.clone());
                mounted = true;
            }
        }
    }
    if existing.is_none() && mounted {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if let Some(volumes) = volumes.as_array_mut() {
            volumes.push(json!({"name": name, "projected": token_volume_source()}));
        }
    }
}

/// Runs the plugin on a pod about to be created in `namespace`.
pub async fn admit(
    registry: &Registry,
    namespace: &str,
    pods: &ResourceInfo,
    pod: &mut Value,
) -> Result<(), ApiError> {
    if pod
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(MIRROR_POD_ANNOTATION))
        .is_some()
    {
        return Ok(());
    }
    let pod_name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let account_name = match spec.get("serviceAccountName").and_then(Value::as_str) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => DEFAULT_SERVICE_ACCOUNT.to_string(),
    };
    spec.insert("serviceAccountName".into(), json!(account_name));
    // The deprecated alias follows the real field (v1 conversion).
    spec.insert("serviceAccount".into(), json!(account_name));
    let account = lookup(registry, namespace, &account_name)
        .await
        .map_err(|detail| ApiError::ForbiddenObject {
            target: Target::new(pods, &pod_name),
            detail: format!(
                "error looking up service account {namespace}/{account_name}: {detail}"
            ),
            causes: Vec::new(),
        })?;
    if should_automount(&account, pod) {
        mount_token(pod, crate::strategy::random_name_suffix);
    }
    let pull_secrets = account
        .get("imagePullSecrets")
        .filter(|s| s.as_array().is_some_and(|a| !a.is_empty()));
    if let (Some(secrets), Some(spec)) = (pull_secrets, pod.get_mut("spec")) {
        let has = spec
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        if !has {
            spec["imagePullSecrets"] = secrets.clone();
        }
    }
    Ok(())
}

/// The account, from the watch cache, else from the store (retried for
/// the `default` account); the error is the detail of the 403.
async fn lookup(registry: &Registry, namespace: &str, name: &str) -> Result<Value, String> {
    let res = find("", "v1", "serviceaccounts").ok_or("serviceaccounts are not served")?;
    if let Some(account) = registry
        .get_recent(res, Some(namespace), name)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(account);
    }
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    let pause = Duration::from_millis(100 + rand::random::<u64>() % 100);
    // The first attempt was get_recent's own store read.
    for _ in 1..attempts {
        tokio::time::sleep(pause).await;
        if let Some(stored) = registry
            .get(res, Some(namespace), name)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(stored.obj);
        }
    }
    Err(format!("serviceaccount \"{name}\" not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {
                "initContainers": [{"name": "init", "image": "i"}],
                "containers": [
                    {"name": "a", "image": "i"},
                    {"name": "b", "image": "i", "volumeMounts": [
                        {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]},
                ],
                "volumes": [{"name": "mine", "emptyDir": {}}],
            }
        })
    }

    #[test]
    fn token_volume_is_mounted_where_nothing_else_is() {
        let mut p = pod();
        mount_token(&mut p, || "x7z2q".into());
        let mount = json!({"name": "kube-api-access-x7z2q", "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
        // b keeps its own volume at the path.
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"][0]["name"],
            "mine"
        );
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[1]["name"], "kube-api-access-x7z2q");
        let sources = &volumes[1]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        assert_eq!(volumes[1]["projected"]["defaultMode"], 420);
        // Admitting again changes nothing (the volume is found by prefix).
        let before = p.clone();
        mount_token(&mut p, || unreachable!("no new name needed"));
        assert_eq!(p, before);
    }

    #[test]
    fn no_volume_when_every_container_has_its_own() {
        let mut p = json!({"spec": {"containers": [{"name": "b", "volumeMounts": [
            {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}]}});
        let before = p.clone();
        mount_token(&mut p, || "abcde".into());
        assert_eq!(p, before);
    }

    #[test]
    fn automount_prefers_the_pod_then_the_account() {
        let pod = |v: Option<bool>| json!({"spec": {"automountServiceAccountToken": v}});
        let sa = |v: Option<bool>| json!({"automountServiceAccountToken": v});
        assert!(should_automount(&sa(None), &pod(None)));
        assert!(!should_automount(&sa(Some(false)), &pod(None)));
        assert!(should_automount(&sa(Some(false)), &pod(Some(true))));
        assert!(!should_automount(&sa(Some(true)), &pod(Some(false))));
    }
}

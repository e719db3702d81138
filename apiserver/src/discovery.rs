//! Discovery documents: `GET /api`, `/apis`, `/apis/<group>`, `/api/v1` and
//! `/apis/<group>/<version>`, built from [`crate::resources::RESOURCES`].
//!
//! kubectl first asks for aggregated discovery
//! (`application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`);
//! when the server answers plain `application/json` it falls back to these
//! legacy documents (client-go's `discovery.ServerGroupsAndResources`), so
//! these bodies are all kubectl needs to map `kubectl get po` to `pods`.
//! Custom resources are added by [`crate::crd_registry`].

use crate::resources::{ResourceInfo, RESOURCES};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Body of `GET /api`: the core group's versions (`APIVersions`).
pub fn core_api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// The versions served for a group, in `RESOURCES` order (the first is preferred).
fn versions_of(group: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| r.group == group) {
        if !out.contains(&r.version) {
            out.push(r.version);
        }
    }
    out
}

/// One `APIGroup` object without `kind`/`apiVersion` (as it appears in a list).
fn group_body(group: &str) -> Option<Value> {
    let versions = versions_of(group);
    let preferred = *versions.first()?;
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    Some(json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(preferred),
    }))
}

/// Body of `GET /apis`: every named (non-core) group (`APIGroupList`).
pub fn api_group_list() -> Value {
    let mut groups: Vec<&'static str> = Vec::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        if !groups.contains(&r.group) {
            groups.push(r.group);
        }
    }
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups
            .iter()
            .filter_map(|g| group_body(g))
            .chain([crate::metrics::group_json()])
            .collect::<Vec<_>>(),
    })
}

/// Body of `GET /apis/<group>` (`APIGroup`), or `None` for an unknown group
/// (and for the core group, which lives at `/api`).
pub fn api_group(group: &str) -> Option<Value> {
    if group.is_empty() {
        return None;
    }
    let mut body = group_body(group)?;
    let obj = body.as_object_mut()?;
    obj.insert("kind".into(), json!("APIGroup"));
    obj.insert("apiVersion".into(), json!("v1"));
    Some(body)
}

/// Kubernetes' `StorageVersionHash`: base64 of the first 8 bytes of
/// `sha256("<group>/<version>/<kind>")`, the group empty for core (so pods
/// hash `/v1/Pod` to `xPOwRZ+Yhw8=`, as kube-apiserver advertises).
/// Clients only compare it for changes.
pub fn storage_version_hash(resource: &ResourceInfo) -> String {
    let gvk = format!("{}/{}/{}", resource.group, resource.version, resource.kind);
    let digest = Sha256::digest(gvk.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// The `APIResource` entry for one subresource, e.g. `pods/status`.
/// Verbs and kinds follow what kube-apiserver advertises for the built-in
/// subresources; unknown names get `get`.
fn subresource_entry(resource: &ResourceInfo, sub: &str) -> Value {
    let (kind, verbs): (&str, &[&str]) = match sub {
        "status" => (resource.kind, &["get", "patch", "update"]),
        "binding" => ("Binding", &["create"]),
        "eviction" => ("Eviction", &["create"]),
        "log" => (resource.kind, &["get"]),
        "exec" => ("PodExecOptions", &["create", "get"]),
        "attach" => ("PodAttachOptions", &["create", "get"]),
        "portforward" => ("PodPortForwardOptions", &["create", "get"]),
        "scale" => ("Scale", &["get", "patch", "update"]),
        "token" => ("TokenRequest", &["create"]),
        "finalize" => (resource.kind, &["update"]),
        _ => (resource.kind, &["get"]),
    };
    let mut entry = json!({
        "name": format!("{}/{sub}", resource.plural),
        "singularName": "",
        "namespaced": resource.namespaced,
        "kind": kind,
        "verbs": verbs,
    });
    // A subresource whose kind lives in another group says which
    // (kube-apiserver: pods/eviction is policy/v1, */scale autoscaling/v1).
    let other_group = match sub {
        "eviction" => Some("policy"),
        "scale" => Some("autoscaling"),
        "token" => Some("authentication.k8s.io"),
        _ => None,
    };
    if let (Some(group), Some(obj)) = (other_group, entry.as_object_mut()) {
        obj.insert("group".into(), json!(group));
        obj.insert("version".into(), json!("v1"));
    }
    entry
}

/// Body of `GET /api/v1` or `GET /apis/<group>/<version>` (`APIResourceList`),
/// or `None` when nothing is served there. `group` is `""` for the core group.
pub fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    resource_list_of(RESOURCES.iter(), group, version)
}

/// The `APIResourceList` of `group/version` among `all` (the static table,
/// or the custom resources of [`crate::crd_registry`]).
pub fn resource_list_of<'a>(
    all: impl IntoIterator<Item = &'a ResourceInfo>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut resources = Vec::new();
    for r in all
        .into_iter()
        .filter(|r| r.group == group && r.version == version)
    {
        resources.push(json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs(),
            "shortNames": r.short_names,
            "categories": r.categories,
            "storageVersionHash": storage_version_hash(r),
        }));
        for sub in r.subresources {
            resources.push(subresource_entry(r, sub));
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_versions() {
        let v = core_api_versions("10.0.0.1:6443");
        assert_eq!(v["versions"], json!(["v1"]));
        assert_eq!(
            v["serverAddressByClientCIDRs"][0]["serverAddress"],
            "10.0.0.1:6443"
        );
    }

    #[test]
    fn groups() {
        let list = api_group_list();
        let groups = list["groups"].as_array().unwrap();
        assert!(groups.iter().all(|g| g["name"] != ""));
        let lease = groups
            .iter()
            .find(|g| g["name"] == "coordination.k8s.io")
            .unwrap();
        assert_eq!(
            lease["preferredVersion"]["groupVersion"],
            "coordination.k8s.io/v1"
        );
        assert_eq!(
            api_group("coordination.k8s.io").unwrap()["kind"],
            "APIGroup"
        );
        assert!(api_group("nope.example.com").is_none());
        assert!(api_group("").is_none());
    }

    #[test]
    fn core_resource_list() {
        let list = api_resource_list("", "v1").unwrap();
        assert_eq!(list["groupVersion"], "v1");
        let res = list["resources"].as_array().unwrap();
        let find = |n: &str| res.iter().find(|r| r["name"] == n).unwrap().clone();
        let pods = find("pods");
        assert_eq!(pods["kind"], "Pod");
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["namespaced"], true);
        // The value kube-apiserver advertises for pods.
        assert_eq!(pods["storageVersionHash"], "xPOwRZ+Yhw8=");
        assert_eq!(
            find("pods/status")["verbs"],
            json!(["get", "patch", "update"])
        );
        assert_eq!(find("pods/binding")["verbs"], json!(["create"]));
        assert_eq!(find("pods/binding")["kind"], "Binding");
        assert_eq!(find("pods/log")["verbs"], json!(["get"]));
        assert_eq!(find("nodes")["namespaced"], false);
        assert!(api_resource_list("", "v2").is_none());
        let leases = api_resource_list("coordination.k8s.io", "v1").unwrap();
        assert_eq!(leases["groupVersion"], "coordination.k8s.io/v1");
    }
}

//! Services in the store: cluster IP and node port allocation around the
//! generic create/update/delete (kube-apiserver's service REST storage),
//! and the `kubernetes` Service that points at the API server.
//!
//! ```text
//!  POST services ─> rest::create ─> services::create
//!     read allocation keys, then live Services (in that order: a key whose
//!     owner is not live is stale only if it was written before the list)
//!     service_ranges::allocate (pure) ─> Txn:
//!        compare  svc key absent, each new key absent (or still the stale
//!                 value seen)
//!        success  put svc, put each key {namespace, name, uid}
//!     lost race ─> re-read and try again; svc exists ─> 409
//!  PUT/PATCH ─> rest::write_update ─> services::update (same Txn, plus
//!     compare svc mod_revision, delete released keys)
//!  DELETE ─> delete::delete_one ─> services::release (best effort: a key
//!     left behind, e.g. by a namespace deletion, is reclaimed as stale)
//! ```
//!
//! See [`crate::service_ranges`] for the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::{json, Value};
use skiff_store::{
    prefix_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};

use crate::error::ApiError;
use crate::registry::{decode_at, encode, ListOptions, Registry, Stored};
use crate::resources::{find, ResourceInfo};
use crate::rest::MAX_UPDATE_ATTEMPTS;
use crate::service_ranges::{
    self, ip_key, owner_value, port_key, Change, ServiceRanges, Used, IP_PREFIX, PORT_PREFIX,
};
use crate::strategy::meta_str;

/// Name and namespace of the Service that points at the API server.
pub const KUBERNETES_SERVICE: (&str, &str) = ("default", "kubernetes");

/// Whether `res` is core/v1 Services.
pub fn is_service(res: &ResourceInfo) -> bool {
    res.group.is_empty() && res.kind == "Service"
}

/// The allocation keys as read, minus the caller's own.
struct Seen {
    used: Used,
    /// Keys whose owner is gone, with the `mod_revision` seen.
    stale: BTreeMap<String, i64>,
}

async fn read_keys(
    registry: &Registry,
    prefix: &str,
) -> Result<Vec<(String, Value, i64)>, ApiError> {
    let resp = registry
        .kv()
        .range(RangeRequest {
            key: prefix.as_bytes().to_vec(),
            range_end: prefix_end(prefix.as_bytes()),
            ..Default::default()
        })
        .await?;
    Ok(resp
        .kvs
        .into_iter()
        .map(|kv| {
            let owner = serde_json::from_slice(&kv.value).unwrap_or(Value::Null);
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                owner,
                kv.mod_revision,
            )
        })
        .collect())
}

async fn read_seen(registry: &Registry, own_uid: &str) -> Result<Seen, ApiError> {
    // Keys first, Services second: a Service created in between shows up
    // as live, never as the stale owner of a fresh key.
    let ips = read_keys(registry, IP_PREFIX).await?;
    let ports = read_keys(registry, PORT_PREFIX).await?;
    let services = find("", "v1", "services")
        .ok_or_else(|| ApiError::Internal("no services resource".into()))?;
    let live: BTreeSet<String> = registry
        .list_from_store(services, None, &ListOptions::default(), |_| true)
        .await?
        .values()
        .iter()
        .filter_map(|s| meta_str(s, "uid").map(str::to_string))
        .collect();
    let mut seen = Seen {
        used: Used::default(),
        stale: BTreeMap::new(),
    };
    for (key, owner, rev) in ips.into_iter().chain(ports) {
        let uid = owner.get("uid").and_then(Value::as_str).unwrap_or("");
        if uid == own_uid {
            continue;
        }
        if !live.contains(uid) {
            seen.stale.insert(key, rev);
            continue;
        }
        if let Some(ip) = key
            .strip_prefix(IP_PREFIX)
            .and_then(|s| s.parse::<Ipv4Addr>().ok())
        {
            seen.used.ips.insert(ip);
        } else if let Some(p) = key
            .strip_prefix(PORT_PREFIX)
            .and_then(|s| s.parse::<u16>().ok())
        {
            seen.used.ports.insert(p);
        }
    }
    Ok(seen)
}

/// Compares and operations that carry out `change` for the Service `svc`.
fn change_ops(
    change: &Change,
    svc: &Value,
    stale: &BTreeMap<String, i64>,
) -> (Vec<Compare>, Vec<RequestOp>) {
    let owner = owner_value(
        meta_str(svc, "namespace").unwrap_or_default(),
        meta_str(svc, "name").unwrap_or_default(),
        meta_str(svc, "uid").unwrap_or_default(),
    );
    let take = change
        .take_ips
        .iter()
        .map(|ip| ip_key(*ip))
        .chain(change.take_ports.iter().map(|p| port_key(*p)));
    let mut compares = Vec::new();
    let mut ops = Vec::new();
    for key in take {
        let target = match stale.get(&key) {
            Some(rev) => CompareTarget::ModRevision(*rev),
            None => CompareTarget::CreateRevision(0),
        };
        compares.push(Compare {
            key: key.clone().into_bytes(),
            result: CompareResult::Equal,
            target,
        });
        ops.push(RequestOp::Put(PutRequest {
            key: key.into_bytes(),
            value: owner.clone(),
            ..Default::default()
        }));
    }
    let release = change
        .release_ips
        .iter()
        .map(|ip| ip_key(*ip))
        .chain(change.release_ports.iter().map(|p| port_key(*p)));
    for key in release {
        ops.push(RequestOp::DeleteRange(DeleteRangeRequest {
            key: key.into_bytes(),
            ..Default::default()
        }));
    }
    (compares, ops)
}

fn pick() -> u64 {
    rand::random::<u64>()
}

/// Creates a Service with its cluster IP and node ports (see the module
/// doc); 422 when a requested IP or port cannot be had, 409 if it exists.
pub async fn create(
    registry: &Registry,
    ranges: &ServiceRanges,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    obj: &Value,
) -> Result<Value, ApiError> {
    let uid = meta_str(obj, "uid").unwrap_or_default().to_string();
    let key = res.storage_key(ns, name).into_bytes();
    for _ in 0..MAX_UPDATE_ATTEMPTS {
        let seen = read_seen(registry, &uid).await?;
        let mut svc = obj.clone();
        let change = service_ranges::allocate(ranges, &mut svc, None, &seen.used, pick())
            .map_err(|errs| ApiError::invalid(res, name, errs))?;
        let (mut compares, mut ops) = change_ops(&change, &svc, &seen.stale);
        let value = encode(&svc)?;
        compares.push(Compare {
            key: key.clone(),
            result: CompareResult::Equal,
            target: CompareTarget::CreateRevision(0),
        });
        ops.push(RequestOp::Put(PutRequest {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        }));
        let resp = registry
            .kv()
            .txn(TxnRequest {
                compare: compares,
                success: ops,
                failure: vec![],
            })
            .await?;
        if resp.succeeded {
            return decode_at(&value, resp.revision);
        }
        if registry.get(res, ns, name).await?.is_some() {
            return Err(ApiError::AlreadyExists(crate::error::Target::new(
                res, name,
            )));
        }
        // Another Service took one of our IPs or ports meanwhile: again.
    }
    Err(ApiError::modified(res, name))
}

/// Writes an updated Service over `current`, keeping, taking and releasing
/// IPs and ports; `Ok(None)` when the Service or an allocation changed
/// meanwhile (the caller retries).
pub async fn update(
    registry: &Registry,
    ranges: &ServiceRanges,
    res: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    obj: &Value,
    current: &Stored,
) -> Result<Option<Value>, ApiError> {
    let uid = meta_str(&current.obj, "uid")
        .unwrap_or_default()
        .to_string();
    let seen = read_seen(registry, &uid).await?;
    let mut svc = obj.clone();
    let change = service_ranges::allocate(ranges, &mut svc, Some(&current.obj), &seen.used, pick())
        .map_err(|errs| ApiError::invalid(res, name, errs))?;
    if change == Change::default() {
        return registry.update(res, ns, name, svc, current).await;
    }
    let key = res.storage_key(ns, name).into_bytes();
    let (mut compares, mut ops) = change_ops(&change, &svc, &seen.stale);
    let value = encode(&svc)?;
    compares.push(Compare {
        key: key.clone(),
        result: CompareResult::Equal,
        target: CompareTarget::ModRevision(current.mod_revision),
    });
    ops.push(RequestOp::Put(PutRequest {
        key,
        value: value.clone(),
        ..Default::default()
    }));
    let resp = registry
        .kv()
        .txn(TxnRequest {
            compare: compares,
            success: ops,
            failure: vec![],
        })
        .await?;
    if !resp.succeeded {
        return Ok(None);
    }
    decode_at(&value, resp.revision).map(Some)
}

/// Gives back the IP and ports of a deleted Service: each key is deleted
/// only if it still names this Service. Best effort: failures leave stale
/// keys, which the next allocation reclaims.
pub async fn release(registry: &Registry, svc: &Value) {
    let owner = owner_value(
        meta_str(svc, "namespace").unwrap_or_default(),
        meta_str(svc, "name").unwrap_or_default(),
        meta_str(svc, "uid").unwrap_or_default(),
    );
    let keys = service_ranges::cluster_ip_of(svc)
        .map(ip_key)
        .into_iter()
        .chain(service_ranges::node_ports_of(svc).into_iter().map(port_key));
    for key in keys {
        let r = registry
            .kv()
            .txn(TxnRequest {
                compare: vec![Compare {
                    key: key.clone().into_bytes(),
                    result: CompareResult::Equal,
                    target: CompareTarget::Value(owner.clone()),
                }],
                success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                    key: key.clone().into_bytes(),
                    ..Default::default()
                })],
                failure: vec![],
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(%key, error = %e, "releasing a service allocation failed; it will be reclaimed later");
        }
    }
}

/// Creates the `kubernetes` Service in `default` (the first IP of the
/// service CIDR, port 443 named `https`) and its Endpoints and
/// EndpointSlice pointing at `server_address` (`host:port`), or updates
/// them when the server's address changed. Kubernetes' "master endpoint
/// reconciler" does this on every API server start.
pub async fn ensure_kubernetes_service(
    registry: &Registry,
    ranges: &ServiceRanges,
    server_address: &str,
) -> Result<(), ApiError> {
    let (ns, name) = KUBERNETES_SERVICE;
    let (host, port) = server_address
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_matches(['[', ']']).to_string(),
                p.parse::<u16>().ok()?,
            ))
        })
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "server address {server_address:?} is not host:port"
            ))
        })?;
    let services =
        find("", "v1", "services").ok_or_else(|| ApiError::Internal("no services".into()))?;
    if registry.get(services, Some(ns), name).await?.is_none() {
        let mut svc = json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns,
                "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {
                "type": "ClusterIP",
                "clusterIP": ranges.cluster_ips.first_host().to_string(),
                "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}],
            },
        });
        crate::strategy::prepare_for_create(services, &mut svc, chrono::Utc::now());
        match create(registry, ranges, services, Some(ns), name, &svc).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let endpoints = json!({
        "apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": host}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": ns,
            "labels": {"kubernetes.io/service-name": name,
                "endpointslice.kubernetes.io/managed-by": "skiff-apiserver"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [host], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (res, obj, field) in [
        (find("", "v1", "endpoints"), endpoints, "subsets"),
        (
            find("discovery.k8s.io", "v1", "endpointslices"),
            slice,
            "endpoints",
        ),
    ] {
        let Some(res) = res else { continue };
        put_if_changed(registry, res, ns, name, obj, &[field, "ports"]).await?;
    }
    Ok(())
}

/// Creates `obj`, or overwrites the stored one if any of `fields` differ.
async fn put_if_changed(
    registry: &Registry,
    res: &ResourceInfo,
    ns: &str,
    name: &str,
    mut obj: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    match registry.get(res, Some(ns), name).await? {
        None => {
            crate::strategy::prepare_for_create(res, &mut obj, chrono::Utc::now());
            registry.ensure(res, Some(ns), name, obj).await
        }
        Some(current) => {
            if fields.iter().all(|f| current.obj.get(*f) == obj.get(*f)) {
                return Ok(());
            }
            let mut next = current.obj.clone();
            for f in fields {
                if let (Some(m), Some(v)) = (next.as_object_mut(), obj.get(*f)) {
                    m.insert((*f).to_string(), v.clone());
                }
            }
            registry.update(res, Some(ns), name, next, &current).await?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    async fn registry() -> (tempfile::TempDir, Registry, skiff_store::Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = skiff_store::Store::open(skiff_store::StoreConfig::new(dir.path().join("s")))
            .await
            .unwrap();
        (dir, Registry::new(Arc::new(store.clone())), store)
    }

    fn svc(name: &str, spec: Value) -> Value {
        let services = find("", "v1", "services").unwrap();
        let mut s = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec});
        crate::strategy::prepare_for_create(services, &mut s, chrono::Utc::now());
        s
    }

    #[tokio::test]
    async fn concurrent_creates_never_share_an_ip_and_delete_releases() {
        let (_dir, reg, store) = registry().await;
        let services = find("", "v1", "services").unwrap();
        // A /29 has 5 dynamic addresses: 5 of 8 concurrent creates succeed.
        let ranges = ServiceRanges {
            cluster_ips: service_ranges::Ipv4Net::parse("10.43.0.0/29").unwrap(),
            ..Default::default()
        };
        let tasks = (0..8).map(|i| {
            let reg = reg.clone();
            async move {
                let s = svc(
                    &format!("s{i}"),
                    json!({"type": "ClusterIP", "ports": [{"port": 80}]}),
                );
                create(
                    &reg,
                    &ranges,
                    services,
                    Some("default"),
                    &format!("s{i}"),
                    &s,
                )
                .await
            }
        });
        let results = futures::future::join_all(tasks).await;
        let ips: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|s| s["spec"]["clusterIP"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ips.len(), 5, "{results:?}");
        let distinct: BTreeSet<&String> = ips.iter().collect();
        assert_eq!(distinct.len(), 5);
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(matches!(r, Err(ApiError::Invalid { .. })), "{r:?}");
        }
        // Delete one the way delete.rs does: the next create gets its IP.
        let victim = results
            .iter()
            .find_map(|r| r.as_ref().ok())
            .unwrap()
            .clone();
        let vname = victim["metadata"]["name"].as_str().unwrap().to_string();
        let cur = reg
            .get(services, Some("default"), &vname)
            .await
            .unwrap()
            .unwrap();
        reg.delete(services, Some("default"), &vname, cur.mod_revision)
            .await
            .unwrap();
        release(&reg, &cur.obj).await;
        let s = svc("again", json!({"ports": [{"port": 80}]}));
        let again = create(&reg, &ranges, services, Some("default"), "again", &s)
            .await
            .unwrap();
        assert_eq!(again["spec"]["clusterIP"], victim["spec"]["clusterIP"]);
        store.shutdown().await;
    }

    #[tokio::test]
    async fn stale_keys_are_reclaimed_and_kubernetes_service_exists() {
        let (_dir, reg, store) = registry().await;
        let services = find("", "v1", "services").unwrap();
        let ranges = ServiceRanges::default();
        ensure_kubernetes_service(&reg, &ranges, "127.0.0.1:6443")
            .await
            .unwrap();
        ensure_kubernetes_service(&reg, &ranges, "127.0.0.1:6443")
            .await
            .unwrap();
        let k = reg
            .get(services, Some("default"), "kubernetes")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(k.obj["spec"]["clusterIP"], "10.43.0.1");
        let ep = reg
            .get(
                find("", "v1", "endpoints").unwrap(),
                Some("default"),
                "kubernetes",
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ep.obj["subsets"][0]["ports"][0]["port"], 6443);

        // A key left by a Service removed without release (namespace deletion).
        let s = svc(
            "old",
            json!({"clusterIP": "10.43.7.7", "ports": [{"port": 80}]}),
        );
        create(&reg, &ranges, services, Some("default"), "old", &s)
            .await
            .unwrap();
        reg.delete_namespace_contents(services, "default")
            .await
            .unwrap();
        let s = svc(
            "new",
            json!({"clusterIP": "10.43.7.7", "ports": [{"port": 80}]}),
        );
        let got = create(&reg, &ranges, services, Some("default"), "new", &s)
            .await
            .unwrap();
        assert_eq!(got["spec"]["clusterIP"], "10.43.7.7");
        // Now it is held: asking again is a 422.
        let s = svc(
            "third",
            json!({"clusterIP": "10.43.7.7", "ports": [{"port": 80}]}),
        );
        let err = create(&reg, &ranges, services, Some("default"), "third", &s)
            .await
            .unwrap_err();
        assert_eq!(err.status_code(), 422);
        store.shutdown().await;
    }
}

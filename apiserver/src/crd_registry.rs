//! The dynamic part of the resource table: the custom resources every
//! CustomResourceDefinition in the store defines, kept current by a store
//! watch on the CRD prefix (so a CRD created through one server is served
//! by all of them), and the routes, discovery and OpenAPI answers for them.
//!
//! ```text
//!  store /registry/apiextensions.k8s.io/customresourcedefinitions/…
//!     │ list, then watch (relist with back-off when the watch ends)
//!     ▼
//!  CrdRegistry { name → served versions (crd::served_versions) }
//!     ├─► route(): /apis/<g>/<v>/… that the static table does not know
//!     ├─► answer(): /apis, /apis/<g>, /apis/<g>/<v>, /openapi/v3[/…]
//!     └─► on a CRD delete: delete every object under its prefix
//! ```
//!
//! Contracts:
//! - a request for a resource this server has not seen yet (the CRD was
//!   created a moment ago, maybe through another server) reads that CRD
//!   (`<plural>.<group>`) from the store before answering 404, so a client
//!   that saw the CRD `Established` is served; an entry read that way is
//!   kept only if it is newer than anything the watch applied for that
//!   name (deletions leave their revision behind), so a late read never
//!   resurrects a deleted CRD;
//! - deleting a CRD deletes its custom objects (every server's watch does
//!   it; the deletes are idempotent).
//!
//! - each custom resource's prefix is handed to the watch cache
//!   ([`WatchCache::cache_prefix`]); lists and watches use the store until
//!   the cache has loaded it (milliseconds).
//!
//! Caveats: the objects are deleted after the CRD rather than behind a finalizer
//! (`customresourcecleanup.apiextensions.k8s.io`), so a server that dies
//! between the two leaves them unreachable in the store until a CRD of the
//! same name is created again.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use http::Response;
use serde_json::{json, Value};
use skiff_store::{
    prefix_end, DeleteRangeRequest, EventType, KeyValue, Kv, RangeRequest, Revision, StoreError,
    WatchRequest,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::resources::{find, ResourceInfo};
use crate::response::{self, Body};
use crate::router::{self, Route};
use crate::watchcache::WatchCache;
use crate::{crd, discovery, openapi};

/// Where CRDs are stored.
pub const CRD_PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// Back-off after the CRD watch fails, before relisting (short: a
/// new CRD is invisible to this server's discovery meanwhile).
const RELIST_BACKOFF: Duration = Duration::from_millis(500);

#[derive(Default)]
struct Table {
    /// CRD name → (its key's mod_revision, its served versions).
    crds: BTreeMap<String, (Revision, Vec<&'static ResourceInfo>)>,
    /// CRD name → revision of its last delete.
    deleted: BTreeMap<String, Revision>,
}

/// The custom resources served. See the module doc.
pub struct CrdRegistry {
    table: RwLock<Table>,
    /// Told to cache each custom resource's prefix.
    cache: Option<Arc<WatchCache>>,
}

fn crd_name(key: &[u8]) -> Option<String> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix(CRD_PREFIX)
        .map(str::to_string)
}

impl CrdRegistry {
    /// An empty registry; [`CrdRegistry::spawn`] fills it. With a `cache`,
    /// custom objects are listed and watched from it once it has loaded
    /// their prefix.
    pub fn new(cache: Option<Arc<WatchCache>>) -> Arc<CrdRegistry> {
        Arc::new(CrdRegistry {
            table: RwLock::default(),
            cache,
        })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Every custom resource served, by CRD name.
    pub fn resources(&self) -> Vec<&'static ResourceInfo> {
        self.read()
            .crds
            .values()
            .flat_map(|(_, rs)| rs.iter().copied())
            .collect()
    }

    /// A served custom resource.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
        self.resources()
            .into_iter()
            .find(|r| (r.group, r.version, r.plural) == (group, version, plural))
    }

    /// Records a stored CRD (from the watch, or read on a miss).
    fn put(&self, kv: &KeyValue) {
        let Some(name) = crd_name(&kv.key) else {
            return;
        };
        let served = match serde_json::from_slice::<Value>(&kv.value) {
            Ok(obj) => crd::served_versions(&obj),
            Err(e) => {
                tracing::warn!(%name, error = %e, "stored CRD does not decode; not serving it");
                Vec::new()
            }
        };
        if let Some(cache) = &self.cache {
            for r in &served {
                cache.cache_prefix(&r.storage_prefix());
            }
        }
        let mut t = self.write();
        let newer = t.crds.get(&name).is_none_or(|(r, _)| *r < kv.mod_revision)
            && t.deleted.get(&name).is_none_or(|r| *r < kv.mod_revision);
        if newer {
            t.crds.insert(name, (kv.mod_revision, served));
        }
    }

    fn delete(&self, name: &str, revision: Revision) {
        let mut t = self.write();
        t.crds.remove(name);
        t.deleted.insert(name.to_string(), revision);
    }

    /// Starts following the store until `stop` turns true.
    pub fn spawn(
        self: &Arc<Self>,
        kv: Arc<dyn Kv>,
        mut stop: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let outcome = tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    r = this.list_and_watch(kv.as_ref()) => r,
                };
                if let Err(e) = outcome {
                    tracing::warn!(error = %e, "CRD watch failed; relisting");
                }
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return,
                    _ = tokio::time::sleep(RELIST_BACKOFF) => {}
                }
            }
        })
    }

    async fn list_and_watch(&self, kv: &dyn Kv) -> Result<(), StoreError> {
        let key = CRD_PREFIX.as_bytes().to_vec();
        let listed = kv
            .range(RangeRequest {
                key: key.clone(),
                range_end: prefix_end(&key),
                ..Default::default()
            })
            .await?;
        {
            let names: Vec<String> = listed.kvs.iter().filter_map(|k| crd_name(&k.key)).collect();
            let mut t = self.write();
            t.crds.retain(|n, _| names.contains(n));
        }
        for k in &listed.kvs {
            self.put(k);
        }
        let mut stream = kv
            .watch(WatchRequest {
                key: key.clone(),
                range_end: prefix_end(&key),
                start_revision: listed.revision + 1,
                prev_kv: false,
            })
            .await?;
        while let Some(batch) = stream.next().await {
            for event in batch?.events {
                match event.kind {
                    EventType::Put => self.put(&event.kv),
                    EventType::Delete => {
                        if let Some(name) = crd_name(&event.kv.key) {
                            self.delete(&name, event.kv.mod_revision);
                            delete_objects(kv, &name).await;
                        }
                    }
                }
            }
        }
        Err(StoreError::Stopped("the CRD watch ended".into()))
    }

    /// The route for `path`: the static table's, else a custom resource's.
    pub async fn route(&self, kv: &dyn Kv, path: &str) -> Result<Route, ApiError> {
        let err = match router::parse(path) {
            Err(ApiError::PathNotFound) => ApiError::PathNotFound,
            other => return other,
        };
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(r) = self.custom_route(&segs) {
            return r;
        }
        // Not seen yet: read the CRD the path would name.
        if let ["apis", group, _, rest @ ..] = segs.as_slice() {
            let rest = rest.strip_prefix(&["watch"]).unwrap_or(rest);
            let plural = match rest {
                ["namespaces", _, p, ..] => Some(*p),
                [p, ..] => Some(*p),
                [] => None,
            };
            if let Some(p) = plural {
                let key = format!("{CRD_PREFIX}{p}.{group}").into_bytes();
                let got = kv
                    .range(RangeRequest {
                        key,
                        ..Default::default()
                    })
                    .await
                    .map_err(ApiError::from)?;
                if let Some(k) = got.kvs.first() {
                    self.put(k);
                    if let Some(r) = self.custom_route(&segs) {
                        return r;
                    }
                }
            }
        }
        Err(err)
    }

    fn serves(&self, group: &str, version: &str) -> bool {
        self.resources()
            .iter()
            .any(|r| (r.group, r.version) == (group, version))
    }

    fn custom_route(&self, segs: &[&str]) -> Option<Result<Route, ApiError>> {
        match segs {
            ["apis", g, v] if self.serves(g, v) => Some(Ok(Route::ResourceList {
                group: g.to_string(),
                version: v.to_string(),
            })),
            ["apis", g, v, rest @ ..] if self.serves(g, v) => {
                Some(router::resource_route_in(g, rest, &|p| self.find(g, v, p)))
            }
            _ => None,
        }
    }

    /// The answer to a discovery or OpenAPI route when custom resources
    /// change it; `None` when the static answer stands.
    pub fn answer(&self, route: &Route) -> Option<Result<Response<Body>, ApiError>> {
        let resources = self.resources();
        if resources.is_empty() {
            return None;
        }
        let ok = |v: &Value| Some(Ok(response::json(200, v)));
        match route {
            Route::GroupList => {
                let mut list = discovery::api_group_list();
                if let Some(groups) = list["groups"].as_array_mut() {
                    groups.extend(group_bodies(&resources));
                }
                ok(&list)
            }
            Route::Group(g) if find_group(&resources, g) => {
                let mut body = group_bodies(&resources)
                    .into_iter()
                    .find(|b| b["name"] == g.as_str())?;
                body["kind"] = json!("APIGroup");
                body["apiVersion"] = json!("v1");
                ok(&body)
            }
            Route::ResourceList { group, version } if self.serves(group, version) => {
                let list = discovery::resource_list_of(resources.iter().copied(), group, version)?;
                ok(&list)
            }
            Route::OpenApiIndex => {
                let mut index = openapi::v3_index();
                for (g, v) in group_versions(&resources) {
                    let doc = custom_document(&resources, g, v);
                    let path = format!("apis/{g}/{v}");
                    index["paths"][&path] = json!({"serverRelativeURL": format!(
                        "/openapi/v3/{path}?hash={}", openapi::hash(&doc))});
                }
                ok(&index)
            }
            Route::OpenApiDocument(p) => {
                let (g, v) = group_versions(&resources)
                    .into_iter()
                    .find(|(g, v)| p.trim_matches('/') == format!("apis/{g}/{v}"))?;
                Some(Ok(response::raw(
                    200,
                    "application/json",
                    custom_document(&resources, g, v),
                )))
            }
            _ => None,
        }
    }
}

fn find_group(resources: &[&'static ResourceInfo], group: &str) -> bool {
    find_group_static(group) && resources.iter().any(|r| r.group == group)
}

/// A group the static table does not serve (built-in groups win).
fn find_group_static(group: &str) -> bool {
    discovery::api_group(group).is_none()
}

/// The custom group-versions, in CRD order, skipping built-in groups.
fn group_versions(resources: &[&'static ResourceInfo]) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    for r in resources {
        if find_group_static(r.group) && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// `APIGroup` bodies (without kind) for the custom groups.
fn group_bodies(resources: &[&'static ResourceInfo]) -> Vec<Value> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (g, v) in group_versions(resources) {
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, vs)) => vs.push(v),
            None => groups.push((g, vec![v])),
        }
    }
    groups
        .into_iter()
        .map(|(g, mut vs)| {
            vs.sort_by_key(|v| version_priority(v));
            let gv = |v: &str| json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({
                "name": g,
                "versions": vs.iter().map(|v| gv(v)).collect::<Vec<_>>(),
                "preferredVersion": gv(vs[0]),
            })
        })
        .collect()
}

/// Kubernetes' version priority (apimachinery `CompareKubeAwareVersionStrings`),
/// as a key that sorts the preferred version first: GA before beta before
/// alpha, higher numbers first, then other names alphabetically.
fn version_priority(v: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, String) {
    use std::cmp::Reverse;
    let kube_like = v.strip_prefix('v').and_then(|rest| {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let major: u64 = rest[..digits].parse().ok()?;
        let (tier, tail) = match &rest[digits..] {
            "" => return Some((0, major, 0)),
            t if t.starts_with("beta") => (1, &t[4..]),
            t if t.starts_with("alpha") => (2, &t[5..]),
            _ => return None,
        };
        let minor = if tail.is_empty() {
            0
        } else {
            tail.parse().ok()?
        };
        Some((tier, major, minor))
    });
    match kube_like {
        Some((tier, major, minor)) => (tier, Reverse(major), Reverse(minor), String::new()),
        None => (3, Reverse(0), Reverse(0), v.to_string()),
    }
}

fn custom_document(
    resources: &[&'static ResourceInfo],
    group: &str,
    version: &str,
) -> bytes::Bytes {
    let served: Vec<&'static ResourceInfo> = resources
        .iter()
        .copied()
        .filter(|r| (r.group, r.version) == (group, version))
        .collect();
    bytes::Bytes::from(serde_json::to_vec(&openapi::custom_document(&served)).unwrap_or_default())
}

/// Deletes every object of the CRD `name` (`<plural>.<group>`), all
/// versions sharing one prefix.
async fn delete_objects(kv: &dyn Kv, name: &str) {
    let Some((plural, group)) = name.split_once('.') else {
        return;
    };
    // The CRD resource itself lives in a built-in group: never touch one.
    if find(group, "v1", plural).is_some() {
        return;
    }
    let key = format!("/registry/{group}/{plural}/").into_bytes();
    let req = DeleteRangeRequest {
        range_end: prefix_end(&key),
        key,
        ..Default::default()
    };
    match kv.delete_range(req).await {
        Ok(r) => {
            tracing::info!(crd = %name, deleted = r.deleted, "deleted the custom objects of a deleted CRD")
        }
        Err(e) => {
            tracing::warn!(crd = %name, error = %e, "deleting the custom objects of a deleted CRD")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::version_priority;

    #[test]
    fn preferred_version_is_kubernetes_priority() {
        let mut vs = vec!["v1alpha1", "foo", "v1beta1", "v1", "v2", "v1beta2", "v10"];
        vs.sort_by_key(|v| version_priority(v));
        assert_eq!(
            vs,
            vec!["v10", "v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }
}

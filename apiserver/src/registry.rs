//! Objects in the store: JSON values at [`ResourceInfo::storage_key`],
//! written with etcd-style transactions (kube-apiserver's `storage/etcd3`).
//!
//! Contracts:
//! - an object's `metadata.resourceVersion` is the `mod_revision` of its
//!   key; it is never stored, only set when the object is read (so a write
//!   never has to know its own revision in advance);
//! - create is a Txn `create_revision(key) == 0 → put` (409 AlreadyExists
//!   otherwise); update and delete are Txns on `mod_revision(key) == seen`,
//!   returning `None` when someone else wrote first;
//! - lists hand out [`CachedObject`]s (the cache's own, shared; from the
//!   store, encoded as they are read): a list body is written from their
//!   bytes without decoding them ([`ListBody::to_json`]);
//! - custom objects are answered in the version asked for
//!   ([`crate::crd::convert`]), whatever version wrote them;
//! - a list reads one snapshot: the first page's revision is pinned in the
//!   `continue` token and every later page reads at it (410 Expired once
//!   compacted); a page cut by `limit` of a list without selectors says
//!   how many objects follow (`remainingItemCount`, as kube-apiserver).
//! - with a [`WatchCache`], lists are served from memory (KEP-2340,
//!   consistent reads from cache): without a resourceVersion the cache
//!   first catches up with the store's current revision; with
//!   `resourceVersion=N` it waits until it reaches N. A page at an exact
//!   revision (a `continue` token, `resourceVersionMatch=Exact`) comes from
//!   the cache when nothing of the resource changed since, else from the
//!   store at that revision, so tokens stay valid across both paths. When
//!   the cache cannot answer in time, the store does.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{json, Value};
use skiff_store::{
    prefix_end, Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, Kv,
    PutRequest, RangeRequest, RequestOp, Revision, StoreError, TxnRequest, TxnResponse,
};

use crate::cached_object::CachedObject;
use crate::error::ApiError;
use crate::event_ttl::{self, EventLeases};
use crate::resources::ResourceInfo;
use crate::selectors::Selectable;
use crate::watchcache::{CachedPage, WatchCache, FRESHNESS_TIMEOUT};
use crate::watchcache_state::Obj;

/// An object read from the store with its revision.
#[derive(Clone, Debug)]
pub struct Stored {
    /// The object, `metadata.resourceVersion` set.
    pub obj: Value,
    /// Its key's `mod_revision`.
    pub mod_revision: Revision,
    /// Read from the watch cache, which may be behind the store
    /// ([`Registry::get_for_update`]).
    pub cached: bool,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ListPage {
    /// Matching objects, in key order, shared with the watch cache (a list
    /// of 10,000 pods is not copied on its way to the response).
    pub items: Vec<Obj>,
    /// The snapshot's revision (the list's resourceVersion).
    pub revision: Revision,
    /// Token for the next page, if there is one.
    pub continue_token: Option<String>,
    /// How many objects follow this page (`ListMeta.remainingItemCount`):
    /// set only for a page cut by `limit` with no selector, as Kubernetes
    /// does.
    pub remaining_item_count: Option<i64>,
}

impl ListPage {
    /// The items, decoded (for readers that need whole objects).
    pub fn values(&self) -> Vec<Value> {
        self.items.iter().map(|o| o.to_value()).collect()
    }
}

/// A list response (`PodList`, …) that borrows its items, so encoding it
/// as JSON shares each item's bytes and decodes none.
pub struct ListBody<'a> {
    api_version: String,
    items: &'a [Obj],
    kind: &'a str,
    metadata: Value,
    /// A `PartialObjectMetadataList`: each item is cut to its metadata.
    metadata_only: bool,
}

/// An object's `metadata`, read from its bytes without building the rest.
#[derive(serde::Deserialize)]
struct MetadataOf {
    #[serde(default)]
    metadata: Value,
}

impl<'a> ListBody<'a> {
    /// The same list as a `meta.k8s.io/v1` `PartialObjectMetadataList`
    /// (metadata-only clients: the garbage collector, `list_metadata`).
    pub fn metadata_only(self) -> ListBody<'a> {
        ListBody {
            api_version: "meta.k8s.io/v1".into(),
            kind: "PartialObjectMetadataList",
            metadata_only: true,
            ..self
        }
    }

    /// The list's `ListMeta` (`resourceVersion`, `continue`,
    /// `remainingItemCount`).
    pub fn metadata(&self) -> &Value {
        &self.metadata
    }

    /// Item `o` as it goes into this list: its own bytes (shared, not
    /// copied), or its `PartialObjectMetadata`.
    fn item_json(&self, o: &Obj) -> Bytes {
        if !self.metadata_only {
            return o.json().clone();
        }
        let meta = serde_json::from_slice::<MetadataOf>(o.json())
            .map(|m| m.metadata)
            .unwrap_or(Value::Null);
        let partial = crate::codec::partial_object_metadata(meta);
        Bytes::from(serde_json::to_vec(&partial).unwrap_or_default())
    }

    /// The JSON body as the pieces it is written from, fields in the order
    /// `json!` writes them (`apiVersion`, `items`, `kind`, `metadata`).
    /// Each item is its cached bytes, shared with the watch cache, so
    /// answering a list of 50,000 pods (~150 MB) copies none of them
    /// ([`crate::response::list`] sends the pieces one after another).
    pub fn to_chunks(&self) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(2 * self.items.len() + 2);
        let mut head = b"{\"apiVersion\":".to_vec();
        // Strings always encode.
        head.extend_from_slice(&serde_json::to_vec(&self.api_version).unwrap_or_default());
        head.extend_from_slice(b",\"items\":[");
        out.push(Bytes::from(head));
        for (i, o) in self.items.iter().enumerate() {
            if i > 0 {
                out.push(Bytes::from_static(b","));
            }
            out.push(self.item_json(o));
        }
        let mut tail = b"],\"kind\":".to_vec();
        tail.extend_from_slice(&serde_json::to_vec(self.kind).unwrap_or_default());
        tail.extend_from_slice(b",\"metadata\":");
        tail.extend_from_slice(&serde_json::to_vec(&self.metadata).unwrap_or_default());
        tail.push(b'}');
        out.push(Bytes::from(tail));
        out
    }

    /// The JSON body in one buffer (the pieces of [`ListBody::to_chunks`]
    /// joined).
    pub fn to_json(&self) -> Vec<u8> {
        self.to_chunks().concat()
    }

    /// The body as one value, items decoded (YAML output).
    pub fn to_value(&self) -> Value {
        json!({
            "apiVersion": self.api_version,
            "items": self.items.iter().map(|o| {
                if self.metadata_only {
                    serde_json::from_slice(&self.item_json(o)).unwrap_or(Value::Null)
                } else {
                    o.to_value()
                }
            }).collect::<Vec<_>>(),
            "kind": self.kind,
            "metadata": self.metadata,
        })
    }
}

/// How to read a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Most items per page, 0 for all.
    pub limit: i64,
    /// A `continue` token from a previous page.
    pub continue_token: Option<String>,
    /// Read at exactly this revision (`resourceVersionMatch=Exact`).
    pub exact_revision: Option<Revision>,
    /// Report how many objects follow a page cut by `limit`
    /// (`remainingItemCount`); callers set it when no selector filters the
    /// list, since only then is every following key an item.
    pub count_remaining: bool,
    /// Fail with 504 if the store is older than this (`resourceVersion=N`).
    pub min_revision: Option<Revision>,
}

/// The store prefix holding `resource` objects in `namespace` (or all).
pub fn collection_prefix(resource: &ResourceInfo, namespace: Option<&str>) -> String {
    match (resource.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{ns}/", resource.storage_prefix()),
        _ => resource.storage_prefix(),
    }
}

/// Decodes a stored value and sets its resourceVersion.
pub fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    decode_at(&kv.value, kv.mod_revision)
}

/// Decodes stored bytes and sets `resourceVersion` to `revision`.
pub fn decode_at(bytes: &[u8], revision: Revision) -> Result<Value, ApiError> {
    let obj: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::Internal(format!("stored object does not decode: {e}")))?;
    Ok(at_revision(obj, revision))
}

/// The bytes stored for an object: its JSON without `resourceVersion`.
pub fn encode(obj: &Value) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(&WithoutResourceVersion(obj))
        .map_err(|e| ApiError::Internal(format!("object does not encode: {e}")))
}

/// Serialises an object as it is but for `metadata.resourceVersion`
/// (the store's revision is the version; copying a pod to drop one field
/// cost more than encoding it).
struct WithoutResourceVersion<'a>(&'a Value);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(top) = self.0 else {
            return self.0.serialize(s);
        };
        let mut map = s.serialize_map(Some(top.len()))?;
        for (k, v) in top {
            match v {
                Value::Object(meta) if k == "metadata" => {
                    let kept = meta.iter().filter(|(f, _)| *f != "resourceVersion");
                    map.serialize_entry(k, &MapOf(kept))?
                }
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

/// A map from an iterator of its entries (serialised once).
struct MapOf<I>(I);

impl<'a, I> serde::Serialize for MapOf<I>
where
    I: Iterator<Item = (&'a String, &'a Value)> + Clone,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.clone())
    }
}

/// `obj` with `metadata.resourceVersion` set to `revision`: what a write
/// returns (the same object the store now holds, without decoding it
/// again).
fn at_revision(mut obj: Value, revision: Revision) -> Value {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".into(),
            Value::String(revision.to_string()),
        );
    }
    obj
}

/// Whether two objects are equal but for `metadata.resourceVersion`.
fn same_but_version(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return a == b;
    };
    let versionless = |m: &serde_json::Map<String, Value>| {
        m.iter().filter(|(f, _)| *f != "resourceVersion").count()
    };
    a.len() == b.len()
        && a.iter().all(|(k, va)| match (va, b.get(k)) {
            (Value::Object(ma), Some(Value::Object(mb))) if k == "metadata" => {
                versionless(ma) == versionless(mb)
                    && ma
                        .iter()
                        .filter(|(f, _)| *f != "resourceVersion")
                        .all(|(f, v)| mb.get(f) == Some(v))
            }
            (va, Some(vb)) => va == vb,
            (_, None) => false,
        })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: Revision,
    start: String,
}

fn continue_gone() -> ApiError {
    ApiError::Gone(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."
            .into(),
    )
}

fn encode_continue(rv: Revision, start: String) -> String {
    let tok = ContinueToken { rv, start };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&tok).unwrap_or_default())
}

fn decode_continue(token: &str, prefix: &str) -> Result<ContinueToken, ApiError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| ApiError::BadRequest("continue key is not valid: illegal base64".into()))?;
    let tok: ContinueToken = serde_json::from_slice(&raw)
        .map_err(|_| ApiError::BadRequest("continue key is not valid: not a token".into()))?;
    if !tok.start.starts_with(prefix) {
        return Err(ApiError::BadRequest(
            "continue key is not valid: wrong collection".into(),
        ));
    }
    Ok(tok)
}

/// The store, seen as Kubernetes objects.
#[derive(Clone)]
pub struct Registry {
    kv: Arc<dyn Kv>,
    cache: Option<Arc<WatchCache>>,
    event_leases: Option<Arc<EventLeases>>,
}

impl Registry {
    /// A registry over `kv`, every read from the store.
    pub fn new(kv: Arc<dyn Kv>) -> Self {
        Registry {
            kv,
            cache: None,
            event_leases: None,
        }
    }

    /// A registry over `kv` that serves lists from `cache`.
    pub fn with_cache(kv: Arc<dyn Kv>, cache: Arc<WatchCache>) -> Self {
        Registry {
            kv,
            cache: Some(cache),
            event_leases: None,
        }
    }

    /// Events written through this registry expire: each write attaches
    /// them to a lease from `leases` ([`crate::event_ttl`]).
    pub fn with_event_leases(mut self, leases: Arc<EventLeases>) -> Self {
        self.event_leases = Some(leases);
        self
    }

    /// The underlying store.
    pub fn kv(&self) -> &Arc<dyn Kv> {
        &self.kv
    }

    /// The watch cache, if lists and watches are served from one.
    pub fn watch_cache(&self) -> Option<&Arc<WatchCache>> {
        self.cache.as_ref()
    }

    /// Reads one object, `None` if absent.
    pub async fn get(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Stored>, ApiError> {
        let key = resource.storage_key(ns, name);
        let resp = self
            .kv
            .range(RangeRequest {
                key: key.into_bytes(),
                ..Default::default()
            })
            .await?;
        match resp.kvs.first() {
            Some(kv) => Ok(Some(Stored {
                obj: crate::crd::convert(resource, decode(kv)?),
                mod_revision: kv.mod_revision,
                cached: false,
            })),
            None => Ok(None),
        }
    }

    /// Reads one object as an informer's lister does: from the watch cache
    /// at whatever revision it has reached, else from the store (a kind
    /// the cache does not hold, or an object it has not seen yet). For
    /// admission checks on every create, where a store read per request
    /// was a visible share of the server's CPU.
    pub async fn get_recent(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        if let Some(obj) = self.cached_copy(resource, ns, name) {
            return Ok(Some(obj));
        }
        Ok(self.get(resource, ns, name).await?.map(|s| s.obj))
    }

    /// The watch cache's copy of one object, if the cache holds it.
    fn cached_copy(&self, resource: &ResourceInfo, ns: Option<&str>, name: &str) -> Option<Value> {
        let cache = self.cache.as_ref()?;
        let key = resource.storage_key(ns, name);
        let page = cache.list(resource, &key, &key, 1, |o| {
            o.field(resource, "metadata.name") == name
        })?;
        let item = page.items.into_iter().next()?;
        Some(crate::crd::convert(resource, item.to_value()))
    }

    /// Reads one object to change it, 404 if absent: from the watch cache
    /// when `cached` and the cache holds it (then [`Stored::cached`]), else
    /// from the store. A cached copy may be behind the store; the write's
    /// compare on its `mod_revision` then fails and the caller reads again
    /// with `cached` false, as kube-apiserver's `GuaranteedUpdate` retries
    /// from etcd after starting from its cache. Saves a store read on most
    /// PATCHes (leases, status).
    pub async fn get_for_update(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        cached: bool,
    ) -> Result<Stored, ApiError> {
        if let Some(obj) = cached
            .then(|| self.cached_copy(resource, ns, name))
            .flatten()
        {
            let revision = obj
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .and_then(|v| v.parse::<Revision>().ok());
            if let Some(mod_revision) = revision {
                return Ok(Stored {
                    obj,
                    mod_revision,
                    cached: true,
                });
            }
        }
        self.get_required(resource, ns, name).await
    }

    /// Reads one object, 404 if absent.
    pub async fn get_required(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Stored, ApiError> {
        self.get(resource, ns, name)
            .await?
            .ok_or_else(|| ApiError::not_found(resource, name))
    }

    /// Lists objects matching `filter`, one page at a time: from the watch
    /// cache when it can answer (see the module doc), else from the store.
    pub async fn list(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        filter: impl Fn(&dyn Selectable) -> bool,
    ) -> Result<ListPage, ApiError> {
        if let Some(cache) = &self.cache {
            if let Some(page) = self
                .list_from_cache(cache, resource, ns, opts, &filter)
                .await?
            {
                return Ok(page);
            }
        }
        self.list_from_store(resource, ns, opts, filter).await
    }

    /// The cached answer to a list, `None` when the store must answer.
    async fn list_from_cache(
        &self,
        cache: &WatchCache,
        resource: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        filter: &impl Fn(&dyn Selectable) -> bool,
    ) -> Result<Option<ListPage>, ApiError> {
        if !cache.is_ready() {
            return Ok(None);
        }
        let prefix = collection_prefix(resource, ns);
        let limit = opts.limit.max(0) as usize;
        let (start, at) = match &opts.continue_token {
            Some(t) => {
                let tok = decode_continue(t, &prefix)?;
                (tok.start, Some(tok.rv))
            }
            None => (prefix.clone(), opts.exact_revision),
        };
        let filter = |o: &CachedObject| filter(o);
        let page = match at {
            Some(rv) => cache.list_at(resource, &prefix, &start, rv, limit, filter),
            None => {
                // resourceVersion unset: a consistent read, so first catch up
                // with the store; resourceVersion=N: not older than N.
                let wanted = match opts.min_revision {
                    Some(n) => n,
                    None => self.kv.current_revision().await?,
                };
                if !cache.wait_for(wanted, FRESHNESS_TIMEOUT).await {
                    return Ok(None);
                }
                cache.list(resource, &prefix, &start, limit, filter)
            }
        };
        Ok(page.map(|p: CachedPage| ListPage {
            // Shared with the cache; only custom objects served under another
            // version than the stored one are copied (to set apiVersion).
            items: if resource.custom.is_some() {
                p.items
                    .iter()
                    .map(|o| {
                        let converted = crate::crd::convert(resource, o.to_value());
                        Arc::new(CachedObject::new(resource.kind, &converted))
                    })
                    .collect()
            } else {
                p.items
            },
            revision: p.revision,
            remaining_item_count: (opts.count_remaining && p.next_start.is_some())
                .then_some(p.remaining_keys as i64),
            continue_token: p.next_start.map(|s| encode_continue(p.revision, s)),
        }))
    }

    /// [`Registry::list`] straight from the store.
    pub async fn list_from_store(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
        filter: impl Fn(&dyn Selectable) -> bool,
    ) -> Result<ListPage, ApiError> {
        let prefix = collection_prefix(resource, ns);
        let end = prefix_end(prefix.as_bytes());
        let (mut start, mut revision) = match &opts.continue_token {
            Some(t) => {
                let tok = decode_continue(t, &prefix)?;
                (tok.start.into_bytes(), tok.rv)
            }
            None => (
                prefix.clone().into_bytes(),
                opts.exact_revision.unwrap_or(0),
            ),
        };
        let continuing = opts.continue_token.is_some();
        let mut items = Vec::new();
        loop {
            let want = if opts.limit > 0 {
                opts.limit - items.len() as i64
            } else {
                0
            };
            let resp = self
                .kv
                .range(RangeRequest {
                    key: start.clone(),
                    range_end: end.clone(),
                    limit: want,
                    revision,
                    ..Default::default()
                })
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if continuing => continue_gone(),
                    other => other.into(),
                })?;
            if revision == 0 {
                // Pin the snapshot for the following chunks and pages.
                revision = resp.revision;
                if let Some(min) = opts.min_revision {
                    if min > revision {
                        return Err(ApiError::TooLargeResourceVersion {
                            requested: min,
                            current: revision,
                        });
                    }
                }
            }
            let n = resp.kvs.len();
            for (i, kv) in resp.kvs.iter().enumerate() {
                // A built-in object is spliced from its stored bytes (no
                // decode into a `Value` and encode again: re-lists after a
                // watcher fell behind made that a visible share of the
                // server); a custom one gets its served apiVersion.
                let item = if resource.custom.is_none() {
                    CachedObject::decode(&kv.value, kv.mod_revision, Some(resource.kind))?
                } else {
                    let obj = crate::crd::convert(resource, decode(kv)?);
                    CachedObject::new(resource.kind, &obj)
                };
                if !filter(&item) {
                    continue;
                }
                items.push(Arc::new(item));
                if opts.limit > 0 && items.len() as i64 >= opts.limit {
                    let more = i + 1 < n || resp.more;
                    let continue_token = more.then(|| {
                        let mut next = kv.key.clone();
                        next.push(0);
                        encode_continue(revision, String::from_utf8_lossy(&next).into_owned())
                    });
                    // `count` is every key from this chunk's start on.
                    let remaining_item_count =
                        (more && opts.count_remaining).then_some(resp.count - (i as i64 + 1));
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token,
                        remaining_item_count,
                    });
                }
            }
            match resp.kvs.last() {
                Some(last) if resp.more => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => {
                    return Ok(ListPage {
                        items,
                        revision,
                        continue_token: None,
                        remaining_item_count: None,
                    })
                }
            }
        }
    }

    /// Creates an object if its key is free; returns it with its
    /// resourceVersion.
    pub async fn create(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: &Value,
    ) -> Result<Value, ApiError> {
        let key = resource.storage_key(ns, name).into_bytes();
        let value = encode(obj)?;
        let resp = self
            .put_if(resource, key, CompareTarget::CreateRevision(0), &value)
            .await?;
        if !resp.succeeded {
            return Err(ApiError::AlreadyExists(crate::error::Target::new(
                resource, name,
            )));
        }
        let created = at_revision(obj.clone(), resp.revision);
        Ok(crate::crd::convert(resource, created))
    }

    /// Writes `obj` over the stored one if its `mod_revision` is still
    /// `expected`; `Ok(None)` if it changed meanwhile. A write that changes
    /// nothing is skipped (no new revision), as kube-apiserver's
    /// `GuaranteedUpdate` does.
    pub async fn update(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        current: &Stored,
    ) -> Result<Option<Value>, ApiError> {
        let key = resource.storage_key(ns, name).into_bytes();
        if same_but_version(&obj, &current.obj) {
            // Against a cached copy, "nothing to change" may be stale: the
            // store's version can differ. Answered as a lost race, so the
            // caller reads the store and tries again (kube-apiserver's
            // `GuaranteedUpdate` re-reads a cached state the same way).
            if current.cached {
                return Ok(None);
            }
            return Ok(Some(current.obj.clone()));
        }
        let value = encode(&obj)?;
        let resp = self
            .put_if(
                resource,
                key,
                CompareTarget::ModRevision(current.mod_revision),
                &value,
            )
            .await?;
        if !resp.succeeded {
            return Ok(None);
        }
        let updated = at_revision(obj, resp.revision);
        Ok(Some(crate::crd::convert(resource, updated)))
    }

    /// Puts `value` at `key` if `target` holds for it. A write of an Event
    /// is attached to an event lease; if the store no longer has the lease
    /// picked (it expired or was revoked), once more with a fresh one.
    async fn put_if(
        &self,
        resource: &ResourceInfo,
        key: Vec<u8>,
        target: CompareTarget,
        value: &[u8],
    ) -> Result<TxnResponse, ApiError> {
        let leases = self
            .event_leases
            .as_ref()
            .filter(|_| event_ttl::expires(resource));
        let mut retried = false;
        loop {
            let lease = match leases {
                Some(l) => l.lease().await?,
                None => 0,
            };
            let result = self
                .kv
                .txn(TxnRequest {
                    compare: vec![Compare {
                        key: key.clone(),
                        result: CompareResult::Equal,
                        target: target.clone(),
                    }],
                    success: vec![RequestOp::Put(PutRequest {
                        key: key.clone(),
                        value: value.to_vec(),
                        lease,
                        ..Default::default()
                    })],
                    failure: vec![],
                })
                .await;
            match (result, leases) {
                (Err(StoreError::LeaseNotFound(id)), Some(l)) if !retried => {
                    l.forget(id);
                    retried = true;
                }
                (result, _) => return Ok(result?),
            }
        }
    }

    /// Deletes the object if its `mod_revision` is still `expected`;
    /// returns the deletion's revision, or `None` if it changed meanwhile.
    pub async fn delete(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        expected: Revision,
    ) -> Result<Option<Revision>, ApiError> {
        let key = resource.storage_key(ns, name).into_bytes();
        let resp = self
            .kv
            .txn(TxnRequest {
                compare: vec![Compare {
                    key: key.clone(),
                    result: CompareResult::Equal,
                    target: CompareTarget::ModRevision(expected),
                }],
                success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
                    key,
                    ..Default::default()
                })],
                failure: vec![],
            })
            .await?;
        Ok(resp.succeeded.then_some(resp.revision))
    }

    /// Deletes every object of `resource` in namespace `ns` at once,
    /// bypassing the delete pipeline (tests use it to leave stale state;
    /// namespace deletion goes through the namespace controller).
    pub async fn delete_namespace_contents(
        &self,
        resource: &ResourceInfo,
        ns: &str,
    ) -> Result<(), ApiError> {
        let prefix = collection_prefix(resource, Some(ns));
        let end = prefix_end(prefix.as_bytes());
        self.kv
            .delete_range(DeleteRangeRequest {
                key: prefix.into_bytes(),
                range_end: end,
                prev_kv: false,
            })
            .await?;
        Ok(())
    }

    /// Creates `obj` unless its key exists (for bootstrap objects).
    pub async fn ensure(
        &self,
        resource: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        obj: Value,
    ) -> Result<(), ApiError> {
        match self.create(resource, ns, name, &obj).await {
            Ok(_) | Err(ApiError::AlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A list object (`PodList`, …) around `items`.
    pub fn list_object<'a>(resource: &'a ResourceInfo, page: &'a ListPage) -> ListBody<'a> {
        let mut meta = json!({"resourceVersion": page.revision.to_string()});
        if let Some(c) = &page.continue_token {
            meta["continue"] = Value::String(c.clone());
        }
        if let Some(n) = page.remaining_item_count {
            meta["remainingItemCount"] = json!(n);
        }
        ListBody {
            api_version: resource.api_version(),
            items: &page.items,
            kind: resource.list_kind,
            metadata: meta,
            metadata_only: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(rv: Option<&str>, label: &str) -> Value {
        let mut p = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "a", "namespace": "n", "labels": {"app": label}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        });
        if let Some(rv) = rv {
            p["metadata"]["resourceVersion"] = json!(rv);
        }
        p
    }

    #[test]
    fn encode_leaves_out_only_the_resource_version() {
        let stored = encode(&pod(Some("42"), "x")).unwrap();
        assert_eq!(stored, serde_json::to_vec(&pod(None, "x")).unwrap());
        let back = decode_at(&stored, 7).unwrap();
        assert_eq!(back, pod(Some("7"), "x"));
        // Not an object: encoded as it is.
        assert_eq!(encode(&json!([1, 2])).unwrap(), b"[1,2]");
    }

    #[test]
    fn same_but_version_ignores_only_the_resource_version() {
        assert!(same_but_version(&pod(Some("1"), "x"), &pod(Some("2"), "x")));
        assert!(same_but_version(&pod(None, "x"), &pod(Some("2"), "x")));
        assert!(!same_but_version(
            &pod(Some("1"), "x"),
            &pod(Some("1"), "y")
        ));
        let mut extra = pod(Some("1"), "x");
        extra["status"] = json!({});
        assert!(!same_but_version(&extra, &pod(Some("1"), "x")));
        assert!(!same_but_version(&pod(Some("1"), "x"), &extra));
    }

    /// A read for an update may come from a cache that is behind: the
    /// write on it fails its compare and a read from the store succeeds.
    #[tokio::test]
    async fn an_update_from_a_stale_cached_copy_fails_and_the_store_read_wins() {
        let dir = tempfile::tempdir().unwrap();
        let store = skiff_store::Store::open(skiff_store::StoreConfig::new(dir.path().join("s")))
            .await
            .unwrap();
        let kv: Arc<dyn Kv> = Arc::new(store.clone());
        let cache = WatchCache::new(kv.clone(), Default::default());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = cache.spawn(stop_rx);
        let reg = Registry::with_cache(kv, cache.clone());
        let pods = crate::resources::find("", "v1", "pods").unwrap();
        let created = reg
            .create(pods, Some("n"), "a", &pod(None, "x"))
            .await
            .unwrap();
        let rv: Revision = created["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(cache.wait_for(rv, std::time::Duration::from_secs(10)).await);
        let first = reg
            .get_for_update(pods, Some("n"), "a", true)
            .await
            .unwrap();
        assert!(first.cached);
        assert_eq!(first.mod_revision, rv);
        // The cache stops following the store; the object changes.
        stop.send(true).unwrap();
        task.await.unwrap();
        let fresh = reg.get_required(pods, Some("n"), "a").await.unwrap();
        let second = reg
            .update(pods, Some("n"), "a", pod(None, "y"), &fresh)
            .await;
        assert!(second.unwrap().is_some());
        let stale = reg
            .get_for_update(pods, Some("n"), "a", true)
            .await
            .unwrap();
        assert!(stale.cached);
        assert_eq!(stale.mod_revision, rv, "the cache is behind");
        let lost = reg
            .update(pods, Some("n"), "a", pod(None, "z"), &stale)
            .await;
        assert!(
            lost.unwrap().is_none(),
            "a write on the stale copy must fail"
        );
        let latest = reg
            .get_for_update(pods, Some("n"), "a", false)
            .await
            .unwrap();
        assert!(!latest.cached);
        assert!(latest.mod_revision > rv);
        assert_eq!(latest.obj["metadata"]["labels"]["app"], "y");
        // A write that changes nothing against the stale copy is not
        // skipped as a no-op: the store's version differs.
        let noop = reg
            .update(pods, Some("n"), "a", stale.obj.clone(), &stale)
            .await;
        assert!(
            noop.unwrap().is_none(),
            "a no-op on a cached copy is a lost race"
        );
        let same = reg
            .update(pods, Some("n"), "a", latest.obj.clone(), &latest)
            .await;
        assert_eq!(same.unwrap().unwrap()["metadata"]["labels"]["app"], "y");
        let won = reg
            .update(pods, Some("n"), "a", pod(None, "z"), &latest)
            .await;
        assert!(won.unwrap().is_some());
    }
}

//! Watch: a stream of `{"type": …, "object": …}` JSON lines
//! (`ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK`, `ERROR`), one per line and
//! flushed as it happens, as kube-apiserver's `watch.Encoder` writes them.
//!
//! resourceVersion semantics (Kubernetes' "Efficient detection of
//! changes"):
//! - unset or `"0"`: the current objects as synthetic `ADDED`, then changes;
//! - `"N"`: changes after revision N (a store watch from N+1);
//! - N compacted away: one `ERROR` event carrying a 410 `Expired` Status
//!   (`too old resource version: N (M)`), after which client-go and
//!   kube-rs relist;
//! - `sendInitialEvents=true` (the WatchList feature): the current objects
//!   as `ADDED`, then a `BOOKMARK` annotated `k8s.io/initial-events-end`.
//!
//! Selectors apply to each event with the object's state before and
//! after: an object that stops matching is sent as `DELETED`, one that
//! starts matching as `ADDED`. With
//! `Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1`
//! each event carries only the object's metadata (metadata informers).
//!
//! Watches are served from the [`crate::watchcache`]: a snapshot or a
//! replay of the cache's ring, then live events through a bounded buffer
//! (a watcher that falls too far behind is closed; its client rewatches).
//! With the cache:
//! - unset resourceVersion waits until the cache has caught up with the
//!   store (a consistent start), `"0"` starts from whatever it holds;
//! - `"N"` older than the ring, or compacted in the store, is 410;
//!   newer than the cache for 3 s is a 504 `ERROR` event;
//! - bookmarks carry the cache's revision.
//!
//! Until the cache is loaded (start-up, relist), a watch opens its own
//! store watch as before.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http::Response;
use serde_json::{json, Value};
use skiff_store::{prefix_end, EventType, Revision, StoreError, WatchRequest};
use tokio::sync::mpsc;

use crate::codec::Output;
use crate::error::ApiError;
use crate::registry::{collection_prefix, decode, decode_at, ListOptions, Registry};
use crate::request::RequestContext;
use crate::resources::ResourceInfo;
use crate::response::{self, Body};
use crate::selectors::{FieldRequirement, FieldSelector, LabelSelector, Selectable};
use crate::table::{self, IncludeObject};
use crate::watchcache::{
    CachedObject, Initial, WatchCache, WatchCacheError, WatchFilter, WatchItem, WatchStart,
    FRESHNESS_TIMEOUT,
};

/// How long a watch lasts when the client gives no `timeoutSeconds`
/// (kube-apiserver's `--min-request-timeout` default, 1800 s).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

/// How often a watch that allows bookmarks gets one (kube-apiserver sends
/// them about once a minute; more often keeps relists cheaper).
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(30);

/// Events buffered per watch before the sender waits for the client.
const WATCH_CHANNEL_CAPACITY: usize = 128;

/// What the stream needs to turn store events into watch events.
struct Watcher {
    resource: &'static ResourceInfo,
    labels: LabelSelector,
    fields: FieldSelector,
    table: Option<IncludeObject>,
    /// Send each object's `PartialObjectMetadata` only.
    metadata_only: bool,
    /// Who watches (User-Agent and selectors), for the cache's log.
    client: String,
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    fn matches(&self, obj: &(impl Selectable + ?Sized)) -> bool {
        self.labels.matches(obj) && self.fields.matches(self.resource, obj)
    }

    /// Whether events cannot carry the object's cached bytes as they are:
    /// Table rows, metadata only, custom objects converted to the watched
    /// version.
    fn transforms(&self) -> bool {
        self.table.is_some() || self.metadata_only || self.resource.custom.is_some()
    }

    /// Sends one event; `false` once the client has gone.
    async fn send(&self, kind: &str, obj: &Value) -> bool {
        let converted;
        let obj = if self.resource.custom.is_some() && kind != "ERROR" && kind != "BOOKMARK" {
            converted = crate::crd::convert(self.resource, obj.clone());
            &converted
        } else {
            obj
        };
        let json = match (self.table, kind) {
            (Some(include), "ADDED" | "MODIFIED" | "DELETED") => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(json!(""));
                let t = table::to_table(
                    self.resource,
                    std::slice::from_ref(obj),
                    json!({"resourceVersion": rv}),
                    include,
                    Utc::now(),
                );
                serde_json::to_vec(&t)
            }
            (None, "ADDED" | "MODIFIED" | "DELETED") if self.metadata_only => {
                let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
                serde_json::to_vec(&crate::codec::partial_object_metadata(meta))
            }
            _ => serde_json::to_vec(obj),
        };
        self.send_json(kind, &json.unwrap_or_default()).await
    }

    /// Sends one event with a cached object: its bytes as they are, unless
    /// this watcher [transforms](Self::transforms) them.
    async fn send_cached(&self, kind: &str, obj: &CachedObject) -> bool {
        if self.transforms() {
            return self.send(kind, &obj.to_value()).await;
        }
        self.send_json(kind, obj.json()).await
    }

    /// Sends one event whose object is already JSON.
    async fn send_json(&self, kind: &str, object: &[u8]) -> bool {
        let mut line = Vec::with_capacity(object.len() + kind.len() + 24);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(object);
        line.extend_from_slice(b"}\n");
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    /// Sends one cached event; the object's JSON is shared with every
    /// other watcher of the event unless this one
    /// [transforms](Self::transforms) it.
    async fn send_item(&self, item: &WatchItem) -> bool {
        let kind = item.kind.as_str();
        if self.transforms() {
            let Some(obj) = item.event.object(item.kind) else {
                return true;
            };
            return self.send(kind, &obj).await;
        }
        self.send_json(kind, &item.event.object_json(item.kind))
            .await
    }

    async fn send_error(&self, e: &ApiError) -> bool {
        self.send("ERROR", &e.to_status()).await
    }

    async fn send_bookmark(&self, revision: Revision, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": meta});
        self.send("BOOKMARK", &obj).await
    }
}

/// Serves a watch on `res` in `ns` (all namespaces if `None`), optionally
/// on one object `name` (the deprecated `/watch/…/<name>` path).
pub async fn serve(
    ctx: &mut RequestContext,
    res: &'static ResourceInfo,
    ns: Option<&str>,
    name: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (labels, mut fields) = crate::rest::selectors(ctx, res)?;
    if let Some(n) = name {
        fields.requirements.push(FieldRequirement {
            field: "metadata.name".into(),
            value: n.into(),
            negated: false,
        });
    }
    let table = match ctx.output {
        Output::Table => Some(ctx.include_object()?),
        Output::MetadataList => {
            return Err(ApiError::NotAcceptableAs(
                "you requested PartialObjectMetadataList, but a watch sends single objects".into(),
            ))
        }
        _ => None,
    };
    let timeout = ctx
        .query
        .int("timeoutSeconds")?
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64))
        .unwrap_or(DEFAULT_WATCH_TIMEOUT);
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let send_initial = ctx.query.flag("sendInitialEvents");
    let rv_param = ctx.query.get("resourceVersion").unwrap_or("").to_string();
    let consistent = rv_param.is_empty();
    let client_rv: Option<Revision> = match rv_param.as_str() {
        "" | "0" => None,
        v => Some(
            v.parse()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {v:?}")))?,
        ),
    };

    let (tx, rx) = mpsc::channel(WATCH_CHANNEL_CAPACITY);
    let w = Watcher {
        resource: res,
        labels,
        fields,
        table,
        metadata_only: ctx.output == Output::Metadata,
        client: format!(
            "{} labels={:?} fields={:?}",
            ctx.user_agent.as_deref().unwrap_or("-"),
            ctx.query.get("labelSelector").unwrap_or(""),
            ctx.query.get("fieldSelector").unwrap_or(""),
        ),
        tx,
    };
    let state = ctx.state.clone();
    let ns = ns.map(str::to_string);

    tokio::spawn(async move {
        let mut stopping = state.stopping.clone();
        let registry = state.registry.clone();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        tokio::select! {
            _ = &mut deadline => {}
            _ = stopping.wait_for(|s| *s) => {}
            _ = run(w, registry, ns, Start { client_rv, send_initial, consistent }, bookmarks) => {}
        }
        // `state` (and with it the store handle) is released here.
        drop(state);
    });
    Ok(response::stream(200, "application/json", rx))
}

/// Where a watch starts, from its query.
#[derive(Clone, Copy)]
struct Start {
    /// `resourceVersion=N` (None for unset and `"0"`).
    client_rv: Option<Revision>,
    /// `sendInitialEvents=true`.
    send_initial: bool,
    /// resourceVersion unset: the snapshot must be current.
    consistent: bool,
}

async fn run(w: Watcher, registry: Registry, ns: Option<String>, start: Start, bookmarks: bool) {
    if let Some(cache) = registry.watch_cache().filter(|c| c.is_ready()).cloned() {
        if run_cached(&w, &cache, ns.as_deref(), start, bookmarks).await {
            return;
        }
    }
    run_store(
        w,
        registry,
        ns,
        start.client_rv,
        start.send_initial,
        bookmarks,
    )
    .await
}

/// Serves the watch from the cache; `false` if the cache cannot (not
/// ready, or not fresh in time for a snapshot) and the store must.
async fn run_cached(
    w: &Watcher,
    cache: &std::sync::Arc<WatchCache>,
    ns: Option<&str>,
    start: Start,
    bookmarks: bool,
) -> bool {
    let from = match start.client_rv {
        Some(rv) if !start.send_initial => WatchStart::After(rv),
        _ => WatchStart::Snapshot,
    };
    if from == WatchStart::Snapshot {
        let fresh = match start.client_rv {
            Some(n) => cache.wait_for(n, FRESHNESS_TIMEOUT).await,
            None if start.consistent => cache.wait_fresh().await.unwrap_or(false),
            None => true,
        };
        if !fresh {
            return false;
        }
    }
    let (labels, fields, res) = (w.labels.clone(), w.fields.clone(), w.resource);
    let filter = WatchFilter {
        prefix: collection_prefix(w.resource, ns),
        client: w.client.clone(),
        matches: Box::new(move |o| labels.matches(o) && fields.matches(res, o)),
    };
    let mut cw = match cache.watch(w.resource, filter, from).await {
        Ok(cw) => cw,
        Err(WatchCacheError::NotReady) => return false,
        Err(e) => {
            w.send_error(&e.into()).await;
            return true;
        }
    };
    let mut last = cw.revision;
    match std::mem::replace(&mut cw.initial, Initial::Replay(Vec::new())) {
        Initial::Snapshot(objects) => {
            for o in &objects {
                if !w.send_cached("ADDED", o).await {
                    return true;
                }
            }
            drop(objects);
            if start.send_initial && !w.send_bookmark(last, true).await {
                return true;
            }
        }
        Initial::Replay(items) => {
            for item in &items {
                if !w.send_item(item).await {
                    return true;
                }
            }
        }
    }

    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = ticker.tick(), if bookmarks => {
                // Every event up to the cache's revision is already in our
                // buffer (dispatch happens before the revision moves), so
                // send those first; then the bookmark promises no more.
                let revision = cache.revision();
                loop {
                    match cw.events.try_recv() {
                        Ok(item) => {
                            last = last.max(item.event.event.revision);
                            if !w.send_item(&item).await {
                                return true;
                            }
                        }
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => return true,
                    }
                }
                last = last.max(revision);
                if !w.send_bookmark(last, false).await {
                    return true;
                }
            }
            _ = w.tx.closed() => return true,
            item = cw.events.recv() => {
                // None: the cache closed us (too slow, or it relisted); the
                // client rewatches from its last resourceVersion.
                let Some(item) = item else { return true };
                last = last.max(item.event.event.revision);
                if !w.send_item(&item).await {
                    return true;
                }
            }
        }
    }
}

/// Serves the watch from its own store watch (no cache, or not ready).
async fn run_store(
    w: Watcher,
    registry: Registry,
    ns: Option<String>,
    client_rv: Option<Revision>,
    send_initial: bool,
    bookmarks: bool,
) {
    // The starting point: a snapshot (sent as ADDED) or the client's rv.
    let mut last: Revision = match client_rv {
        Some(rv) if !send_initial => rv,
        _ => {
            let page = match registry
                .list_from_store(w.resource, ns.as_deref(), &ListOptions::default(), |o| {
                    w.matches(o)
                })
                .await
            {
                Ok(p) => p,
                Err(e) => {
                    w.send_error(&e).await;
                    return;
                }
            };
            for obj in &page.items {
                if !w.send_cached("ADDED", obj).await {
                    return;
                }
            }
            if send_initial && !w.send_bookmark(page.revision, true).await {
                return;
            }
            page.revision
        }
    };

    let prefix = collection_prefix(w.resource, ns.as_deref());
    let req = WatchRequest {
        key: prefix.clone().into_bytes(),
        range_end: prefix_end(prefix.as_bytes()),
        start_revision: last + 1,
        prev_kv: true,
    };
    let mut stream = match registry.kv().watch(req).await {
        Ok(s) => s,
        Err(StoreError::Compacted {
            compact_revision, ..
        }) => {
            w.send_error(&too_old(last, compact_revision)).await;
            return;
        }
        Err(e) => {
            w.send_error(&e.into()).await;
            return;
        }
    };

    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await; // the first tick is immediate
    loop {
        tokio::select! {
            _ = ticker.tick(), if bookmarks => {
                if !w.send_bookmark(last, false).await {
                    return;
                }
            }
            _ = w.tx.closed() => return,
            next = stream.next() => {
                let batch = match next {
                    None => return,
                    Some(Ok(b)) => b,
                    Some(Err(StoreError::Compacted { compact_revision, .. })) => {
                        w.send_error(&too_old(last, compact_revision)).await;
                        return;
                    }
                    Some(Err(e)) => {
                        w.send_error(&e.into()).await;
                        return;
                    }
                };
                if batch.events.is_empty() {
                    // Progress notification: everything up to here was sent.
                    last = last.max(batch.revision);
                    continue;
                }
                for ev in &batch.events {
                    last = last.max(ev.kv.mod_revision);
                    if !emit(&w, ev).await {
                        return;
                    }
                }
            }
        }
    }
}

/// The 410 a watch gets when `rv` was compacted away (kube-apiserver's
/// wording, with the oldest revision still kept).
fn too_old(rv: Revision, compact: Revision) -> ApiError {
    ApiError::Gone(format!("too old resource version: {rv} ({compact})"))
}

/// Sends the watch event for one store event; `false` once the client is
/// gone.
async fn emit(w: &Watcher, ev: &skiff_store::Event) -> bool {
    let old = ev.prev_kv.as_ref().and_then(|kv| decode(kv).ok());
    let old_match = old.as_ref().is_some_and(|o| w.matches(o));
    match ev.kind {
        EventType::Put => {
            let Ok(new) = decode(&ev.kv) else { return true };
            let new_match = w.matches(&new);
            let kind = match (old.is_some() || ev.kv.version > 1, old_match, new_match) {
                (_, true, true) => "MODIFIED",
                (false, _, true) => "ADDED",
                // Without prev_kv, assume it matched before.
                (true, false, true) if old.is_none() => "MODIFIED",
                (true, false, true) => "ADDED",
                (_, true, false) => "DELETED",
                (_, false, false) => return true,
            };
            w.send(kind, &new).await
        }
        EventType::Delete => {
            // The deleted object's last state, at the delete's revision.
            let Some(prev) = &ev.prev_kv else { return true };
            let Ok(obj) = decode_at(&prev.value, ev.kv.mod_revision) else {
                return true;
            };
            if !w.matches(&obj) {
                return true;
            }
            w.send("DELETED", &obj).await
        }
    }
}

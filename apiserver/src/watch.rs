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
//! starts matching as `ADDED`.
//!
//! Caveat: every watch request opens its own store watch. kube-apiserver
//! serves watches from a per-resource watch cache instead; that comes in a
//! later Skiff issue.

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
use crate::registry::{collection_prefix, decode, decode_at, ListOptions};
use crate::request::RequestContext;
use crate::resources::ResourceInfo;
use crate::response::{self, Body};
use crate::selectors::{FieldRequirement, FieldSelector, LabelSelector};
use crate::table::{self, IncludeObject};

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
    tx: mpsc::Sender<Bytes>,
}

impl Watcher {
    fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(self.resource, obj)
    }

    /// Sends one event; `false` once the client has gone.
    async fn send(&self, kind: &str, obj: &Value) -> bool {
        let object = match (self.table, kind) {
            (Some(include), "ADDED" | "MODIFIED" | "DELETED") => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .cloned()
                    .unwrap_or(json!(""));
                table::to_table(
                    self.resource,
                    std::slice::from_ref(obj),
                    json!({"resourceVersion": rv}),
                    include,
                    Utc::now(),
                )
            }
            _ => obj.clone(),
        };
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
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
            _ = run(w, registry, ns, client_rv, send_initial, bookmarks) => {}
        }
        // `state` (and with it the store handle) is released here.
        drop(state);
    });
    Ok(response::stream(200, "application/json", rx))
}

async fn run(
    w: Watcher,
    registry: crate::registry::Registry,
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
                .list(w.resource, ns.as_deref(), &ListOptions::default(), |o| {
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
                if !w.send("ADDED", obj).await {
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

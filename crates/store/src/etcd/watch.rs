//! `etcdserverpb.Watch`: many watches over one bidirectional stream.
//!
//! ```text
//!  client ─ WatchRequest ─► stream task ── create: Kv::watch, send `created`, spawn ─► watch task
//!                             │ cancel: abort the watch task, send `canceled`          │
//!                             │ progress: send a header-only response                  │
//!  client ◄─ WatchResponse ── bounded channel ◄──────────── events / compacted ────────┘
//! ```
//!
//! Every response of a stream goes through one bounded channel
//! ([`WATCH_SEND_BUFFER`]); a client that reads slowly makes the watch tasks
//! wait, and the store's watch then catches up from history (see
//! [`crate::watch`]), so memory stays bounded. The `created` answer is sent
//! by the stream task before the watch's own task starts, so it always comes
//! first and in the order of the creates (clientv3 matches `created`
//! answers to its requests in order).

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert::event_to_pb;
use super::pb::etcdserverpb as pb;
use super::pb::etcdserverpb::watch_create_request::FilterType;
use super::pb::etcdserverpb::watch_request::RequestUnion;
use super::pb::etcdserverpb::watch_server;
use super::pb::mvccpb;
use super::status::{header, to_status, MSG_COMPACTED};
use super::EtcdApi;
use crate::error::StoreError;
use crate::kv::{Kv, WatchRequest, WatchStream};

/// Responses buffered per stream before watch tasks wait for the client.
pub(crate) const WATCH_SEND_BUFFER: usize = 64;
/// Watches one stream may hold (bounds the tasks a client can start).
pub(crate) const MAX_WATCHES_PER_STREAM: usize = 4096;
/// How long a `progress_notify` watch stays silent before it is sent an
/// empty, header-only response (etcd's default interval: 10 minutes).
pub(crate) const PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_secs(600);

type Tx = mpsc::Sender<Result<pb::WatchResponse, Status>>;

#[tonic::async_trait]
impl watch_server::Watch for EtcdApi {
    type WatchStream = ReceiverStream<Result<pb::WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let (tx, rx) = mpsc::channel(WATCH_SEND_BUFFER);
        tokio::spawn(serve_stream(self.clone(), request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// The revision for a header that is not about an event: the current one.
async fn current(api: &EtcdApi) -> i64 {
    api.store.current_revision().await.unwrap_or(0)
}

async fn serve_stream(api: EtcdApi, mut inbound: Streaming<pb::WatchRequest>, tx: Tx) {
    let mut watches: HashMap<i64, JoinHandle<()>> = HashMap::new();
    let mut next_id: i64 = 0;
    let stopped = api.stopped();
    tokio::pin!(stopped);
    loop {
        watches.retain(|_, task| !task.is_finished());
        let msg = tokio::select! {
            _ = &mut stopped => break,
            _ = tx.closed() => break,
            m = inbound.message() => m,
        };
        let req = match msg {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "watch stream ended");
                break;
            }
        };
        let sent = match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => {
                let id = if c.watch_id != 0 {
                    c.watch_id
                } else {
                    while watches.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id += 1;
                    next_id - 1
                };
                if watches.contains_key(&id) || watches.len() >= MAX_WATCHES_PER_STREAM {
                    let reason = if watches.contains_key(&id) {
                        "mvcc: duplicate watch ID provided on the WatchStream"
                    } else {
                        "skiff: too many watches on one stream"
                    };
                    tx.send(Ok(pb::WatchResponse {
                        header: header(&api.store, current(&api).await),
                        watch_id: id,
                        created: true,
                        canceled: true,
                        cancel_reason: reason.into(),
                        ..Default::default()
                    }))
                    .await
                } else {
                    create(&api, id, c, &tx).await.map(|task| {
                        if let Some(task) = task {
                            watches.insert(id, task);
                        }
                    })
                }
            }
            Some(RequestUnion::CancelRequest(c)) => match watches.remove(&c.watch_id) {
                Some(task) => {
                    task.abort();
                    tx.send(Ok(pb::WatchResponse {
                        header: header(&api.store, current(&api).await),
                        watch_id: c.watch_id,
                        canceled: true,
                        ..Default::default()
                    }))
                    .await
                }
                None => Ok(()),
            },
            Some(RequestUnion::ProgressRequest(_)) => {
                // etcd answers with watch id -1: "not about one watch".
                tx.send(Ok(pb::WatchResponse {
                    header: header(&api.store, current(&api).await),
                    watch_id: -1,
                    ..Default::default()
                }))
                .await
            }
            None => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
    for task in watches.values() {
        task.abort();
    }
}

/// Start a watch: send `created` (then, if the start revision is
/// compacted, the compaction answer) and spawn its task.
async fn create(
    api: &EtcdApi,
    id: i64,
    c: pb::WatchCreateRequest,
    tx: &Tx,
) -> Result<Option<JoinHandle<()>>, mpsc::error::SendError<Result<pb::WatchResponse, Status>>> {
    let started = api
        .store
        .watch(WatchRequest {
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
        })
        .await;
    tx.send(Ok(pb::WatchResponse {
        header: header(&api.store, current(api).await),
        watch_id: id,
        created: true,
        ..Default::default()
    }))
    .await?;
    match started {
        Ok(stream) => Ok(Some(tokio::spawn(run_watch(
            api.clone(),
            id,
            c,
            stream,
            tx.clone(),
        )))),
        Err(e) => {
            tx.send(Ok(ended(api, id, e).await)).await?;
            Ok(None)
        }
    }
}

/// The last answer of a watch that the store ended: compacted history
/// (etcd sets `compact_revision` and cancels), or another error.
async fn ended(api: &EtcdApi, id: i64, e: StoreError) -> pb::WatchResponse {
    let (compact_revision, cancel_reason) = match e {
        StoreError::Compacted {
            compact_revision, ..
        } => (compact_revision, MSG_COMPACTED.to_string()),
        other => (0, to_status(other).message().to_string()),
    };
    pb::WatchResponse {
        header: header(&api.store, current(api).await),
        watch_id: id,
        canceled: true,
        compact_revision,
        cancel_reason,
        ..Default::default()
    }
}

/// Forward one watch's events until it ends, is canceled (aborted) or the
/// client goes away.
async fn run_watch(
    api: EtcdApi,
    id: i64,
    c: pb::WatchCreateRequest,
    mut stream: WatchStream,
    tx: Tx,
) {
    let no_put = c.filters.contains(&(FilterType::Noput as i32));
    let no_delete = c.filters.contains(&(FilterType::Nodelete as i32));
    let mut progress = tokio::time::interval(PROGRESS_NOTIFY_INTERVAL);
    progress.reset(); // the first tick is one interval from now
    loop {
        let resp = tokio::select! {
            item = stream.next() => match item {
                Some(Ok(batch)) => {
                    let events: Vec<mvccpb::Event> = batch
                        .events
                        .into_iter()
                        .map(event_to_pb)
                        .filter(|e| {
                            let put = e.r#type == mvccpb::event::EventType::Put as i32;
                            !(put && no_put || !put && no_delete)
                        })
                        .collect();
                    if events.is_empty() {
                        continue;
                    }
                    progress.reset();
                    pb::WatchResponse {
                        header: header(&api.store, batch.revision),
                        watch_id: id,
                        events,
                        ..Default::default()
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Ok(ended(&api, id, e).await)).await;
                    return;
                }
                None => return,
            },
            _ = progress.tick(), if c.progress_notify => pb::WatchResponse {
                header: header(&api.store, current(&api).await),
                watch_id: id,
                ..Default::default()
            },
        };
        if tx.send(Ok(resp)).await.is_err() {
            return;
        }
    }
}

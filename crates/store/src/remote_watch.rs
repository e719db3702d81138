//! Watches on an external etcd: one gRPC `Watch` stream per [`Kv::watch`],
//! turned into the store's [`WatchStream`].
//!
//! ```text
//!  create request ──► etcd Watch stream ──► `created` (checked here)
//!                                      ──► events        → Ok(WatchResponse)
//!                                      ──► empty answer  → Ok(progress, no events)
//!                                      ──► canceled, compact_revision → Err(Compacted), end
//!  RemoteStore::shutdown ───────────────────────────────── → Err(Stopped), end
//! ```
//!
//! The request side of the gRPC stream stays open as long as the watch
//! lives (its sender is kept in the stream's state); dropping the
//! [`WatchStream`] drops both halves, which resets the HTTP/2 stream and so
//! cancels the watch on etcd.
//!
//! [`Kv::watch`]: crate::Kv::watch

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::error::StoreError;
use crate::etcd::pb::etcdserverpb as pb;
use crate::etcd::pb::etcdserverpb::watch_client::WatchClient;
use crate::etcd::pb::etcdserverpb::watch_request::RequestUnion;
use crate::kv::{Revision, WatchRequest, WatchResponse, WatchStream};
use crate::remote_convert::{error_from_status, event_from_pb, revision};

/// What a watch's stream holds between items.
struct State {
    inbound: Streaming<pb::WatchResponse>,
    /// Keeps the request half open; never sent on after the create.
    _requests: mpsc::Sender<pb::WatchRequest>,
    stop: watch::Receiver<bool>,
    start_revision: Revision,
    done: bool,
}

/// Open a watch stream and send `create`; returns it once etcd has answered
/// `created`, with that answer.
async fn open(
    mut client: WatchClient<Channel>,
    create: pb::WatchCreateRequest,
) -> Result<
    (
        Streaming<pb::WatchResponse>,
        mpsc::Sender<pb::WatchRequest>,
        pb::WatchResponse,
    ),
    StoreError,
> {
    let (tx, rx) = mpsc::channel(1);
    tx.send(pb::WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    })
    .await
    .map_err(|_| StoreError::Transport("watch request channel closed".into()))?;
    let mut inbound = client
        .watch(ReceiverStream::new(rx))
        .await
        .map_err(error_from_status)?
        .into_inner();
    let created = inbound
        .message()
        .await
        .map_err(error_from_status)?
        .ok_or_else(|| StoreError::Transport("etcd closed the watch before creating it".into()))?;
    if !created.created {
        return Err(StoreError::Transport(format!(
            "etcd answered a watch create with {created:?}"
        )));
    }
    Ok((inbound, tx, created))
}

/// Start a watch for `req`; it ends when `stop` turns true.
pub(crate) async fn start(
    client: WatchClient<Channel>,
    req: WatchRequest,
    stop: watch::Receiver<bool>,
) -> Result<WatchStream, StoreError> {
    let start_revision = req.start_revision;
    let create = pb::WatchCreateRequest {
        key: req.key,
        range_end: req.range_end,
        start_revision: req.start_revision,
        prev_kv: req.prev_kv,
        ..Default::default()
    };
    let (inbound, requests, created) = open(client, create).await?;
    if created.canceled {
        return Err(canceled(&created, start_revision));
    }
    let state = State {
        inbound,
        _requests: requests,
        stop,
        start_revision,
        done: false,
    };
    Ok(futures::stream::unfold(state, next).boxed())
}

/// The error a canceled watch ends with.
fn canceled(r: &pb::WatchResponse, start_revision: Revision) -> StoreError {
    if r.compact_revision != 0 {
        StoreError::Compacted {
            requested: start_revision,
            compact_revision: r.compact_revision,
        }
    } else {
        StoreError::InvalidRequest(format!("etcd canceled the watch: {}", r.cancel_reason))
    }
}

async fn next(mut st: State) -> Option<(Result<WatchResponse, StoreError>, State)> {
    if st.done {
        return None;
    }
    let msg = tokio::select! {
        biased;
        _ = st.stop.wait_for(|s| *s) => None,
        m = st.inbound.message() => Some(m),
    };
    // A stream broken by the shutdown (its connection dropped, or etcd
    // stopped with it) ends as stopped, not as a transport error.
    let msg = msg.filter(|_| !*st.stop.borrow());
    let Some(msg) = msg else {
        st.done = true;
        return Some((
            Err(StoreError::Stopped("remote store was shut down".into())),
            st,
        ));
    };
    let item = match msg {
        Ok(Some(r)) if r.canceled => Err(canceled(&r, st.start_revision)),
        Ok(Some(r)) => {
            return Some((
                Ok(WatchResponse {
                    revision: revision(&r.header),
                    events: r.events.into_iter().map(event_from_pb).collect(),
                }),
                st,
            ))
        }
        Ok(None) => Err(StoreError::Transport("etcd ended the watch stream".into())),
        Err(s) => Err(error_from_status(s)),
    };
    st.done = true;
    Some((item, st))
}

/// etcd's compaction point, learnt the only way its API tells it: a watch
/// from `below` (a revision known to be compacted) is canceled with it.
pub(crate) async fn compact_revision(
    client: WatchClient<Channel>,
    below: Revision,
) -> Result<Revision, StoreError> {
    let create = pb::WatchCreateRequest {
        key: vec![0],
        start_revision: below.max(1),
        ..Default::default()
    };
    let wait = async {
        let (mut inbound, _requests, created) = open(client, create).await?;
        let mut answer = Some(created);
        loop {
            let r = match answer.take() {
                Some(r) => r,
                None => inbound
                    .message()
                    .await
                    .map_err(error_from_status)?
                    .ok_or_else(|| StoreError::Transport("etcd ended the watch stream".into()))?,
            };
            if r.compact_revision != 0 {
                return Ok(r.compact_revision);
            }
            if r.canceled {
                return Err(canceled(&r, below));
            }
        }
    };
    // etcd sends the cancel within its 100 ms sync of unsynced watchers.
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .map_err(|_| StoreError::Transport(format!("etcd did not cancel a watch at {below}")))?
}

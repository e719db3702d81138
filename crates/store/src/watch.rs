//! Watch: history replay, then live events, in order, without gaps or
//! duplicates.
//!
//! ```text
//!  apply (state machine) ──sled batch──► sled ──► history_from()  (catch-up)
//!        │                                              │
//!        └──► WatchHub (tokio broadcast, bounded) ──────┴──► one stream per watcher
//! ```
//!
//! The state machine publishes each entry's events only after its sled batch
//! is written. A watcher subscribes to the hub *before* it reads history, so
//! every revision is either in what it reads from sled or in what it later
//! receives live (usually both); live batches at or below the last revision
//! already delivered are dropped. That gives no gaps and no duplicates.
//!
//! **Slow watchers.** The broadcast ring holds [`HUB_CAPACITY`] batches and
//! memory does not grow past it. A watcher that falls further behind loses its
//! place in the ring (tokio reports `Lagged`); it then re-subscribes and
//! catches up from sled history in chunks of [`REPLAY_CHUNK_EVENTS`], as at
//! start (etcd's "unsynced watcher" path). Only if that history was compacted
//! meanwhile does the stream end, with `Err(StoreError::Compacted)`. When the
//! store shuts down, streams end with `Err(StoreError::Stopped)`.

use std::sync::{Arc, Mutex};

use futures::stream;
use tokio::sync::broadcast;

use crate::error::StoreError;
use crate::keys::KeyRange;
use crate::kv::{Revision, WatchRequest, WatchResponse, WatchStream};
use crate::mvcc::{HistoryEvent, MvccError, SharedMvcc};

/// Batches the live ring holds per watcher before a watcher counts as lagging.
pub(crate) const HUB_CAPACITY: usize = 1024;
/// Events read from history per step of a catch-up.
pub(crate) const REPLAY_CHUNK_EVENTS: usize = 512;

/// The events of one applied entry.
#[derive(Debug)]
pub(crate) struct LiveBatch {
    /// The entry's revision.
    pub revision: Revision,
    /// Its events, with prev_kv.
    pub events: Vec<HistoryEvent>,
}

/// Fan-out of applied events to watchers.
pub(crate) struct WatchHub {
    sender: Mutex<Option<broadcast::Sender<Arc<LiveBatch>>>>,
}

impl WatchHub {
    /// A hub with no watchers.
    pub(crate) fn new() -> WatchHub {
        let (tx, _) = broadcast::channel(HUB_CAPACITY);
        WatchHub {
            sender: Mutex::new(Some(tx)),
        }
    }

    /// Publish an entry's events (called by apply, after the sled write).
    pub(crate) fn publish(&self, batch: LiveBatch) {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = guard.as_ref() {
            // No receivers is fine: nobody is watching.
            let _ = tx.send(Arc::new(batch));
        }
    }

    fn subscribe(&self) -> Option<broadcast::Receiver<Arc<LiveBatch>>> {
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map(|tx| tx.subscribe())
    }

    /// End every stream (store shutdown).
    pub(crate) fn close(&self) {
        let mut guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        *guard = None;
    }
}

fn stopped() -> StoreError {
    StoreError::Stopped("store shut down".into())
}

fn storage(e: MvccError) -> StoreError {
    match e {
        MvccError::Refused(r) => r.into(),
        other => StoreError::Storage(other.to_string()),
    }
}

/// Per-watcher state, driven by `stream::unfold`.
struct Watcher {
    mvcc: SharedMvcc,
    hub: Arc<WatchHub>,
    range: KeyRange,
    prev_kv: bool,
    /// The first revision not yet delivered.
    next: Revision,
    rx: Option<broadcast::Receiver<Arc<LiveBatch>>>,
    catching_up: bool,
    done: bool,
}

impl Watcher {
    fn filter(&self, events: &[HistoryEvent]) -> Vec<crate::kv::Event> {
        events
            .iter()
            .filter(|e| e.revision() >= self.next && self.range.contains(&e.kv.key))
            .map(|e| e.to_event(self.prev_kv))
            .collect()
    }

    /// The next batch to hand out, or None when the stream is over.
    async fn step(&mut self) -> Option<Result<WatchResponse, StoreError>> {
        loop {
            if self.done {
                return None;
            }
            if self.rx.is_none() {
                match self.hub.subscribe() {
                    Some(rx) => self.rx = Some(rx),
                    None => return self.fail(stopped()),
                }
                self.catching_up = true;
            }
            if self.catching_up {
                match self.replay_chunk() {
                    Ok(Some(resp)) => return Some(Ok(resp)),
                    Ok(None) => continue,
                    Err(e) => return self.fail(e),
                }
            }
            let Some(rx) = self.rx.as_mut() else { continue };
            match rx.recv().await {
                Ok(batch) => {
                    if batch.revision < self.next {
                        continue; // already delivered from history
                    }
                    let events = self.filter(&batch.events);
                    self.next = batch.revision + 1;
                    if !events.is_empty() {
                        return Some(Ok(WatchResponse {
                            revision: batch.revision,
                            events,
                        }));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::debug!(skipped = n, "watcher lagged; catching up from history");
                    self.rx = None;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return self.fail(stopped());
                }
            }
        }
    }

    /// One chunk of history; switches to live delivery at the end.
    fn replay_chunk(&mut self) -> Result<Option<WatchResponse>, StoreError> {
        let mvcc = self.mvcc.get().ok_or_else(stopped)?;
        // One consistent view: a compaction cannot slip in between the
        // compaction check and the history read and leave a silent gap.
        let (compact, current, (events, complete)) = mvcc
            .read_view(|m| -> Result<_, MvccError> {
                Ok((
                    m.compact_revision()?,
                    m.revision()?,
                    m.history_from(self.next, REPLAY_CHUNK_EVENTS)?,
                ))
            })
            .map_err(storage)?;
        if self.next < compact {
            return Err(StoreError::Compacted {
                requested: self.next,
                compact_revision: compact,
            });
        }
        let out = self.filter(&events);
        if let Some(last) = events.last() {
            self.next = self.next.max(last.revision() + 1);
        }
        if complete {
            self.catching_up = false;
            // Everything up to `current` was in sled when we read it.
            self.next = self.next.max(current + 1);
        }
        Ok((!out.is_empty()).then_some(WatchResponse {
            revision: current,
            events: out,
        }))
    }

    fn fail(&mut self, e: StoreError) -> Option<Result<WatchResponse, StoreError>> {
        self.done = true;
        self.rx = None;
        Some(Err(e))
    }
}

/// Start a watch. A `start_revision` below the compaction point fails at
/// once with `Compacted`; 0 means "changes after now".
pub(crate) fn start(
    shared: SharedMvcc,
    hub: Arc<WatchHub>,
    req: WatchRequest,
) -> Result<WatchStream, StoreError> {
    // Subscribe first, then read the revision: anything applied after the
    // read arrives live.
    let rx = hub.subscribe().ok_or_else(stopped)?;
    let mvcc = shared.get().ok_or_else(stopped)?;
    let (current, compact) = mvcc
        .read_view(|m| -> Result<_, MvccError> { Ok((m.revision()?, m.compact_revision()?)) })
        .map_err(storage)?;
    drop(mvcc);
    let next = if req.start_revision > 0 {
        if req.start_revision < compact {
            return Err(StoreError::Compacted {
                requested: req.start_revision,
                compact_revision: compact,
            });
        }
        req.start_revision
    } else {
        current + 1
    };
    let watcher = Watcher {
        mvcc: shared,
        hub,
        range: KeyRange::new(&req.key, &req.range_end),
        prev_kv: req.prev_kv,
        next,
        rx: Some(rx),
        catching_up: req.start_revision > 0 && req.start_revision <= current,
        done: false,
    };
    let s = stream::unfold(watcher, |mut w| async move {
        let item = w.step().await?;
        Some((item, w))
    });
    Ok(Box::pin(s))
}

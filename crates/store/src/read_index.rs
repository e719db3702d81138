//! Batching on the leader: concurrent linearizable reads share one
//! leadership check.
//!
//! ```text
//!  get ─────────┐
//!  get ─────────┼─► queue ─► pump: take everything queued ─► get_read_log_id (heartbeat round)
//!  ReadIndex ───┘   (from a        ◄── one index for every request taken ──┘
//!  (a follower's     follower)      requests that queued meanwhile wait for the NEXT round
//!   batch)
//! ```
//!
//! A linearizable read on the leader needs a read index (Raft §6.4): the
//! commit index at a moment after the read arrived, confirmed by a quorum
//! still following this leader (one heartbeat round). Asking openraft once
//! per get costs a round of AppendEntries to every follower per get. Like
//! etcd's `linearizableReadLoop`, a [`ReadIndexBatcher`] runs one round at a
//! time: it takes every request queued so far, asks once, and gives that
//! index to all of them. A request that arrives while a round is in flight
//! is not served by it (the round's index may predate the request), but by
//! the next one, which starts as soon as the current one ends. No timer: a
//! lone read goes out at once.
//!
//! The leader's own gets, the read-index calls of followers (each already
//! one per follower batch, `forwarder.rs`) and lease keep-alives (which
//! need only the leadership check) all go through the one batcher.

use std::time::Duration;

use openraft::Raft;
use tokio::sync::{mpsc, oneshot};

use crate::error::StoreError;
use crate::raft_types::TypeConfig;

/// Requests queued before callers wait to queue (back-pressure).
const QUEUE_DEPTH: usize = 4096;

/// One answer, shared by every request of a round.
type Answer = Result<u64, StoreError>;

/// Asks for one read index: openraft on the leader, or a fake in tests.
pub(crate) trait ReadIndexSource: Send + Sync + 'static {
    /// Confirm leadership and return the index a read must wait for.
    fn read_index(&self) -> impl std::future::Future<Output = Answer> + Send;
}

/// openraft's read index, bounded by `timeout`.
pub(crate) struct RaftReadIndex {
    /// The raft node.
    pub raft: Raft<TypeConfig>,
    /// How long one round may take before every read of it fails (a
    /// retryable [`StoreError::NoLeader`]).
    pub timeout: Duration,
}

impl ReadIndexSource for RaftReadIndex {
    async fn read_index(&self) -> Answer {
        let got = tokio::time::timeout(self.timeout, self.raft.get_read_log_id()).await;
        match got {
            Err(_) => Err(StoreError::NoLeader(format!(
                "read index timed out after {} s (is a quorum of servers up?)",
                self.timeout.as_secs()
            ))),
            Ok(Err(e)) => Err(crate::store::check_is_leader_error(e)),
            Ok(Ok((read, _applied))) => Ok(read.map_or(0, |l| l.index)),
        }
    }
}

/// The queue and pump of the leader's read-index requests.
pub(crate) struct ReadIndexBatcher {
    tx: mpsc::Sender<oneshot::Sender<Answer>>,
}

impl ReadIndexBatcher {
    /// Start the pump over `source`. It ends when the batcher is dropped.
    pub(crate) fn start(source: impl ReadIndexSource) -> ReadIndexBatcher {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(source, rx));
        ReadIndexBatcher { tx }
    }

    /// A read index obtained after this call began.
    pub(crate) async fn read_index(&self) -> Answer {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(reply)
            .await
            .map_err(|_| StoreError::Stopped("the read-index pump stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Stopped("read index dropped by a stopping store".into()))?
    }
}

async fn run(source: impl ReadIndexSource, mut rx: mpsc::Receiver<oneshot::Sender<Answer>>) {
    let mut round = Vec::new();
    while let Some(first) = rx.recv().await {
        // Everything queued now arrived before the round below starts;
        // whatever queues during the round waits for the next one.
        round.push(first);
        while let Ok(w) = rx.try_recv() {
            round.push(w);
        }
        let answer = source.read_index().await;
        for reply in round.drain(..) {
            let _ = reply.send(answer.clone());
        }
    }
}

#[cfg(test)]
#[path = "read_index_test.rs"]
mod tests;

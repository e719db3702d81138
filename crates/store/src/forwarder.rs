//! Batching on a follower: concurrent requests for the leader share one
//! peer call.
//!
//! ```text
//!  write ─┐                      ┌─ Call Write[cmd, cmd, cmd] ─► leader: each cmd into its proposer
//!  write ─┼─► queue ─► pump ─────┤    ◄── [result, result, result] (in order) ──┘
//!  write ─┘   (waits while       └─ (at most MAX_CALLS_IN_FLIGHT calls at once)
//!              calls are in flight)
//!  get ───┐
//!  get ───┴─► queue ─► pump ───── Call ReadIndex ─► leader ◄── one index for every get of the call
//! ```
//!
//! A follower used to send one `Call` per write and per linearizable get,
//! so the leader spent a fifth of its CPU decoding and answering them.
//! Like the [proposer](crate::proposer) above raft, a [`Forwarder`] sends at
//! once while fewer than [`MAX_CALLS_IN_FLIGHT`] calls to the leader are
//! unanswered, and otherwise queues; when a call is answered it sends
//! everything queued (up to [`MAX_BATCH_COMMANDS`] items and
//! [`MAX_BATCH_BYTES`]) as one call. No timer: a lone request goes out at
//! once, and a batch holds only what queued up behind calls in flight.
//!
//! What each caller gets back ([`Forward::answers`]):
//! - Writes keep [`Store::propose`](crate::Store)'s retry rules per command:
//!   a command the leader answered `NoLeader` for, or that was never sent
//!   (the leader was unreachable, or its deadline passed in the queue), is
//!   [`WriteFailure::NotProposed`] and tried again; a call that broke after
//!   it was sent makes every command of it a [`StoreError::Timeout`] (it may
//!   have been applied); a command's own failure (a refused Txn, a value
//!   too large) reaches that command only.
//! - A read index serves only gets queued before its call was sent (the
//!   pump takes a get from the queue, then sends): the index is the
//!   leader's commit index at some moment after every such get arrived,
//!   which is what Raft §6.4 needs for a linearizable read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::StoreError;
use crate::network::{CallError, Peers};
use crate::peer::{PeerReply, PeerRequest};
use crate::proposer::approx_bytes;
use crate::raft_types::{Command, CommandResponse};

/// Calls to the leader sent and not yet answered before requests queue.
/// A queued request waits for a whole answer (a raft commit on the
/// leader), so a follower should queue only under real load: with 2 or 4
/// slots the 5 or 6 clients per follower of a 16-client `skiff bench
/// store` lost a fifth of their writes/s; with 8 they go straight through,
/// while at 256 clients (about 85 per follower) calls still carry about
/// 10 requests, and the servers' CPU per operation measured the same with
/// 2, 4 and 8 slots (issue #3).
const MAX_CALLS_IN_FLIGHT: usize = 8;
/// Most requests in one call.
const MAX_BATCH_COMMANDS: usize = 256;
/// Most payload bytes (keys and values) in one call: a few 1.5 MiB values,
/// far below the peer message limit.
const MAX_BATCH_BYTES: usize = 4 << 20;
/// Requests queued before callers wait to queue (back-pressure).
const QUEUE_DEPTH: usize = 4096;
/// A call waits this much longer than its latest request's deadline, so
/// that the leader's answer (it has its own deadline), not our
/// impatience, says what happened.
const CALL_GRACE: Duration = Duration::from_secs(1);

/// One kind of request a follower forwards in batches.
pub(crate) trait Forward: Send + Sync + 'static {
    /// What one caller queues.
    type Item: Send + 'static;
    /// What one caller gets back.
    type Answer: Send + 'static;
    /// The payload bytes of `item`, for [`MAX_BATCH_BYTES`].
    fn bytes(item: &Self::Item) -> usize;
    /// The one call for a batch of items.
    fn request(items: Vec<Self::Item>) -> PeerRequest;
    /// The call's outcome, split into exactly `n` answers, in the order of
    /// the items.
    fn answers(reply: Result<PeerReply, CallError>, n: usize) -> Vec<Self::Answer>;
    /// The answer for an item whose deadline passed before it was sent.
    fn expired() -> Self::Answer;
}

/// Sends one call to the leader: [`Peers`], or a fake in unit tests.
pub(crate) trait LeaderCall: Clone + Send + Sync + 'static {
    /// Send `req` to the server at `leader` and wait for its answer.
    fn call(
        &self,
        leader: &str,
        req: &PeerRequest,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<PeerReply, CallError>> + Send;
}

impl LeaderCall for Peers {
    async fn call(
        &self,
        leader: &str,
        req: &PeerRequest,
        timeout: Duration,
    ) -> Result<PeerReply, CallError> {
        Peers::call(self, leader, req, timeout).await
    }
}

/// Why one attempt at a write failed.
pub(crate) enum WriteFailure {
    /// The write surely did not commit: safe to try again.
    NotProposed(StoreError),
    /// It may have committed, or cannot succeed: the client's answer.
    Final(StoreError),
}

impl WriteFailure {
    /// `NoLeader` from the proposer or the leader means "not proposed"
    /// (see `Store::propose_local`); everything else is final.
    pub(crate) fn classify(e: StoreError) -> WriteFailure {
        match e {
            e @ StoreError::NoLeader(_) => WriteFailure::NotProposed(e),
            e => WriteFailure::Final(e),
        }
    }
}

/// Forwarded writes: `Call Write(commands)`, answered per command.
pub(crate) struct Writes;

impl Forward for Writes {
    type Item = Command;
    type Answer = Result<CommandResponse, WriteFailure>;

    fn bytes(cmd: &Command) -> usize {
        approx_bytes(cmd)
    }

    fn request(cmds: Vec<Command>) -> PeerRequest {
        PeerRequest::Write(cmds)
    }

    fn answers(reply: Result<PeerReply, CallError>, n: usize) -> Vec<Self::Answer> {
        match reply {
            Ok(PeerReply::Write(results)) if results.len() == n => results
                .into_iter()
                .map(|r| r.map_err(|e| WriteFailure::classify(e.into())))
                .collect(),
            Ok(PeerReply::Failed(e)) => repeat(n, || Err(WriteFailure::classify(e.clone().into()))),
            Ok(other) => {
                let m = format!("unexpected answer to {n} forwarded writes: {other:?}");
                repeat(n, || {
                    Err(WriteFailure::Final(StoreError::Storage(m.clone())))
                })
            }
            Err(e @ CallError::Unreachable(_)) => {
                let m = e.to_string();
                repeat(n, || {
                    Err(WriteFailure::NotProposed(StoreError::NoLeader(m.clone())))
                })
            }
            Err(CallError::Network(m)) => {
                let m = format!(
                    "the connection to the leader failed while the write was in flight \
                     ({m}); it may have been applied"
                );
                repeat(n, || {
                    Err(WriteFailure::Final(StoreError::Timeout(m.clone())))
                })
            }
        }
    }

    fn expired() -> Self::Answer {
        Err(WriteFailure::NotProposed(StoreError::NoLeader(
            "the leader did not answer earlier forwarded writes in time; this one was not sent"
                .into(),
        )))
    }
}

/// Forwarded read-index requests: one `Call ReadIndex` for every get
/// queued before it was sent.
pub(crate) struct ReadIndexes;

impl Forward for ReadIndexes {
    type Item = ();
    type Answer = Result<u64, StoreError>;

    fn bytes(_: &()) -> usize {
        0
    }

    fn request(_: Vec<()>) -> PeerRequest {
        PeerRequest::ReadIndex
    }

    fn answers(reply: Result<PeerReply, CallError>, n: usize) -> Vec<Self::Answer> {
        match reply {
            Ok(PeerReply::ReadIndex(index)) => repeat(n, || Ok(index)),
            Ok(PeerReply::Failed(e)) => repeat(n, || Err(e.clone().into())),
            Ok(other) => {
                let m = format!("unexpected answer to a read index: {other:?}");
                repeat(n, || Err(StoreError::Storage(m.clone())))
            }
            // A read has no effect: every call failure is worth a retry.
            Err(e) => {
                let m = e.to_string();
                repeat(n, || Err(StoreError::NoLeader(m.clone())))
            }
        }
    }

    fn expired() -> Self::Answer {
        Err(StoreError::NoLeader(
            "the leader did not answer earlier read-index calls in time".into(),
        ))
    }
}

fn repeat<T>(n: usize, f: impl FnMut() -> T) -> Vec<T> {
    std::iter::repeat_with(f).take(n).collect()
}

/// A queued request.
struct Waiting<K: Forward> {
    /// The leader's peer URL, as the caller's route found it.
    leader: String,
    item: K::Item,
    /// When the caller gives up; a request not sent by then is answered
    /// [`Forward::expired`].
    deadline: Instant,
    reply: oneshot::Sender<K::Answer>,
}

/// The queue and pump of one kind of forwarded request.
pub(crate) struct Forwarder<K: Forward> {
    tx: mpsc::Sender<Waiting<K>>,
}

impl<K: Forward> Forwarder<K> {
    /// Start the pump, calling the leader through `peers`. It ends when
    /// the forwarder is dropped.
    pub(crate) fn start(peers: impl LeaderCall) -> Forwarder<K> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run::<K, _>(peers, rx));
        Forwarder { tx }
    }

    /// Send `item` to the leader at `leader` (alone or with others) and
    /// wait for its answer; `deadline` bounds the wait for a free call.
    pub(crate) async fn forward(
        &self,
        leader: String,
        item: K::Item,
        deadline: Instant,
    ) -> Result<K::Answer, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Waiting {
                leader,
                item,
                deadline,
                reply,
            })
            .await
            .map_err(|_| StoreError::Stopped("forwarding to the leader closed".into()))?;
        rx.await.map_err(|_| {
            StoreError::Stopped("forwarded request dropped by a stopping store".into())
        })
    }
}

async fn run<K: Forward, C: LeaderCall>(peers: C, mut rx: mpsc::Receiver<Waiting<K>>) {
    let slots = Arc::new(Semaphore::new(MAX_CALLS_IN_FLIGHT));
    let mut queue: VecDeque<Waiting<K>> = VecDeque::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(w) => queue.push_back(w),
                None => return,
            }
        }
        // Waiting for a slot is what lets a batch build up.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        while queue.len() < QUEUE_DEPTH {
            match rx.try_recv() {
                Ok(w) => queue.push_back(w),
                Err(_) => break,
            }
        }
        for w in take_expired(&mut queue, |w| w.deadline, Instant::now()) {
            let _ = w.reply.send(K::expired());
        }
        let batch = next_batch(&mut queue, |w| w.leader.as_str(), |w| K::bytes(&w.item));
        if batch.is_empty() {
            continue;
        }
        let peers = peers.clone();
        tokio::spawn(async move {
            call::<K, C>(&peers, batch).await;
            drop(permit);
        });
    }
}

/// Send `batch` (one leader's) as one call and hand out the answers.
async fn call<K: Forward, C: LeaderCall>(peers: &C, batch: Vec<Waiting<K>>) {
    let Some(first) = batch.first() else {
        return;
    };
    let leader = first.leader.clone();
    let latest = batch
        .iter()
        .map(|w| w.deadline)
        .max()
        .unwrap_or(first.deadline);
    let timeout = latest.saturating_duration_since(Instant::now()) + CALL_GRACE;
    let n = batch.len();
    let (items, replies): (Vec<K::Item>, Vec<_>) =
        batch.into_iter().map(|w| (w.item, w.reply)).unzip();
    let reply = peers.call(&leader, &K::request(items), timeout).await;
    for (reply, answer) in replies.into_iter().zip(K::answers(reply, n)) {
        let _ = reply.send(answer);
    }
}

/// Remove and return the queued requests whose deadline is before `now`:
/// they were never sent.
fn take_expired<T>(
    queue: &mut VecDeque<T>,
    deadline: impl Fn(&T) -> Instant,
    now: Instant,
) -> Vec<T> {
    if queue.iter().all(|w| deadline(w) >= now) {
        return Vec::new();
    }
    let mut expired = Vec::new();
    let mut live = VecDeque::with_capacity(queue.len());
    for w in queue.drain(..) {
        if deadline(&w) < now {
            expired.push(w);
        } else {
            live.push_back(w);
        }
    }
    *queue = live;
    expired
}

/// Take the next call's requests from the front of `queue`: those for the
/// same leader as the first one, in order, up to [`MAX_BATCH_COMMANDS`] and
/// (past the first) [`MAX_BATCH_BYTES`]. Requests for another leader (the
/// lead moved while they queued) stay queued, in order.
fn next_batch<T>(
    queue: &mut VecDeque<T>,
    leader: impl Fn(&T) -> &str,
    bytes: impl Fn(&T) -> usize,
) -> Vec<T> {
    let Some(first) = queue.front() else {
        return Vec::new();
    };
    let to = leader(first).to_string();
    let mut batch = Vec::new();
    let mut rest = VecDeque::new();
    let mut total = 0;
    while let Some(w) = queue.pop_front() {
        let fits = batch.len() < MAX_BATCH_COMMANDS
            && (batch.is_empty() || total + bytes(&w) <= MAX_BATCH_BYTES);
        if leader(&w) != to {
            rest.push_back(w);
        } else if fits {
            total += bytes(&w);
            batch.push(w);
        } else {
            // Full: this one and everything after it wait for the next call.
            rest.push_back(w);
            rest.extend(queue.drain(..));
        }
    }
    *queue = rest;
    batch
}

#[cfg(test)]
#[path = "forwarder_test.rs"]
mod tests;

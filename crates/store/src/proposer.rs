//! Group commit above raft: concurrent writes share one log entry.
//!
//! openraft 0.9 appends one entry per `client_write` and waits for each
//! append's flush before the next, so without help every write costs its own
//! fdatasync. The proposer queues writes and, whenever a submission slot is
//! free, takes everything queued (up to [`MAX_BATCH_COMMANDS`] commands or
//! [`MAX_BATCH_BYTES`]) into one [`Command::Batch`] entry: one log write and
//! one fdatasync for all of them. A lone write goes through as itself, so an
//! idle store adds only a channel hop. Each command keeps its own revision
//! and its own answer (see [`crate::apply`]).

use std::sync::Arc;
use std::time::Instant;

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::Raft;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::StoreError;
use crate::kv::RequestOp;
use crate::raft_types::{Command, CommandResponse, NodeId, TypeConfig};
use crate::write_timings;

/// Most commands in one entry.
const MAX_BATCH_COMMANDS: usize = 256;
/// Most payload bytes (keys and values) in one entry: several 1.5 MiB values
/// but far below the log's record limit.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Entries submitted to raft and not yet answered. More than one keeps the
/// log busy while the previous entry is applied.
const MAX_IN_FLIGHT: usize = 2;
/// Writes waiting for a slot before `propose` itself waits (back-pressure).
const QUEUE_DEPTH: usize = 4096;

type Reply = oneshot::Sender<Result<CommandResponse, StoreError>>;
/// A submitted command's answer, to come.
pub(crate) type Pending = oneshot::Receiver<Result<CommandResponse, StoreError>>;

struct Proposal {
    cmd: Command,
    reply: Reply,
    /// When it was queued (`write_timings.rs`).
    queued: Instant,
}

/// The write path into raft.
pub(crate) struct Proposer {
    tx: mpsc::Sender<Proposal>,
}

impl Proposer {
    /// Start the batching task for `raft`. It ends when the proposer is
    /// dropped.
    pub(crate) fn start(raft: Raft<TypeConfig>) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(run(raft, rx));
        Proposer { tx }
    }

    /// Propose `cmd` and wait until it is committed and applied.
    pub(crate) async fn propose(&self, cmd: Command) -> Result<CommandResponse, StoreError> {
        Proposer::answer(self.submit(cmd).await?).await
    }

    /// Queue `cmd`; [`Proposer::answer`] waits for its result. Queuing
    /// several before waiting lets them share one entry.
    pub(crate) async fn submit(&self, cmd: Command) -> Result<Pending, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Proposal {
                cmd,
                reply,
                queued: Instant::now(),
            })
            .await
            .map_err(|_| StoreError::Stopped("write path closed".into()))?;
        Ok(rx)
    }

    /// The result of a submitted command, once applied.
    pub(crate) async fn answer(pending: Pending) -> Result<CommandResponse, StoreError> {
        pending
            .await
            .map_err(|_| StoreError::Stopped("write dropped by a stopping store".into()))?
    }
}

/// Payload bytes (keys and values) of `cmd`, roughly.
pub(crate) fn approx_bytes(cmd: &Command) -> usize {
    match cmd {
        Command::Put(p) => p.key.len() + p.value.len(),
        Command::DeleteRange(d) => d.key.len() + d.range_end.len(),
        Command::Txn(t) => {
            t.success
                .iter()
                .chain(&t.failure)
                .map(|op| match op {
                    RequestOp::Put(p) => p.key.len() + p.value.len(),
                    RequestOp::Range(r) => r.key.len() + r.range_end.len(),
                    RequestOp::DeleteRange(d) => d.key.len() + d.range_end.len(),
                })
                .sum::<usize>()
                + t.compare.iter().map(|c| c.key.len() + 16).sum::<usize>()
        }
        Command::Compact(_) | Command::LeaseRevoke(_) => 8,
        Command::LeaseGrant { .. } => 16,
        Command::Batch(cmds) => cmds.iter().map(approx_bytes).sum(),
    }
}

async fn run(raft: Raft<TypeConfig>, mut rx: mpsc::Receiver<Proposal>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        // Waiting for a slot is what lets a batch build up.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = approx_bytes(&first.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    bytes += approx_bytes(&p.cmd);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            submit(&raft, batch).await;
            drop(permit);
        });
    }
}

async fn submit(raft: &Raft<TypeConfig>, mut batch: Vec<Proposal>) {
    let started = Instant::now();
    let waited = batch.iter().map(|p| started - p.queued).sum();
    write_timings::queued(batch.len() as u64, waited);
    if batch.len() == 1 {
        if let Some(p) = batch.pop() {
            let result = raft
                .client_write(p.cmd)
                .await
                .map(|r| r.data)
                .map_err(|e| write_error(&e));
            write_timings::raft(started.elapsed());
            let _ = p.reply.send(result);
        }
        return;
    }
    let (cmds, replies): (Vec<Command>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.cmd, p.reply)).unzip();
    let written = raft.client_write(Command::Batch(cmds)).await;
    write_timings::raft(started.elapsed());
    match written {
        Ok(resp) => match resp.data {
            CommandResponse::Batch(answers) if answers.len() == replies.len() => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    let _ = reply.send(Ok(answer));
                }
            }
            other => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Storage(format!(
                        "unexpected answer to a batch: {other:?}"
                    ))));
                }
            }
        },
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(write_error(&e)));
            }
        }
    }
}

/// Translate a raft write error (once per waiting client).
pub(crate) fn write_error(
    e: &RaftError<NodeId, ClientWriteError<NodeId, openraft::BasicNode>>,
) -> StoreError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            StoreError::NoLeader(format!("not the leader (leader: {:?})", f.leader_id))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            StoreError::Storage(c.to_string())
        }
        RaftError::Fatal(Fatal::Stopped) => StoreError::Stopped("raft node stopped".into()),
        RaftError::Fatal(f) => StoreError::Storage(f.to_string()),
    }
}

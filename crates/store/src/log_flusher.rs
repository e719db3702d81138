//! The log's flusher thread: group commit of fdatasync calls.
//!
//! `append` writes its records and queues a [`FlushJob`]; the flusher takes
//! every job queued while it was busy, covers them with one fdatasync per
//! file, and only then reports each to openraft, in order.

use std::fs::File;
use std::io;
use std::sync::{mpsc, Arc};

use openraft::storage::LogFlushed;

use crate::raft_types::TypeConfig;

/// Work for the flusher thread.
pub(crate) enum FlushJob {
    /// fdatasync `file`, then report to openraft.
    Sync {
        file: Arc<File>,
        callback: LogFlushed<TypeConfig>,
    },
    /// fdatasync `file`, then wake the waiter (used to order vote writes
    /// after pending appends).
    Barrier {
        file: Arc<File>,
        done: tokio::sync::oneshot::Sender<io::Result<()>>,
    },
}

/// The outcome of one fdatasync, copyable to every job it covered.
type SyncResult = Result<(), (io::ErrorKind, String)>;

/// The flusher thread: one fdatasync covers every job queued meanwhile.
pub(crate) fn run(rx: mpsc::Receiver<FlushJob>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while let Ok(more) = rx.try_recv() {
            jobs.push(more);
        }
        // Usually all jobs name one file; sync each distinct file once.
        let mut synced: Vec<(Arc<File>, SyncResult)> = Vec::new();
        for job in &jobs {
            let file = match job {
                FlushJob::Sync { file, .. } | FlushJob::Barrier { file, .. } => file,
            };
            if !synced.iter().any(|(f, _)| Arc::ptr_eq(f, file)) {
                let started = std::time::Instant::now();
                let r = file.sync_data().map_err(|e| (e.kind(), e.to_string()));
                crate::write_timings::FSYNC.add(1, started.elapsed());
                synced.push((file.clone(), r));
            }
        }
        for job in jobs {
            let file = match &job {
                FlushJob::Sync { file, .. } | FlushJob::Barrier { file, .. } => file.clone(),
            };
            let result = synced
                .iter()
                .find(|(f, _)| Arc::ptr_eq(f, &file))
                .map(|(_, r)| r.clone())
                .unwrap_or(Ok(()));
            let result = result.map_err(|(kind, msg)| io::Error::new(kind, msg));
            match job {
                FlushJob::Sync { callback, .. } => callback.log_io_completed(result),
                FlushJob::Barrier { done, .. } => {
                    let _ = done.send(result);
                }
            }
        }
    }
}

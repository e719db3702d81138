//! openraft's [`RaftStateMachine`] over the MVCC tree, and snapshots.
//!
//! sled (with the value log beside it, `value_log.rs`) holds the state
//! machine while the store runs, but their files are
//! trusted only after a clean shutdown: [`Store::shutdown`] flushes sled,
//! fsyncs its files and then writes the [`CLEAN_MARK`] file; `open` removes
//! the mark before anything is applied. Found without the mark (a crash,
//! a kill, a power cut), sled's directory and the value log are discarded and the state is
//! rebuilt from `snapshot.bin` ([`restore_from_snapshot`]); openraft then
//! re-applies the log after it. This lets apply write to sled without
//! sled's atomic batches or flushes (each cost two forced IO-buffer writes
//! per entry in sled 0.34): durability is the raft log's job alone.
//!
//! A snapshot therefore has to (1) let the raft log be purged up to it and
//! (2) give a follower the full state. Building one streams the tree into a
//! new snapshot file ([`crate::snapshot_file`]), fsyncs it and replaces
//! `snapshot.bin` by rename; only then does openraft purge the log, so the
//! snapshot plus the log always hold every applied entry. The dump runs in
//! step with apply (so it matches its meta) without a second in-memory copy
//! of the data.
//!
//! [`Store::shutdown`]: crate::Store::shutdown

use std::fs;
use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::dir_lock::DirLock;
use crate::fsutil;
use crate::lessor::Lessor;
use crate::mvcc::{Mvcc, MvccError};
use crate::raft_types::{CommandResponse, Entry, NodeId, TypeConfig};
use crate::snapshot_file::{self, Meta};
use crate::value_log::ValueLog;
use crate::watch::{LiveBatch, WatchHub};
use crate::write_timings;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    BasicNode, LogId, OptionalSend, RaftLogId, StorageError, StorageIOError, StoredMembership,
};

/// Name of the snapshot file in the data directory.
pub(crate) const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The state machine handed to openraft.
pub(crate) struct StateMachine {
    mvcc: Mvcc,
    dir: PathBuf,
    hub: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    auto_compact_retain: i64,
    current: Arc<Mutex<Option<Meta>>>,
    snapshot_seq: u64,
    /// Declared last so it is released after sled (fields drop in order).
    _dir_lock: Arc<DirLock>,
}

/// Where the state machine keeps its files, and the directory lock it holds.
pub(crate) struct SmFiles {
    /// The data directory (for `snapshot.bin`).
    pub data_dir: PathBuf,
    /// The data directory's lock.
    pub lock: Arc<DirLock>,
}

/// Finishes a snapshot whose dump was written in step with apply.
pub(crate) struct SnapshotBuilder {
    dir: PathBuf,
    /// The dump's meta and temporary file, or why dumping failed.
    dumped: Result<(Meta, PathBuf), String>,
    current: Arc<Mutex<Option<Meta>>>,
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(&io::Error::other(e.to_string())).into()
}

/// Flush sled and fsync every file it owns: sled's flush writes its buffers
/// but (on Linux) syncs with `sync_file_range`, which neither flushes file
/// metadata nor the device cache. The value log is fsynced too.
pub(crate) fn flush_durable(db: &sled::Db, sled_dir: &Path, values: &ValueLog) -> io::Result<()> {
    values.sync().map_err(io::Error::other)?;
    db.flush().map_err(io::Error::other)?;
    fsync_tree(sled_dir)
}

fn fsync_tree(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            fsync_tree(&path)?;
        } else {
            fs::File::open(&path)?.sync_all()?;
        }
    }
    fsutil::sync_dir(dir)
}

/// The file whose presence says sled's files were flushed by a clean
/// shutdown and may be opened as they are.
pub(crate) const CLEAN_MARK: &str = "sm-clean";

/// Record that sled was flushed and fsynced by a clean shutdown.
pub(crate) fn mark_clean(dir: &Path) -> io::Result<()> {
    fsutil::write_atomic(&dir.join(CLEAN_MARK), b"")
}

/// Whether the last shutdown was clean; removes the mark (durably) so a
/// crash from now on is seen as one.
pub(crate) fn take_clean_mark(dir: &Path) -> io::Result<bool> {
    match fs::remove_file(dir.join(CLEAN_MARK)) {
        Ok(()) => {
            fsutil::sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Fill an empty state machine from the snapshot file in `dir`, if any
/// (after a crash; without a snapshot the log holds everything).
pub(crate) fn restore_from_snapshot(dir: &Path, mvcc: &Mvcc) -> io::Result<()> {
    let bytes = match fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let (meta, pairs) = snapshot_file::read_all(&bytes)?;
    mvcc.import(pairs).map_err(io::Error::other)?;
    tracing::info!(last_log_id = ?meta.last_log_id, "state machine restored from the snapshot");
    Ok(())
}

/// Read the meta of the snapshot file in `dir`, if any.
pub(crate) fn load_snapshot_meta(dir: &Path) -> io::Result<Option<Meta>> {
    match fs::read(dir.join(SNAPSHOT_FILE)) {
        Ok(data) => Ok(Some(snapshot_file::read_meta(&data)?)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl StateMachine {
    /// Make sled durable and stream it to `tmp`; returns the dump's meta.
    fn dump(&self, tmp: &Path) -> Result<Meta, String> {
        let (last_log_id, last_membership) =
            self.mvcc.applied_state().map_err(|e| e.to_string())?;
        let snapshot_id = match last_log_id {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.snapshot_seq),
            None => format!("0-0-{}", self.snapshot_seq),
        };
        let meta = SnapshotMeta {
            last_log_id,
            last_membership,
            snapshot_id,
        };
        let pairs = self
            .mvcc
            .export()
            .map(|item| item.map_err(io::Error::other));
        snapshot_file::write(tmp, &meta, pairs).map_err(|e| e.to_string())?;
        Ok(meta)
    }

    /// Wrap the MVCC tree of an open sled database. `current` is the meta of the snapshot
    /// file found on disk, if any.
    pub(crate) fn new(
        mvcc: Mvcc,
        files: SmFiles,
        hub: Arc<WatchHub>,
        lessor: Arc<Lessor>,
        auto_compact_retain: i64,
        current: Option<Meta>,
    ) -> StateMachine {
        StateMachine {
            mvcc,
            dir: files.data_dir,
            hub,
            lessor,
            auto_compact_retain,
            current: Arc::new(Mutex::new(current)),
            snapshot_seq: 0,
            _dir_lock: files.lock,
        }
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let (meta, tmp) = std::mem::replace(&mut self.dumped, Err("builder used twice".into()))
            .map_err(sm_err)?;
        let path = self.dir.join(SNAPSHOT_FILE);
        fs::rename(&tmp, &path)
            .and_then(|()| fsutil::sync_dir(&self.dir))
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(meta.clone());
        // openraft only keeps the meta of a snapshot it built; the bytes are
        // read back because the trait hands the data out too.
        let bytes = fs::read(&path).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

/// Remove snapshot dumps left by a crash before their rename.
pub(crate) fn remove_stale_dumps(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(SNAPSHOT_FILE) && name.ends_with(".tmp") {
            fs::remove_file(dir.join(name.as_ref()))?;
        }
    }
    Ok(())
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        self.mvcc.applied_state().map_err(sm_err)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            let started = std::time::Instant::now();
            let applied = self
                .mvcc
                .apply_entry(&entry, self.auto_compact_retain)
                .map_err(|e: MvccError| {
                    StorageIOError::apply(*entry.get_log_id(), &io::Error::other(e.to_string()))
                })?;
            for (revision, events) in applied.events {
                self.hub.publish(LiveBatch { revision, events });
            }
            self.lessor.apply(&applied.lease_changes);
            write_timings::applied(started.elapsed());
            out.push(applied.response);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        // Runs in step with apply, so the dump and its meta agree.
        self.snapshot_seq += 1;
        let tmp = self
            .dir
            .join(format!("{SNAPSHOT_FILE}.{}.tmp", self.snapshot_seq));
        let dumped = self.dump(&tmp).map_err(|e| {
            // build_snapshot reports the failure to openraft.
            tracing::error!(error = %e, "cannot dump the state machine for a snapshot");
            let _ = fs::remove_file(&tmp);
            e
        });
        SnapshotBuilder {
            dir: self.dir.clone(),
            dumped: dumped.map(|meta| (meta, tmp)),
            current: self.current.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = snapshot.into_inner();
        let (_, pairs) =
            snapshot_file::read_all(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        self.mvcc.import(pairs).map_err(sm_err)?;
        fsutil::write_atomic(&self.dir.join(SNAPSHOT_FILE), &bytes)
            .map_err(|e| StorageIOError::write_snapshot(None, &e))?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some(meta.clone());
        tracing::info!(
            last_log_id = ?meta.last_log_id,
            bytes = bytes.len(),
            "installed a snapshot from the leader"
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let meta = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some(meta) = meta else { return Ok(None) };
        let bytes = fs::read(self.dir.join(SNAPSHOT_FILE))
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

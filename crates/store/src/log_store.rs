//! The raft log and vote, in files of our own (not in sled), with fdatasync.
//!
//! Raft's safety rests on two things being on disk before a node answers:
//! the vote (Raft §5.2, "currentTerm, votedFor … updated on stable storage
//! before responding to RPCs") and the log entries it acknowledges (§5.3).
//! sled's `flush()` on Linux uses `sync_file_range`, which does not flush the
//! file's metadata or the drive's cache, so the log and the vote live here:
//!
//! ```text
//! data-dir/raft-log    append-only records: [len u32][crc32 u32][bincode(LogRecord)]
//! data-dir/raft-vote   [crc32 u32][bincode(Vote)], replaced by write-tmp/fsync/rename/fsync-dir
//! ```
//!
//! **Group commit.** `append` writes a whole batch with one `write` and hands
//! the fdatasync to a flusher thread; the flusher takes every request queued
//! while it was busy and covers them with a single fdatasync, then fires their
//! openraft callbacks in order. A write is therefore acknowledged (the
//! callback fires, openraft counts the entry as persisted) only after the
//! bytes are durable.
//!
//! **Recovery.** On open the file is read from the start. A bad record at the
//! end (short header, length past the end, or a checksum mismatch with no
//! valid record after it) is a torn write of an unacknowledged batch: the
//! file is truncated there. A bad record followed by a valid one is real
//! corruption and the directory is refused.
//!
//! **Truncate and purge** are records too (`Truncate{since}`, `Purge{upto}`);
//! an entry whose index is not past the last one also implies a truncation.
//! When purged records make up most of a large file, the live entries are
//! rewritten to a new file that replaces the old one by rename.
//!
//! **Memory.** Only an index (log id, file offset, record size) of the live
//! entries is kept, plus a cache of the most recently appended ones
//! ([`CACHE_BYTES`]), which is what openraft reads back to apply them; older
//! entries are read from the file (`pread`) when a follower needs them.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{LogId, StorageError, StorageIOError, Vote};

use crate::crc32::crc32;
use crate::dir_lock::DirLock;
use crate::fsutil;
use crate::log_flusher::{self, FlushJob};
use crate::log_record::{encode_record, parse_record, LogRecord, LogRecordRef};
use crate::raft_types::{Entry, NodeId, TypeConfig};

/// Name of the log file in the data directory.
pub(crate) const LOG_FILE: &str = "raft-log";
/// Name of the vote file in the data directory.
pub(crate) const VOTE_FILE: &str = "raft-vote";
/// Rewrite the log file when it is at least this large …
const REWRITE_MIN_FILE_BYTES: u64 = 32 << 20;
/// … and live entries make up less than half of it.
const REWRITE_LIVE_FRACTION_DENOMINATOR: u64 = 2;
/// Bytes of recently appended entries kept decoded in memory.
const CACHE_BYTES: u64 = 4 << 20;

/// Why opening the log failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LogOpenError {
    /// Reading or writing a file failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The files are damaged beyond a torn tail.
    #[error("{0}")]
    Corrupt(String),
}

/// Where a live entry's record is in the file.
#[derive(Clone, Copy)]
struct Location {
    offset: u64,
    size: u64,
}

struct LogInner {
    dir: PathBuf,
    /// Read and append handle of the current log file.
    file: Arc<File>,
    file_len: u64,
    /// Every live entry: its log id and record location.
    index: BTreeMap<u64, (LogId<NodeId>, Location)>,
    /// Recently appended entries, decoded.
    cache: BTreeMap<u64, Entry>,
    cache_bytes: u64,
    /// Bytes of the live entries' records.
    live_bytes: u64,
    /// Bytes of entries appended since the log was opened.
    appended_bytes: u64,
    last_purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    flusher: mpsc::Sender<FlushJob>,
    /// Held until openraft drops the log store.
    _dir_lock: Arc<DirLock>,
}

/// openraft's [`RaftLogStorage`] over the `raft-log` and `raft-vote` files.
#[derive(Clone)]
pub(crate) struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

/// A reader of the same log, handed to openraft's replication tasks.
#[derive(Clone)]
pub(crate) struct LogReader {
    inner: Arc<Mutex<LogInner>>,
}

fn lock(inner: &Mutex<LogInner>) -> MutexGuard<'_, LogInner> {
    // A poisoned lock means a panic in the middle of a log operation; the
    // in-memory view is still the last consistent one (every mutation is a
    // single map operation after the file write), so keep going.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(path)
}

impl LogStore {
    /// Open (or create) the log in `dir`, replaying it into memory.
    pub(crate) fn open(dir: &Path, dir_lock: Arc<DirLock>) -> Result<LogStore, LogOpenError> {
        let path = dir.join(LOG_FILE);
        // A leftover from an interrupted rewrite or vote write; the renamed
        // file is the truth.
        let _ = fs::remove_file(dir.join(format!("{LOG_FILE}.tmp")));
        let _ = fs::remove_file(dir.join(format!("{VOTE_FILE}.tmp")));

        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let mut index: BTreeMap<u64, (LogId<NodeId>, Location)> = BTreeMap::new();
        let mut last_purged: Option<LogId<NodeId>> = None;
        let mut pos = 0usize;
        while pos < data.len() {
            let Some((record, size)) = parse_record(&data, pos) else {
                // Torn tail or corruption: torn only if nothing valid follows.
                if (pos + 1..data.len()).any(|p| parse_record(&data, p).is_some()) {
                    return Err(LogOpenError::Corrupt(format!(
                        "{LOG_FILE}: damaged record at byte {pos} followed by valid records"
                    )));
                }
                tracing::warn!(
                    offset = pos,
                    dropped_bytes = data.len() - pos,
                    "raft log has a torn tail (an unacknowledged write); truncating it"
                );
                break;
            };
            match record {
                LogRecord::Entry(e) => {
                    let i = e.log_id.index;
                    if last_purged.is_some_and(|p| i <= p.index) {
                        // Stale: already covered by a purge.
                    } else {
                        let _ = index.split_off(&i);
                        let loc = Location {
                            offset: pos as u64,
                            size: size as u64,
                        };
                        index.insert(i, (e.log_id, loc));
                    }
                }
                LogRecord::Truncate { since } => {
                    let _ = index.split_off(&since);
                }
                LogRecord::Purge { upto } => {
                    if last_purged < Some(upto) {
                        last_purged = Some(upto);
                    }
                    index = index.split_off(&(upto.index + 1));
                }
            }
            pos += size;
        }
        if pos < data.len() {
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(pos as u64)?;
            f.sync_all()?;
        }
        let file = open_append(&path)?;
        if data.is_empty() {
            file.sync_all()?;
            fsutil::sync_dir(dir)?;
        }
        let vote = read_vote_file(&dir.join(VOTE_FILE))?;
        let live_bytes = index.values().map(|(_, l)| l.size).sum();

        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("skiff-log-flusher".into())
            .spawn(move || log_flusher::run(rx))?;

        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file: Arc::new(file),
                file_len: pos as u64,
                index,
                cache: BTreeMap::new(),
                cache_bytes: 0,
                live_bytes,
                appended_bytes: 0,
                last_purged,
                vote,
                flusher: tx,
                _dir_lock: dir_lock,
            })),
        })
    }

    /// Bytes of entries appended since the log was opened.
    pub(crate) fn appended_bytes(&self) -> u64 {
        lock(&self.inner).appended_bytes
    }

    /// True when the log has never held anything (a brand-new node).
    pub(crate) fn is_pristine(&self) -> bool {
        let g = lock(&self.inner);
        g.index.is_empty() && g.last_purged.is_none() && g.vote.is_none()
    }
}

fn read_vote_file(path: &Path) -> Result<Option<Vote<NodeId>>, LogOpenError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let corrupt =
        || LogOpenError::Corrupt(format!("{VOTE_FILE}: checksum mismatch or bad encoding"));
    if data.len() < 4 {
        return Err(corrupt());
    }
    let crc = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    if crc32(&data[4..]) != crc {
        return Err(corrupt());
    }
    bincode::deserialize(&data[4..])
        .map(Some)
        .map_err(|_| corrupt())
}

// openraft's StorageError is what the trait methods return; box nothing.
#[allow(clippy::result_large_err)]
fn read_range<RB: RangeBounds<u64>>(
    g: &LogInner,
    range: RB,
) -> Result<Vec<Entry>, StorageError<NodeId>> {
    let start = match range.start_bound() {
        Bound::Included(&s) => Bound::Included(s),
        Bound::Excluded(&s) => Bound::Excluded(s),
        Bound::Unbounded => Bound::Unbounded,
    };
    let end = match range.end_bound() {
        Bound::Included(&s) => Bound::Included(s),
        Bound::Excluded(&s) => Bound::Excluded(s),
        Bound::Unbounded => Bound::Unbounded,
    };
    let mut out = Vec::new();
    for (i, (_, loc)) in g.index.range((start, end)) {
        match g.cache.get(i) {
            Some(e) => out.push(e.clone()),
            None => out.push(
                g.read_entry(*loc)
                    .map_err(|e| StorageIOError::read_logs(&e))?,
            ),
        }
    }
    Ok(out)
}

impl LogInner {
    /// Read one entry's record back from the file.
    fn read_entry(&self, loc: Location) -> io::Result<Entry> {
        use std::os::unix::fs::FileExt;
        let mut buf = vec![0u8; loc.size as usize];
        self.file.read_exact_at(&mut buf, loc.offset)?;
        match parse_record(&buf, 0) {
            Some((LogRecord::Entry(e), _)) => Ok(e),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{LOG_FILE}: no valid entry at byte {}", loc.offset),
            )),
        }
    }

    /// Forget index, cache and live bytes of entries at `from` and above.
    fn drop_from(&mut self, from: u64) {
        let removed = self.index.split_off(&from);
        self.live_bytes -= removed.values().map(|(_, l)| l.size).sum::<u64>();
        let uncached = self.cache.split_off(&from);
        for i in uncached.keys() {
            if let Some((_, l)) = removed.get(i) {
                self.cache_bytes -= l.size;
            }
        }
    }

    /// Forget index, cache and live bytes of entries up to `upto`, inclusive.
    fn drop_upto(&mut self, upto: u64) {
        let kept = self.index.split_off(&(upto + 1));
        let removed = std::mem::replace(&mut self.index, kept);
        self.live_bytes -= removed.values().map(|(_, l)| l.size).sum::<u64>();
        let kept = self.cache.split_off(&(upto + 1));
        let uncached = std::mem::replace(&mut self.cache, kept);
        for i in uncached.keys() {
            if let Some((_, l)) = removed.get(i) {
                self.cache_bytes -= l.size;
            }
        }
    }

    fn write_bytes(&mut self, buf: &[u8]) -> io::Result<()> {
        (&*self.file).write_all(buf)?;
        self.file_len += buf.len() as u64;
        Ok(())
    }

    /// Replace the file by one holding only the purge point and live entries.
    fn rewrite(&mut self) -> io::Result<()> {
        let path = self.dir.join(LOG_FILE);
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let mut buf = Vec::with_capacity(self.live_bytes as usize + 64);
        if let Some(upto) = self.last_purged {
            encode_record(&LogRecord::Purge { upto }, &mut buf)?;
        }
        // Copy the live records verbatim, noting their new offsets.
        let mut moved = Vec::with_capacity(self.index.len());
        for (i, (_, loc)) in &self.index {
            use std::os::unix::fs::FileExt;
            let start = buf.len();
            buf.resize(start + loc.size as usize, 0);
            self.file.read_exact_at(&mut buf[start..], loc.offset)?;
            moved.push((*i, start as u64));
        }
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(&buf)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &path)?;
        fsutil::sync_dir(&self.dir)?;
        self.file = Arc::new(open_append(&path)?);
        self.file_len = buf.len() as u64;
        for (i, offset) in moved {
            if let Some((_, loc)) = self.index.get_mut(&i) {
                loc.offset = offset;
            }
        }
        tracing::info!(bytes = buf.len(), "rewrote raft log file after purge");
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        read_range(&lock(&self.inner), range)
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        read_range(&lock(&self.inner), range)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let g = lock(&self.inner);
        let last = g
            .index
            .last_key_value()
            .map(|(_, (id, _))| *id)
            .or(g.last_purged);
        Ok(LogState {
            last_purged_log_id: g.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader {
            inner: self.inner.clone(),
        }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        // Order the vote after every append already handed to the flusher,
        // as openraft requires all log I/O to complete in submission order.
        let (file, flusher, dir) = {
            let g = lock(&self.inner);
            (g.file.clone(), g.flusher.clone(), g.dir.clone())
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        flusher
            .send(FlushJob::Barrier { file, done: tx })
            .map_err(|_| StorageIOError::write_vote(&io::Error::other("log flusher stopped")))?;
        rx.await
            .map_err(|_| StorageIOError::write_vote(&io::Error::other("log flusher stopped")))?
            .map_err(|e| StorageIOError::write_vote(&e))?;

        let payload = bincode::serialize(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let mut data = crc32(&payload).to_le_bytes().to_vec();
        data.extend_from_slice(&payload);
        fsutil::write_atomic(&dir.join(VOTE_FILE), &data)
            .map_err(|e| StorageIOError::write_vote(&e))?;
        lock(&self.inner).vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(lock(&self.inner).vote)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut g = lock(&self.inner);
        let mut buf = Vec::new();
        let mut staged = Vec::new();
        for e in entries {
            let size = encode_record(&LogRecordRef::Entry(&e), &mut buf)
                .map_err(|err| StorageIOError::write_log_entry(e.log_id, &err))?;
            staged.push((e, size));
        }
        let mut offset = g.file_len;
        g.write_bytes(&buf)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        g.appended_bytes += buf.len() as u64;
        for (e, size) in staged {
            let i = e.log_id.index;
            // openraft never appends over existing entries without a
            // truncate first, but stay consistent with replay anyway.
            g.drop_from(i);
            g.index.insert(i, (e.log_id, Location { offset, size }));
            g.live_bytes += size;
            g.cache.insert(i, e);
            g.cache_bytes += size;
            offset += size;
        }
        // Keep the cache within budget, dropping the oldest entries first.
        while g.cache_bytes > CACHE_BYTES && g.cache.len() > 1 {
            let Some((i, _)) = g.cache.pop_first() else {
                break;
            };
            let size = g.index.get(&i).map_or(0, |(_, l)| l.size);
            g.cache_bytes -= size;
        }
        let job = FlushJob::Sync {
            file: g.file.clone(),
            callback,
        };
        if let Err(mpsc::SendError(FlushJob::Sync { callback, .. })) = g.flusher.send(job) {
            callback.log_io_completed(Err(io::Error::other("log flusher stopped")));
        }
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut g = lock(&self.inner);
        let mut buf = Vec::new();
        encode_record(
            &LogRecord::Truncate {
                since: log_id.index,
            },
            &mut buf,
        )
        .map_err(|e| StorageIOError::write_logs(&e))?;
        g.write_bytes(&buf)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        g.drop_from(log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let mut g = lock(&self.inner);
        if g.last_purged >= Some(log_id) {
            return Ok(());
        }
        let mut buf = Vec::new();
        encode_record(&LogRecord::Purge { upto: log_id }, &mut buf)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        g.write_bytes(&buf)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        g.last_purged = Some(log_id);
        g.drop_upto(log_id.index);
        if g.file_len >= REWRITE_MIN_FILE_BYTES
            && g.live_bytes * REWRITE_LIVE_FRACTION_DENOMINATOR < g.file_len
        {
            g.rewrite().map_err(|e| StorageIOError::write_logs(&e))?;
        }
        Ok(())
    }
}

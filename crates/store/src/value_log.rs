//! The value log: the state machine's values, in append-only files beside
//! sled (WiscKey's separation of keys from values).
//!
//! A history event in sled holds a [`ValueRef`] (segment, offset, length,
//! CRC) instead of its value whenever the value is longer than
//! [`INLINE_MAX`]. sled then stores and rewrites only small items: it writes
//! a whole leaf again every few changes and splits leaves at a fixed item
//! count, so 1 KiB values cost it about 4.4 KB of disk writes per put
//! (about 1 KB now that they are out of it). Here a value is written once,
//! by one `write` per applied entry.
//!
//! ```text
//! sm-values/
//!   00000001.vlog   sealed segment: values back to back, no headers
//!   00000002.vlog   the head: appended to until SEGMENT_BYTES, then sealed
//! ```
//!
//! **Durability** is sled's, not the raft log's: segments are not fsynced
//! while the store runs. A clean shutdown fsyncs them with sled before it
//! leaves the `sm-clean` mark; without the mark the state machine, this
//! directory included, is rebuilt from the snapshot and the raft log
//! (`state_machine.rs`). A value that does not match its CRC is an error,
//! never silently wrong data.
//!
//! **Space.** Compaction releases the values of the events it deletes
//! ([`ValueLog::release`]); each segment counts its live bytes. A sealed
//! segment with nothing live is deleted; one less than a quarter live has
//! its live values moved to the head and is deleted (`apply.rs`,
//! `collect_garbage`), so the files hold at most about four times the live
//! values plus one segment. The live counts are rebuilt at open from the
//! events in sled, which also checks that every segment they point to exists.
//!
//! **Readers** see a value only through an event already in sled or an
//! entry of the key index, and apply writes the segment before either, so
//! a read never reaches past what was written. Segments are deleted only
//! while the MVCC gate is held exclusively (no reader in the middle of a
//! read through sled); a read at the current revision instead pins the
//! segments' open files ([`ValueLog::pin`]) while it holds the key index,
//! and reads them afterwards without any lock: a deleted segment's file
//! stays readable until its last handle is dropped.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::crc32::crc32;
use crate::fsutil;

/// Values up to this length stay inline in their sled event: a pointer
/// would not be much shorter.
pub(crate) const INLINE_MAX: usize = 64;

/// A head segment is sealed once it reaches this size.
pub(crate) const SEGMENT_BYTES: u64 = 32 << 20;

/// Where a value lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ValueRef {
    /// Segment number (its file name).
    pub segment: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Length in bytes.
    pub len: u32,
    /// CRC-32 of the value.
    pub crc: u32,
}

/// What can go wrong in the value log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ValueLogError {
    /// The file system failed.
    #[error("value log {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A pointer leads to bytes that are not the value it names.
    #[error("value log: damaged value at segment {} offset {} ({why})", at.segment, at.offset)]
    Damaged {
        /// The pointer.
        at: ValueRef,
        /// What is wrong.
        why: &'static str,
    },
}

struct Segment {
    file: Arc<File>,
    /// Bytes in the file (written, not pending).
    len: u64,
    /// Bytes of values still pointed to.
    live: u64,
}

struct Inner {
    segments: BTreeMap<u32, Segment>,
    head: u32,
    /// Appended to the head but not yet written.
    pending: Vec<u8>,
}

/// The value log of one state machine (cheap to clone).
#[derive(Clone)]
pub(crate) struct ValueLog {
    dir: PathBuf,
    /// Size at which the head is sealed ([`SEGMENT_BYTES`] but in tests).
    segment_bytes: u64,
    inner: Arc<Mutex<Inner>>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ValueLogError + '_ {
    move |source| ValueLogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn segment_path(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("{n:08}.vlog"))
}

fn open_segment(dir: &Path, n: u32) -> Result<Segment, ValueLogError> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)
        .map_err(io_err(&path))?;
    let len = file.metadata().map_err(io_err(&path))?.len();
    Ok(Segment {
        file: Arc::new(file),
        len,
        live: 0,
    })
}

/// The segments of a [`ValueLog`] at one moment ([`ValueLog::pin`]).
pub(crate) struct Pinned {
    dir: PathBuf,
    segments: BTreeMap<u32, (Arc<File>, u64)>,
}

impl Pinned {
    /// Read the value at `at` and check it.
    pub(crate) fn read(&self, at: &ValueRef) -> Result<Vec<u8>, ValueLogError> {
        read_checked(&self.dir, self.segments.get(&at.segment), at)
    }
}

/// Read the value at `at` from its segment's file (None: no such segment)
/// of `len` written bytes, and check it.
fn read_checked(
    dir: &Path,
    segment: Option<&(Arc<File>, u64)>,
    at: &ValueRef,
) -> Result<Vec<u8>, ValueLogError> {
    let damaged = |why| ValueLogError::Damaged { at: *at, why };
    let (file, len) = segment.ok_or_else(|| damaged("no such segment"))?;
    if at.offset + u64::from(at.len) > *len {
        return Err(damaged("past the end of the segment"));
    }
    let mut buf = vec![0; at.len as usize];
    file.read_exact_at(&mut buf, at.offset)
        .map_err(io_err(&segment_path(dir, at.segment)))?;
    if crc32(&buf) != at.crc {
        return Err(damaged("checksum mismatch"));
    }
    Ok(buf)
}

impl ValueLog {
    /// Open (creating if needed) the value log in `dir`. Live counts start
    /// at zero: the caller adds what its events point to ([`ValueLog::retain`]).
    pub(crate) fn open(dir: &Path) -> Result<ValueLog, ValueLogError> {
        ValueLog::open_sized(dir, SEGMENT_BYTES)
    }

    /// [`ValueLog::open`] with segments sealed at `segment_bytes`.
    pub(crate) fn open_sized(dir: &Path, segment_bytes: u64) -> Result<ValueLog, ValueLogError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let name = entry.map_err(io_err(dir))?.file_name();
            let name = name.to_string_lossy();
            if let Some(n) = name
                .strip_suffix(".vlog")
                .and_then(|n| n.parse::<u32>().ok())
            {
                segments.insert(n, open_segment(dir, n)?);
            }
        }
        let head = match segments.keys().next_back() {
            Some(n) => *n,
            None => {
                segments.insert(1, open_segment(dir, 1)?);
                1
            }
        };
        Ok(ValueLog {
            dir: dir.to_path_buf(),
            segment_bytes,
            inner: Arc::new(Mutex::new(Inner {
                segments,
                head,
                pending: Vec::new(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append `value` (written by the next [`ValueLog::flush`]) and count
    /// it live.
    pub(crate) fn append(&self, value: &[u8]) -> Result<ValueRef, ValueLogError> {
        let mut inner = self.lock();
        let head_len = inner.segments.get(&inner.head).map_or(0, |s| s.len);
        if head_len + inner.pending.len() as u64 >= self.segment_bytes {
            self.write_pending(&mut inner)?;
            let next = inner.head + 1;
            inner.segments.insert(next, open_segment(&self.dir, next)?);
            inner.head = next;
        }
        let head = inner.head;
        let offset = inner.segments.get(&head).map_or(0, |s| s.len) + inner.pending.len() as u64;
        inner.pending.extend_from_slice(value);
        if let Some(s) = inner.segments.get_mut(&head) {
            s.live += value.len() as u64;
        }
        Ok(ValueRef {
            segment: head,
            offset,
            len: value.len() as u32,
            crc: crc32(value),
        })
    }

    fn write_pending(&self, inner: &mut Inner) -> Result<(), ValueLogError> {
        if inner.pending.is_empty() {
            return Ok(());
        }
        let head = inner.head;
        let path = segment_path(&self.dir, head);
        let pending = std::mem::take(&mut inner.pending);
        let Some(seg) = inner.segments.get_mut(&head) else {
            return Err(io_err(&path)(io::Error::other("head segment is not open")));
        };
        (&*seg.file).write_all(&pending).map_err(io_err(&path))?;
        seg.len += pending.len() as u64;
        // Keep the buffer's capacity for the next entry.
        inner.pending = pending;
        inner.pending.clear();
        Ok(())
    }

    /// Write what was appended since the last flush (one `write`), before
    /// the events pointing to it go to sled.
    pub(crate) fn flush(&self) -> Result<(), ValueLogError> {
        let mut inner = self.lock();
        self.write_pending(&mut inner)
    }

    /// Read the value at `at` and check it.
    pub(crate) fn read(&self, at: &ValueRef) -> Result<Vec<u8>, ValueLogError> {
        let found = {
            let inner = self.lock();
            inner
                .segments
                .get(&at.segment)
                .map(|s| (s.file.clone(), s.len))
        };
        read_checked(&self.dir, found.as_ref(), at)
    }

    /// The segments as they are now, readable through [`Pinned::read`]
    /// even after [`ValueLog::remove_segment`] or [`ValueLog::clear`]
    /// deletes them (an open file outlives its name). A reader pins while
    /// the values it will read are known to exist (under the key index's
    /// lock), then reads without holding any lock.
    pub(crate) fn pin(&self) -> Pinned {
        let inner = self.lock();
        Pinned {
            dir: self.dir.clone(),
            segments: inner
                .segments
                .iter()
                .map(|(n, s)| (*n, (s.file.clone(), s.len)))
                .collect(),
        }
    }

    /// Count the value at `at` live (at open, for each event in sled).
    pub(crate) fn retain(&self, at: &ValueRef) -> Result<(), ValueLogError> {
        let mut inner = self.lock();
        match inner.segments.get_mut(&at.segment) {
            Some(s) if at.offset + u64::from(at.len) <= s.len => {
                s.live += u64::from(at.len);
                Ok(())
            }
            Some(_) => Err(ValueLogError::Damaged {
                at: *at,
                why: "past the end of the segment",
            }),
            None => Err(ValueLogError::Damaged {
                at: *at,
                why: "no such segment",
            }),
        }
    }

    /// The value at `at` is no longer pointed to.
    pub(crate) fn release(&self, at: &ValueRef) {
        let mut inner = self.lock();
        if let Some(s) = inner.segments.get_mut(&at.segment) {
            s.live = s.live.saturating_sub(u64::from(at.len));
        }
    }

    /// Sealed segments that should go: (segment, nothing live in it).
    /// Empty ones first, then at most one that is less than a quarter live.
    pub(crate) fn garbage(&self) -> Vec<(u32, bool)> {
        let inner = self.lock();
        let mut out: Vec<(u32, bool)> = inner
            .segments
            .iter()
            .filter(|(n, s)| **n != inner.head && s.live == 0)
            .map(|(n, _)| (*n, true))
            .collect();
        if let Some((n, _)) = inner
            .segments
            .iter()
            .find(|(n, s)| **n != inner.head && s.live > 0 && s.live * 4 < s.len)
        {
            out.push((*n, false));
        }
        out
    }

    /// Delete segment `n` (nothing may point to it any more).
    pub(crate) fn remove_segment(&self, n: u32) -> Result<(), ValueLogError> {
        let mut inner = self.lock();
        if n == inner.head {
            return Ok(());
        }
        inner.segments.remove(&n);
        let path = segment_path(&self.dir, n);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    /// Delete every segment and start again empty (before importing a
    /// snapshot).
    pub(crate) fn clear(&self) -> Result<(), ValueLogError> {
        let mut inner = self.lock();
        for n in inner.segments.keys() {
            let path = segment_path(&self.dir, *n);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
        }
        inner.segments.clear();
        inner.pending.clear();
        let head = inner.head + 1;
        inner.segments.insert(head, open_segment(&self.dir, head)?);
        inner.head = head;
        Ok(())
    }

    /// Write pending bytes and fsync every segment and the directory (at a
    /// clean shutdown, before the `sm-clean` mark).
    pub(crate) fn sync(&self) -> Result<(), ValueLogError> {
        let mut inner = self.lock();
        self.write_pending(&mut inner)?;
        for (n, s) in &inner.segments {
            s.file
                .sync_data()
                .map_err(io_err(&segment_path(&self.dir, *n)))?;
        }
        fsutil::sync_dir(&self.dir).map_err(io_err(&self.dir))
    }

    /// Bytes in the segment files and bytes still live (for tests).
    #[cfg(test)]
    pub(crate) fn segment_count(&self) -> usize {
        self.lock().segments.len()
    }

    /// Bytes in the segment files and bytes still live (for tests).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> (u64, u64) {
        let inner = self.lock();
        inner
            .segments
            .values()
            .fold((0, 0), |(len, live), s| (len + s.len, live + s.live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let log = ValueLog::open(dir.path()).unwrap();
        let a = log.append(b"first value").unwrap();
        let b = log.append(&[7u8; 5000]).unwrap();
        log.flush().unwrap();
        assert_eq!(log.read(&a).unwrap(), b"first value");
        assert_eq!(log.read(&b).unwrap(), vec![7u8; 5000]);
        assert_eq!(b.offset, 11);

        // A reopened log finds the bytes; live counts come from the caller.
        drop(log);
        let log = ValueLog::open(dir.path()).unwrap();
        assert_eq!(log.usage(), (5011, 0));
        log.retain(&b).unwrap();
        assert_eq!(log.read(&b).unwrap(), vec![7u8; 5000]);

        // A wrong pointer or flipped bytes are errors, not data.
        let mut wrong = b;
        wrong.crc ^= 1;
        assert!(matches!(
            log.read(&wrong),
            Err(ValueLogError::Damaged {
                why: "checksum mismatch",
                ..
            })
        ));
        let past = ValueRef { offset: 4000, ..b };
        assert!(log.read(&past).is_err());
        assert!(log.retain(&past).is_err());
        let elsewhere = ValueRef { segment: 9, ..a };
        assert!(log.read(&elsewhere).is_err());
    }

    #[test]
    fn segments_seal_and_dead_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let log = ValueLog::open(dir.path()).unwrap();
        let big = vec![1u8; 1 << 20];
        let mut refs = Vec::new();
        for _ in 0..(SEGMENT_BYTES >> 20) + 2 {
            refs.push(log.append(&big).unwrap());
        }
        log.flush().unwrap();
        let first = refs[0].segment;
        assert!(refs.last().unwrap().segment > first, "the head was sealed");
        assert!(log.garbage().is_empty(), "everything is live");

        // Release all but one value of the first segment: under a quarter live.
        let in_first: Vec<_> = refs.iter().filter(|r| r.segment == first).collect();
        for r in &in_first[1..] {
            log.release(r);
        }
        assert_eq!(log.garbage(), vec![(first, false)]);
        log.release(in_first[0]);
        assert_eq!(log.garbage(), vec![(first, true)]);
        // A reader that pinned the segments before still reads a deleted
        // one (its open file outlives the name); the log itself does not.
        let pinned = log.pin();
        log.remove_segment(first).unwrap();
        assert!(log.read(in_first[0]).is_err());
        assert_eq!(pinned.read(in_first[0]).unwrap(), big);
        assert!(!segment_path(dir.path(), first).exists());
        let last = refs.last().unwrap();
        assert_eq!(log.read(last).unwrap(), big);

        let pinned = log.pin();
        log.clear().unwrap();
        assert_eq!(log.usage(), (0, 0));
        assert!(log.read(last).is_err());
        assert_eq!(pinned.read(last).unwrap(), big);
    }
}

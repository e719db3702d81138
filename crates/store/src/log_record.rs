//! The raft log's record format.
//!
//! ```text
//! [len: u32 LE][crc32(payload): u32 LE][payload: bincode(LogRecord)]
//! ```
//!
//! The length lets recovery step from record to record; the checksum tells
//! a complete record from a torn or damaged one.

use std::io;

use openraft::LogId;
use serde::{Deserialize, Serialize};

use crate::crc32::crc32;
use crate::raft_types::{Entry, NodeId};

/// Bytes of a record header: payload length and checksum.
pub(crate) const HEADER_BYTES: usize = 8;
/// Largest payload a record may claim; anything larger is garbage. A record
/// holds one entry, at most a batch of about 8 MiB (the proposer's limit).
pub(crate) const MAX_RECORD_BYTES: usize = 64 << 20;

/// One record of the log file.
#[derive(Serialize, Deserialize)]
pub(crate) enum LogRecord {
    /// An appended entry.
    Entry(Entry),
    /// Entries from `since` on were removed (a conflicting suffix, Raft §5.3).
    Truncate { since: u64 },
    /// Entries up to and including `upto` were removed after a snapshot.
    Purge { upto: LogId<NodeId> },
}

/// Borrowing twin of [`LogRecord`] for encoding without cloning entries;
/// variant order must match (bincode encodes the variant index).
#[derive(Serialize)]
pub(crate) enum LogRecordRef<'a> {
    Entry(&'a Entry),
    #[allow(dead_code)] // encoded through LogRecord; kept so indices line up
    Truncate {
        since: u64,
    },
    #[allow(dead_code)]
    Purge {
        upto: LogId<NodeId>,
    },
}

/// Append the record for `record` to `out`; returns its size in bytes.
pub(crate) fn encode_record<T: Serialize>(record: &T, out: &mut Vec<u8>) -> io::Result<u64> {
    let payload = bincode::serialize(record).map_err(io::Error::other)?;
    if payload.len() > MAX_RECORD_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("log record of {} bytes is over the limit", payload.len()),
        ));
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok((HEADER_BYTES + payload.len()) as u64)
}

/// Parse the record at `pos`, if a complete and valid one starts there.
pub(crate) fn parse_record(data: &[u8], pos: usize) -> Option<(LogRecord, usize)> {
    let header = data.get(pos..pos + HEADER_BYTES)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > MAX_RECORD_BYTES {
        return None;
    }
    let payload = data.get(pos + HEADER_BYTES..pos + HEADER_BYTES + len)?;
    if crc32(payload) != crc {
        return None;
    }
    let record = bincode::deserialize(payload).ok()?;
    Some((record, HEADER_BYTES + len))
}

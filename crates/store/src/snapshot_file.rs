//! The snapshot file format, written and checked as a stream so a snapshot
//! never needs a second in-memory copy of the database.
//!
//! ```text
//! "SKIFFSN2"                         magic and format version
//! [len u32][bincode(SnapshotMeta)]   openraft's meta: last log id, membership
//! ([klen u32][key][vlen u32][value])*   every sled pair, in key order, history
//!                                    events with their values inline
//! [0xFFFF_FFFF]                      end of pairs
//! [crc32 u32]                        of every byte before it
//! ```

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use openraft::{BasicNode, SnapshotMeta};

use crate::crc32::Crc32;
use crate::mvcc::Pair;
use crate::raft_types::NodeId;

/// openraft's snapshot meta for this store.
pub(crate) type Meta = SnapshotMeta<NodeId, BasicNode>;

/// Version 2: history events carry a (here always empty) value-log pointer.
const MAGIC: &[u8; 8] = b"SKIFFSN2";
const END_OF_PAIRS: u32 = u32::MAX;

/// A writer that checksums what passes through it.
struct CrcWriter<W: Write> {
    inner: W,
    crc: Crc32,
}

impl<W: Write> CrcWriter<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.inner.write_all(bytes)
    }

    fn put_chunk(&mut self, bytes: &[u8]) -> io::Result<()> {
        let len = u32::try_from(bytes.len())
            .ok()
            .filter(|l| *l != END_OF_PAIRS)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "chunk too large"))?;
        self.put(&len.to_le_bytes())?;
        self.put(bytes)
    }
}

/// Write a snapshot of `meta` and `pairs` to `path` and fsync it.
pub(crate) fn write(
    path: &Path,
    meta: &Meta,
    pairs: impl Iterator<Item = io::Result<Pair>>,
) -> io::Result<()> {
    let file = File::create(path)?;
    let mut w = CrcWriter {
        inner: BufWriter::new(file),
        crc: Crc32::new(),
    };
    w.put(MAGIC)?;
    let meta_bytes = bincode::serialize(meta).map_err(io::Error::other)?;
    w.put_chunk(&meta_bytes)?;
    for pair in pairs {
        let (k, v) = pair?;
        w.put_chunk(&k)?;
        w.put_chunk(&v)?;
    }
    w.put(&END_OF_PAIRS.to_le_bytes())?;
    let crc = w.crc.finish();
    let mut inner = w.inner;
    inner.write_all(&crc.to_le_bytes())?;
    let file = inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("snapshot: {what}"))
}

/// Check the checksum and split off the meta; returns the meta and the
/// offset where the pairs begin.
fn open_checked(data: &[u8]) -> io::Result<(Meta, usize)> {
    if data.len() < MAGIC.len() + 8 || &data[..MAGIC.len()] != MAGIC {
        return Err(invalid("not a Skiff snapshot"));
    }
    let body = data.len() - 4;
    let mut want = [0u8; 4];
    want.copy_from_slice(&data[body..]);
    let mut crc = Crc32::new();
    crc.update(&data[..body]);
    if crc.finish() != u32::from_le_bytes(want) {
        return Err(invalid("checksum mismatch"));
    }
    let mut pos = MAGIC.len();
    let meta_bytes = chunk(data, &mut pos, body)?.ok_or_else(|| invalid("missing meta"))?;
    let meta = bincode::deserialize(meta_bytes).map_err(|_| invalid("bad meta"))?;
    Ok((meta, pos))
}

/// The next length-prefixed chunk, or None at the end marker.
fn chunk<'a>(data: &'a [u8], pos: &mut usize, end: usize) -> io::Result<Option<&'a [u8]>> {
    let header = data
        .get(*pos..*pos + 4)
        .filter(|_| *pos + 4 <= end)
        .ok_or_else(|| invalid("truncated"))?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    *pos += 4;
    if len == END_OF_PAIRS {
        return Ok(None);
    }
    let len = len as usize;
    let bytes = data
        .get(*pos..*pos + len)
        .filter(|_| *pos + len <= end)
        .ok_or_else(|| invalid("truncated"))?;
    *pos += len;
    Ok(Some(bytes))
}

/// The meta of a snapshot, after checking it whole.
pub(crate) fn read_meta(data: &[u8]) -> io::Result<Meta> {
    open_checked(data).map(|(meta, _)| meta)
}

/// The meta and every pair of a snapshot, after checking it whole.
pub(crate) fn read_all(data: &[u8]) -> io::Result<(Meta, Vec<Pair>)> {
    let (meta, mut pos) = open_checked(data)?;
    let end = data.len() - 4;
    let mut pairs = Vec::new();
    while let Some(k) = chunk(data, &mut pos, end)? {
        let v = chunk(data, &mut pos, end)?.ok_or_else(|| invalid("key without value"))?;
        pairs.push((k.to_vec(), v.to_vec()));
    }
    Ok((meta, pairs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_detection() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap");
        let meta = Meta {
            last_log_id: None,
            last_membership: Default::default(),
            snapshot_id: "t-1".into(),
        };
        let pairs: Vec<Pair> = vec![
            (b"a".to_vec(), b"1".to_vec()),
            (b"b".to_vec(), Vec::new()),
            (b"k/x".to_vec(), vec![7; 1000]),
        ];
        write(&path, &meta, pairs.clone().into_iter().map(Ok)).unwrap();
        let data = std::fs::read(&path).unwrap();
        let (got_meta, got) = read_all(&data).unwrap();
        assert_eq!(got_meta, meta);
        assert_eq!(got, pairs);
        assert_eq!(read_meta(&data).unwrap().snapshot_id, "t-1");

        for i in [0, 9, data.len() / 2, data.len() - 1] {
            let mut bad = data.clone();
            bad[i] ^= 1;
            assert!(read_all(&bad).is_err(), "flip at {i} not detected");
        }
        assert!(read_all(&data[..data.len() - 3]).is_err());
    }
}

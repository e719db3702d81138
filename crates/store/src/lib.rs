//! Skiff's store: etcd's revisioned key-value model, replicated by openraft,
//! with its state in sled.
//!
//! # Role
//!
//! Everything the control plane knows lives here, under etcd-style keys
//! (`/registry/pods/NS/NAME`). The API server reads and writes through the
//! [`Kv`] trait (etcd v3's Range, Put, DeleteRange, Txn, Watch, Compact);
//! every committed write gets a [`Revision`], which becomes the object's
//! `resourceVersion`. Leases (etcd's: keys that vanish when their lease is
//! revoked or expires) are the [`Lease`] trait. [`Store`] is the embedded
//! implementation; [`RemoteStore`] implements both over an external etcd
//! cluster (`skiff server --datastore-endpoint`, `remote.rs`), and the
//! behaviour tests run against both. The
//! [`etcd`] module serves the store over etcd's v3 gRPC API
//! ([`serve_etcd_api`]), so `etcdctl` and other etcd clients work against it.
//!
//! ```text
//!  API server ── Arc<dyn Kv> ──► Store
//!                                 │ writes: proposer (group commit) ─► openraft ─► raft-log (fdatasync)
//!                                 │                                       │ committed
//!                                 │                                       ▼
//!                                 │                              state machine: apply ─► sled tree (history, meta, leases)
//!                                 │                                       │ events      + key index (memory)
//!                                 │ watch:  WatchHub (broadcast) ◄────────┘                │
//!                                 │         + history replay from sled ◄──────────────────┘
//!                                 │ reads:  read index (leader: one heartbeat round per batch, read_index.rs; follower: asks the leader), then the key index
//!                                 │ follower: writes/keep-alives forwarded to the leader over the peer port (peer.rs), writes and read indexes batched (forwarder.rs)
//!                                 │ leases: Lessor (leader, in memory: deadlines) ──expired──► LeaseRevoke via raft
//!  etcdctl ── gRPC (etcd/) ───────┘
//!
//!  API server ── Arc<dyn Kv> ──► RemoteStore ── etcd v3 gRPC ──► external etcd   (remote*.rs)
//! ```
//!
//! Files in the data directory:
//!
//! ```text
//! skiff-store.json  marker: format version, cluster id, node id   (marker.rs)
//! skiff-store.lock  flock held while a store uses the directory   (dir_lock.rs)
//! raft-log          append-only, checksummed raft log records     (log_store.rs)
//! raft-vote         the raft vote, replaced atomically            (log_store.rs)
//! sm/               sled: the MVCC state machine                  (keys.rs, mvcc.rs, apply.rs)
//! sm-values/        the state machine's values over 64 bytes      (value_log.rs)
//! snapshot.bin      the last raft snapshot                        (state_machine.rs)
//! sm-clean          present only after a clean shutdown           (state_machine.rs)
//! (leases live in the sled tree: l<id>, a<id><key>                (keys.rs, lease_apply.rs))
//! ```
//!
//! # Contracts
//!
//! - [`Store::open`] creates the directory and a single-node cluster on first
//!   start and returns once this node leads. It refuses, with
//!   [`StoreError::BadDataDir`], a non-empty directory without a valid
//!   marker, a marker of another format or node, and damaged files; it never
//!   starts empty over existing data. A directory of format 3 is migrated
//!   to format 4 as it opens (`migrate.rs`; a crash meanwhile leaves a
//!   directory that opens). A torn log tail is not damage. One
//!   store at a time uses a directory (`skiff-store.lock`); `open` waits up
//!   to 10 s for a previous holder that is still stopping.
//! - [`Store::shutdown`] stops raft, ends watches and flushes sled. Dropping
//!   every handle without it stops the node in the background; nothing
//!   acknowledged is lost either way.
//! - A write returns only after its log entry is on disk (fdatasync) and has
//!   been applied. Reads are linearizable: served after openraft's read-index
//!   check, from the applied state.
//! - Revisions follow etcd: the store starts at 1; each write that changes
//!   something takes the next revision; a Txn's writes share one. Keys carry
//!   `create_revision`, `mod_revision`, `version` and `lease`. Values over
//!   [`MAX_VALUE_BYTES`] (1.5 MiB) are refused.
//! - Range at a past revision works back to the compaction point; below it
//!   fails with [`StoreError::Compacted`], above the current revision with
//!   [`StoreError::FutureRevision`]. Automatic compaction keeps the last
//!   [`StoreConfig::auto_compaction_retain`] revisions.
//! - Watch replays history from `start_revision`, then streams live events:
//!   in order, no gaps, no duplicates, `prev_kv` on request. A slow watcher
//!   catches up from history rather than buffering without bound; its stream
//!   ends with `Compacted` only if that history is gone. Streams end with
//!   [`StoreError::Stopped`] at shutdown.
//! - Apply is deterministic (no clock, no randomness, no local state), so
//!   replicas that apply the same log hold the same data.
//! - Leases follow etcd: a grant stores the lease and its TTL (raised to
//!   [`MIN_LEASE_TTL_SECS`]) without a new revision; a put naming an unknown
//!   lease fails with [`StoreError::LeaseNotFound`]; a revoke deletes the
//!   attached keys at one revision (watchers see Delete events). Expiry is
//!   the leader's decision (`lessor.rs`): every 500 ms it proposes a
//!   `LeaseRevoke` for each lease past its deadline, so apply never reads a
//!   clock. Deadlines live only in the leader's memory; on becoming leader
//!   (and so after every restart) each lease gets its full TTL again, like
//!   etcd's lessor `Promote`. Keep-alive and time-to-live are served by the
//!   leader only.
//!
//! # Durability
//!
//! The raft log and vote are files of our own, not sled trees: sled's
//! `flush()` syncs with `sync_file_range` on Linux, which does not flush
//! metadata or the drive cache, and sled 0.34 has open durability issues.
//! A batch of entries is written with one `write` and made durable with
//! `fdatasync` before openraft's append callback fires; the vote is written
//! to a temporary file, fsynced, renamed, and the directory fsynced. Because
//! openraft 0.9 waits for each append before the next, concurrent writes are
//! grouped above raft: the proposer puts everything queued into one
//! `Command::Batch` entry, one fdatasync for all of them (group commit).
//!
//! sled is the state machine, but not a durable one: apply writes each
//! entry's data, history, revision and `last_applied` as plain sled
//! operations (sled 0.34's atomic batches force two IO-buffer writes and
//! `sync_file_range`s per batch: ~27 KB of disk writes per store write,
//! measured), and sled flushes only when its buffers fill and at a clean
//! shutdown, which then leaves the `sm-clean` mark. `open` takes the mark
//! away; without it (a crash) sled's directory is discarded and rebuilt
//! from `snapshot.bin`, and openraft re-applies the log after it. The log
//! is purged only up to a snapshot that is already fsynced and renamed
//! into place, so snapshot plus log always hold every applied entry.
//! Each value is stored once, in its history event; later events and the
//! in-memory key index point to it (`mvcc.rs`, `key_index.rs`); sled holds
//! no per-key entry besides history (format 4). A value longer than 64 bytes is not in
//! sled at all but in the value log beside it (`value_log.rs`, `sm-values/`:
//! append-only segments, one `write` per applied entry, trusted and
//! rebuilt exactly like sled); the event holds its place and CRC. sled's
//! B-tree rewrites whole leaves as they fill, so keeping values out of it
//! cut the store's disk bytes per write by a third at 1 client and by
//! 43–45% at 16 and 256 (crate `README.md`).
//!
//! `skiff bench store` compares 3 Skiff servers with 3 etcd 3.4 members
//! through the etcd API (writes/s, latency, memory, disk bytes per write);
//! its figures are in the crate's `README.md`.
//!
//! # Caveats (what etcd does that this store does not, yet)
//!
//! - Cluster transport (`network.rs`, `peer.rs`, `store_cluster.rs`):
//!   openraft's AppendEntries/Vote/InstallSnapshot over gRPC
//!   (`proto/skiff/raft.proto`, bincode-encoded openraft messages, one
//!   pooled channel per peer, snapshots in 1 MiB chunks) on the peer port;
//!   every call carries the cluster token, but there is no TLS yet.
//!   Followers forward writes, lease keep-alives and read-index requests to
//!   the leader (`Call`). A write that surely did not commit (no leader
//!   yet, the leader unreachable, a node that had just lost the lead and
//!   so never appended it or truncated it) is tried again at whoever leads
//!   now; a request gives up after 7 s, with `StoreError::NoLeader` if
//!   nothing was proposed, or `StoreError::Timeout` (etcd's "request timed
//!   out") if the write reached a leader that could not commit it, or the
//!   connection broke mid-call: it may still be applied. Membership: `Join` makes a new server a learner
//!   with the next free id, `Promote` makes it a voter once it is within 64
//!   entries of the leader, `Remove` drops one; a server that joins again
//!   from a known address (a wiped data directory) replaces its old member.
//!   Membership and peer URLs live in the raft log; `cluster.json` keeps
//!   the token. Only a single-node store can still be made by `open`
//!   without `cluster` (the default, unchanged).
//! - Lease ids chosen by the store come from a replicated counter (1, 2, …),
//!   not etcd's random ids. A lease lives up to 500 ms past its TTL.
//! - The etcd gRPC API (`etcd/`) serves KV, Watch, Lease and Maintenance's
//!   `Status` only, without TLS or auth (bind it to localhost); nested txns,
//!   range compares and `ignore_value`/`ignore_lease` are refused;
//!   `serializable` reads are served linearizably; `Status` reports version
//!   [`etcd::ETCD_API_VERSION`] (the API spoken, not a Skiff version).
//!   Progress notifications report the store's current revision, which may
//!   run ahead of events still queued for that watch.
//! - Past-revision reads undo history from the latest state: their cost grows
//!   with the number of revisions since the requested one (bounded by
//!   automatic compaction).
//! - Snapshots are a full dump of the sled tree (values read back from the
//!   value log), streamed to `snapshot.bin`
//!   in step with apply, when the log since the last one is as large as it
//!   (at least 64 MiB) or 20,000 entries long (writes pause meanwhile); fine
//!   for edge-sized data sets, slow for very large ones. Sending or
//!   installing one (followers, later) holds it in memory.
//! - History keeps every version of the last 10,000 revisions (the
//!   default), plus each key's newest version below the compaction point
//!   while a later one points to it; it can outweigh the live data several
//!   times. sled's B-tree still writes each history event (without a long
//!   value) several times over (the fragment, then whole-leaf rewrites as
//!   the last leaf fills and splits at 16 items, then segment cleaning).
//! - The value log's space is reclaimed segment by segment (32 MiB): a
//!   sealed segment goes when compaction leaves nothing in it, or has its
//!   live values moved once it is under a quarter live, so it may hold up
//!   to about four times the live values.
//! - Automatic compaction counts revisions, not time, and its setting must be
//!   the same on every node.
//! - A Txn may put the same key twice (etcd refuses duplicate keys in a txn).
//! - The [`Kv`] watch has no progress notifications, filters or fragmenting
//!   (the etcd gRPC layer adds filters and periodic progress notifications).
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod apply;
mod byte_string;
mod crc32;
mod dir_lock;
pub mod error;
pub mod etcd;
pub mod etcd_process;
mod forwarder;
mod fsutil;
mod key_index;
mod keys;
pub mod kv;
mod lease_apply;
mod lessor;
mod log_flusher;
mod log_record;
mod log_store;
mod marker;
mod migrate;
mod mvcc;
mod network;
mod peer;
mod proposer;
mod raft_types;
mod read_index;
mod remote;
mod remote_convert;
mod remote_watch;
mod snapshot_file;
mod snapshot_trigger;
mod state_machine;
mod store;
pub mod test_child;
mod value_log;
mod watch;
mod write_timings;

pub use error::StoreError;
pub use etcd::serve_etcd_api;
pub use kv::*;
pub use lease_apply::{MAX_LEASE_TTL_SECS, MIN_LEASE_TTL_SECS};
pub use mvcc::MAX_VALUE_BYTES;
pub use peer::Member;
pub use remote::RemoteStore;
pub use store::{
    members_via, remove_member_via, ClusterConfig, JoinConfig, Store, StoreConfig, StoreStatus,
    DEFAULT_AUTO_COMPACTION_RETAIN, DEFAULT_CACHE_CAPACITY_BYTES, DEFAULT_SNAPSHOT_LOG_BYTES_MIN,
};

#[cfg(test)]
mod compaction_test;
#[cfg(test)]
mod conformance_test;
#[cfg(test)]
mod log_store_test;
#[cfg(test)]
mod test_commands;

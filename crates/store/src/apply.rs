//! The deterministic apply: one committed raft entry in, one sled batch out.
//!
//! [`Mvcc::apply_entry`] is a function of the tree's contents (the key
//! index it reads, `key_index.rs`, is derived from them), the entry and
//! the auto-compaction setting: no clock, no randomness, no node-local state,
//! so every replica that applies the same log holds the same bytes. Each
//! entry becomes one list of sled writes holding its data, its history
//! events, the new revision and the entry's log id, written while no reader
//! looks (a compaction in the entry adds a second list). sled is not read
//! back after a crash (the state machine is rebuilt from the snapshot and
//! the log, `state_machine.rs`), so they need not be atomic on disk.
//!
//! **Revisions** (etcd's `mvcc` package): the store starts at revision 1;
//! every command that changes at least one key takes the next revision,
//! shared by all its changes (a Txn's writes are one revision, its events
//! numbered by a sub-index). A delete that matches nothing, a Txn whose branch
//! only reads, a refused command and a compaction leave the revision alone.
//!
//! **Batches.** The store groups concurrent proposals into one
//! [`Command::Batch`] entry (group commit: one log write and one fdatasync
//! for many clients). Its commands are applied in order, each with its own
//! revision and its own answer, exactly as if they were separate entries.
//! An [`Overlay`] carries the changes of earlier commands of the entry so
//! later ones read them.

use std::collections::HashMap;

use openraft::{EntryPayload, StoredMembership};

use crate::key_index::Latest;
use crate::keys::{self, KeyRange};
use crate::kv::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, EventType,
    KeyValue, LeaseRevokeResponse, PutRequest, PutResponse, RequestOp, ResponseOp, Revision,
    TxnRequest, TxnResponse,
};
use crate::lease_apply::{reattach, LeaseChange};
use crate::mvcc::{
    check_read_revision, check_value_size, decode, encode, history_events, respond, HistoryEvent,
    Mvcc, MvccError, Overlay, StoredEvent,
};
use crate::raft_types::{ApplyError, Command, CommandResponse, Entry};
use crate::value_log::ValueRef;

/// The result of applying one raft entry.
pub(crate) struct Applied {
    /// The answer for the client.
    pub response: CommandResponse,
    /// The events of each new revision, in order, for watchers.
    pub events: Vec<(Revision, Vec<HistoryEvent>)>,
    /// Leases granted or revoked, for the leader's lessor.
    pub lease_changes: Vec<LeaseChange>,
}

/// The revision window while an entry is applied.
struct Window {
    /// The latest revision, including commands already applied in the entry.
    current: Revision,
    /// The compaction point, likewise.
    compact: Revision,
}

impl Mvcc {
    /// Apply one committed raft entry (see the module doc for the rules).
    pub(crate) fn apply_entry(
        &self,
        entry: &Entry,
        auto_compact_retain: i64,
    ) -> Result<Applied, MvccError> {
        let start_compact = self.compact_revision()?;
        let mut w = Window {
            current: self.revision()?,
            compact: start_compact,
        };
        let start_rev = w.current;
        let mut batch = crate::mvcc::Writes::default();
        let mut overlay = Overlay::default();

        let response = match &entry.payload {
            EntryPayload::Blank => CommandResponse::None,
            EntryPayload::Membership(m) => {
                let stored = StoredMembership::new(Some(entry.log_id), m.clone());
                batch.insert(keys::META_MEMBERSHIP, encode("membership", &stored)?);
                CommandResponse::None
            }
            EntryPayload::Normal(Command::Batch(cmds)) => {
                let mut out = Vec::with_capacity(cmds.len());
                for cmd in cmds {
                    out.push(self.apply_command(cmd, &mut w, &mut overlay, auto_compact_retain)?);
                }
                CommandResponse::Batch(out)
            }
            EntryPayload::Normal(cmd) => {
                self.apply_command(cmd, &mut w, &mut overlay, auto_compact_retain)?
            }
        };

        // History events (the values); the key index learns where each
        // changed key's latest event is in the same step as they are
        // written. A compaction made in this same entry runs afterwards,
        // over the tree, by the one rule (`compact_history`).
        let mut latest: HashMap<&[u8], Latest> = HashMap::new();
        for (ev, (at, prev_at)) in overlay.events.iter().zip(&overlay.event_keys) {
            let stored = StoredEvent::new(ev.kind, &ev.kv, prev_at.clone(), &self.values)?;
            if ev.kind == EventType::Put {
                latest.insert(&ev.kv.key, Latest::of_event(at, &stored));
            }
            batch.insert(at.as_slice(), encode("history event", &stored)?);
        }
        let mut index_changes = Vec::with_capacity(overlay.kvs.len());
        for (k, v) in &overlay.kvs {
            match (v, latest.remove(k.as_slice())) {
                (Some(_), Some(l)) => index_changes.push((k, Some(l))),
                (Some(_), None) => return Err(MvccError::MissingEvent(k.clone())),
                (None, _) => index_changes.push((k, None)),
            }
        }
        let mut events: Vec<(Revision, Vec<HistoryEvent>)> = Vec::new();
        for ev in overlay.events {
            let rev = ev.revision();
            match events.last_mut() {
                Some((r, evs)) if *r == rev => evs.push(ev),
                _ => events.push((rev, vec![ev])),
            }
        }
        let mut lease_changes = Vec::with_capacity(overlay.leases.len());
        for (id, lease) in &overlay.leases {
            match lease {
                Some(l) => {
                    batch.insert(keys::lease_key(*id), encode("lease", l)?);
                    lease_changes.push(LeaseChange::Granted(*id, l.ttl));
                }
                None => {
                    batch.remove(keys::lease_key(*id));
                    lease_changes.push(LeaseChange::Revoked(*id));
                }
            }
        }
        for ((id, key), attached) in &overlay.attach {
            if *attached {
                batch.insert(keys::attach_key(*id, key), Vec::new());
            } else {
                batch.remove(keys::attach_key(*id, key));
            }
        }
        if let Some(next) = overlay.lease_next {
            batch.insert(keys::META_LEASE_NEXT, encode("lease id", &next)?);
        }
        if w.current != start_rev {
            batch.insert(keys::META_REVISION, encode("revision", &w.current)?);
        }
        batch.insert(keys::META_LAST_APPLIED, encode("log id", &entry.log_id)?);
        self.write_batch(batch, |index| {
            for (k, l) in index_changes {
                match l {
                    Some(l) => index.set(k, l),
                    None => index.remove(k),
                }
            }
            index.revision = w.current;
        })?;
        if w.compact > start_compact {
            self.compact_history(start_compact, w.compact)?;
            self.collect_garbage()?;
        }
        Ok(Applied {
            response,
            events,
            lease_changes,
        })
    }

    /// Move the compaction point from `from` to `to` (the rule is in
    /// `mvcc.rs`'s doc): of the events in `[from, to)`, keep each key's
    /// newest if it is a Put and delete the rest. Below `from` only versions
    /// kept by earlier compactions remain; one of them goes now if its key
    /// has an event in the window, found as the `prev_at` of that event. So
    /// the work is the window's, not the whole history's.
    ///
    /// The values of the deleted events are released in the value log.
    fn compact_history(&self, from: Revision, to: Revision) -> Result<(), MvccError> {
        let mut writes = crate::mvcc::Writes::default();
        let mut released = Vec::new();
        // Per key: its newest event in the window, whether a delete, and
        // where its value is.
        type Newest = (sled::IVec, EventType, Option<ValueRef>);
        let mut newest: std::collections::HashMap<Vec<u8>, Newest> = Default::default();
        let floor = keys::history_key(from, 0);
        for item in self.tree.range(floor.clone()..keys::history_key(to, 0)) {
            let (at, v) = item?;
            let ev: StoredEvent = decode("history event", &v)?;
            if let Some(prev) = ev.prev_at.as_ref().filter(|p| **p < floor) {
                released.extend(self.event_at(prev)?.logged);
                writes.remove(prev.as_slice());
            }
            if let Some((older, _, logged)) = newest.insert(ev.kv.key, (at, ev.kind, ev.logged)) {
                released.extend(logged);
                writes.remove(older);
            }
        }
        for (at, kind, logged) in newest.into_values() {
            if kind == EventType::Delete {
                released.extend(logged);
                writes.remove(at);
            }
        }
        writes.insert(keys::META_COMPACT, encode("revision", &to)?);
        // Compaction keeps each live key's latest event: the index stays.
        self.write_batch(writes, |_| {})?;
        for at in &released {
            self.values.release(at);
        }
        Ok(())
    }

    /// Delete the value-log segments compaction emptied, and move the live
    /// values of one that is less than a quarter live to the head first
    /// (rewriting the events that point to them). Runs in apply, so nothing
    /// else writes meanwhile; deletions wait until no reader is mid-read.
    fn collect_garbage(&self) -> Result<(), MvccError> {
        for (segment, empty) in self.values.garbage() {
            if !empty {
                let mut writes = crate::mvcc::Writes::default();
                let mut moves = Vec::new();
                for item in history_events(&self.tree) {
                    let (at, ev) = item?;
                    if let Some(old) = ev.logged.filter(|l| l.segment == segment) {
                        let value = self.values.read(&old)?;
                        let to = self.values.append(&value)?;
                        moves.push((ev.kv.key.clone(), at.clone(), to));
                        let moved = StoredEvent {
                            logged: Some(to),
                            ..ev
                        };
                        writes.insert(at, encode("history event", &moved)?);
                    }
                }
                self.write_batch(writes, |index| {
                    for (key, at, to) in moves {
                        index.value_moved(&key, &at, to);
                    }
                })?;
                tracing::debug!(
                    segment,
                    "value log: moved the live values of a sparse segment"
                );
            }
            self.exclusive(|m| m.values.remove_segment(segment))?;
        }
        Ok(())
    }

    /// Apply one command inside an entry. Refusals become the command's
    /// answer; only storage errors escape.
    fn apply_command(
        &self,
        cmd: &Command,
        w: &mut Window,
        overlay: &mut Overlay,
        auto_compact_retain: i64,
    ) -> Result<CommandResponse, MvccError> {
        let rev = w.current + 1;
        let events_before = overlay.events.len();
        let mut response = match self.execute(cmd, rev, w, overlay) {
            Ok(r) => r,
            // Every refusal is found before the overlay is touched.
            Err(MvccError::Refused(e)) => return Ok(CommandResponse::Failed(e)),
            Err(e) => return Err(e),
        };
        if overlay.events.len() > events_before {
            w.current = rev;
            // Automatic compaction, a pure function of the revision: keep
            // the last `auto_compact_retain` revisions, in steps of a tenth
            // so deletes are batched.
            if auto_compact_retain > 0 {
                let step = (auto_compact_retain / 10).max(1);
                if w.current - w.compact >= auto_compact_retain + step {
                    w.compact = w.current - auto_compact_retain;
                }
            }
        }
        set_revision(&mut response, w.current);
        Ok(response)
    }

    fn execute(
        &self,
        cmd: &Command,
        rev: Revision,
        w: &mut Window,
        overlay: &mut Overlay,
    ) -> Result<CommandResponse, MvccError> {
        match cmd {
            Command::Put(req) => Ok(CommandResponse::Put(self.put(req, rev, overlay)?)),
            Command::DeleteRange(req) => Ok(CommandResponse::DeleteRange(
                self.delete_range(req, rev, w, overlay)?,
            )),
            Command::Txn(req) => Ok(CommandResponse::Txn(self.txn(req, rev, w, overlay)?)),
            Command::Compact(to) => {
                // etcd: compacting at or below the current compaction point
                // is ErrCompacted, beyond the current revision ErrFutureRev.
                if *to <= w.compact {
                    return Err(ApplyError::Compacted {
                        requested: *to,
                        compact_revision: w.compact,
                    }
                    .into());
                }
                if *to > w.current {
                    return Err(ApplyError::FutureRevision {
                        requested: *to,
                        current: w.current,
                    }
                    .into());
                }
                w.compact = *to;
                Ok(CommandResponse::Compacted(w.current))
            }
            Command::LeaseGrant { id, ttl } => Ok(CommandResponse::LeaseGrant(
                self.apply_lease_grant(*id, *ttl, w.current, overlay)?,
            )),
            Command::LeaseRevoke(id) => {
                if self.lease_with(overlay, *id)?.is_none() {
                    return Err(ApplyError::LeaseNotFound(*id).into());
                }
                for key in self.attached_keys(overlay, *id)? {
                    let del = DeleteRangeRequest {
                        key,
                        ..Default::default()
                    };
                    self.delete_range(&del, rev, w, overlay)?;
                }
                overlay.leases.insert(*id, None);
                Ok(CommandResponse::LeaseRevoke(LeaseRevokeResponse {
                    revision: rev,
                }))
            }
            Command::Batch(_) => {
                Err(ApplyError::InvalidRequest("a batch cannot be nested in a batch".into()).into())
            }
        }
    }

    fn put(
        &self,
        req: &PutRequest,
        rev: Revision,
        overlay: &mut Overlay,
    ) -> Result<PutResponse, MvccError> {
        check_value_size(&req.value)?;
        self.check_lease(overlay, req.lease)?;
        let (prev, prev_at) = self.latest_with(overlay, &req.key)?.unzip();
        reattach(
            overlay,
            &req.key,
            prev.as_ref().map_or(0, |p| p.lease),
            req.lease,
        );
        let kv = KeyValue {
            key: req.key.clone(),
            value: req.value.clone(),
            create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(0, |p| p.version) + 1,
            lease: req.lease,
        };
        overlay.push_event(
            HistoryEvent {
                kind: EventType::Put,
                kv,
                prev_kv: prev.clone(),
            },
            prev_at,
        );
        Ok(PutResponse {
            revision: rev,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn delete_range(
        &self,
        req: &DeleteRangeRequest,
        rev: Revision,
        w: &Window,
        overlay: &mut Overlay,
    ) -> Result<DeleteRangeResponse, MvccError> {
        let range = KeyRange::new(&req.key, &req.range_end);
        let live = self.materialize(&range, w.current, overlay)?;
        let mut prev_kvs = Vec::new();
        let deleted = live.len() as i64;
        for (key, prev) in live {
            reattach(overlay, &key, prev.lease, 0);
            let prev_at = self.latest_with(overlay, &key)?.map(|(_, at)| at);
            overlay.push_event(
                HistoryEvent {
                    kind: EventType::Delete,
                    kv: KeyValue {
                        key,
                        value: Vec::new(),
                        create_revision: 0,
                        mod_revision: rev,
                        version: 0,
                        lease: 0,
                    },
                    prev_kv: Some(prev.clone()),
                },
                prev_at,
            );
            if req.prev_kv {
                prev_kvs.push(prev);
            }
        }
        Ok(DeleteRangeResponse {
            revision: rev,
            deleted,
            prev_kvs,
        })
    }

    fn txn(
        &self,
        req: &TxnRequest,
        rev: Revision,
        w: &Window,
        overlay: &mut Overlay,
    ) -> Result<TxnResponse, MvccError> {
        let mut succeeded = true;
        for c in &req.compare {
            // Only a value compare needs the value (maybe a value-log read).
            let kv = match c.target {
                CompareTarget::Value(_) => self.get_with(overlay, &c.key)?,
                _ => self.meta_with(overlay, &c.key)?,
            };
            if !compare_holds(c, kv.as_ref()) {
                succeeded = false;
                break;
            }
        }
        let branch = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        // Validate first, so a refusal leaves nothing half-done.
        for op in branch {
            match op {
                RequestOp::Range(r) => check_read_revision(r.revision, w.current, w.compact)?,
                RequestOp::Put(p) => {
                    check_value_size(&p.value)?;
                    self.check_lease(overlay, p.lease)?;
                }
                RequestOp::DeleteRange(_) => {}
            }
        }
        let mut responses = Vec::with_capacity(branch.len());
        for op in branch {
            responses.push(match op {
                RequestOp::Range(r) => {
                    // Reads see the txn's own earlier writes (etcd's txn
                    // read view); a past revision sees history.
                    let range = KeyRange::new(&r.key, &r.range_end);
                    let at = if r.revision <= 0 { rev } else { r.revision };
                    let map = self.materialize(&range, at, overlay)?;
                    ResponseOp::Range(respond(map, r, w.current))
                }
                RequestOp::Put(p) => ResponseOp::Put(self.put(p, rev, overlay)?),
                RequestOp::DeleteRange(d) => {
                    ResponseOp::DeleteRange(self.delete_range(d, rev, w, overlay)?)
                }
            });
        }
        Ok(TxnResponse {
            revision: rev,
            succeeded,
            responses,
        })
    }
}

/// etcd's compare: the key's field RESULT the target. A missing key has
/// version, create_revision, mod_revision and lease 0, and never matches a
/// value compare (etcd `applyCompare`).
fn compare_holds(c: &Compare, kv: Option<&KeyValue>) -> bool {
    use std::cmp::Ordering;
    let ord: Ordering = match &c.target {
        CompareTarget::Version(t) => kv.map_or(0, |k| k.version).cmp(t),
        CompareTarget::CreateRevision(t) => kv.map_or(0, |k| k.create_revision).cmp(t),
        CompareTarget::ModRevision(t) => kv.map_or(0, |k| k.mod_revision).cmp(t),
        CompareTarget::Lease(t) => kv.map_or(0, |k| k.lease).cmp(t),
        CompareTarget::Value(t) => match kv {
            Some(k) => k.value.as_slice().cmp(t.as_slice()),
            None => return false,
        },
    };
    match c.result {
        CompareResult::Equal => ord == Ordering::Equal,
        CompareResult::NotEqual => ord != Ordering::Equal,
        CompareResult::Greater => ord == Ordering::Greater,
        CompareResult::Less => ord == Ordering::Less,
    }
}

/// Stamp the command's final revision on its answer (a write that changed
/// nothing reports the unchanged current revision, as etcd's header does).
fn set_revision(resp: &mut CommandResponse, rev: Revision) {
    match resp {
        CommandResponse::Put(r) => r.revision = rev,
        CommandResponse::DeleteRange(r) => r.revision = rev,
        CommandResponse::Txn(t) => {
            t.revision = rev;
            for op in &mut t.responses {
                match op {
                    ResponseOp::Range(r) => r.revision = rev,
                    ResponseOp::Put(r) => r.revision = rev,
                    ResponseOp::DeleteRange(r) => r.revision = rev,
                }
            }
        }
        CommandResponse::LeaseGrant(r) => r.revision = rev,
        CommandResponse::LeaseRevoke(r) => r.revision = rev,
        CommandResponse::Compacted(_)
        | CommandResponse::Failed(_)
        | CommandResponse::None
        | CommandResponse::Batch(_) => {}
    }
}

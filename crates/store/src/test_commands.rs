//! Raft entries and commands for the state machine's unit tests.

use openraft::{CommittedLeaderId, EntryPayload, LogId};

use crate::kv::{DeleteRangeRequest, PutRequest};
use crate::raft_types::{Command, Entry};

/// `cmd` as the log entry at `index` (term 1, leader 1).
pub(crate) fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

/// A Put of `value` at `key`.
pub(crate) fn put(key: &str, value: &str) -> Command {
    Command::Put(PutRequest {
        key: key.into(),
        value: value.into(),
        ..Default::default()
    })
}

/// A delete of the single key `key`.
pub(crate) fn delete(key: &str) -> Command {
    Command::DeleteRange(DeleteRangeRequest {
        key: key.into(),
        ..Default::default()
    })
}

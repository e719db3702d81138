//! openraft's storage conformance suite, run on the real log store and
//! state machine (files, fdatasync and sled in a temporary directory).

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

use crate::log_store::LogStore;
use crate::mvcc::Mvcc;
use crate::raft_types::{NodeId, TypeConfig};
use crate::state_machine::{SmFiles, StateMachine};
use crate::watch::WatchHub;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let lock = crate::dir_lock::acquire(dir.path(), std::time::Duration::ZERO)
            .await
            .expect("lock");
        let log = LogStore::open(dir.path(), lock.clone()).expect("open log");
        let sled_dir = dir.path().join("sm");
        let db = sled::Config::new()
            .path(&sled_dir)
            .cache_capacity(1 << 20)
            .open()
            .expect("open sled");
        let tree = db.open_tree("mvcc").expect("open tree");
        let sm = StateMachine::new(
            Mvcc::open(
                tree,
                crate::value_log::ValueLog::open(&dir.path().join("sm-values")).expect("values"),
            )
            .expect("open mvcc"),
            SmFiles {
                data_dir: dir.path().to_path_buf(),
                lock,
            },
            Arc::new(WatchHub::new()),
            Arc::default(),
            0,
            None,
        );
        Ok((dir, log, sm))
    }
}

#[test]
#[allow(clippy::result_large_err)] // openraft's own error type
fn openraft_storage_suite() -> Result<(), StorageError<NodeId>> {
    Suite::test_all(Builder)
}

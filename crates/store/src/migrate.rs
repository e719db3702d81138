//! Opening a data directory written in an older on-disk format.
//!
//! **Format 3 → 4** (`marker.rs`). Format 3 kept, for each live key, a sled
//! entry `k<key> -> h<rev><sub>` saying where its latest event is. Only
//! readers used it (apply had the key index already), and sled rewrote a
//! leaf for it on every put. Format 4 reads the key index instead
//! (`key_index.rs`), which is rebuilt from history at open in either
//! format, so the migration only deletes the `k` entries and then records
//! format 4 in the marker.
//!
//! It needs no crash protocol of its own: [`crate::Store::open`] has
//! already taken away the clean-shutdown mark before it runs
//! (`state_machine.rs`), so after a crash at any point sled's files are
//! discarded at the next open and rebuilt from the snapshot (whose `k`
//! pairs import skips) and the raft log (same records in both formats).
//! The marker is replaced atomically: it says 3, and the next open
//! migrates again (what is left of it), or 4.

use crate::keys;

/// Delete format 3's `k<key>` entries from the state machine's tree;
/// returns how many there were.
pub(crate) fn format3_to_4(tree: &sled::Tree) -> Result<usize, sled::Error> {
    let mut removed = 0;
    // sled's iterators see a consistent order while the tree changes
    // under them; removing the entry just returned is allowed.
    for item in tree.scan_prefix([keys::FORMAT3_KV_PREFIX]) {
        let (k, _) = item?;
        tree.remove(k)?;
        removed += 1;
        #[cfg(test)]
        tests::pause_point(tree, removed);
    }
    Ok(removed)
}

#[cfg(test)]
#[path = "migrate_test.rs"]
mod tests;

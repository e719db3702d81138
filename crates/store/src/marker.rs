//! The data directory's marker file, `skiff-store.json`.
//!
//! The marker says "this directory is a Skiff store, in this format, of this
//! cluster, for this node". [`check_or_create`] refuses any directory that
//! holds files but no valid marker: starting an empty store over someone
//! else's data (or over a damaged store) would silently lose it.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::fsutil;

/// File name of the marker inside the data directory.
pub(crate) const MARKER_FILE: &str = "skiff-store.json";

/// The on-disk format this code reads and writes. Bump it on any change to
/// the log record, vote, snapshot or sled key layout.
///
/// 2: history events point to the previous version instead of holding a
/// copy, and live keys point to their event (`keys.rs`).
/// 3: values longer than 64 bytes live in the value log (`sm-values/`,
/// `value_log.rs`); history events carry a pointer; snapshots `SKIFFSN2`.
/// 4: no `k<key>` entries in sled (the in-memory key index replaces them);
/// snapshots carry none. A format-3 directory is migrated when opened
/// (`migrate.rs`).
pub(crate) const FORMAT_VERSION: u32 = 4;

/// The oldest format [`check_or_create`] accepts; older ones than
/// [`FORMAT_VERSION`] are migrated by the store's `open` (`migrate.rs`).
pub(crate) const OLDEST_MIGRATED_FORMAT: u32 = 3;

/// Contents of the marker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Marker {
    /// Always "skiff-store", so a stray JSON file is not taken for a marker.
    pub kind: String,
    /// [`FORMAT_VERSION`] of the code that created the directory.
    pub format_version: u32,
    /// Random id chosen when the cluster was created.
    pub cluster_id: String,
    /// The raft node id this directory belongs to.
    pub node_id: u64,
}

const KIND: &str = "skiff-store";

fn bad(dir: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::BadDataDir {
        path: dir.display().to_string(),
        reason: reason.into(),
    }
}

/// The node id recorded in `dir`'s marker, if the directory has one (it is
/// validated fully by [`check_or_create`] later).
pub(crate) fn recorded_node_id(dir: &Path) -> Option<u64> {
    let text = fs::read(dir.join(MARKER_FILE)).ok()?;
    serde_json::from_slice::<Marker>(&text)
        .ok()
        .map(|m| m.node_id)
}

/// Validate the marker of `dir`, or create the directory and its marker when
/// the directory is absent or empty. Returns the marker and whether it was
/// just created (a fresh store). A new marker takes `cluster_id` (the
/// cluster a joining server was admitted to) or a new random id.
pub(crate) fn check_or_create(
    dir: &Path,
    node_id: u64,
    cluster_id: Option<&str>,
) -> Result<(Marker, bool), StoreError> {
    let io_err = |e: io::Error| bad(dir, format!("cannot access: {e}"));
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err)?;
    }
    if !dir.is_dir() {
        return Err(bad(dir, "not a directory"));
    }
    let marker_path = dir.join(MARKER_FILE);
    if marker_path.exists() {
        let text = fs::read(&marker_path).map_err(io_err)?;
        let marker: Marker = serde_json::from_slice(&text)
            .map_err(|e| bad(dir, format!("{MARKER_FILE} is not valid: {e}")))?;
        if marker.kind != KIND {
            return Err(bad(
                dir,
                format!("{MARKER_FILE} has kind {:?}, want {KIND:?}", marker.kind),
            ));
        }
        if !(OLDEST_MIGRATED_FORMAT..=FORMAT_VERSION).contains(&marker.format_version) {
            return Err(bad(
                dir,
                format!(
                    "format version {} is not supported (this build reads {OLDEST_MIGRATED_FORMAT} \
                     to {FORMAT_VERSION})",
                    marker.format_version
                ),
            ));
        }
        if marker.node_id != node_id {
            return Err(bad(
                dir,
                format!(
                    "belongs to node {}, but this node is configured as {node_id}",
                    marker.node_id
                ),
            ));
        }
        return Ok((marker, false));
    }
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(io_err)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    if !names.is_empty() {
        names.sort();
        names.truncate(5);
        return Err(bad(
            dir,
            format!(
                "not empty and has no {MARKER_FILE}, refusing to start a new store over it (found {})",
                names.join(", ")
            ),
        ));
    }
    let marker = Marker {
        kind: KIND.to_string(),
        format_version: FORMAT_VERSION,
        cluster_id: cluster_id.map_or_else(new_cluster_id, str::to_string),
        node_id,
    };
    write(dir, &marker)?;
    Ok((marker, true))
}

/// Record in `dir`'s marker that the directory is now in
/// [`FORMAT_VERSION`] (after a migration), atomically.
pub(crate) fn upgrade(dir: &Path, marker: &Marker) -> Result<Marker, StoreError> {
    let upgraded = Marker {
        format_version: FORMAT_VERSION,
        ..marker.clone()
    };
    write(dir, &upgraded)?;
    Ok(upgraded)
}

/// Write `marker` as `dir`'s marker file, atomically.
fn write(dir: &Path, marker: &Marker) -> Result<(), StoreError> {
    let json = serde_json::to_vec_pretty(marker)
        .map_err(|e| bad(dir, format!("cannot encode marker: {e}")))?;
    fsutil::write_atomic(&dir.join(MARKER_FILE), &json)
        .map_err(|e| bad(dir, format!("cannot write {MARKER_FILE}: {e}")))
}

/// A 128-bit random cluster id in hex. Taken from the OS's random source
/// (`/dev/urandom`) so the crate needs no RNG dependency; falls back to the
/// clock and process id, which is unique enough for an identifier that only
/// guards against mixing up directories.
pub(crate) fn new_cluster_id() -> String {
    let mut bytes = [0u8; 16];
    let filled = fs::File::open("/dev/urandom")
        .and_then(|mut f| io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes[..16].copy_from_slice(&nanos.to_le_bytes());
        bytes[..4].copy_from_slice(&std::process::id().to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

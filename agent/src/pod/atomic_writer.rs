//! Writing a ConfigMap, Secret or downward API volume so that readers never
//! see a half-updated set of files: kubelet's `AtomicWriter`
//! (`pkg/volume/util/atomic_writer.go`).
//!
//! ```text
//!  <volume>/..2026_11_23_08_40_00.123456789/   the payload, written in full
//!  <volume>/..data -> ..2026_…                  swapped with one rename(2)
//!  <volume>/<key>  -> ..data/<key>               what the container reads
//! ```
//!
//! The new payload goes into a fresh timestamped directory, a symlink
//! `..data_tmp` to it is renamed over `..data` (atomic on POSIX), and only
//! then is the old directory removed. A container reading `<key>` sees the
//! old or the new file, never a mix.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};

/// One file of a payload: content and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// Bytes.
    pub data: Vec<u8>,
    /// Mode (e.g. 0o644).
    pub mode: u32,
}

/// Payload: relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

const DATA_DIR: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Whether `rel` is a safe relative path (no `..`, not absolute, not
/// starting with `..`, which the writer reserves).
pub fn valid_path(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.starts_with("..")
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

fn read_payload(dir: &Path, rel: &str, out: &mut Payload) -> io::Result<()> {
    for entry in std::fs::read_dir(dir.join(rel))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let meta = entry.metadata()?;
        if meta.is_dir() {
            read_payload(dir, &path, out)?;
        } else {
            out.insert(
                path.clone(),
                FileProjection {
                    data: std::fs::read(dir.join(&path))?,
                    mode: meta.permissions().mode() & 0o7777,
                },
            );
        }
    }
    Ok(())
}

/// Writes `payload` into `target` atomically. Returns whether anything
/// changed (an identical payload is left alone, as kubelet does).
pub fn write(target: &Path, payload: &Payload) -> io::Result<bool> {
    for p in payload.keys() {
        if !valid_path(p) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid path in volume payload: {p:?}"),
            ));
        }
    }
    std::fs::create_dir_all(target)?;
    let old_dir = std::fs::read_link(target.join(DATA_DIR)).ok();
    if let Some(old) = &old_dir {
        let mut current = Payload::new();
        if read_payload(&target.join(old), "", &mut current).is_ok() && &current == payload {
            return Ok(false);
        }
    }
    let stamp = chrono::Utc::now()
        .format("..%Y_%m_%d_%H_%M_%S.%f")
        .to_string();
    let new_dir = target.join(&stamp);
    std::fs::create_dir(&new_dir)?;
    for (rel, f) in payload {
        let path = new_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, &f.data)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode))?;
    }
    let tmp = target.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(&stamp, &tmp)?;
    std::fs::rename(&tmp, target.join(DATA_DIR))?;
    // User-visible names: one symlink per top-level entry of the payload.
    let top: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for name in &top {
        let link = target.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &link)?;
        }
    }
    for entry in std::fs::read_dir(target)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") || top.contains(&name) {
            continue;
        }
        std::fs::remove_file(entry.path())?;
    }
    if let Some(old) = old_dir {
        if old != Path::new(&stamp) {
            let _ = std::fs::remove_dir_all(target.join(old));
        }
    }
    Ok(true)
}

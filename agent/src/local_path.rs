//! The node side of Skiff's local-path volumes (the provisioner is in
//! `skiff-controllers`' `volume` module): where their directories go, and
//! removing a directory once its PersistentVolume is gone (reclaim policy
//! `Delete`), which only the node can do.
//!
//! ```text
//!  <data_dir>/local-path/pvc-<claim uid>_<namespace>_<claim>/
//! ```
//!
//! The directory is created on first use, by the pod's volume set-up (the
//! PV is a `hostPath` of type `DirectoryOrCreate`), and removed by
//! [`sweep_loop`], which lists the PersistentVolumes every
//! [`SWEEP_INTERVAL`] and deletes the directories none of them names.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::ListParams;
use kube::Api;
use tracing::{info, warn};

/// The Node annotation advertising [`root`] to the provisioner (the same
/// key as `skiff_controllers::volume::local_path::ROOT_ANNOTATION`).
pub const ROOT_ANNOTATION: &str = "local-path.skiff.io/root";

/// How often directories of deleted volumes are looked for.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(15);

/// Where this node's local-path volumes live.
pub fn root(data_dir: &Path) -> PathBuf {
    let dir = data_dir.join("local-path");
    // The PV's hostPath must be absolute.
    std::path::absolute(&dir).unwrap_or(dir)
}

/// The volume directories under `root` that no path in `in_use` names:
/// only `pvc-*` entries, so nothing else put there is touched.
pub fn orphans(root: &Path, names: &[String], in_use: &HashSet<PathBuf>) -> Vec<PathBuf> {
    names
        .iter()
        .filter(|n| n.starts_with("pvc-"))
        .map(|n| root.join(n))
        .filter(|p| !in_use.contains(p))
        .collect()
}

/// One sweep: list the volumes, remove the directories no volume names.
pub async fn sweep(client: &kube::Client, root: &Path) -> Result<Vec<PathBuf>, kube::Error> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(vec![]);
    };
    let names: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    if names.is_empty() {
        return Ok(vec![]);
    }
    // Listed after reading the directory: a volume provisioned meanwhile
    // has no directory yet (it is made when a pod first mounts it).
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let in_use: HashSet<PathBuf> = pvs
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter_map(|pv| {
            let spec = pv.spec.as_ref()?;
            let path = spec
                .host_path
                .as_ref()
                .map(|h| h.path.clone())
                .or_else(|| spec.local.as_ref().map(|l| l.path.clone()))?;
            Some(PathBuf::from(path))
        })
        .collect();
    let mut removed = vec![];
    for dir in orphans(root, &names, &in_use) {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir),
            Err(e) => warn!(dir = %dir.display(), error = %e, "could not remove a released volume"),
        }
    }
    Ok(removed)
}

/// Sweeps every [`SWEEP_INTERVAL`] until dropped.
pub async fn sweep_loop(client: kube::Client, root: PathBuf) {
    loop {
        match sweep(&client, &root).await {
            Ok(removed) => {
                for dir in removed {
                    info!(dir = %dir.display(), "removed the directory of a deleted volume");
                }
            }
            Err(e) => warn!(error = %e, "listing persistentvolumes for the local-path sweep"),
        }
        tokio::time::sleep(SWEEP_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unnamed_pvc_directories_are_orphans() {
        let root = Path::new("/d/local-path");
        let names = ["pvc-a_ns_x", "pvc-b_ns_y", "other"].map(String::from);
        let in_use = HashSet::from([root.join("pvc-a_ns_x")]);
        assert_eq!(orphans(root, &names, &in_use), [root.join("pvc-b_ns_y")]);
    }
}

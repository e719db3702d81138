//! Pod volumes (kubelet's volume manager, reduced to what a node without
//! storage plugins needs): `emptyDir` (a directory, or a tmpfs for
//! `medium: Memory`), `hostPath`, and `configMap`, `secret`,
//! `downwardAPI` and `projected` volumes (the latter combining those three
//! with `serviceAccountToken` sources, from [`super::token`]) written by
//! the [`atomic_writer`] and re-written whenever their source changes or a
//! token is refreshed, so updates reach running pods; `persistentVolumeClaim` volumes whose PersistentVolume is a
//! `hostPath` or `local` directory (what Skiff's local-path provisioner
//! makes), linked into the pod directory. Containers get them as CRI
//! `Mount`s.
//!
//! ```text
//!  <data_dir>/pod-volumes/<uid>/volumes/kubernetes.io~empty-dir/<name>/
//!                                      /kubernetes.io~configmap/<name>/..data -> …
//!                                      /kubernetes.io~secret/<name>/
//!                                      /kubernetes.io~downward-api/<name>/
//!                                      /kubernetes.io~projected/<name>/token, ca.crt, …
//!                                      /kubernetes.io~local-volume/<name> -> PV path
//! ```
//!
//! A claim's volume is a symbolic link rather than kubelet's bind mount:
//! the runtime resolves it when it bind-mounts the container's source, and
//! removing the pod directory never follows it into the volume.
//!
//! [`payload`] and [`container_mounts`] are pure; [`setup`] and
//! [`teardown`] do the file system work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, KeyToPath, Pod, ProjectedVolumeSource, Volume,
};

use super::atomic_writer::{self, FileProjection, Payload};
use super::env::{
    config_map_data, field_ref, resource_field_ref, secret_data, ConfigError, EnvSources,
};
use super::resources::parse_value;
use super::token::TokenKey;

/// Default file mode of projected files (Kubernetes `defaultMode` 0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// Failure to set up or tear down a volume on the node.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A source object or key is missing (kubelet's `FailedMount`); the
    /// pod waits in `ContainerCreating` until it appears.
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : {message}")]
    Source {
        /// Volume name.
        volume: String,
        /// Kubernetes' message, e.g. `configmap "x" not found`.
        message: String,
    },
    /// A file system call failed. Retryable.
    #[error("volume {volume}: {source}")]
    Io {
        /// Volume name.
        volume: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Mounting or unmounting a tmpfs failed. Retryable.
    #[error("volume {volume}: mount: {source}")]
    Mount {
        /// Volume name (or path at teardown).
        volume: String,
        /// errno.
        #[source]
        source: nix::Error,
    },
}

/// The pod's volume root: `<data_dir>/pod-volumes/<uid>` (kubelet's
/// `/var/lib/kubelet/pods/<uid>`).
pub fn pod_dir(data_dir: &Path, uid: &str) -> PathBuf {
    data_dir.join("pod-volumes").join(uid)
}

/// Kubelet's plugin directory name for a volume's kind, if the volume is
/// kept under the pod directory.
fn plugin(v: &Volume) -> Option<&'static str> {
    if v.empty_dir.is_some() {
        Some("kubernetes.io~empty-dir")
    } else if v.config_map.is_some() {
        Some("kubernetes.io~configmap")
    } else if v.secret.is_some() {
        Some("kubernetes.io~secret")
    } else if v.downward_api.is_some() {
        Some("kubernetes.io~downward-api")
    } else if v.projected.is_some() {
        Some("kubernetes.io~projected")
    } else if v.persistent_volume_claim.is_some() {
        Some("kubernetes.io~local-volume")
    } else {
        None
    }
}

/// Where volume `v` lives on the host, if Skiff supports its kind.
pub fn host_path(pod_dir: &Path, v: &Volume) -> Option<PathBuf> {
    if let Some(h) = &v.host_path {
        return Some(PathBuf::from(&h.path));
    }
    plugin(v).map(|p| pod_dir.join("volumes").join(p).join(&v.name))
}

fn mode_of(m: Option<i32>, default: Option<i32>) -> u32 {
    u32::try_from(m.or(default).unwrap_or(DEFAULT_MODE) & 0o7777).unwrap_or(0o644)
}

/// Projects `data` by `items` (all keys when `items` is empty).
fn project(
    data: BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: Option<i32>,
    kind: &str,
    optional: bool,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                out.insert(
                    k,
                    FileProjection {
                        data: v,
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for it in items {
                match data.get(&it.key) {
                    Some(v) => {
                        out.insert(
                            it.path.clone(),
                            FileProjection {
                                data: v.clone(),
                                mode: mode_of(it.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(format!(
                            "{kind} references non-existent {kind} key: {}",
                            it.key
                        ))
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The files of a ConfigMap (all keys, or `items`).
fn config_map_files(
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    default_mode: Option<i32>,
    src: &EnvSources,
) -> Result<Payload, String> {
    let data = src.config_maps.get(name).map(config_map_data);
    object_files("configmap", name, data, items, optional, default_mode)
}

/// The files of a Secret (all keys, or `items`).
fn secret_files(
    name: &str,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    default_mode: Option<i32>,
    src: &EnvSources,
) -> Result<Payload, String> {
    let data = src.secrets.get(name).map(secret_data);
    object_files("secret", name, data, items, optional, default_mode)
}

/// The files of a ConfigMap or Secret (`kind` as messages name it) whose
/// data is `data`, `None` when the object was not found.
fn object_files(
    kind: &str,
    name: &str,
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<KeyToPath>>,
    optional: Option<bool>,
    default_mode: Option<i32>,
) -> Result<Payload, String> {
    let optional = optional == Some(true);
    let data = match data {
        Some(d) => d,
        None if optional => BTreeMap::new(),
        None => return Err(format!("{kind} \"{name}\" not found")),
    };
    project(data, items, default_mode, kind, optional)
}

/// The files of downward API `items`.
fn downward_files(
    pod: &Pod,
    items: Option<&Vec<DownwardAPIVolumeFile>>,
    default_mode: Option<i32>,
    src: &EnvSources,
) -> Result<Payload, String> {
    let mut out = Payload::new();
    for it in items.into_iter().flatten() {
        let text = if let Some(f) = &it.field_ref {
            // Labels and annotations are files of `key="value"` lines,
            // sorted (Kubernetes `fieldpath.FormatMap`).
            let map = match f.field_path.as_str() {
                "metadata.labels" => Some(pod.metadata.labels.clone().unwrap_or_default()),
                "metadata.annotations" => {
                    Some(pod.metadata.annotations.clone().unwrap_or_default())
                }
                _ => None,
            };
            match map {
                Some(m) => m
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}\n"))
                    .collect::<String>(),
                None => field_ref(pod, &f.field_path, src).map_err(|e| e.0)?,
            }
        } else if let Some(r) = &it.resource_field_ref {
            let c = pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .find(|c| Some(c.name.as_str()) == r.container_name.as_deref())
                .ok_or_else(|| format!("container {:?} not found", r.container_name))?;
            resource_field_ref(
                c,
                &r.resource,
                r.divisor.as_ref().map(|d| d.0.as_str()),
                src,
            )
            .map_err(|e| e.0)?
        } else {
            continue;
        };
        out.insert(
            it.path.clone(),
            FileProjection {
                data: text.into_bytes(),
                mode: mode_of(it.mode, default_mode),
            },
        );
    }
    Ok(out)
}

/// The files of a projected volume: its sources' files side by side, the
/// tokens from [`EnvSources::tokens`] (Kubernetes' `projected` plugin).
fn projected_files(
    pod: &Pod,
    p: &ProjectedVolumeSource,
    src: &EnvSources,
) -> Result<Payload, String> {
    let mode = p.default_mode;
    let mut out = Payload::new();
    for source in p.sources.iter().flatten() {
        let files = if let Some(cm) = &source.config_map {
            config_map_files(&cm.name, cm.items.as_ref(), cm.optional, mode, src)?
        } else if let Some(s) = &source.secret {
            secret_files(&s.name, s.items.as_ref(), s.optional, mode, src)?
        } else if let Some(d) = &source.downward_api {
            downward_files(pod, d.items.as_ref(), mode, src)?
        } else if let Some(t) = &source.service_account_token {
            let token = src
                .tokens
                .get(&TokenKey::for_source(pod, t))
                .ok_or("service account token not loaded yet")?
                .clone()?;
            Payload::from([(
                t.path.clone(),
                FileProjection {
                    data: token.into_bytes(),
                    mode: mode_of(None, mode),
                },
            )])
        } else {
            return Err("only configMap, secret, downwardAPI and serviceAccountToken sources are supported by Skiff".into());
        };
        out.extend(files);
    }
    Ok(out)
}

/// The files of a configMap, secret, downwardAPI or projected volume;
/// `None` for the kinds that have no payload.
pub fn payload(pod: &Pod, v: &Volume, src: &EnvSources) -> Result<Option<Payload>, VolumeError> {
    let files = if let Some(cm) = &v.config_map {
        config_map_files(
            &cm.name,
            cm.items.as_ref(),
            cm.optional,
            cm.default_mode,
            src,
        )
    } else if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        secret_files(&name, s.items.as_ref(), s.optional, s.default_mode, src)
    } else if let Some(d) = &v.downward_api {
        downward_files(pod, d.items.as_ref(), d.default_mode, src)
    } else if let Some(p) = &v.projected {
        projected_files(pod, p, src)
    } else {
        return Ok(None);
    };
    files.map(Some).map_err(|message| VolumeError::Source {
        volume: v.name.clone(),
        message,
    })
}

/// The CRI mounts of container `c`: each `volumeMount` resolved to its
/// volume's host path (plus `subPath`). ConfigMap, Secret and downward API
/// volumes (projected ones too) are always read-only, as in Kubernetes.
pub fn container_mounts(
    pod: &Pod,
    c: &Container,
    pod_dir: &Path,
) -> Result<Vec<cri::Mount>, ConfigError> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut out = vec![];
    for m in c.volume_mounts.iter().flatten() {
        let v = volumes
            .and_then(|vs| vs.iter().find(|v| v.name == m.name))
            .ok_or_else(|| {
                ConfigError(format!(
                    "cannot find volume {:?} to mount into container {:?}",
                    m.name, c.name
                ))
            })?;
        let mut host = host_path(pod_dir, v).ok_or_else(|| {
            ConfigError(format!(
                "volume {:?}: this kind of volume is not supported by Skiff",
                v.name
            ))
        })?;
        let projected = v.config_map.is_some()
            || v.secret.is_some()
            || v.downward_api.is_some()
            || v.projected.is_some();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if !atomic_writer::valid_path(sub) {
                return Err(ConfigError(format!("invalid subPath {sub:?}")));
            }
            host = host.join(sub);
        }
        out.push(cri::Mount {
            container_path: m.mount_path.clone(),
            host_path: host.display().to_string(),
            readonly: m.read_only.unwrap_or(false) || projected,
            ..Default::default()
        });
    }
    Ok(out)
}

fn io_err(volume: &str) -> impl FnOnce(std::io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io {
        volume: volume.to_string(),
        source,
    }
}

/// Whether `path` is a mount point (its device differs from its parent's).
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

/// Checks (and for the `…OrCreate` types, creates) a hostPath the way
/// Kubernetes' hostPath type checker does.
fn host_path_setup(
    v: &Volume,
    h: &k8s_openapi::api::core::v1::HostPathVolumeSource,
) -> Result<(), VolumeError> {
    let p = Path::new(&h.path);
    let fail = |what: &str| VolumeError::Source {
        volume: v.name.clone(),
        message: format!("hostPath type check failed: {} is not a {what}", h.path),
    };
    match h.type_.as_deref() {
        Some("Directory") if !p.is_dir() => return Err(fail("directory")),
        Some("File") if !p.is_file() => return Err(fail("file")),
        _ => {}
    }
    // Kubernetes creates these two types when missing.
    match h.type_.as_deref() {
        Some("DirectoryOrCreate") => std::fs::create_dir_all(p).map_err(io_err(&v.name))?,
        Some("FileOrCreate") if !p.exists() => {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent).map_err(io_err(&v.name))?;
            }
            std::fs::write(p, b"").map_err(io_err(&v.name))?;
        }
        _ => {}
    }
    Ok(())
}

/// Links a claim's volume into the pod directory, creating the volume's
/// directory on first use (world-writable, as the local-path provisioner
/// makes it). Until the claim is bound the pod waits (`FailedMount`).
fn claim_setup(
    v: &Volume,
    link: &Path,
    path: Option<&Result<String, String>>,
) -> Result<(), VolumeError> {
    let target = match path {
        Some(Ok(p)) => PathBuf::from(p),
        Some(Err(message)) => {
            return Err(VolumeError::Source {
                volume: v.name.clone(),
                message: message.clone(),
            })
        }
        None => {
            return Err(VolumeError::Source {
                volume: v.name.clone(),
                message: "persistentvolumeclaim not loaded yet".into(),
            })
        }
    };
    if !target.is_dir() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&target).map_err(io_err(&v.name))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o777))
            .map_err(io_err(&v.name))?;
    }
    if std::fs::read_link(link).ok().as_deref() == Some(target.as_path()) {
        return Ok(());
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(&v.name))?;
    }
    match std::fs::remove_file(link) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err(&v.name)(e)),
        _ => {}
    }
    std::os::unix::fs::symlink(&target, link).map_err(io_err(&v.name))
}

/// What [`setup`] wrote last, per volume name, so that an unchanged
/// payload costs no file system reads.
pub type Written = std::collections::HashMap<String, Payload>;

/// Creates every volume of the pod and (re)writes the projected ones.
/// Idempotent; called on every sync, it is how ConfigMap and Secret
/// updates reach running containers. Returns the names of volumes whose
/// files changed.
pub fn setup(
    pod_dir: &Path,
    pod: &Pod,
    src: &EnvSources,
    written: &mut Written,
) -> Result<Vec<String>, VolumeError> {
    let mut changed = vec![];
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(h) = &v.host_path {
            host_path_setup(v, h)?;
            continue;
        }
        let Some(dir) = host_path(pod_dir, v) else {
            continue;
        };
        if let Some(c) = &v.persistent_volume_claim {
            claim_setup(v, &dir, src.claims.get(&c.claim_name))?;
            continue;
        }
        std::fs::create_dir_all(&dir).map_err(io_err(&v.name))?;
        if let Some(ed) = &v.empty_dir {
            if ed.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
                let mut opts = String::from("mode=0777");
                if let Some(size) = ed.size_limit.as_ref().and_then(|q| parse_value(&q.0).ok()) {
                    opts.push_str(&format!(",size={size}"));
                }
                nix::mount::mount(
                    Some("tmpfs"),
                    &dir,
                    Some("tmpfs"),
                    nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                    Some(opts.as_str()),
                )
                .map_err(|source| VolumeError::Mount {
                    volume: v.name.clone(),
                    source,
                })?;
            } else {
                // Everyone may write an emptyDir (Kubernetes makes it 0777).
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(io_err(&v.name))?;
            }
            continue;
        }
        if let Some(files) = payload(pod, v, src)? {
            if written.get(&v.name) == Some(&files) && dir.join("..data").exists() {
                continue;
            }
            if atomic_writer::write(&dir, &files).map_err(io_err(&v.name))? {
                changed.push(v.name.clone());
            }
            written.insert(v.name.clone(), files);
        }
    }
    Ok(changed)
}

/// Unmounts every tmpfs under the pod directory and removes it.
pub fn teardown(pod_dir: &Path) -> Result<(), VolumeError> {
    let root = pod_dir.join("volumes").join("kubernetes.io~empty-dir");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            let p = e.path();
            if is_mount_point(&p) {
                nix::mount::umount2(&p, nix::mount::MntFlags::MNT_DETACH).map_err(|source| {
                    VolumeError::Mount {
                        volume: p.display().to_string(),
                        source,
                    }
                })?;
            }
        }
    }
    match std::fs::remove_dir_all(pod_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(VolumeError::Io {
            volume: pod_dir.display().to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

//! Importing image archives into containerd with `ctr` (part of [`super`]).
//!
//! `ctr images import` understands OCI image-layout tars and `docker save` tars and
//! unpacks them for the default snapshotter (overlayfs). It names images after the
//! archive: Docker `RepoTags` are normalised (`busybox:latest` →
//! `docker.io/library/busybox:latest`) but OCI names are taken verbatim, so after the
//! import this module re-tags every image under the fully-qualified name the CRI
//! plugin will look up, and drops names it had to replace.
//!
//! ctr 1.6.20 behaviour this relies on (checked here):
//! - OCI index entries are named by `io.containerd.image.name` verbatim; with only
//!   `org.opencontainers.image.ref.name` ctr makes `import-<yyyy-MM-dd>:<ref>`. So
//!   images are matched to the archive's descriptors by digest, not by ctr's name.
//! - It reads plain tar only (`invalid tar header` for gzip); gzip'ed archives are
//!   decompressed into its stdin (`ctr images import -`).
//! - The CRI plugin notices imports through containerd's events: it labels the image
//!   `io.cri-containerd.image=managed` and adds a `sha256:<config digest>` name (the
//!   CRI image id) shortly after. Those names are never removed here.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use super::{
    build_busybox_image, normalize_image_name, ImageError, ANNOTATION_CONTAINERD_NAME,
    ANNOTATION_REF_NAME, BUSYBOX_IMAGE, CRI_NAMESPACE, PAUSE_IMAGE,
};

/// Give up connecting to containerd after this long (ctr's own default is to wait
/// forever).
const CTR_CONNECT_TIMEOUT: &str = "10s";

/// Imports are serialised within the process: each compares the image list before
/// and after, which a concurrent import would confuse.
static IMPORT_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An image the archive declares: the name it gives and, for OCI, the digest of the
/// descriptor (Docker archives name manifests only by `RepoTags`).
#[derive(Debug, Clone)]
struct Declared {
    raw: String,
    digest: Option<String>,
}

/// What a pre-read of the archive found.
struct ArchiveInfo {
    declared: Vec<Declared>,
    gzipped: bool,
}

/// Reads the archive's `index.json` (OCI) or `manifest.json` (Docker) for the names it
/// declares, so that garbage files fail with a clear error before ctr sees them.
fn read_archive(path: &Path) -> Result<ArchiveInfo, ImageError> {
    let not_archive = |reason: String| ImageError::NotAnArchive {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(ImageError::io(path))?;
    let mut magic = [0u8; 2];
    let gzipped = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = std::fs::File::open(path).map_err(ImageError::io(path))?;
    let reader: Box<dyn std::io::Read> = if gzipped {
        Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
    } else {
        Box::new(std::io::BufReader::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .map_err(|e| not_archive(format!("not a tar: {e}")))?;
    let mut index: Option<serde_json::Value> = None;
    let mut docker: Option<serde_json::Value> = None;
    let mut saw_entry = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| not_archive(format!("not a tar: {e}")))?;
        saw_entry = true;
        let entry_path = entry
            .path()
            .map_err(|e| not_archive(format!("bad entry name: {e}")))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let slot = match entry_path.as_str() {
            "index.json" => &mut index,
            "manifest.json" => &mut docker,
            _ => continue,
        };
        let mut text = Vec::new();
        entry
            .read_to_end(&mut text)
            .map_err(|e| not_archive(format!("reading {entry_path}: {e}")))?;
        let value = serde_json::from_slice(&text)
            .map_err(|e| not_archive(format!("{entry_path} is not JSON: {e}")))?;
        *slot = Some(value);
    }
    if !saw_entry {
        return Err(not_archive("empty or not a tar".into()));
    }
    let mut declared = Vec::new();
    if let Some(docker) = &docker {
        // docker save: [{"Config": …, "RepoTags": ["busybox:latest"], "Layers": […]}]
        for image in docker.as_array().into_iter().flatten() {
            for tag in image["RepoTags"].as_array().into_iter().flatten() {
                if let Some(tag) = tag.as_str() {
                    declared.push(Declared {
                        raw: tag.to_string(),
                        digest: None,
                    });
                }
            }
        }
    } else if let Some(index) = &index {
        for desc in index["manifests"].as_array().into_iter().flatten() {
            let annotations = &desc["annotations"];
            let name = annotations[ANNOTATION_CONTAINERD_NAME]
                .as_str()
                .or_else(|| annotations[ANNOTATION_REF_NAME].as_str());
            if let Some(name) = name {
                declared.push(Declared {
                    raw: name.to_string(),
                    digest: desc["digest"].as_str().map(String::from),
                });
            }
        }
    } else {
        return Err(not_archive(
            "no index.json (OCI layout) or manifest.json (docker save)".into(),
        ));
    }
    if declared.is_empty() {
        return Err(not_archive(
            "it names no image (no RepoTags, or no io.containerd.image.name / org.opencontainers.image.ref.name annotation)"
                .into(),
        ));
    }
    Ok(ArchiveInfo { declared, gzipped })
}

fn ctr(socket: &Path) -> Command {
    let mut cmd = Command::new("ctr");
    cmd.arg("--address")
        .arg(socket)
        .args([
            "--namespace",
            CRI_NAMESPACE,
            "--connect-timeout",
            CTR_CONNECT_TIMEOUT,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

fn spawn_error(e: std::io::Error) -> ImageError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ImageError::CtrMissing
    } else {
        ImageError::Io {
            path: PathBuf::from("ctr"),
            source: e,
        }
    }
}

/// Runs a ctr subcommand to completion; returns its stdout.
async fn run_ctr(socket: &Path, args: &[&str]) -> Result<String, ImageError> {
    let output = ctr(socket).args(args).output().await.map_err(spawn_error)?;
    check_output(args.join(" "), output)
}

fn check_output(action: String, output: std::process::Output) -> Result<String, ImageError> {
    if !output.status.success() {
        return Err(ImageError::Ctr {
            action,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// containerd's images in the CRI namespace: name → target digest.
async fn list_images(socket: &Path) -> Result<BTreeMap<String, String>, ImageError> {
    let out = run_ctr(socket, &["images", "ls"]).await?;
    // Columns: REF TYPE DIGEST SIZE PLATFORMS LABELS; names and digests hold no spaces.
    Ok(out
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut cols = line.split_whitespace();
            let name = cols.next()?;
            let digest = cols.nth(1)?;
            Some((name.to_string(), digest.to_string()))
        })
        .collect())
}

/// Whether containerd's CRI namespace has an image under `name` (normalised first).
pub async fn image_present(socket: &Path, name: &str) -> Result<bool, ImageError> {
    let name = normalize_image_name(name)?;
    Ok(list_images(socket).await?.contains_key(&name))
}

/// Imports an OCI image-layout tar or a `docker save` tar (optionally gzip'ed) into
/// containerd's `k8s.io` namespace, so the CRI plugin sees it, and returns the images'
/// fully-qualified names (see [`normalize_image_name`]).
///
/// Only the host platform's content is imported and unpacked (ctr's default): a
/// multi-platform archive often lacks the other platforms' blobs, which
/// `--all-platforms` would reject.
pub async fn import_archive(socket: &Path, file: &Path) -> Result<Vec<String>, ImageError> {
    let path = file.to_path_buf();
    let info = tokio::task::spawn_blocking(move || read_archive(&path))
        .await
        .map_err(|e| ImageError::Io {
            path: file.to_path_buf(),
            source: std::io::Error::other(e),
        })??;
    let mut wanted: Vec<(String, Declared)> = Vec::new();
    for d in info.declared {
        wanted.push((normalize_image_name(&d.raw)?, d));
    }

    let _guard = IMPORT_LOCK.lock().await;
    let before = list_images(socket).await?;
    run_import(socket, file, info.gzipped).await?;
    let after = list_images(socket).await?;
    let created: BTreeSet<&String> = after.keys().filter(|n| !before.contains_key(*n)).collect();

    let mut names = Vec::new();
    for (target, declared) in &wanted {
        let have = after.get(target);
        let ok = match (&declared.digest, have) {
            (_, None) => false,
            (Some(digest), Some(have)) => digest == have,
            (None, Some(_)) => true,
        };
        if !ok {
            // ctr named it differently (OCI names are verbatim): find the image ctr
            // made for this descriptor and give it the CRI's name.
            // By digest where the archive gives one (an old image may still hold the
            // raw name); Docker archives have none, but ctr normalises their names.
            let source = match &declared.digest {
                Some(want) => after
                    .iter()
                    .find(|(name, digest)| *digest == want && !name.starts_with("sha256:"))
                    .map(|(name, _)| name.clone()),
                None => after
                    .contains_key(&declared.raw)
                    .then(|| declared.raw.clone()),
            }
            .ok_or_else(|| ImageError::Missing {
                path: file.to_path_buf(),
                name: target.clone(),
            })?;
            run_ctr(socket, &["images", "tag", "--force", &source, target]).await?;
        }
        if !names.contains(target) {
            names.push(target.clone());
        }
    }
    // Names this import created that the CRI would never look up (`busybox` next to
    // `docker.io/library/busybox:latest`) only clutter `crictl images`.
    let stray: Vec<&str> = created
        .iter()
        .filter(|n| !names.contains(n))
        // `sha256:<config digest>` names are the CRI plugin's own image-ID references.
        .filter(|n| !n.starts_with("sha256:"))
        .map(|n| n.as_str())
        .collect();
    if !stray.is_empty() {
        let mut args = vec!["images", "rm"];
        args.extend(stray);
        if let Err(e) = run_ctr(socket, &args).await {
            tracing::warn!(error = %e, "cannot remove un-normalised image names");
        }
    }
    tracing::info!(file = %file.display(), images = ?names, "imported image archive");
    Ok(names)
}

/// `ctr images import`, streaming a gzip'ed archive through a decompressor into ctr's
/// stdin (`-`), since ctr 1.6 reads plain tar only.
async fn run_import(socket: &Path, file: &Path, gzipped: bool) -> Result<(), ImageError> {
    let action = format!("images import {}", file.display());
    let mut cmd = ctr(socket);
    cmd.args(["images", "import"]);
    if !gzipped {
        cmd.arg(file);
        let output = cmd.output().await.map_err(spawn_error)?;
        return check_output(action, output).map(|_| ());
    }
    cmd.arg("-").stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let Some(mut stdin) = child.stdin.take() else {
        // Impossible: stdin was configured as piped just above.
        return Err(ImageError::Io {
            path: file.to_path_buf(),
            source: std::io::Error::other("ctr stdin not piped"),
        });
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let src = file.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || {
        let open = std::fs::File::open(&src);
        let mut dec = match open {
            Ok(f) => flate2::read::GzDecoder::new(std::io::BufReader::new(f)),
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut buf = vec![0u8; 256 * 1024];
            match dec.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    if tx.blocking_send(Ok(buf)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    let mut feed_error = None;
    while let Some(chunk) = rx.recv().await {
        match chunk {
            Ok(buf) => {
                if let Err(e) = stdin.write_all(&buf).await {
                    // ctr stopped reading: its exit status and stderr say why.
                    tracing::debug!(error = %e, "ctr closed stdin");
                    break;
                }
            }
            Err(e) => {
                feed_error = Some(e);
                break;
            }
        }
    }
    drop(stdin);
    drop(rx);
    let _ = reader.await;
    let output = child.wait_with_output().await.map_err(spawn_error)?;
    if let Some(e) = feed_error {
        return Err(ImageError::NotAnArchive {
            path: file.to_path_buf(),
            reason: format!("gzip stream: {e}"),
        });
    }
    check_output(action, output).map(|_| ())
}

/// Builds and imports [`PAUSE_IMAGE`] and [`BUSYBOX_IMAGE`] if containerd lacks them,
/// so a fresh or air-gapped node can run pods with no registry. `work_dir` holds the
/// built archives while they are imported.
pub async fn ensure_builtin_images(socket: &Path, work_dir: &Path) -> Result<(), ImageError> {
    let pause_entrypoint: &[&str] = &["/bin/busybox", "sleep", "infinity"];
    let builtin: [(&str, &[&str], &str); 2] = [
        (PAUSE_IMAGE, pause_entrypoint, "pause.tar"),
        (BUSYBOX_IMAGE, &[], "busybox.tar"),
    ];
    for (name, entrypoint, file) in builtin {
        if image_present(socket, name).await? {
            continue;
        }
        let out = work_dir.join(file);
        let build_out = out.clone();
        let entrypoint: Vec<String> = entrypoint.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let entrypoint: Vec<&str> = entrypoint.iter().map(String::as_str).collect();
            build_busybox_image(&build_out, name, &entrypoint)
        })
        .await
        .map_err(|e| ImageError::Io {
            path: out.clone(),
            source: std::io::Error::other(e),
        })??;
        let result = import_archive(socket, &out).await;
        // The archive is rebuilt on demand; don't keep a copy of busybox per image.
        let _ = std::fs::remove_file(&out);
        result?;
    }
    Ok(())
}

/// Imports every `*.tar`, `*.tar.gz` and `*.tgz` in `dir` (sorted by name), the
/// agent's air-gapped install path. A bad file is logged and skipped so one broken
/// archive cannot keep the node from starting; a missing `dir` imports nothing.
pub async fn import_dir(socket: &Path, dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ImageError::io(dir)(e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            name.ends_with(".tar") || name.ends_with(".tar.gz") || name.ends_with(".tgz")
        })
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in files {
        match import_archive(socket, &file).await {
            Ok(imported) => names.extend(imported),
            // ctr missing is not about this file: every other file would fail too.
            Err(e @ ImageError::CtrMissing) => return Err(e),
            Err(e) => tracing::warn!(file = %file.display(), error = %e, "skipping image archive"),
        }
    }
    Ok(names)
}

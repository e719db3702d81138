//! Container images without a registry: building the built-in images from the host's
//! static busybox, and importing image archives into containerd.
//!
//! Edge sites are often offline, and no registry is reachable from this project's
//! machines, so every image a node runs arrives as a file:
//!
//! ```text
//!  /bin/busybox ──build_busybox_image──▶ pause.tar ─┐
//!  DATA/images/*.tar (docker save, OCI) ────────────┼─import_archive─▶ containerd "k8s.io"
//!                                                   │   (ctr images import)   namespace ─▶ CRI
//! ```
//!
//! - [`PAUSE_IMAGE`] is the sandbox image (`sandbox_image` in containerd's CRI config):
//!   `busybox sleep infinity` holds the pod's namespaces like Kubernetes' `pause`.
//! - [`BUSYBOX_IMAGE`] is a small general-purpose image (`sh`, `httpd`, `wget`, …) for
//!   examples and tests.
//! - Both names are fully qualified and tagged `:1`: the CRI plugin normalises an
//!   unqualified `pause:1` to `docker.io/library/pause:1` and would try to pull that,
//!   and a non-`latest` tag makes Kubernetes default `imagePullPolicy` to
//!   `IfNotPresent` (a `:latest` image defaults to `Always`, which fails offline).
//!
//! Images go into containerd's `k8s.io` namespace, the one its CRI plugin serves; an
//! image imported elsewhere is invisible to pods.
//!
//! Caveats: no registry pulls, no signature checks; the built images carry the host's
//! busybox binary, so their digest is stable per host binary, not across hosts.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

#[path = "images_import.rs"]
mod import;
pub use import::{ensure_builtin_images, image_present, import_archive, import_dir};

/// The sandbox ("pause") image every pod's namespaces hang on.
pub const PAUSE_IMAGE: &str = "skiff.local/pause:1";
/// A busybox image (`Cmd ["sh"]`) for examples and tests.
pub const BUSYBOX_IMAGE: &str = "skiff.local/busybox:1";
/// Where Debian's `busybox-static` installs the binary the images are built from.
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// The containerd namespace the CRI plugin uses.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// Every file in a built image gets this mtime (2000-01-01T00:00:00Z) so the layer,
/// and therefore the image digest, is reproducible.
const FIXED_MTIME: u64 = 946_684_800;
/// The `created` time written in built images' configs (same instant as `FIXED_MTIME`).
const FIXED_CREATED: &str = "2000-01-01T00:00:00Z";
/// `PATH` in built images, the usual Linux default (as Docker sets it).
const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Built layers are stored uncompressed: the image only ever travels from this process
/// to the local containerd, and gzip of busybox costs ~0.4 s in a debug build (every
/// test's fresh containerd pays it) to save 1 MB.
const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// containerd's annotation for an image's full name in an OCI index (ctr import uses it
/// verbatim).
pub(crate) const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
/// The OCI image-layout spec's reference annotation.
pub(crate) const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors from building or importing images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `/bin/busybox` is missing. Not retryable until the package is installed.
    #[error("busybox-static not found: apt-get install busybox-static (looked for {0})")]
    BusyboxMissing(PathBuf),
    /// `/bin/busybox` is a dynamically linked busybox (Debian's `busybox` package); it
    /// would not run inside an image without the host's libc.
    #[error("{0} is dynamically linked: apt-get install busybox-static")]
    BusyboxNotStatic(PathBuf),
    /// `ctr` (shipped with Debian's containerd) is missing.
    #[error("ctr not found: install it with `apt-get install containerd` (it ships ctr)")]
    CtrMissing,
    /// An image reference that cannot be normalised. Not retryable.
    #[error("invalid image name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not an OCI or Docker image archive. Not retryable.
    #[error("{path} is not an image archive: {reason}")]
    NotAnArchive {
        /// The file.
        path: PathBuf,
        /// What is missing or malformed.
        reason: String,
    },
    /// `ctr` ran and failed; `stderr` is its message. Retryable if containerd was
    /// restarting.
    #[error("ctr {action} failed ({status}): {stderr}")]
    Ctr {
        /// What ctr was asked to do (e.g. `images import /x.tar`).
        action: String,
        /// ctr's exit status.
        status: String,
        /// ctr's standard error, trimmed.
        stderr: String,
    },
    /// ctr reported success but the image is not in containerd under its name.
    #[error("imported {path} but containerd has no image {name}")]
    Missing {
        /// The archive.
        path: PathBuf,
        /// The expected fully-qualified name.
        name: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl ImageError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
        move |source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Normalises an image reference the way the CRI plugin (docker's reference package)
/// does: `busybox` → `docker.io/library/busybox:latest`, `foo/bar:1` →
/// `docker.io/foo/bar:1`, `skiff.local/pause:1` unchanged. A digest (`@sha256:…`) is
/// kept and then no `:latest` is added.
pub fn normalize_image_name(name: &str) -> Result<String, ImageError> {
    let invalid = |reason: &str| ImageError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("contains whitespace"));
    }
    let (rest, digest) = match name.split_once('@') {
        Some((rest, digest)) => {
            let ok = digest
                .split_once(':')
                .is_some_and(|(alg, hex)| !alg.is_empty() && !hex.is_empty());
            if !ok {
                return Err(invalid("bad digest"));
            }
            (rest, Some(digest))
        }
        None => (name, None),
    };
    // The first component is a registry host if it looks like one (docker's rule:
    // contains '.' or ':' or is "localhost").
    let (domain, path) = match rest.split_once('/') {
        Some((first, path))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first, path.to_string())
        }
        _ => ("docker.io", rest.to_string()),
    };
    let domain = if domain == "index.docker.io" {
        "docker.io"
    } else {
        domain
    };
    // The tag is after the last ':' of the last path component.
    let (repo, tag) = match path.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), Some(tag.to_string())),
        _ => (path.clone(), None),
    };
    if repo.is_empty() || repo.split('/').any(str::is_empty) {
        return Err(invalid("empty path component"));
    }
    if !repo
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
    {
        return Err(invalid("repository must be lowercase [a-z0-9._-/]"));
    }
    if let Some(tag) = &tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(invalid("bad tag"));
        }
    }
    let repo = if domain == "docker.io" && !repo.contains('/') {
        format!("library/{repo}")
    } else {
        repo
    };
    let mut out = format!("{domain}/{repo}");
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(&tag);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

/// The OCI architecture name of the host (Go's GOARCH names, as in image configs).
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Builds a one-layer OCI image from the host's static busybox and writes it as an OCI
/// image-layout tar to `out` (atomically).
///
/// The layer holds `/bin/busybox`, a symlink per applet (`busybox --list`), the usual
/// top-level dirs, and `/etc/passwd` + `/etc/group` with root and nobody. With an empty
/// `entrypoint` the image gets `Cmd ["sh"]`; otherwise `Entrypoint` is set and `Cmd` is
/// empty. `name` is normalised (see [`normalize_image_name`]) and recorded in the index
/// under both the `io.containerd.image.name` and `org.opencontainers.image.ref.name`
/// annotations. The output is byte-for-byte reproducible for a given busybox binary.
pub fn build_busybox_image(out: &Path, name: &str, entrypoint: &[&str]) -> Result<(), ImageError> {
    let name = normalize_image_name(name)?;
    let busybox_path = Path::new(BUSYBOX_PATH);
    let busybox = match std::fs::read(busybox_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::BusyboxMissing(busybox_path.to_path_buf()))
        }
        Err(e) => return Err(ImageError::io(busybox_path)(e)),
    };
    if has_elf_interpreter(&busybox) {
        return Err(ImageError::BusyboxNotStatic(busybox_path.to_path_buf()));
    }
    let applets = list_applets(busybox_path);

    let layer = build_layer(&busybox, &applets).map_err(ImageError::io(out))?;
    let diff_id = sha256_digest(&layer);

    let (entrypoint, cmd): (Vec<&str>, Vec<&str>) = if entrypoint.is_empty() {
        (Vec::new(), vec!["sh"])
    } else {
        (entrypoint.to_vec(), Vec::new())
    };
    let mut container_config = serde_json::json!({
        "Env": [DEFAULT_PATH],
        "WorkingDir": "/",
    });
    if let Some(obj) = container_config.as_object_mut() {
        if !entrypoint.is_empty() {
            obj.insert("Entrypoint".into(), serde_json::json!(entrypoint));
        }
        if !cmd.is_empty() {
            obj.insert("Cmd".into(), serde_json::json!(cmd));
        }
    }
    let config = serde_json::json!({
        "created": FIXED_CREATED,
        "architecture": host_architecture(),
        "os": "linux",
        "config": container_config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created": FIXED_CREATED, "created_by": "skiff: busybox-static + applet symlinks" }],
    });
    let config = to_json(&config);
    let config_digest = sha256_digest(&config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": { "mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config.len() },
        "layers": [{ "mediaType": MEDIA_LAYER_TAR, "digest": diff_id, "size": layer.len() }],
    });
    let manifest = to_json(&manifest);
    let manifest_digest = sha256_digest(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { ANNOTATION_CONTAINERD_NAME: name, ANNOTATION_REF_NAME: name },
        }],
    });
    let index = to_json(&index);

    let archive = build_layout(
        &index,
        &[
            (&diff_id, &layer),
            (&config_digest, &config),
            (&manifest_digest, &manifest),
        ],
    )
    .map_err(ImageError::io(out))?;
    write_atomic(out, &archive)
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    // A `Value` with string keys always serialises; the map is a BTreeMap (no
    // `preserve_order` feature), so key order, and with it the digest, is stable.
    serde_json::to_vec(value).unwrap_or_default()
}

/// `sha256:<hex>` of some bytes: the OCI digest form.
pub(crate) fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// True if an ELF binary has a `PT_INTERP` program header, i.e. needs a dynamic
/// loader. Only 64-bit little-endian ELF is inspected; anything else counts as static
/// (the image will then fail at run time with a clear exec error).
fn has_elf_interpreter(bin: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bin.len() < 64 || &bin[..4] != b"\x7fELF" || bin[4] != 2 || bin[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| bin.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        bin.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bin.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| u32_at(phoff + i * usize::from(phentsize)) == Some(PT_INTERP))
}

/// The applet names busybox reports, or a fixed list if it cannot be run.
fn list_applets(busybox: &Path) -> Vec<String> {
    const FALLBACK: &[&str] = &[
        "sh", "ash", "ls", "cat", "echo", "sleep", "httpd", "wget", "env", "ps", "mkdir", "rm",
        "true", "false", "hostname", "nslookup", "id", "date", "cp", "mv", "grep", "sed", "awk",
        "head", "tail", "wc", "ip", "ping", "nc", "kill", "touch", "chmod", "df", "du", "uname",
        "whoami", "test", "[", "vi", "tar", "gzip", "find", "xargs", "mount", "umount", "top",
    ];
    let listed = std::process::Command::new(busybox)
        .arg("--list")
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let mut applets: Vec<String> = match listed {
        Some(text) => text.lines().map(str::trim).map(String::from).collect(),
        None => FALLBACK.iter().map(|s| s.to_string()).collect(),
    };
    applets
        .retain(|a| !a.is_empty() && a != "busybox" && !a.contains('/') && a != "." && a != "..");
    applets.sort();
    applets.dedup();
    applets
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME);
    h.set_size(size);
    h
}

fn append_dir(b: &mut tar::Builder<Vec<u8>>, path: &str, mode: u32) -> std::io::Result<()> {
    let mut h = tar_header(tar::EntryType::Directory, mode, 0);
    b.append_data(&mut h, path, std::io::empty())
}

fn append_file(
    b: &mut tar::Builder<Vec<u8>>,
    path: &str,
    mode: u32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut h = tar_header(tar::EntryType::Regular, mode, data.len() as u64);
    b.append_data(&mut h, path, data)
}

fn append_symlink(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) -> std::io::Result<()> {
    let mut h = tar_header(tar::EntryType::Symlink, 0o777, 0);
    b.append_link(&mut h, path, target)
}

/// The image's single layer (an uncompressed tar).
fn build_layer(busybox: &[u8], applets: &[String]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    for dir in [
        "bin", "dev", "etc", "proc", "root", "sys", "usr", "usr/bin", "usr/sbin", "var", "var/www",
    ] {
        let mode = if dir == "root" { 0o700 } else { 0o755 };
        append_dir(&mut b, &format!("{dir}/"), mode)?;
    }
    // Sticky and world-writable, like every distribution's /tmp.
    append_dir(&mut b, "tmp/", 0o1777)?;
    append_file(&mut b, "bin/busybox", 0o755, busybox)?;
    for applet in applets {
        append_symlink(&mut b, &format!("bin/{applet}"), "busybox")?;
    }
    // Shebangs commonly name /usr/bin/env.
    append_symlink(&mut b, "usr/bin/env", "/bin/busybox")?;
    append_file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    append_file(
        &mut b,
        "etc/group",
        0o644,
        b"root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n",
    )?;
    b.into_inner()
}

/// The OCI image-layout tar: `oci-layout`, `index.json` and the blobs.
/// `blobs` are `(digest, content)`; the digests were computed once already (hashing
/// busybox twice is noticeable in a debug build).
fn build_layout(index: &[u8], blobs: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    append_file(
        &mut b,
        "oci-layout",
        0o644,
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    append_file(&mut b, "index.json", 0o644, index)?;
    append_dir(&mut b, "blobs/", 0o755)?;
    append_dir(&mut b, "blobs/sha256/", 0o755)?;
    for (digest, blob) in blobs {
        let hex = digest.trim_start_matches("sha256:");
        append_file(&mut b, &format!("blobs/sha256/{hex}"), 0o644, blob)?;
    }
    b.into_inner()
}

/// Writes via a temp file in the same directory and a rename, so a crash never leaves
/// half an archive under the final name.
fn write_atomic(out: &Path, data: &[u8]) -> Result<(), ImageError> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(ImageError::io(dir))?;
    }
    let mut tmp = out.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, data).map_err(ImageError::io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(ImageError::io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_like_docker_reference() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("foo/bar:1", "docker.io/foo/bar:1"),
            ("skiff.local/pause:1", "skiff.local/pause:1"),
            ("localhost/x", "localhost/x:latest"),
            ("localhost:5000/a/b:c", "localhost:5000/a/b:c"),
            (
                "index.docker.io/library/nginx",
                "docker.io/library/nginx:latest",
            ),
            ("nginx@sha256:abcd", "docker.io/library/nginx@sha256:abcd"),
        ];
        for (input, want) in cases {
            assert_eq!(normalize_image_name(input).unwrap(), want, "{input}");
        }
        for bad in ["", "Busybox", "a b", "foo//bar", "x@sha256", "x:"] {
            assert!(normalize_image_name(bad).is_err(), "{bad:?}");
        }
    }
}

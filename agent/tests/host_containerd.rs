//! End to end on the real host: a private containerd started by [`ManagedContainerd`],
//! the built-in images imported with no registry, and a pod (sandbox + busybox httpd)
//! run through containerd's CRI on the CNI bridge, answering HTTP from the host.
//!
//! Needs root, containerd, runc, containernetworking-plugins and busybox-static (the
//! project's setup installs them). Everything it creates (containerd, shims, pods,
//! mounts, cgroups, the bridge, the temp dir) is removed by [`Cleanup`], also when an
//! assertion fails.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use skiff_agent::cni::{self, CniNetwork};
use skiff_agent::containerd::{self, ContainerdOptions, ManagedContainerd};
use skiff_agent::images::{self, ImageError, BUSYBOX_IMAGE, PAUSE_IMAGE};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::transport::{Channel, Endpoint};

/// Removes everything the test made, in dependency order, on success and on panic.
struct Cleanup {
    dir: Option<tempfile::TempDir>,
    state_dir: PathBuf,
    bridge: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.state_dir.join("containerd.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("level=info")).collect();
            eprintln!(
                "containerd.log (warnings and errors):\n{}",
                lines.join("\n")
            );
        }
        containerd::force_cleanup(&self.state_dir);
        cni::remove_bridge(&self.bridge);
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// A bridge name and /24 unlikely to collide with other tests running at once.
fn unique_suffix() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    nanos ^ std::process::id().rotate_left(16)
}

async fn cri_channel(socket: &Path) -> Channel {
    let socket = socket.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the unix socket.
    Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .unwrap()
}

/// One HTTP/1.0 GET; returns the whole response.
async fn http_get(addr: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n").await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

async fn http_get_eventually(addr: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match http_get(addr).await {
            Ok(resp) if resp.contains("200 OK") => return resp,
            other if Instant::now() >= deadline => {
                panic!("GET http://{addr}/ never answered: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

async fn ctr_images(socket: &Path) -> Vec<String> {
    let out = tokio::process::Command::new("ctr")
        .arg("--address")
        .arg(socket)
        .args(["-n", "k8s.io", "images", "ls", "-q"])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Rewrites a built OCI layout so its index names the image only by a short
/// `org.opencontainers.image.ref.name`, as other tools write it.
fn with_short_ref_name(src: &Path, dst: &Path, short: &str) {
    let mut out = tar::Builder::new(Vec::new());
    let mut archive = tar::Archive::new(std::fs::File::open(src).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if path == Path::new("index.json") {
            let mut index: serde_json::Value = serde_json::from_slice(&data).unwrap();
            index["manifests"][0]["annotations"] =
                serde_json::json!({ "org.opencontainers.image.ref.name": short });
            data = serde_json::to_vec(&index).unwrap();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        out.append_data(&mut header, &path, data.as_slice())
            .unwrap();
    }
    std::fs::write(dst, out.into_inner().unwrap()).unwrap();
}

/// Repacks a built OCI layout as `docker save` would write it: `manifest.json` with
/// `RepoTags`, the config as `<hex>.json`, the layer as `<hex>/layer.tar`.
fn to_docker_archive(src: &Path, dst: &Path, repo_tag: &str) {
    let mut blobs = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(std::fs::File::open(src).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        blobs.insert(path, data);
    }
    let blob = |digest: &serde_json::Value| {
        let hex = digest
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string();
        (hex.clone(), blobs[&format!("blobs/sha256/{hex}")].clone())
    };
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let (_, manifest) = blob(&index["manifests"][0]["digest"]);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let (config_hex, config) = blob(&manifest["config"]["digest"]);
    let (layer_hex, layer) = blob(&manifest["layers"][0]["digest"]);
    let docker_manifest = serde_json::json!([{
        "Config": format!("{config_hex}.json"),
        "RepoTags": [repo_tag],
        "Layers": [format!("{layer_hex}/layer.tar")],
    }]);
    let mut out = tar::Builder::new(Vec::new());
    for (path, data) in [
        (format!("{config_hex}.json"), config),
        (format!("{layer_hex}/layer.tar"), layer),
        (
            "manifest.json".to_string(),
            serde_json::to_vec(&docker_manifest).unwrap(),
        ),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        out.append_data(&mut header, path, data.as_slice()).unwrap();
    }
    std::fs::write(dst, out.into_inner().unwrap()).unwrap();
}

fn gzip_file(src: &Path, dst: &Path) {
    let data = std::fs::read(src).unwrap();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut enc, &data).unwrap();
    std::fs::write(dst, enc.finish().unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_images_and_a_pod_on_the_bridge() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root (containerd, runc, CNI)");
        return;
    }
    let suffix = unique_suffix();
    let dir = tempfile::Builder::new()
        .prefix("skt")
        .tempdir_in("/tmp")
        .unwrap();
    let root = dir.path().to_path_buf();
    let bridge = format!("skt{:06x}", suffix & 0xff_ffff);
    let subnet = 20 + (suffix >> 8) % 200;
    let pod_cidr = format!("10.199.{subnet}.0/24");
    let state_dir = root.join("containerd");
    let _cleanup = Cleanup {
        dir: Some(dir),
        state_dir: state_dir.clone(),
        bridge: bridge.clone(),
    };

    let conf_dir = root.join("net.d");
    let t = Instant::now();
    let managed = ManagedContainerd::start(ContainerdOptions {
        state_dir: state_dir.clone(),
        sandbox_image: PAUSE_IMAGE.into(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir: conf_dir.clone(),
        log_level: "info".into(),
    })
    .await
    .unwrap();
    eprintln!("timing: containerd start {:?}", t.elapsed());
    let socket = managed.socket().to_path_buf();
    assert_eq!(socket, state_dir.join("containerd.sock"));
    // `start` returns only once the CRI plugin is initialised: the first CRI call
    // works (containerd 1.6 answers Version earlier, and everything else with "server
    // is not initialized yet").
    RuntimeServiceClient::new(cri_channel(&socket).await)
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .expect("CRI not usable right after ManagedContainerd::start");

    // Built-in images, twice: the second call finds them and does nothing.
    let work = root.join("work");
    let t = Instant::now();
    images::ensure_builtin_images(&socket, &work).await.unwrap();
    eprintln!(
        "timing: build+import both built-in images {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    images::ensure_builtin_images(&socket, &work).await.unwrap();
    eprintln!(
        "timing: ensure_builtin_images when present {:?}",
        t.elapsed()
    );
    let names = ctr_images(&socket).await;
    assert!(names.iter().any(|n| n == PAUSE_IMAGE), "{names:?}");
    assert!(names.iter().any(|n| n == BUSYBOX_IMAGE), "{names:?}");
    assert!(images::image_present(&socket, PAUSE_IMAGE).await.unwrap());
    assert!(!images::image_present(&socket, "skiff.local/nope:1")
        .await
        .unwrap());

    // Archives naming images by short names come out fully qualified; a gzip'ed one
    // and a garbage one in an images dir: the good ones import, the bad one is skipped.
    let built = work.join("src.tar");
    images::build_busybox_image(&built, "skiff.local/src:1", &[]).unwrap();
    let images_dir = root.join("images");
    std::fs::create_dir_all(&images_dir).unwrap();
    with_short_ref_name(&built, &images_dir.join("a.tar"), "sktshort:2");
    let b_plain = work.join("b.tar");
    with_short_ref_name(&built, &b_plain, "sktorg/gz:3");
    gzip_file(&b_plain, &images_dir.join("b.tar.gz"));
    std::fs::write(
        images_dir.join("c.tar"),
        b"this is not a tar file, not even close",
    )
    .unwrap();
    std::fs::write(images_dir.join("readme.txt"), b"ignored").unwrap();
    to_docker_archive(&built, &images_dir.join("d.tar"), "sktdocker:5");
    let imported = images::import_dir(&socket, &images_dir).await.unwrap();
    assert_eq!(
        imported,
        vec![
            "docker.io/library/sktshort:2".to_string(),
            "docker.io/sktorg/gz:3".to_string(),
            "docker.io/library/sktdocker:5".to_string(),
        ]
    );
    let names = ctr_images(&socket).await;
    assert!(
        !names.iter().any(|n| n.starts_with("import-")),
        "stray names left: {names:?}"
    );
    let err = images::import_archive(&socket, &images_dir.join("c.tar"))
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::NotAnArchive { .. }), "{err}");

    // The CRI plugin sees the imported images.
    let channel = cri_channel(&socket).await;
    let mut image_client = ImageServiceClient::new(channel.clone());
    for name in [PAUSE_IMAGE, BUSYBOX_IMAGE, "sktshort:2", "sktdocker:5"] {
        let status = image_client
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: name.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            status.image.is_some(),
            "CRI ImageStatus does not find {name}"
        );
    }

    // The CNI config is written after containerd started, as the agent does (it learns
    // its pod CIDR from its Node): containerd 1.6 watches conf_dir and reloads.
    let net = CniNetwork {
        name: "skiff-test".into(),
        bridge: bridge.clone(),
        pod_cidr: pod_cidr.clone(),
        ipam_data_dir: root.join("ipam"),
        mtu: None,
    };
    cni::write_config(&conf_dir, &net).unwrap();

    // A pod: sandbox on the bridge, then busybox httpd in it.
    let mut rt = RuntimeServiceClient::new(channel.clone());
    let sandbox_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: "httpd".into(),
            uid: format!("skt-{suffix:08x}"),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "httpd".into(),
        log_directory: root.join("logs").to_string_lossy().into_owned(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    // kubelet's default without shareProcessNamespace.
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let t = Instant::now();
    let sandbox_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(sandbox_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    eprintln!("timing: RunPodSandbox {:?}", t.elapsed());
    let status = rt
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    assert!(
        ip.starts_with(&format!("10.199.{subnet}.")),
        "pod IP {ip:?} not in {pod_cidr}"
    );

    let t = Instant::now();
    let container_id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.clone(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata { name: "httpd".into(), attempt: 0 }),
                image: Some(cri::ImageSpec { image: BUSYBOX_IMAGE.into(), ..Default::default() }),
                command: vec!["sh".into(), "-c".into()],
                // As nobody on port 80: the image's /etc/passwd and /tmp work for a
                // non-root user, and `enable_unprivileged_ports` lets it bind 80.
                args: vec!["mkdir -p /tmp/www && echo hello-skiff > /tmp/www/index.html && exec httpd -f -p 80 -h /tmp/www".into()],
                log_path: "httpd_0.log".into(),
                linux: Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        run_as_user: Some(cri::Int64Value { value: 65534 }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            sandbox_config: Some(sandbox_config.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    rt.start_container(cri::StartContainerRequest {
        container_id: container_id.clone(),
    })
    .await
    .unwrap();
    eprintln!("timing: CreateContainer+StartContainer {:?}", t.elapsed());
    let t = Instant::now();
    let addr = format!("{ip}:80");
    let resp = http_get_eventually(&addr, Duration::from_secs(10)).await;
    assert!(resp.contains("hello-skiff"), "{resp}");
    eprintln!("timing: first HTTP answer after start {:?}", t.elapsed());

    // containerd dies: the supervisor restarts it, and the pod (held by its shim)
    // keeps serving throughout.
    let pid: i32 = std::fs::read_to_string(state_dir.join("containerd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let resp = http_get_eventually(&addr, Duration::from_secs(5)).await;
    assert!(resp.contains("hello-skiff"), "{resp}");
    let t = Instant::now();
    let restarted = loop {
        let new_pid = std::fs::read_to_string(state_dir.join("containerd.pid")).unwrap_or_default();
        if new_pid.trim() != pid.to_string()
            && tokio::net::UnixStream::connect(&socket).await.is_ok()
        {
            break new_pid;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "containerd was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "timing: containerd restarted by the supervisor after {:?} (pid {})",
        t.elapsed(),
        restarted.trim()
    );
    let mut rt = RuntimeServiceClient::new(cri_channel(&socket).await);
    // The restarted CRI plugin needs a moment to reload its state.
    let deadline = Instant::now() + Duration::from_secs(10);
    let state = loop {
        let result = rt
            .container_status(cri::ContainerStatusRequest {
                container_id: container_id.clone(),
                verbose: false,
            })
            .await;
        match result {
            Ok(resp) => break resp.into_inner().status.map(|s| s.state),
            Err(e) if Instant::now() < deadline => {
                eprintln!("waiting for CRI after restart: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("CRI not back after restart: {e}"),
        }
    };
    assert_eq!(state, Some(cri::ContainerState::ContainerRunning as i32));

    // Orderly teardown through CRI: shims exit, mounts and netns go.
    let t = Instant::now();
    rt.stop_container(cri::StopContainerRequest {
        container_id: container_id.clone(),
        timeout: 2,
    })
    .await
    .unwrap();
    rt.remove_container(cri::RemoveContainerRequest { container_id })
        .await
        .unwrap();
    rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
        pod_sandbox_id: sandbox_id.clone(),
    })
    .await
    .unwrap();
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: sandbox_id,
    })
    .await
    .unwrap();
    eprintln!(
        "timing: stop+remove container and sandbox {:?}",
        t.elapsed()
    );
    let left = rt
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(left.is_empty(), "{left:?}");

    let t = Instant::now();
    managed.stop().await;
    eprintln!("timing: containerd stop {:?}", t.elapsed());
    assert!(
        tokio::net::UnixStream::connect(&socket).await.is_err(),
        "containerd still answers after stop"
    );
    assert_eq!(
        containerd::kill_shims(&socket),
        0,
        "shims left after an orderly teardown"
    );
}

/// An agent killed with SIGKILL leaves its containerd running; the next
/// `ManagedContainerd::start` on the same state dir finds it by its pid file and
/// replaces it rather than failing on the locked database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_containerd_left_by_a_killed_agent_is_replaced() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("skt")
        .tempdir_in("/tmp")
        .unwrap();
    let state_dir = dir.path().join("containerd");
    let _cleanup = Cleanup {
        dir: Some(dir),
        state_dir: state_dir.clone(),
        bridge: String::new(),
    };
    let opts = ContainerdOptions::with_defaults(state_dir.parent().unwrap());
    assert_eq!(opts.state_dir, state_dir);

    // First "agent": starts containerd, then is stopped cleanly so that a second,
    // orphaned containerd can be started by hand with the same config.
    let first = ManagedContainerd::start(opts.clone()).await.unwrap();
    first.stop().await;
    let orphan = std::process::Command::new("containerd")
        .arg("--config")
        .arg(opts.config_path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id();
    std::fs::write(opts.pid_path(), format!("{orphan_pid}\n")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(opts.socket_path())
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "orphan containerd never listened"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t = Instant::now();
    let second = ManagedContainerd::start(opts.clone()).await.unwrap();
    eprintln!(
        "timing: start replacing an orphaned containerd {:?}",
        t.elapsed()
    );
    let new_pid: u32 = std::fs::read_to_string(opts.pid_path())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(new_pid, orphan_pid);
    // The orphan is this test's child: reap it (it was stopped by `start`).
    let mut orphan = orphan;
    orphan.wait().unwrap();
    RuntimeServiceClient::new(cri_channel(second.socket()).await)
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap();
    second.stop().await;
}

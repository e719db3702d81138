//! Pure-ish host plumbing tests: containerd config, CNI conflist, built images.
//! No containerd needed (the image tests need `/bin/busybox` from busybox-static).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use skiff_agent::cni::{self, CniNetwork};
use skiff_agent::containerd::{render_config, ContainerdOptions};
use skiff_agent::images::{self, build_busybox_image, normalize_image_name};

fn opts() -> ContainerdOptions {
    ContainerdOptions {
        state_dir: PathBuf::from("/var/lib/skiff/containerd"),
        sandbox_image: images::PAUSE_IMAGE.to_string(),
        cni_bin_dir: PathBuf::from("/usr/lib/cni"),
        cni_conf_dir: PathBuf::from("/var/lib/skiff/cni/net.d"),
        log_level: "info".to_string(),
    }
}

#[test]
fn containerd_config_has_the_required_cri_settings() {
    let c = render_config(&opts());
    for want in [
        "version = 2",
        r#"root = "/var/lib/skiff/containerd/root""#,
        r#"state = "/var/lib/skiff/containerd/state""#,
        r#"address = "/var/lib/skiff/containerd/containerd.sock""#,
        r#"address = "/var/lib/skiff/containerd/containerd.sock.ttrpc""#,
        r#"[plugins."io.containerd.grpc.v1.cri"]"#,
        r#"sandbox_image = "skiff.local/pause:1""#,
        "restrict_oom_score_adj = true",
        r#"stream_server_address = "127.0.0.1""#,
        r#"stream_server_port = "0""#,
        r#"runtime_type = "io.containerd.runc.v2""#,
        "SystemdCgroup = false",
        r#"snapshotter = "overlayfs""#,
        r#"bin_dir = "/usr/lib/cni""#,
        r#"conf_dir = "/var/lib/skiff/cni/net.d""#,
        r#"level = "info""#,
    ] {
        assert!(c.contains(want), "config lacks {want:?}:\n{c}");
    }
    // The CRI plugin must stay enabled.
    let disabled = c
        .lines()
        .find(|l| l.starts_with("disabled_plugins"))
        .unwrap();
    assert!(
        !disabled.contains("io.containerd.grpc.v1.cri"),
        "{disabled}"
    );
}

#[test]
fn containerd_config_escapes_paths() {
    let mut o = opts();
    o.sandbox_image = "a\"b".into();
    let c = render_config(&o);
    assert!(c.contains(r#"sandbox_image = "a\"b""#), "{c}");
}

fn net() -> CniNetwork {
    CniNetwork {
        name: "skiff".into(),
        bridge: "skiff0".into(),
        pod_cidr: "10.42.0.0/24".into(),
        ipam_data_dir: PathBuf::from("/var/lib/skiff/cni/ipam"),
        mtu: Some(1400),
    }
}

#[test]
fn conflist_is_bridge_host_local_portmap() {
    let text = cni::render_conflist(&net()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["name"], "skiff");
    assert_eq!(v["cniVersion"], cni::CNI_VERSION);
    let bridge = &v["plugins"][0];
    assert_eq!(bridge["type"], "bridge");
    assert_eq!(bridge["bridge"], "skiff0");
    assert_eq!(bridge["isGateway"], true);
    assert_eq!(bridge["ipMasq"], false);
    assert_eq!(bridge["hairpinMode"], true);
    assert_eq!(bridge["mtu"], 1400);
    assert_eq!(bridge["ipam"]["type"], "host-local");
    assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "10.42.0.0/24");
    assert_eq!(bridge["ipam"]["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(bridge["ipam"]["dataDir"], "/var/lib/skiff/cni/ipam");
    let portmap = &v["plugins"][1];
    assert_eq!(portmap["type"], "portmap");
    assert_eq!(portmap["capabilities"]["portMappings"], true);
    assert_eq!(v["plugins"].as_array().unwrap().len(), 2);
}

#[test]
fn conflist_ipv6_and_no_mtu() {
    let mut n = net();
    n.pod_cidr = "fd00:42::/64".into();
    n.mtu = None;
    let v: serde_json::Value = serde_json::from_str(&cni::render_conflist(&n).unwrap()).unwrap();
    assert_eq!(v["plugins"][0]["ipam"]["routes"][0]["dst"], "::/0");
    assert!(v["plugins"][0].get("mtu").is_none());
}

#[test]
fn conflist_rejects_bad_input() {
    for cidr in [
        "",
        "garbage",
        "10.42.0.0",
        "10.42.0.1/24",
        "10.42.0.0/33",
        "10.42.0.0/31",
        "300.1.1.0/24",
        "10.0.0.0/x",
    ] {
        let mut n = net();
        n.pod_cidr = cidr.into();
        assert!(cni::render_conflist(&n).is_err(), "accepted CIDR {cidr:?}");
    }
    for bridge in ["", "-x", "a-very-long-bridge-name", "br 0", "br/0"] {
        let mut n = net();
        n.bridge = bridge.into();
        assert!(
            cni::render_conflist(&n).is_err(),
            "accepted bridge {bridge:?}"
        );
    }
    for name in ["", "Skiff", "a/b", "../x"] {
        let mut n = net();
        n.name = name.into();
        assert!(cni::render_conflist(&n).is_err(), "accepted name {name:?}");
    }
}

#[test]
fn write_config_replaces_stale_conflists_of_ours_only() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("10-skiff-old.conflist"), "{}").unwrap();
    std::fs::write(conf.join("99-other.conflist"), "{}").unwrap();
    let mut n = net();
    n.ipam_data_dir = dir.path().join("ipam");
    let path = cni::write_config(&conf, &n).unwrap();
    assert_eq!(path, conf.join("10-skiff-skiff.conflist"));
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text, cni::render_conflist(&n).unwrap());
    assert!(!conf.join("10-skiff-old.conflist").exists());
    assert!(conf.join("99-other.conflist").exists());
    assert!(dir.path().join("ipam").is_dir());
    let mut names: Vec<_> = std::fs::read_dir(&conf)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");

    let mut bad = n.clone();
    bad.pod_cidr = "nope".into();
    let err = cni::write_config(&conf, &bad).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[test]
fn image_names_normalise_like_the_cri() {
    assert_eq!(
        normalize_image_name("busybox").unwrap(),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        normalize_image_name("foo/bar:1").unwrap(),
        "docker.io/foo/bar:1"
    );
    assert_eq!(
        normalize_image_name(images::PAUSE_IMAGE).unwrap(),
        images::PAUSE_IMAGE
    );
    assert_eq!(
        normalize_image_name(images::BUSYBOX_IMAGE).unwrap(),
        images::BUSYBOX_IMAGE
    );
}

/// Reads every entry of a (plain) tar into (path, bytes, link target, mode).
fn tar_entries(data: &[u8]) -> Vec<(String, Vec<u8>, Option<String>, u32)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let link = entry
            .link_name()
            .unwrap()
            .map(|l| l.to_string_lossy().into_owned());
        let mode = entry.header().mode().unwrap();
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).unwrap();
        out.push((path, buf, link, mode));
    }
    out
}

fn blob<'a>(entries: &'a [(String, Vec<u8>, Option<String>, u32)], digest: &str) -> &'a [u8] {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = format!("blobs/sha256/{hex}");
    let data = &entries.iter().find(|e| e.0 == path).unwrap().1;
    let got = format!("sha256:{}", hex_digest(data));
    assert_eq!(got, digest, "blob content does not match its name");
    data
}

fn hex_digest(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

fn build(dir: &Path, file: &str, name: &str, entrypoint: &[&str]) -> Vec<u8> {
    let out = dir.join(file);
    build_busybox_image(&out, name, entrypoint).unwrap();
    std::fs::read(out).unwrap()
}

#[test]
fn busybox_image_is_a_valid_reproducible_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(
        dir.path(),
        "a.tar",
        images::PAUSE_IMAGE,
        &["/bin/busybox", "sleep", "infinity"],
    );
    let b = build(
        dir.path(),
        "b.tar",
        images::PAUSE_IMAGE,
        &["/bin/busybox", "sleep", "infinity"],
    );
    assert_eq!(
        hex_digest(&a),
        hex_digest(&b),
        "image build is not reproducible"
    );

    let entries = tar_entries(&a);
    let oci_layout = &entries.iter().find(|e| e.0 == "oci-layout").unwrap().1;
    assert_eq!(oci_layout.as_slice(), br#"{"imageLayoutVersion":"1.0.0"}"#);
    let index: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "index.json").unwrap().1).unwrap();
    let desc = &index["manifests"][0];
    assert_eq!(
        desc["annotations"]["io.containerd.image.name"],
        images::PAUSE_IMAGE
    );
    assert_eq!(
        desc["annotations"]["org.opencontainers.image.ref.name"],
        images::PAUSE_IMAGE
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(blob(&entries, desc["digest"].as_str().unwrap())).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    let config: serde_json::Value = serde_json::from_slice(blob(
        &entries,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(config["os"], "linux");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(config["architecture"], "amd64");
    }
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/bin/busybox", "sleep", "infinity"])
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );
    let layer = blob(&entries, manifest["layers"][0]["digest"].as_str().unwrap()).to_vec();
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", hex_digest(&layer))
    );

    let files = tar_entries(&layer);
    let find = |p: &str| files.iter().find(|e| e.0 == p || e.0 == format!("{p}/"));
    let busybox = find("bin/busybox").expect("bin/busybox");
    assert_eq!(busybox.1, std::fs::read("/bin/busybox").unwrap());
    assert_eq!(busybox.3, 0o755);
    for applet in [
        "sh", "ls", "cat", "echo", "sleep", "httpd", "wget", "env", "ps", "mkdir", "rm", "true",
        "false", "hostname", "nslookup", "id", "date",
    ] {
        let e = find(&format!("bin/{applet}")).unwrap_or_else(|| panic!("no applet {applet}"));
        assert_eq!(e.2.as_deref(), Some("busybox"), "{applet}");
    }
    for d in ["tmp", "etc", "proc", "sys", "dev", "var", "root"] {
        assert!(find(d).is_some(), "no /{d}");
    }
    assert_eq!(find("tmp").unwrap().3, 0o1777);
    let passwd = String::from_utf8(find("etc/passwd").unwrap().1.clone()).unwrap();
    assert!(passwd.starts_with("root:x:0:0:") && passwd.contains("nobody:x:65534"));
    assert!(find("etc/group").is_some());
}

#[test]
fn busybox_image_without_entrypoint_runs_sh() {
    let dir = tempfile::tempdir().unwrap();
    let a = build(dir.path(), "bb.tar", "busybox", &[]);
    let entries = tar_entries(&a);
    let index: serde_json::Value =
        serde_json::from_slice(&entries.iter().find(|e| e.0 == "index.json").unwrap().1).unwrap();
    // Short names are recorded fully qualified.
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/busybox:latest"
    );
    let manifest: serde_json::Value = serde_json::from_slice(blob(
        &entries,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    let config: serde_json::Value = serde_json::from_slice(blob(
        &entries,
        manifest["config"]["digest"].as_str().unwrap(),
    ))
    .unwrap();
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["sh"]));
    assert!(config["config"].get("Entrypoint").is_none());
    assert_eq!(
        config["config"]["Env"][0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
}

//! Projected volume payloads, the atomic writer, and CRI mounts.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use serde_json::json;

use super::atomic_writer;
use super::env::EnvSources;
use super::volumes::{container_mounts, payload, VolumeError};

fn pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"b": "2", "a": "1"}},
        "spec": {
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "k", "path": "sub/file", "mode": 0o600}]}},
                {"name": "all", "configMap": {"name": "cm"}},
                {"name": "missing", "configMap": {"name": "nope"}},
                {"name": "info", "downwardAPI": {"items": [
                    {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                    {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": "/srv/data"}},
            ],
            "containers": [{"name": "c", "volumeMounts": [
                {"name": "cfg", "mountPath": "/etc/cfg"},
                {"name": "scratch", "mountPath": "/tmp/s", "subPath": "x"},
                {"name": "host", "mountPath": "/data", "readOnly": true}]}],
        },
    }))
    .unwrap()
}

fn sources(v: &str) -> EnvSources {
    let mut s = EnvSources::default();
    let mut cm = ConfigMap::default();
    cm.data = Some(BTreeMap::from([
        ("k".into(), v.into()),
        ("other".into(), "o".into()),
    ]));
    s.config_maps.insert("cm".into(), cm);
    s
}

#[test]
fn payloads_follow_items_modes_and_downward_api_format() {
    let p = pod();
    let vols = p.spec.as_ref().unwrap().volumes.clone().unwrap();
    let cfg = payload(&p, &vols[0], &sources("v1")).unwrap().unwrap();
    assert_eq!(cfg.keys().collect::<Vec<_>>(), vec!["sub/file"]);
    assert_eq!(cfg["sub/file"].mode, 0o600);
    let all = payload(&p, &vols[1], &sources("v1")).unwrap().unwrap();
    assert_eq!(all["other"].mode, 0o644);
    match payload(&p, &vols[2], &sources("v1")) {
        Err(VolumeError::Source { message, .. }) => {
            assert_eq!(message, "configmap \"nope\" not found")
        }
        other => panic!("{other:?}"),
    }
    let info = payload(&p, &vols[3], &sources("v1")).unwrap().unwrap();
    assert_eq!(info["labels"].data, b"a=\"1\"\nb=\"2\"\n");
    assert_eq!(info["name"].data, b"p");
    assert!(payload(&p, &vols[4], &sources("v1")).unwrap().is_none());
}

#[test]
fn atomic_writer_swaps_data_and_prunes() {
    let dir = tempfile::tempdir().unwrap();
    let p = pod();
    let vols = p.spec.as_ref().unwrap().volumes.clone().unwrap();
    let v1 = payload(&p, &vols[1], &sources("v1")).unwrap().unwrap();
    assert!(atomic_writer::write(dir.path(), &v1).unwrap());
    assert!(
        !atomic_writer::write(dir.path(), &v1).unwrap(),
        "unchanged payload is left alone"
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("k")).unwrap(), "v1");
    assert!(std::fs::symlink_metadata(dir.path().join("k"))
        .unwrap()
        .file_type()
        .is_symlink());
    let mut v2 = payload(&p, &vols[1], &sources("v2")).unwrap().unwrap();
    v2.remove("other");
    assert!(atomic_writer::write(dir.path(), &v2).unwrap());
    assert_eq!(std::fs::read_to_string(dir.path().join("k")).unwrap(), "v2");
    assert!(!dir.path().join("other").exists());
    // Only one timestamped dir remains, plus ..data and the user link.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(!atomic_writer::valid_path("../escape") && !atomic_writer::valid_path("/abs"));
}

#[test]
fn mounts_resolve_volumes_and_force_projected_read_only() {
    let p = pod();
    let c = &p.spec.as_ref().unwrap().containers[0];
    let m = container_mounts(&p, c, std::path::Path::new("/pd")).unwrap();
    let got: Vec<_> = m
        .iter()
        .map(|m| (m.container_path.as_str(), m.host_path.as_str(), m.readonly))
        .collect();
    assert_eq!(
        got,
        vec![
            ("/etc/cfg", "/pd/volumes/kubernetes.io~configmap/cfg", true),
            (
                "/tmp/s",
                "/pd/volumes/kubernetes.io~empty-dir/scratch/x",
                false
            ),
            ("/data", "/srv/data", true),
        ]
    );
}

#[test]
fn claim_volumes_link_the_bound_volume_and_wait_until_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let pv_dir = tmp.path().join("local-path/pvc-1_ns_data");
    let pod_dir = tmp.path().join("pod");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web-0", "namespace": "ns", "uid": "u2"},
        "spec": {
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        },
    }))
    .unwrap();
    let mut src = EnvSources::default();
    src.claims.insert(
        "data-web-0".into(),
        Err("PersistentVolumeClaim is not bound: \"data-web-0\"".into()),
    );
    let mut written = Default::default();
    let err = super::volumes::setup(&pod_dir, &pod, &src, &mut written).unwrap_err();
    assert!(matches!(err, VolumeError::Source { .. }), "{err}");
    assert!(err.to_string().contains("not bound"), "{err}");

    src.claims
        .insert("data-web-0".into(), Ok(pv_dir.display().to_string()));
    // Twice: the second set-up finds the link in place.
    for _ in 0..2 {
        super::volumes::setup(&pod_dir, &pod, &src, &mut written).unwrap();
    }
    assert!(
        pv_dir.is_dir(),
        "the volume's directory is made on first use"
    );
    let mounts =
        container_mounts(&pod, &pod.spec.as_ref().unwrap().containers[0], &pod_dir).unwrap();
    let link = std::path::PathBuf::from(&mounts[0].host_path);
    assert_eq!(std::fs::read_link(&link).unwrap(), pv_dir);
    std::fs::write(link.join("f"), "kept").unwrap();
    // Tearing the pod down removes the link, never the volume's data.
    super::volumes::teardown(&pod_dir).unwrap();
    assert!(!pod_dir.exists());
    assert_eq!(std::fs::read_to_string(pv_dir.join("f")).unwrap(), "kept");
}

/// The volume the ServiceAccount admission plugin adds.
fn token_pod() -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {
            "serviceAccountName": "default",
            "volumes": [{"name": "kube-api-access-abcde", "projected": {"defaultMode": 0o644, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "kube-api-access-abcde",
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]}],
        },
    }))
    .unwrap()
}

#[test]
fn projected_volumes_combine_token_ca_and_namespace() {
    let p = token_pod();
    let v = &p.spec.as_ref().unwrap().volumes.as_ref().unwrap()[0];
    let mut src = EnvSources::default();
    // No CA ConfigMap and no token yet: the pod waits, with kubelet's reason.
    let key = super::token::TokenKey::of_pod(&p).remove(0);
    src.tokens.insert(key.clone(), Ok("jwt".into()));
    match payload(&p, v, &src) {
        Err(VolumeError::Source { message, .. }) => {
            assert_eq!(message, "configmap \"kube-root-ca.crt\" not found")
        }
        other => panic!("{other:?}"),
    }
    let mut cm = ConfigMap::default();
    cm.data = Some(BTreeMap::from([("ca.crt".into(), "PEM".into())]));
    src.config_maps.insert("kube-root-ca.crt".into(), cm);
    let files = payload(&p, v, &src).unwrap().unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        ["ca.crt", "namespace", "token"]
    );
    assert_eq!(files["token"].data, b"jwt");
    assert_eq!(files["token"].mode, 0o644);
    assert_eq!(files["namespace"].data, b"ns");
    assert_eq!(files["ca.crt"].data, b"PEM");
    src.tokens
        .insert(key, Err("failed to fetch token: forbidden".into()));
    match payload(&p, v, &src) {
        Err(VolumeError::Source { message, .. }) => {
            assert_eq!(message, "failed to fetch token: forbidden")
        }
        other => panic!("{other:?}"),
    }
    // Mounted read-only under the projected plugin's directory.
    let c = &p.spec.as_ref().unwrap().containers[0];
    let mounts = container_mounts(&p, c, std::path::Path::new("/pods/u1")).unwrap();
    assert_eq!(
        mounts[0].host_path,
        "/pods/u1/volumes/kubernetes.io~projected/kube-api-access-abcde"
    );
    assert!(mounts[0].readonly);
}

//! Env resolution, `$(VAR)` expansion, resources, QoS and securityContext mapping.
#![allow(clippy::field_reassign_with_default)]

use std::collections::BTreeMap;

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::ByteString;
use serde_json::json;

use super::env::{container_env, expand, EnvSources};
use super::resources::{parse_milli, qos_class, ContainerResources};
use super::security::{container_security_context, verify_run_as_non_root};

#[test]
fn expansion_follows_kubernetes_rules() {
    let vars = |n: &str| (n == "A").then(|| "1".to_string());
    for (input, want) in [
        ("$(A)", "1"),
        ("x$(A)y$(A)", "x1y1"),
        ("$(B)", "$(B)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$A", "$A"),
        ("$(A", "$(A"),
        ("a$", "a$"),
    ] {
        assert_eq!(expand(input, &vars), want, "{input}");
    }
}

fn pod(containers: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "serviceAccountName": "sa", "containers": containers},
    }))
    .unwrap()
}

fn sources() -> EnvSources {
    let mut s = EnvSources {
        pod_ip: "10.0.0.5".into(),
        host_ip: "192.0.2.1".into(),
        node_cpu_milli: 2000,
        node_memory_bytes: 1 << 30,
        ..Default::default()
    };
    let mut cm = ConfigMap::default();
    cm.data = Some(BTreeMap::from([
        ("k".into(), "cmv".into()),
        ("1bad".into(), "x".into()),
    ]));
    s.config_maps.insert("cm".into(), cm);
    let mut sec = Secret::default();
    sec.data = Some(BTreeMap::from([(
        "pw".into(),
        ByteString(b"secret".to_vec()),
    )]));
    s.secrets.insert("sec".into(), sec);
    s
}

#[test]
fn env_from_every_source() {
    let p = pod(json!([{
        "name": "c",
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
        "envFrom": [{"configMapRef": {"name": "cm"}}, {"secretRef": {"name": "sec"}, "prefix": "S_"}],
        "env": [
            {"name": "A", "value": "a"},
            {"name": "B", "value": "$(A)-$(k)-$(NOPE)"},
            {"name": "CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}},
            {"name": "SEC", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "LABEL", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k", "optional": true}}},
        ],
    }]));
    let c = &p.spec.as_ref().unwrap().containers[0];
    let env = container_env(&p, c, &sources()).unwrap();
    let get = |k: &str| env.iter().find(|e| e.0 == k).map(|e| e.1.as_str());
    assert_eq!(get("k"), Some("cmv"));
    assert_eq!(get("1bad"), None, "invalid names are skipped");
    assert_eq!(get("S_pw"), Some("secret"));
    assert_eq!(get("B"), Some("a-cmv-$(NOPE)"));
    assert_eq!(get("CM"), Some("cmv"));
    assert_eq!(get("SEC"), Some("secret"));
    assert_eq!(get("NAME"), Some("p"));
    assert_eq!(get("NS"), Some("ns"));
    assert_eq!(get("UID"), Some("u1"));
    assert_eq!(get("LABEL"), Some("web"));
    assert_eq!(get("NODE"), Some("n1"));
    assert_eq!(get("SA"), Some("sa"));
    assert_eq!(get("IP"), Some("10.0.0.5"));
    assert_eq!(get("HOST"), Some("192.0.2.1"));
    assert_eq!(get("CPU"), Some("1"), "500m rounds up to 1 core");
    assert_eq!(get("MEM"), Some("64"));
    assert_eq!(get("OPT"), None);
}

#[test]
fn missing_references_are_config_errors_with_kubernetes_messages() {
    for (env, want) in [
        (
            json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k"}}}]),
            "configmap \"x\" not found",
        ),
        (
            json!([{"name": "X", "valueFrom": {"secretKeyRef": {"name": "y", "key": "k"}}}]),
            "secret \"y\" not found",
        ),
        (
            json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "zz"}}}]),
            "couldn't find key zz in ConfigMap ns/cm",
        ),
    ] {
        let p = pod(json!([{"name": "c", "env": env}]));
        let c = &p.spec.as_ref().unwrap().containers[0];
        assert_eq!(container_env(&p, c, &sources()).unwrap_err().0, want);
    }
}

fn with_resources(req: &[(&str, &str)], lim: &[(&str, &str)]) -> Container {
    let q = |v: &[(&str, &str)]| {
        Some(
            v.iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        )
    };
    Container {
        name: "c".into(),
        resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
            requests: if req.is_empty() { None } else { q(req) },
            limits: if lim.is_empty() { None } else { q(lim) },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn quantities_and_resource_conversion() {
    for (q, milli) in [
        ("1", 1000),
        ("250m", 250),
        ("0.5", 500),
        ("1Ki", 1_024_000),
        ("16Mi", 16 * 1024 * 1024 * 1000),
        ("1e3", 1_000_000),
        ("1k", 1_000_000),
    ] {
        assert_eq!(parse_milli(q), Ok(milli), "{q}");
    }
    assert!(parse_milli("abc").is_err());
    let r = ContainerResources::of(&with_resources(
        &[("cpu", "250m")],
        &[("cpu", "500m"), ("memory", "16Mi")],
    ))
    .unwrap()
    .to_cri();
    assert_eq!(
        (
            r.cpu_shares,
            r.cpu_quota,
            r.cpu_period,
            r.memory_limit_in_bytes
        ),
        (256, 50_000, 100_000, 16 << 20)
    );
    // No request: minimum shares; a tiny one too.
    assert_eq!(
        ContainerResources::of(&with_resources(&[], &[]))
            .unwrap()
            .to_cri()
            .cpu_shares,
        2
    );
    assert_eq!(
        ContainerResources::of(&with_resources(&[("cpu", "1m")], &[]))
            .unwrap()
            .to_cri()
            .cpu_shares,
        2
    );
}

#[test]
fn qos_classes() {
    let pod_of = |c: Container| {
        let mut p = Pod::default();
        p.spec = Some(k8s_openapi::api::core::v1::PodSpec {
            containers: vec![c],
            ..Default::default()
        });
        p
    };
    assert_eq!(qos_class(&pod_of(with_resources(&[], &[]))), "BestEffort");
    assert_eq!(
        qos_class(&pod_of(with_resources(
            &[],
            &[("cpu", "1"), ("memory", "1Gi")]
        ))),
        "Guaranteed"
    );
    assert_eq!(
        qos_class(&pod_of(with_resources(
            &[("cpu", "1"), ("memory", "1Gi")],
            &[("cpu", "1"), ("memory", "1Gi")]
        ))),
        "Guaranteed"
    );
    assert_eq!(
        qos_class(&pod_of(with_resources(
            &[("cpu", "500m")],
            &[("cpu", "1"), ("memory", "1Gi")]
        ))),
        "Burstable"
    );
    assert_eq!(
        qos_class(&pod_of(with_resources(&[("memory", "1Gi")], &[]))),
        "Burstable"
    );
}

#[test]
fn security_context_mapping_and_run_as_non_root() {
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "supplementalGroups": [5]},
                 "containers": [{"name": "c", "securityContext": {
                     "runAsUser": 2000, "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
                     "capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}}]},
    }))
    .unwrap();
    let c = &p.spec.as_ref().unwrap().containers[0];
    let sc = container_security_context(&p, c, cri::NamespaceOption::default(), None);
    assert_eq!(sc.run_as_user.map(|u| u.value), Some(2000));
    assert_eq!(sc.run_as_group.map(|u| u.value), Some(3000));
    assert!(sc.readonly_rootfs && sc.no_new_privs && !sc.privileged);
    assert_eq!(sc.supplemental_groups, vec![5]);
    let caps = sc.capabilities.unwrap();
    assert_eq!(
        (caps.add_capabilities, caps.drop_capabilities),
        (vec!["CAP_NET_ADMIN".to_string()], vec!["ALL".to_string()])
    );

    let nonroot = |user: Option<i64>| {
        let mut p = Pod::default();
        p.metadata.name = Some("p".into());
        let c = Container {
            name: "c".into(),
            security_context: Some(k8s_openapi::api::core::v1::SecurityContext {
                run_as_non_root: Some(true),
                run_as_user: user,
                ..Default::default()
            }),
            ..Default::default()
        };
        (p, c)
    };
    let (p, c) = nonroot(None);
    let err = verify_run_as_non_root(&p, &c, Some(0), "").unwrap_err();
    assert!(
        err.0
            .starts_with("container has runAsNonRoot and image will run as root"),
        "{err}"
    );
    assert!(verify_run_as_non_root(&p, &c, Some(1000), "").is_ok());
    let (p, c) = nonroot(Some(0));
    assert!(verify_run_as_non_root(&p, &c, Some(1000), "")
        .unwrap_err()
        .0
        .contains("runAsUser breaks non-root policy"));
    let (p, c) = nonroot(Some(1000));
    assert!(verify_run_as_non_root(&p, &c, Some(0), "").is_ok());
}

//! From a Kubernetes Pod to CRI configs: `PodSandboxConfig` and
//! `ContainerConfig`. Pure functions, following kubelet's
//! `kuberuntime_sandbox.go` (`generatePodSandboxConfig`) and
//! `kuberuntime_container.go` (`generateContainerConfig`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod};

use super::env::{expand_command, ConfigError};
use super::resources::ContainerResources;
use super::security::container_security_context;
use crate::cri::labels;

/// Identity of a pod as CRI labels carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID (the key the agent uses everywhere).
    pub uid: String,
}

impl PodRef {
    /// Reads the identity of a pod object; `None` if it lacks name or uid.
    pub fn of(pod: &Pod) -> Option<PodRef> {
        Some(PodRef {
            namespace: pod
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: pod.metadata.name.clone()?,
            uid: pod.metadata.uid.clone()?,
        })
    }
}

/// Kubelet's pod log directory: `<root>/pods/<namespace>_<name>_<uid>`
/// (kubelet uses `/var/log/pods`; Skiff keeps it under the data dir).
pub fn pod_log_dir(data_dir: &Path, pod: &PodRef) -> PathBuf {
    data_dir
        .join("pods")
        .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid))
}

/// Container log path relative to the pod log directory:
/// `<container>/<restartCount>.log`, as kubelet's `BuildContainerLogsPath`.
pub fn container_log_path(container: &str, restart_count: u32) -> String {
    format!("{container}/{restart_count}.log")
}

fn pod_labels(pod: &Pod, r: &PodRef, node: &str) -> HashMap<String, String> {
    let mut l: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    l.insert(labels::POD_NAME.into(), r.name.clone());
    l.insert(labels::POD_NAMESPACE.into(), r.namespace.clone());
    l.insert(labels::POD_UID.into(), r.uid.clone());
    l.insert(labels::SKIFF_NODE.into(), node.into());
    l
}

fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// Namespace sharing the way kubelet defaults it: network and IPC per pod
/// (or the node's for hostNetwork), PID per container unless
/// `shareProcessNamespace`.
fn namespace_options(pod: &Pod) -> cri::NamespaceOption {
    let spec = pod.spec.as_ref();
    let share_pid = spec
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false);
    cri::NamespaceOption {
        network: if host_network(pod) {
            cri::NamespaceMode::Node
        } else {
            cri::NamespaceMode::Pod
        } as i32,
        pid: if share_pid {
            cri::NamespaceMode::Pod
        } else {
            cri::NamespaceMode::Container
        } as i32,
        ipc: cri::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

/// Kubelet's default seccomp profile is Unconfined unless the pod asks
/// otherwise (the proto's zero value is RuntimeDefault, so it must be set).
fn unconfined() -> Option<cri::SecurityProfile> {
    Some(cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    })
}

/// The hostname a pod's sandbox gets: `spec.hostname`, else the pod name
/// truncated to 63 characters (kubelet `GeneratePodHostNameAndDomain`).
pub fn pod_hostname(pod: &Pod, r: &PodRef) -> String {
    let h = pod
        .spec
        .as_ref()
        .and_then(|s| s.hostname.clone())
        .unwrap_or_else(|| r.name.clone());
    h.chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '.'])
        .to_string()
}

/// `PodSandboxConfig` for attempt `attempt` of this pod on node `node`.
pub fn sandbox_config(
    node: &str,
    pod: &Pod,
    r: &PodRef,
    data_dir: &Path,
    attempt: u32,
    cluster_dns: Option<&super::dns::ClusterDns>,
) -> cri::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let port_mappings = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.clone().unwrap_or_default())
        .filter(|p| p.host_port.unwrap_or(0) > 0)
        .map(|p| cri::PortMapping {
            protocol: match p.protocol.as_deref() {
                Some("UDP") => cri::Protocol::Udp,
                Some("SCTP") => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            } as i32,
            container_port: p.container_port,
            host_port: p.host_port.unwrap_or(0),
            host_ip: p.host_ip.unwrap_or_default(),
        })
        .collect();
    let security = spec.security_context.clone().unwrap_or_default();
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: r.name.clone(),
            uid: r.uid.clone(),
            namespace: r.namespace.clone(),
            attempt,
        }),
        hostname: if host_network(pod) {
            String::new()
        } else {
            pod_hostname(pod, r)
        },
        log_directory: pod_log_dir(data_dir, r).display().to_string(),
        dns_config: super::dns::dns_config(pod, cluster_dns),
        port_mappings,
        labels: pod_labels(pod, r, node),
        annotations: pod
            .metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        linux: Some(cri::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                run_as_user: security.run_as_user.map(|value| cri::Int64Value { value }),
                run_as_group: security.run_as_group.map(|value| cri::Int64Value { value }),
                supplemental_groups: security.supplemental_groups.unwrap_or_default(),
                seccomp: unconfined(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

/// What a container's config needs besides its spec, resolved by the
/// worker from API objects and the node ([`super::env`], [`super::volumes`]).
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// The environment, in order.
    pub env: Vec<(String, String)>,
    /// CRI mounts of its volumes.
    pub mounts: Vec<cri::Mount>,
}

/// `ContainerConfig` for attempt `attempt` (= its restart count) of a
/// container: `$(VAR)` expanded in command and args, resources and the
/// security context mapped (kubelet `generateContainerConfig`).
pub fn container_config(
    node: &str,
    pod: &Pod,
    r: &PodRef,
    c: &Container,
    attempt: u32,
    resolved: &Resolved,
) -> Result<cri::ContainerConfig, ConfigError> {
    let mut l = HashMap::new();
    l.insert(labels::POD_NAME.into(), r.name.clone());
    l.insert(labels::POD_NAMESPACE.into(), r.namespace.clone());
    l.insert(labels::POD_UID.into(), r.uid.clone());
    l.insert(labels::CONTAINER_NAME.into(), c.name.clone());
    l.insert(labels::SKIFF_NODE.into(), node.into());
    let mut annotations = HashMap::new();
    // Kubelet records these so restart counts and termination handling survive
    // a kubelet restart (kubelet `labels.go`).
    annotations.insert(
        "io.kubernetes.container.restartCount".into(),
        attempt.to_string(),
    );
    if let Some(grace) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        annotations.insert(
            "io.kubernetes.pod.terminationGracePeriod".into(),
            grace.to_string(),
        );
    }
    let resources = ContainerResources::of(c).map_err(|e| ConfigError(e.to_string()))?;
    let (command, args) = expand_command(c, &resolved.env);
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: c.name.clone(),
            attempt,
        }),
        image: Some(cri::ImageSpec {
            image: c.image.clone().unwrap_or_default(),
            user_specified_image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: c.working_dir.clone().unwrap_or_default(),
        envs: resolved
            .env
            .iter()
            .map(|(key, value)| cri::KeyValue {
                key: key.clone(),
                value: value.clone(),
            })
            .collect(),
        mounts: resolved.mounts.clone(),
        labels: l,
        annotations,
        log_path: container_log_path(&c.name, attempt),
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources.to_cri()),
            security_context: Some(container_security_context(
                pod,
                c,
                namespace_options(pod),
                unconfined(),
            )),
        }),
        ..Default::default()
    })
}

//! `securityContext` → CRI `LinuxContainerSecurityContext`, and the
//! `runAsNonRoot` check kubelet makes before creating a container. Pure,
//! after kubelet's `security_context.go` (`determineEffectiveSecurityContext`:
//! container fields override the pod's) and `verifyRunAsNonRoot`.

use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::{Container, Pod, PodSecurityContext, SecurityContext};

use super::env::ConfigError;

/// The container's settings merged over the pod's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effective {
    /// UID.
    pub run_as_user: Option<i64>,
    /// GID.
    pub run_as_group: Option<i64>,
    /// Must not run as UID 0.
    pub run_as_non_root: bool,
}

fn pod_sc(pod: &Pod) -> PodSecurityContext {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default()
}

/// The effective user settings of `c` in `pod`.
pub fn effective(pod: &Pod, c: &Container) -> Effective {
    let p = pod_sc(pod);
    let sc = c.security_context.clone().unwrap_or_default();
    Effective {
        run_as_user: sc.run_as_user.or(p.run_as_user),
        run_as_group: sc.run_as_group.or(p.run_as_group),
        run_as_non_root: sc.run_as_non_root.or(p.run_as_non_root).unwrap_or(false),
    }
}

/// Kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot`, an explicit UID 0
/// or an image whose user is root refuses to start (as
/// `CreateContainerConfigError`). `image_uid`/`image_user` come from CRI
/// `ImageStatus`; an image with neither counts as root (kubelet
/// `getImageUser`: "if none of them is set, treat it as root").
pub fn verify_run_as_non_root(
    pod: &Pod,
    c: &Container,
    image_uid: Option<i64>,
    image_user: &str,
) -> Result<(), ConfigError> {
    let e = effective(pod, c);
    if !e.run_as_non_root {
        return Ok(());
    }
    let who = format!(
        "(pod: \"{}_{}({})\", container: {})",
        pod.metadata.name.as_deref().unwrap_or_default(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or_default(),
        c.name
    );
    let image_uid = image_uid.or_else(|| image_user.is_empty().then_some(0));
    match (e.run_as_user, image_uid) {
        (Some(0), _) => Err(ConfigError(format!(
            "container's runAsUser breaks non-root policy {who}"
        ))),
        (Some(_), _) => Ok(()),
        (None, Some(0)) => Err(ConfigError(format!(
            "container has runAsNonRoot and image will run as root {who}"
        ))),
        (None, Some(_)) => Ok(()),
        (None, None) if !image_user.is_empty() => Err(ConfigError(format!(
            "container has runAsNonRoot and image has non-numeric user ({image_user}), cannot verify user is non-root {who}"
        ))),
        (None, None) => Ok(()),
    }
}

/// Capability names as the runtime wants them: `CAP_` prefixed, or `ALL`.
fn caps(names: Option<&Vec<String>>) -> Vec<String> {
    names
        .into_iter()
        .flatten()
        .map(|n| {
            let n = n.to_ascii_uppercase();
            if n == "ALL" || n.starts_with("CAP_") {
                n
            } else {
                format!("CAP_{n}")
            }
        })
        .collect()
}

/// The CRI security context of `c`; `namespace_options` and `seccomp` are
/// the pod-level ones the caller computed.
pub fn container_security_context(
    pod: &Pod,
    c: &Container,
    namespace_options: cri::NamespaceOption,
    seccomp: Option<cri::SecurityProfile>,
) -> cri::LinuxContainerSecurityContext {
    let p = pod_sc(pod);
    let sc: SecurityContext = c.security_context.clone().unwrap_or_default();
    let e = effective(pod, c);
    let privileged = sc.privileged.unwrap_or(false);
    let capabilities = sc.capabilities.as_ref().map(|cap| cri::Capability {
        add_capabilities: caps(cap.add.as_ref()),
        drop_capabilities: caps(cap.drop.as_ref()),
        ..Default::default()
    });
    // Kubernetes: allowPrivilegeEscalation defaults to true, and is always
    // true when privileged or with CAP_SYS_ADMIN; false sets no_new_privs.
    let no_new_privs = sc.allow_privilege_escalation == Some(false) && !privileged;
    cri::LinuxContainerSecurityContext {
        capabilities,
        privileged,
        namespace_options: Some(namespace_options),
        run_as_user: e.run_as_user.map(|value| cri::Int64Value { value }),
        run_as_group: e.run_as_group.map(|value| cri::Int64Value { value }),
        readonly_rootfs: sc.read_only_root_filesystem.unwrap_or(false),
        supplemental_groups: p.supplemental_groups.clone().unwrap_or_default(),
        no_new_privs,
        seccomp,
        ..Default::default()
    }
}

//! containerd's `config.toml` (version 2, as read by containerd 1.6); part of
//! [`super`].

use std::fmt::Write as _;
use std::path::Path;

use super::ContainerdOptions;

/// Plugins a CRI node does not need (never `io.containerd.runtime.v1.linux`: in 1.6
/// the tasks service, and with it the CRI plugin, fails to load without it). Disabling them saves memory and start-up time,
/// and `opt` would otherwise create `/opt/containerd` on the host.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
];

/// A TOML basic string (quotes, backslashes and control characters escaped).
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_path(p: &Path) -> String {
    toml_str(&p.to_string_lossy())
}

/// Renders containerd's config for `opts` (pure).
///
/// The CRI plugin settings and why:
/// - `sandbox_image`: our imported pause image, fully qualified, so the CRI never
///   tries to pull `registry.k8s.io/pause` (no registry is reachable offline).
/// - `restrict_oom_score_adj = true`: this VM refuses lowering `oom_score_adj`;
///   without it every sandbox fails in `runc create` (MACHINE-NOTES).
/// - runc via the v2 shim with `SystemdCgroup = false`: the hosts run cgroups v1
///   managed by cgroupfs, not systemd.
/// - runc's state `Root` under our state dir instead of the shared
///   `/run/containerd/runc`, so a forced clean-up finds and removes it with the rest.
/// - `stream_server_address = "127.0.0.1"`, port `"0"`: exec/attach/port-forward
///   streams are served on loopback on a free port and proxied by the agent.
/// - `netns_mounts_under_state_dir = true`: pod network namespaces live under our
///   state dir rather than `/var/run/netns`, so private instances stay apart.
/// - `enable_unprivileged_ports` / `enable_unprivileged_icmp`: non-root containers
///   may bind ports below 1024 and ping inside their pod's network namespace
///   (sysctls set per pod, not on the host); containerd 2.0 made these the defaults.
/// - `cni.max_conf_num = 1`: one pod network, the first conflist in `conf_dir`.
/// - no registry mirrors or hosts config: images arrive by import (see
///   [`crate::images`]); a pull only happens for an image that is missing.
pub fn render_config(opts: &ContainerdOptions) -> String {
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| toml_str(p)).collect();
    let mut c = String::new();
    // `write!` to a String cannot fail.
    let _ = write!(
        c,
        r#"# Written by skiff agent on every start; edits are lost.
version = 2
root = {root}
state = {state}
# 0: leave containerd's own oom_score_adj alone (this VM refuses lowering it).
oom_score = 0
disabled_plugins = [{disabled}]

[grpc]
  address = {grpc}

[ttrpc]
  address = {ttrpc}

[debug]
  level = {level}

[metrics]
  address = ""

[{cri}]
  sandbox_image = {sandbox}
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_tcp_service = true
  enable_selinux = false
  netns_mounts_under_state_dir = true
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true

  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = {runc_root}

  [{cri}.cni]
    bin_dir = {cni_bin}
    conf_dir = {cni_conf}
    max_conf_num = 1

  [{cri}.registry]
    config_path = ""
"#,
        root = toml_path(&opts.root_dir()),
        state = toml_path(&opts.runtime_state_dir()),
        disabled = disabled.join(", "),
        grpc = toml_path(&opts.socket_path()),
        ttrpc = toml_path(&opts.ttrpc_socket_path()),
        level = toml_str(&opts.log_level),
        sandbox = toml_str(&opts.sandbox_image),
        cni_bin = toml_path(&opts.cni_bin_dir),
        cni_conf = toml_path(&opts.cni_conf_dir),
        runc_root = toml_path(&opts.runtime_state_dir().join("runc")),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_toml_strings() {
        assert_eq!(toml_str(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_str("x\u{1}"), "\"x\\u0001\"");
    }
}

//! The pod network's CNI configuration: one bridge per node, addresses from the
//! node's pod CIDR.
//!
//! ```text
//!   host ── skiff0 (bridge, gateway 10.42.0.1) ──┬── veth ── pod A eth0 10.42.0.2
//!                                                └── veth ── pod B eth0 10.42.0.3
//! ```
//!
//! containerd's CRI plugin reads the first `*.conflist` in its `cni.conf_dir` and runs
//! the plugins from `cni.bin_dir` (Debian's `containernetworking-plugins`, in
//! `/usr/lib/cni`) for every RunPodSandbox / StopPodSandbox. The list rendered here is
//! the classic single-node setup (the same shape as the CNI project's own bridge
//! example and k3s's default before flannel):
//! - `bridge` with `isGateway` (the bridge holds the subnet's first address, so the
//!   host reaches every pod directly) and `hairpinMode` (a pod may reach itself
//!   through a Service address once a service proxy DNATs back to it);
//!   `ipMasq` is off: pods talk to the host and to each other unmasqueraded, which is
//!   what the Kubernetes network model asks for (every pod sees the real source IP).
//! - `host-local` IPAM over the pod CIDR, leases kept in `ipam_data_dir` (not the
//!   plugin's default `/var/lib/cni/networks`, so private test instances don't mix).
//! - `portmap` with the `portMappings` capability, so `hostPort` works (the CRI plugin
//!   passes the sandbox's port mappings as runtime config).
//!
//! The loopback interface is not in the list: containerd's CRI plugin sets up `lo`
//! itself with the `loopback` binary from the same bin dir.
//!
//! Caveats: no cross-node routes (a multi-node cluster needs routes to each node's
//! pod CIDR, which the agent's networking code adds); IPv4 or IPv6, not dual-stack.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The CNI spec version written in the conflist. Debian 12's plugins (1.1.1) and the
/// libcni vendored in containerd 1.6 both support 1.0.0.
pub const CNI_VERSION: &str = "1.0.0";

/// Linux's limit on interface names (`IFNAMSIZ` is 16 bytes with the NUL).
const MAX_IFNAME_LEN: usize = 15;

/// Prefix of the conflist files this module writes; other files with this prefix in
/// the conf dir are stale versions of ours and are removed.
const FILE_PREFIX: &str = "10-skiff-";

/// Errors from rendering or writing the CNI configuration.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The pod CIDR is not `ADDRESS/PREFIX` with host bits zero. Not retryable.
    #[error("invalid pod CIDR {cidr:?}: {reason}")]
    InvalidCidr {
        /// The CIDR as given.
        cidr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The bridge name is not a valid Linux interface name. Not retryable.
    #[error("invalid bridge name {0:?}: must be 1-15 characters of [A-Za-z0-9_.-], not starting with '-'")]
    InvalidBridge(String),
    /// The network name is empty or has characters unsafe in a file name. Not retryable.
    #[error("invalid CNI network name {0:?}: must be 1-63 characters of [a-z0-9_.-]")]
    InvalidName(String),
}

impl From<CniError> for std::io::Error {
    fn from(e: CniError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

/// One node's pod network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNetwork {
    /// The CNI network name (e.g. `skiff`); also names the config file.
    pub name: String,
    /// The Linux bridge the pods attach to (e.g. `skiff0`, at most 15 characters).
    pub bridge: String,
    /// The node's pod CIDR (e.g. `10.42.0.0/24`), from `Node.spec.podCIDR`.
    pub pod_cidr: String,
    /// Where host-local IPAM keeps its address leases.
    pub ipam_data_dir: PathBuf,
    /// The pods' interface MTU; `None` lets the bridge plugin pick (1500).
    pub mtu: Option<u32>,
}

/// A parsed CIDR: the network address and the prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address (host bits zero).
    pub addr: IpAddr,
    /// The prefix length in bits.
    pub prefix: u8,
}

/// Parses `ADDRESS/PREFIX`, rejecting set host bits (host-local would silently use the
/// masked network, so a typo would give a different range than the user wrote).
pub fn parse_cidr(cidr: &str) -> Result<Cidr, CniError> {
    let invalid = |reason: &str| CniError::InvalidCidr {
        cidr: cidr.to_string(),
        reason: reason.to_string(),
    };
    let (addr, prefix) = cidr
        .trim()
        .split_once('/')
        .ok_or_else(|| invalid("expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid("bad address"))?;
    let prefix: u8 = prefix.parse().map_err(|_| invalid("bad prefix length"))?;
    let bits: u32 = if addr.is_ipv4() { 32 } else { 128 };
    if u32::from(prefix) > bits {
        return Err(invalid("prefix length too long"));
    }
    // A bridge gateway plus at least one pod needs a few host addresses.
    if bits - u32::from(prefix) < 2 {
        return Err(invalid("range too small for a gateway and pods"));
    }
    let host_bits_set = match addr {
        IpAddr::V4(a) => {
            let v = u32::from(a);
            let mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            v & mask != 0
        }
        IpAddr::V6(a) => {
            let v = u128::from(a);
            let mask = u128::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
            v & mask != 0
        }
    };
    if host_bits_set {
        return Err(invalid("host bits are set; give the network address"));
    }
    Ok(Cidr { addr, prefix })
}

fn validate(net: &CniNetwork) -> Result<Cidr, CniError> {
    let name_ok = !net.name.is_empty()
        && net.name.len() <= 63
        && net
            .name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b));
    if !name_ok {
        return Err(CniError::InvalidName(net.name.clone()));
    }
    let bridge_ok = !net.bridge.is_empty()
        && net.bridge.len() <= MAX_IFNAME_LEN
        && !net.bridge.starts_with('-')
        && net.bridge != "."
        && net.bridge != ".."
        && net
            .bridge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !bridge_ok {
        return Err(CniError::InvalidBridge(net.bridge.clone()));
    }
    parse_cidr(&net.pod_cidr)
}

/// Renders the network's conflist (pure). Errors on an invalid CIDR, bridge or name.
pub fn render_conflist(net: &CniNetwork) -> Result<String, CniError> {
    let cidr = validate(net)?;
    let default_route = if cidr.addr.is_ipv4() {
        "0.0.0.0/0"
    } else {
        "::/0"
    };
    let mut bridge = serde_json::json!({
        "type": "bridge",
        "bridge": net.bridge,
        "isGateway": true,
        "ipMasq": false,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "ranges": [[{ "subnet": format!("{}/{}", cidr.addr, cidr.prefix) }]],
            "routes": [{ "dst": default_route }],
            "dataDir": net.ipam_data_dir.to_string_lossy(),
        },
    });
    if let (Some(mtu), Some(obj)) = (net.mtu, bridge.as_object_mut()) {
        obj.insert("mtu".to_string(), mtu.into());
    }
    let conflist = serde_json::json!({
        "cniVersion": CNI_VERSION,
        "name": net.name,
        "plugins": [
            bridge,
            { "type": "portmap", "capabilities": { "portMappings": true } },
        ],
    });
    // Serialising a `Value` cannot fail (all keys are strings); fall back to the
    // compact form rather than panic.
    let mut out = serde_json::to_string_pretty(&conflist).unwrap_or_else(|_| conflist.to_string());
    let _ = writeln!(out);
    Ok(out)
}

/// The file name [`write_config`] uses for a network.
pub fn config_file_name(net: &CniNetwork) -> String {
    format!("{FILE_PREFIX}{}.conflist", net.name)
}

/// Writes the conflist into `conf_dir` atomically (temp file + rename, so containerd's
/// config watcher never reads half a file) and removes stale conflists of ours.
/// Returns the path written; an invalid network is an `InvalidInput` error wrapping
/// [`CniError`].
pub fn write_config(conf_dir: &Path, net: &CniNetwork) -> std::io::Result<PathBuf> {
    let body = render_conflist(net)?;
    std::fs::create_dir_all(conf_dir)?;
    std::fs::create_dir_all(&net.ipam_data_dir)?;
    let name = config_file_name(net);
    let path = conf_dir.join(&name);
    let tmp = conf_dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body.as_bytes())?;
    std::fs::rename(&tmp, &path)?;
    for entry in std::fs::read_dir(conf_dir)? {
        let entry = entry?;
        let file = entry.file_name();
        let file = file.to_string_lossy();
        if file != name && file.starts_with(FILE_PREFIX) && file.ends_with(".conflist") {
            // containerd loads only the first conflist by name (`max_conf_num = 1`),
            // so a stale one left here could shadow ours: say so loudly.
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove stale CNI config");
            }
        }
    }
    Ok(path)
}

/// Deletes a bridge left by the `bridge` plugin (best-effort, for test cleanup and
/// network teardown). The plugin never deletes its bridge itself.
pub fn remove_bridge(bridge: &str) {
    if bridge.is_empty() || bridge.starts_with('-') || bridge.len() > MAX_IFNAME_LEN {
        return;
    }
    let result = std::process::Command::new("ip")
        .args(["link", "del", "dev", bridge])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(e) = result {
        tracing::debug!(bridge, error = %e, "ip link del failed to run");
    }
}

//! Facts about this host for the Node object: capacity and `nodeInfo`,
//! read from `/proc`, `/etc` and `statvfs`, the same sources as kubelet's
//! cadvisor-based `machineInfo`. Anything unreadable is left empty.

use std::path::Path;

/// What the agent reports about its host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Logical CPUs.
    pub cpu_cores: usize,
    /// `MemTotal` from `/proc/meminfo`, in KiB.
    pub memory_kib: u64,
    /// Size of the filesystem holding the data dir, in KiB.
    pub ephemeral_storage_kib: u64,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel_version: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os_image: String,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// `/sys/class/dmi/id/product_uuid` (root only).
    pub system_uuid: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

/// Kubernetes' name for this CPU architecture (`GOARCH` spelling).
pub fn kube_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `MemTotal` in KiB from the text of `/proc/meminfo`.
pub fn parse_meminfo_total_kib(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// `PRETTY_NAME` from the text of `/etc/os-release`, unquoted.
pub fn parse_os_release_pretty_name(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// Size of the filesystem holding `path`, in KiB; 0 if unknown.
// The field types are u32 on 32-bit targets (edge boards), u64 here.
#[allow(clippy::unnecessary_cast)]
fn statvfs_kib(path: &Path) -> u64 {
    nix::sys::statvfs::statvfs(path)
        .map(|s| (s.blocks() as u64).saturating_mul(s.fragment_size() as u64) / 1024)
        .unwrap_or(0)
}

impl HostFacts {
    /// Reads the facts; `data_dir` decides which filesystem is "ephemeral storage".
    pub fn read(data_dir: &Path) -> HostFacts {
        let memory_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| parse_meminfo_total_kib(&t))
            .unwrap_or(0);
        let ephemeral_storage_kib = statvfs_kib(data_dir);
        HostFacts {
            cpu_cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib,
            ephemeral_storage_kib,
            kernel_version: read_trimmed("/proc/sys/kernel/osrelease"),
            os_image: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|t| parse_os_release_pretty_name(&t))
                .unwrap_or_else(|| "Linux".into()),
            machine_id: read_trimmed("/etc/machine-id"),
            system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid").to_lowercase(),
            boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_and_etc_files() {
        let meminfo = "MemTotal:       24568312 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo_total_kib(meminfo), Some(24_568_312));
        assert_eq!(parse_meminfo_total_kib("garbage"), None);
        let os = "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            parse_os_release_pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }

    #[test]
    fn reads_this_host() {
        let f = HostFacts::read(Path::new("/"));
        assert!(f.cpu_cores >= 1);
        assert!(f.memory_kib > 0);
        assert!(f.ephemeral_storage_kib > 0);
    }
}

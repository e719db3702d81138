//! Forced clean-up of a private containerd's leftovers, for tests and for wiping a
//! node; part of [`super`]. The orderly path is CRI StopPodSandbox/RemovePodSandbox
//! and [`super::ManagedContainerd::stop`]; these functions handle what a failed test or
//! a killed agent leaves behind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long to wait for killed processes to disappear before unmounting.
const KILL_WAIT: Duration = Duration::from_secs(3);
/// How deep to look for a container's cgroup under each controller
/// (`/k8s.io/<id>` by default, `/kubepods/<qos>/pod<uid>/<id>` with a parent).
const CGROUP_SEARCH_DEPTH: usize = 5;

/// All pids with their parent pid, from `/proc/<pid>/stat`.
fn process_parents() -> BTreeMap<i32, i32> {
    let mut parents = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return parents;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces and parens, so split after
        // the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|s| s.parse::<i32>().ok());
        if let Some(ppid) = ppid {
            parents.insert(pid, ppid);
        }
    }
    parents
}

fn cmdline(pid: i32) -> Vec<Vec<u8>> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// True if the process is a containerd shim serving the containerd at `socket`
/// (`containerd-shim-runc-v2 -namespace k8s.io -id ID -address SOCKET`).
fn is_shim_of(pid: i32, socket: &[u8]) -> bool {
    let args = cmdline(pid);
    let is_shim = args.first().is_some_and(|a| {
        a.rsplit(|b| *b == b'/')
            .next()
            .is_some_and(|name| name.starts_with(b"containerd-shim"))
    });
    is_shim
        && args
            .windows(2)
            .any(|w| (w[0] == b"-address" || w[0] == b"--address") && w[1] == socket)
}

/// True if `pid` exists and is not a zombie. A killed process that is not our child
/// stays a zombie until its own parent reaps it, but it is gone for our purposes.
pub(super) fn process_alive(pid: i32) -> bool {
    if kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // `pid (comm) STATE …`
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z") | Some("X") | None)
}

fn wait_gone(pids: &BTreeSet<i32>) {
    let deadline = Instant::now() + KILL_WAIT;
    while Instant::now() < deadline {
        if !pids.iter().any(|p| process_alive(*p)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGKILLs every shim whose command line names `socket`, and all their descendants
/// (the pods' processes, which would otherwise be re-parented and keep running).
/// Returns the number of shims found.
pub fn kill_shims(socket: &Path) -> usize {
    let socket = socket.as_os_str().as_encoded_bytes();
    let parents = process_parents();
    let shims: BTreeSet<i32> = parents
        .keys()
        .copied()
        .filter(|p| is_shim_of(*p, socket))
        .collect();
    if shims.is_empty() {
        return 0;
    }
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for (pid, ppid) in &parents {
        children.entry(*ppid).or_default().push(*pid);
    }
    let mut descendants = BTreeSet::new();
    let mut queue: Vec<i32> = shims.iter().copied().collect();
    while let Some(p) = queue.pop() {
        for c in children.get(&p).into_iter().flatten() {
            if descendants.insert(*c) {
                queue.push(*c);
            }
        }
    }
    // Pods first, so the shims do not see their containers die and report to a
    // containerd that may be gone.
    for pid in &descendants {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    for pid in &shims {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let all: BTreeSet<i32> = descendants.union(&shims).copied().collect();
    wait_gone(&all);
    shims.len()
}

/// Decodes the octal escapes (`\040` for a space) in a `/proc/self/mountinfo` path.
fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(String::from_utf8_lossy(&out).into_owned())
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Lazily unmounts everything mounted at or under `dir` (rootfs overlays, sandbox
/// `shm`, network-namespace bind mounts). Returns how many unmounts succeeded.
pub fn unmount_under(dir: &Path) -> usize {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut done = 0;
    // Stacked mounts need one pass per layer; a few passes cover every real case.
    for _ in 0..4 {
        let points = mounts_under(&dir);
        if points.is_empty() {
            break;
        }
        for point in points {
            match nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH) {
                Ok(()) => done += 1,
                Err(e) => tracing::debug!(mount = %point.display(), error = %e, "umount failed"),
            }
        }
    }
    done
}

/// Removes cgroup directories named `id` under each cgroup v1 controller (depth
/// limited), deepest first; runc leaves them when its container is killed.
fn remove_cgroups(ids: &BTreeSet<String>) {
    fn walk(dir: &Path, depth: usize, ids: &BTreeSet<String>, found: &mut Vec<PathBuf>) {
        if depth == 0 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = entry.path();
            walk(&path, depth - 1, ids, found);
            if entry.file_name().to_str().is_some_and(|n| ids.contains(n)) {
                found.push(path);
            }
        }
    }
    if ids.is_empty() {
        return;
    }
    let mut found = Vec::new();
    walk(
        Path::new("/sys/fs/cgroup"),
        CGROUP_SEARCH_DEPTH + 1,
        ids,
        &mut found,
    );
    // `walk` pushes children before parents.
    for dir in found {
        let _ = std::fs::remove_dir(&dir);
    }
}

/// Cleans up everything a private containerd under `state_dir` may leave behind,
/// without containerd's help: kills a still-running containerd started with this
/// state dir's config, its shims and their pods, removes the containers' cgroups and
/// unmounts everything under `state_dir`. The directory itself is left for the caller
/// to delete. Safe to call when nothing is left.
pub fn force_cleanup(state_dir: &Path) {
    let opts_socket = state_dir.join("containerd.sock");
    let config = state_dir.join("config.toml");
    // containerd first, so it does not restart tasks or shims under us.
    if let Some(pid) = std::fs::read_to_string(state_dir.join("containerd.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 0)
    {
        let ours = cmdline(pid)
            .iter()
            .any(|a| a.as_slice() == config.as_os_str().as_encoded_bytes());
        if ours {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(&BTreeSet::from([pid]));
        }
    }
    kill_shims(&opts_socket);
    // Task bundles are named by container id, in each containerd namespace.
    let tasks = state_dir
        .join("state")
        .join("io.containerd.runtime.v2.task");
    let bundles: Vec<PathBuf> = std::fs::read_dir(&tasks)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|ns| std::fs::read_dir(ns.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    let ids: BTreeSet<String> = bundles
        .iter()
        .filter_map(|b| b.file_name().and_then(|n| n.to_str()).map(String::from))
        .filter(|id| id.len() >= 12)
        .collect();
    remove_cgroups(&ids);
    for bundle in &bundles {
        remove_shim_socket(bundle);
    }
    unmount_under(state_dir);
}

/// containerd 1.6 puts shim sockets in `/run/containerd/s/` whatever its state dir;
/// each task bundle's `address` file names its shim's socket. A killed shim leaves
/// it behind.
fn remove_shim_socket(bundle: &Path) {
    const SHIM_SOCKET_DIR: &str = "/run/containerd/s/";
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = address.trim().trim_start_matches("unix://");
    if path.starts_with(SHIM_SOCKET_DIR) && !path.contains("..") {
        let _ = std::fs::remove_file(path);
    }
}

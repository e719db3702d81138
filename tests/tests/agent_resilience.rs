//! The agent's resilience on a real node (issue #5, "Resilience"): a
//! `skiff server` and a separate `skiff agent` process with its own
//! containerd, runc and CNI, on the multi-host rig (`tests/src/rig.rs`) with
//! one host, driven by the stock kubectl. What each test breaks:
//!
//! 1. [`agent_restart_keeps_containers`]: the agent is killed (SIGKILL) and
//!    started again. Its running pod keeps the same container (same id,
//!    restartCount 0, Ready without a break); a pod force-deleted while it
//!    was down loses its sandbox and containers in CRI; one deleted
//!    gracefully is stopped and its object removed; a pod created while it
//!    was down is started.
//! 2. [`containerd_restart_is_survived`]: containerd is killed by its pid;
//!    the agent's supervisor starts it again, the shims kept the container
//!    running, the pod stays Running and Ready, and a container that exits
//!    afterwards is restarted as its `restartPolicy` says.
//! 3. [`pods_keep_restarting_while_the_api_server_is_down`]: the API server
//!    is killed; a container that exits meanwhile is restarted by the agent
//!    (the attempt count grows in CRI), and once the server is back the
//!    pod's status shows the restart. Then the same with the server's link
//!    cut, where requests hang instead of failing.
//!
//! A container is made to exit on cue through a hostPath directory: it
//! waits for the file `exit` there, removes it and exits with code 3.
//!
//! Each test prints what it measured (`grep '^measured'` in the output of
//! `cargo test -p skiff-tests --test agent_resilience -- --nocapture`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_cri::v1 as cri;
use serde_json::Value;
use skiff_agent::cri::{labels, RemoteRuntime, RuntimeService};
use skiff_tests::rig::{Rig, RigOptions};
use skiff_tests::wait_until;

/// How long a pod may take to start, or the agent to act, on a loaded
/// 2-core machine; the measured times are far below.
const TIMEOUT: Duration = Duration::from_secs(120);

/// A pod whose container runs until it is deleted.
const KEEP: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: NAME}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: skiff.local/busybox:1
    command: ["sleep", "3600"]
"#;

/// A pod whose container exits with code 3 when the file `exit` appears in
/// the host directory `DIR` (and removes it first, so the next attempt
/// waits again).
const EXITER: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: exiter}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  volumes:
  - name: signal
    hostPath: {path: DIR, type: Directory}
  containers:
  - name: main
    image: skiff.local/busybox:1
    command: ["sh", "-c", "while [ ! -e /signal/exit ]; do sleep 1; done; rm /signal/exit; exit 3"]
    volumeMounts: [{name: signal, mountPath: /signal}]
"#;

/// Starts a one-host rig on segment `10.196.<net>.0/24` with pod CIDR
/// `10.199.<net>.0/24`, runs `test`, and prints the logs if it fails.
fn on_rig(net: u8, test: impl FnOnce(&mut Rig) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let mut rig = Rig::start(RigOptions {
        net,
        hosts: 1,
        cluster_cidr: format!("10.199.{net}.0/24"),
        service_cidr: format!("10.198.{net}.0/24"),
    })?;
    let result = test(&mut rig);
    if result.is_err() {
        eprintln!("{}", rig.logs());
    }
    result
}

fn pod(rig: &Rig, name: &str) -> anyhow::Result<Value> {
    rig.kube.json(&["get", "pod", name])
}

/// The pod's first container status (Null if none yet).
fn container_status(pod: &Value) -> &Value {
    &pod["status"]["containerStatuses"][0]
}

fn ready_condition(pod: &Value) -> &Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .unwrap_or(&Value::Null)
}

fn is_ready(pod: &Value) -> bool {
    ready_condition(pod)["status"] == "True"
}

/// When the pod last became Ready (or not).
fn ready_since(pod: &Value) -> Value {
    ready_condition(pod)["lastTransitionTime"].clone()
}

/// Waits until the pod is Running with a ready container; returns it.
fn wait_running(rig: &Rig, name: &str) -> anyhow::Result<Value> {
    let mut last = Value::Null;
    wait_until(TIMEOUT, || {
        last = pod(rig, name)?;
        Ok(last["status"]["phase"] == "Running"
            && is_ready(&last)
            && container_status(&last)["ready"] == true)
    })
    .with_context(|| format!("waiting for pod {name} to run: {last}"))?;
    Ok(last)
}

fn uid(pod: &Value) -> anyhow::Result<String> {
    pod["metadata"]["uid"]
        .as_str()
        .map(str::to_string)
        .context("pod without uid")
}

/// The CRI container id from a status's `containerID` (`containerd://<id>`).
fn cri_id(status: &Value) -> String {
    let id = status["containerID"].as_str().unwrap_or_default();
    id.rsplit("://").next().unwrap_or_default().to_string()
}

/// What the host's containerd holds for one pod, read through CRI the way
/// the agent reads it (by the pod UID label).
#[derive(Debug, Default)]
struct InCri {
    sandboxes: Vec<cri::PodSandbox>,
    containers: Vec<cri::Container>,
}

impl InCri {
    fn running(&self) -> impl Iterator<Item = &cri::Container> {
        self.containers
            .iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
    }
}

/// Asks the containerd behind `socket` for the pod with `uid`. Connects
/// anew each time: the test restarts containerd.
fn in_cri(socket: &Path, uid: &str) -> anyhow::Result<InCri> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cri = RemoteRuntime::connect(socket).await?;
        let by_uid = || [(labels::POD_UID.to_string(), uid.to_string())].into();
        let sandboxes = cri
            .list_pod_sandbox(Some(cri::PodSandboxFilter {
                label_selector: by_uid(),
                ..Default::default()
            }))
            .await?;
        let containers = cri
            .list_containers(Some(cri::ContainerFilter {
                label_selector: by_uid(),
                ..Default::default()
            }))
            .await?;
        Ok(InCri {
            sandboxes,
            containers,
        })
    })
}

/// The attempt (restart count) of a CRI container.
fn attempt(c: &cri::Container) -> u32 {
    c.metadata.as_ref().map_or(0, |m| m.attempt)
}

/// Makes the exiter pod's current container exit (code 3).
fn signal_exit(dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("exit"), b"")
        .with_context(|| format!("writing {}", dir.join("exit").display()))
}

/// The exiter pod once it runs on host 0.
struct Exiter {
    /// The host's containerd.
    socket: PathBuf,
    /// The host directory its container watches.
    signal: PathBuf,
    uid: String,
    /// The pod object when it first ran.
    first: Value,
}

/// Makes the signal directory, creates the exiter pod and waits until it
/// runs.
fn start_exiter(rig: &Rig) -> anyhow::Result<Exiter> {
    let signal = rig.dir.path().join("signal");
    std::fs::create_dir_all(&signal)?;
    rig.kube
        .apply(&EXITER.replace("DIR", &signal.to_string_lossy()))?;
    let first = wait_running(rig, "exiter")?;
    assert_eq!(container_status(&first)["restartCount"], 0, "{first}");
    Ok(Exiter {
        socket: rig.hosts[0].containerd_socket(),
        signal,
        uid: uid(&first)?,
        first,
    })
}

/// Waits until CRI shows the exiter's attempt `n` running (read from CRI,
/// not the API: the server may be away).
fn wait_attempt_in_cri(exiter: &Exiter, n: u32) -> anyhow::Result<InCri> {
    let mut seen = InCri::default();
    wait_until(TIMEOUT, || {
        seen = in_cri(&exiter.socket, &exiter.uid)?;
        Ok(seen.running().any(|c| attempt(c) == n))
    })
    .with_context(|| format!("waiting for attempt {n} to run: {seen:?}"))?;
    Ok(seen)
}

/// Waits until the exiter's status shows `restarts` restarts, the last
/// exit (code 3) and a ready container again; returns the pod.
fn wait_restarts(rig: &Rig, restarts: u32) -> anyhow::Result<Value> {
    let mut last = Value::Null;
    wait_until(TIMEOUT, || {
        last = match pod(rig, "exiter") {
            Ok(p) => p,
            // The API server may still be coming back.
            Err(_) => return Ok(false),
        };
        let s = container_status(&last);
        Ok(s["restartCount"] == restarts
            && s["lastState"]["terminated"]["exitCode"] == 3
            && s["ready"] == true
            && last["status"]["phase"] == "Running")
    })
    .with_context(|| format!("waiting for the status to show {restarts} restarts: {last}"))?;
    Ok(last)
}

#[test]
fn agent_restart_keeps_containers() -> anyhow::Result<()> {
    on_rig(130, |rig| {
        let socket = rig.hosts[0].containerd_socket();
        rig.kube.apply(&KEEP.replace("NAME", "keep"))?;
        rig.kube.apply(&KEEP.replace("NAME", "gone"))?;
        rig.kube.apply(&KEEP.replace("NAME", "graceful"))?;
        let before = wait_running(rig, "keep")?;
        let gone_uid = uid(&wait_running(rig, "gone")?)?;
        let graceful_uid = uid(&wait_running(rig, "graceful")?)?;
        let keep_uid = uid(&before)?;
        let keep_id = cri_id(container_status(&before));
        let started_at = container_status(&before)["state"]["running"]["startedAt"].clone();
        let ready_at = ready_since(&before);
        assert_eq!(container_status(&before)["restartCount"], 0, "{before}");

        rig.kill_agent(0)?;
        // While the agent is down: one pod goes (force-deleted, so the
        // object is gone at once and only the node still has it), one is
        // deleted gracefully (the object waits for the node), one comes.
        rig.kube
            .ok(&["delete", "pod", "gone", "--grace-period=0", "--force"])?;
        rig.kube
            .ok(&["delete", "pod", "graceful", "--wait=false"])?;
        rig.kube.apply(&KEEP.replace("NAME", "late"))?;
        assert!(
            !in_cri(&socket, &gone_uid)?.sandboxes.is_empty(),
            "the deleted pod's sandbox is still there while the agent is down"
        );

        let restarted = Instant::now();
        rig.start_agent(0)?;
        wait_running(rig, "late").context("a pod created while the agent was down")?;
        let late_running = restarted.elapsed();
        let mut left = InCri::default();
        wait_until(TIMEOUT, || {
            left = in_cri(&socket, &gone_uid)?;
            Ok(left.sandboxes.is_empty() && left.containers.is_empty())
        })
        .with_context(|| format!("the deleted pod's sandbox stays in CRI: {left:?}"))?;
        let orphan_gone = restarted.elapsed();
        wait_until(TIMEOUT, || {
            let out = rig.kube.run(&["get", "pod", "graceful"])?;
            Ok(String::from_utf8_lossy(&out.stderr).contains("NotFound")
                && in_cri(&socket, &graceful_uid)?.sandboxes.is_empty())
        })
        .context("the pod deleted gracefully while the agent was down stays")?;
        let graceful_gone = restarted.elapsed();

        // The running pod was adopted, not restarted: same container, same
        // start, no restart, Ready throughout.
        let after = wait_running(rig, "keep")?;
        let status = container_status(&after);
        assert_eq!(cri_id(status), keep_id, "{after}");
        assert_eq!(status["restartCount"], 0, "{after}");
        assert_eq!(
            status["state"]["running"]["startedAt"], started_at,
            "{after}"
        );
        // Had it been reported not Ready in between, the condition's
        // transition time would have moved.
        assert_eq!(ready_since(&after), ready_at, "{after}");
        let keep = in_cri(&socket, &keep_uid)?;
        assert_eq!(keep.sandboxes.len(), 1, "one sandbox: {keep:?}");
        let ids: Vec<&str> = keep.containers.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, [keep_id.as_str()], "one container: {keep:?}");
        eprintln!(
            "measured: agent restart → pod created meanwhile Running {late_running:?}, \
             force-deleted pod's sandbox removed {orphan_gone:?}, \
             gracefully deleted pod gone {graceful_gone:?}"
        );
        Ok(())
    })
}

#[test]
fn containerd_restart_is_survived() -> anyhow::Result<()> {
    on_rig(131, |rig| {
        let exiter = start_exiter(rig)?;
        let first_id = cri_id(container_status(&exiter.first));

        let old_pid = rig.hosts[0]
            .containerd_pid()
            .context("no containerd pid file")?;
        let killed = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(old_pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        // The agent's supervisor starts a new one (pid file rewritten), and
        // the shim kept the container running all along.
        let mut seen = InCri::default();
        wait_until(TIMEOUT, || {
            if rig.hosts[0].containerd_pid() == Some(old_pid) {
                return Ok(false);
            }
            seen = match in_cri(&exiter.socket, &exiter.uid) {
                Ok(s) => s,
                Err(_) => return Ok(false),
            };
            Ok(true)
        })
        .context("waiting for containerd to come back")?;
        let back = killed.elapsed();
        let running: Vec<&str> = seen.running().map(|c| c.id.as_str()).collect();
        assert_eq!(running, [first_id.as_str()], "{seen:?}");

        // The agent talks to the new containerd: the pod stays Running and
        // Ready, and an exit is followed by a restart (restartPolicy Always).
        let p = wait_running(rig, "exiter")?;
        assert_eq!(cri_id(container_status(&p)), first_id, "{p}");
        let exited = Instant::now();
        signal_exit(&exiter.signal)?;
        let last = wait_restarts(rig, 1).context("the restart after containerd's")?;
        assert_ne!(cri_id(container_status(&last)), first_id, "{last}");
        eprintln!(
            "measured: containerd killed → CRI answers again {back:?}; \
             exit → restarted and Ready in status {:?}",
            exited.elapsed()
        );
        Ok(())
    })
}

#[test]
fn pods_keep_restarting_while_the_api_server_is_down() -> anyhow::Result<()> {
    on_rig(132, |rig| {
        let exiter = start_exiter(rig)?;

        rig.kill_server();
        let exited = Instant::now();
        signal_exit(&exiter.signal)?;
        let seen = wait_attempt_in_cri(&exiter, 1).context("the restart without a server")?;
        let restarted = exited.elapsed();
        if seen.sandboxes.len() != 1 {
            bail!("the restart made a new sandbox: {seen:?}");
        }
        let back = Instant::now();
        rig.restart_server()?;
        let server_up = back.elapsed();
        wait_restarts(rig, 1)?;
        eprintln!(
            "measured: server down, exit → restarted in CRI {restarted:?}; \
             server restart {server_up:?}, then status reconciled {:?}",
            back.elapsed() - server_up
        );

        // An uplink that goes silent (the server's cable pulled: requests
        // hang instead of failing) must not hold up restarts either.
        rig.cut_server_link()?;
        let exited = Instant::now();
        signal_exit(&exiter.signal)?;
        let waited = wait_attempt_in_cri(&exiter, 2);
        let restarted = exited.elapsed();
        let healed = Instant::now();
        rig.restore_server_link()?;
        waited.context("the restart with the server's link cut")?;
        wait_restarts(rig, 2)?;
        let reconciled = healed.elapsed();
        // The node's own loops (lease, status) came through as well.
        rig.wait_nodes_ready(TIMEOUT)?;
        eprintln!(
            "measured: server link cut, exit → restarted in CRI {restarted:?}; \
             link restored → status reconciled {reconciled:?}"
        );
        Ok(())
    })
}

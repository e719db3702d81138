//! Skiff's node agent: Skiff's kubelet.
//!
//! It joins a cluster with a node token, registers its Node, watches the pods
//! bound to it, runs them on containerd through CRI, and writes their status
//! back. Kubelet is the model throughout, and its names are used.
//!
//! ```text
//!          skiff server (API)                         skiff agent
//!   ┌───────────────────────────┐  watch pods   ┌──────────────────────────────────┐
//!   │ pods, nodes, leases       │◄──────────────│ pod::PodManager ─► one worker/pod│
//!   │                           │  pod status   │   lifecycle → plan → CRI calls   │
//!   │                           │◄──────────────│   status → PATCH pods/status     │
//!   │                           │  node, lease  │ node: register, status, Lease    │
//!   │ kubectl logs/exec ─proxy─────────────────►│ server: /containerLogs, /exec, … │
//!   └───────────────────────────┘               └──────────────┬───────────────────┘
//!                                                 CRI (gRPC, unix socket)
//!                                               containerd (managed or given) → runc
//! ```
//!
//! | module | role |
//! | --- | --- |
//! | [`config`] | [`AgentConfig`] and its defaults |
//! | [`bootstrap`] | token → pinned CA → `kube::Client` |
//! | [`cri`] | CRI traits, the tonic client, the fake |
//! | [`pod`] | pod lifecycle, the pure planner and status, the workers |
//! | [`node`] | Node registration, status, Lease heartbeat, node-pressure eviction ([`node::eviction`], [`node::evict`]), image GC ([`node::image_gc`]) |
//! | [`server`], [`logs`], [`tls`] | the HTTPS endpoint and CRI log reading |
//! | [`stats`] | `/stats/summary`: node and container cpu/memory for `kubectl top` |
//! | [`metrics`] | `/metrics`: Prometheus counters (CRI operations, evictions, image GC) |
//! | [`stream`] | exec/attach/port-forward: WebSocket ↔ SPDY to the runtime's streaming server |
//! | [`run`](mod@run) | wiring: [`run()`], [`cleanup_all_pods`] |
//! | [`containerd`], [`cni`], [`images`] | private containerd, CNI config, image import |
//! | [`local_path`] | the node side of local-path volumes: their root, removal after the PV goes |
//! | [`net`] | routes between nodes, service proxy (nftables), NetworkPolicy |
//!
//! # Contracts
//! - **Node token** `SK10<sha256 hex of CA DER>::node:<secret>`; the API server
//!   serves `GET /cacerts` (PEM) unauthenticated and accepts the whole token as
//!   a Bearer token. The agent's HTTPS endpoint accepts the same token.
//! - **Pods**: watched with `fieldSelector=spec.nodeName=<node>`; status is
//!   written with a JSON merge patch on `pods/status`, only when it changed;
//!   a pod with `deletionTimestamp` is killed with its
//!   `deletionGracePeriodSeconds`, then deleted with `gracePeriodSeconds: 0`
//!   and a UID precondition (kubelet's final delete).
//! - **CRI labels** `io.kubernetes.pod.{name,namespace,uid}` and
//!   `io.kubernetes.container.name` on every sandbox/container: the agent's
//!   whole pod state can be rebuilt from CRI, so an agent restart adopts
//!   running pods, and sandboxes of pods that vanished meanwhile are removed.
//! - **Pod volumes** at `<data_dir>/pod-volumes/<uid>/volumes/kubernetes.io~<kind>/<name>`
//!   (kubelet's layout under its root dir); removed, tmpfs unmounted, when
//!   the worker tears the pod down. ConfigMaps/Secrets are read with
//!   `Api::get` in the pod's namespace and re-read every 10 s.
//!   `persistentVolumeClaim` volumes whose bound PV is a `hostPath`/`local`
//!   directory are a symlink there to the PV's path (the pod waits with
//!   `FailedMount` until the claim is bound).
//! - **Local-path volumes** ([`local_path`]) live in
//!   `<data_dir>/local-path/pvc-<uid>_<ns>_<claim>`; the Node annotation
//!   `local-path.skiff.io/root` tells the provisioner so; directories no
//!   PersistentVolume names any more are removed every 15 s.
//! - **Logs** at `<data_dir>/pods/<ns>_<name>_<uid>/<container>/<restart>.log`
//!   in the CRI log format.
//! - **Node**: labels `kubernetes.io/{hostname,os,arch}`; `Ready` etc.
//!   conditions; `daemonEndpoints.kubeletEndpoint.Port` = the agent's real
//!   HTTPS port; Lease `kube-node-lease/<node>` renewed every 10 s (40 s
//!   duration); status rewritten on change or every 5 minutes.
//! - **Stopping** the agent does not stop pods (as kubelet). Tests call
//!   [`cleanup_all_pods`] before stopping containerd.
//! - **API server away**: pods keep running and restarting; status writes
//!   are not waited on, a pod worker's other requests time out after 10 s,
//!   and the newest status is sent when the server answers (`pod::worker`).
//!
//! # Caveats (what kubelet does that Skiff does not, yet)
//! - Pods: init containers run in order; liveness/readiness/startup probes
//!   (exec via CRI `ExecSync`, httpGet, tcpSocket to the pod IP) with
//!   kubelet's timing fields; postStart/preStop hooks; env from
//!   ConfigMaps, Secrets, fieldRef, resourceFieldRef, envFrom, `$(VAR)`;
//!   resources → CRI (cpu shares/quota, memory limit), QoS class;
//!   securityContext → CRI, `runAsNonRoot`; volumes emptyDir (tmpfs for
//!   `medium: Memory`), hostPath, configMap, secret, downwardAPI under
//!   `<data_dir>/pod-volumes/<uid>`, projected files re-read every 10 s and
//!   swapped atomically (`..data`). See `pod` for the files.
//!   Projected volumes combine configMap, secret, downwardAPI and
//!   `serviceAccountToken` sources; tokens come from the TokenRequest API,
//!   bound to the pod, and are refreshed at 80% of their lifetime or after
//!   24 h (`pod/token.rs`).
//! - Not done: sidecar init containers (`restartPolicy: Always` on an init
//!   container), CSI volumes, `clusterTrustBundle` and `podCertificate`
//!   projections, PVCs of other volume kinds, fsGroup and file ownership
//!   (token files are 0644, not owned by `runAsUser`),
//!   HTTPS probes and hooks, probe events, secret volumes on tmpfs (they are
//!   plain files under the data dir), `terminationMessagePath`,
//!   cluster DNS config, static pods, or events. Probes run inside the pod worker's 1 s sync (a slow probe
//!   delays that pod's sync by at most its timeout).
//! - `imagePullPolicy: Always` falls back to a present local image when the
//!   pull fails (no registry on edge nodes); kubelet would fail.
//! - Node-pressure eviction knows hard and soft thresholds on
//!   `memory.available` and `nodefs.available` only: no `imagefs`, inode
//!   or pid signals, no `--eviction-minimum-reclaim`, no reclaiming by
//!   image garbage collection before evicting (image GC runs on its own
//!   period), and no `Evicted` event. An evicted pod's containers get 1 s
//!   (hard threshold, kubelet's `immediateEvictionGracePeriodSeconds`) or
//!   min(`terminationGracePeriodSeconds`, `--eviction-max-pod-grace-period`)
//!   (soft), then its sandbox stops; it stays `Failed`.
//! - Log files are not rotated.
//! - The node does not set `spec.podCIDR`; it uses the configured CIDR until
//!   a controller assigns one, then [`net`] rewrites the CNI config (pods
//!   started before keep their old addresses). Pod status uses merge patches, so fields
//!   the agent stops sending are not cleared.
//! - The HTTPS endpoint authenticates by the shared node token, not client
//!   certificates or TokenReview.
//! - Streams (see [`stream`] for the design): WebSocket `v5`/`v4.channel.k8s.io`
//!   and SPDY for exec/attach, WebSocket-tunnelled SPDY and SPDY for
//!   port-forward; not the base64 or v1–v3 WebSocket protocols. No idle
//!   timeout on streams (kubelet's `--streaming-connection-idle-timeout`).
//! - Each pod worker polls CRI every second (two list calls when nothing
//!   changed); kubelet has one relist for the node (PLEG) and CRI events.
//! - With `containerd_socket` given, the CNI config is still written under
//!   the data dir, but that containerd reads its own CNI config.
//! - The server must already have the `kube-node-lease` namespace; lease
//!   failures are logged and retried, they do not stop the agent.
//! - The CNI bridge stays after the agent stops (as with k3s).
//!
//! # Facts relied on (containerd 1.6.20, checked by `tests/pod_worker_containerd.rs`)
//! - `ContainerStatus.log_path` is the absolute path (log directory joined);
//!   the CRI log lines carry RFC 3339 times with trailing zeros trimmed.
//! - `ListContainers` has no exit codes or times; `ContainerStatus` does.
//! - `ExecSync` works for exec probes and hooks; a 16Mi memory limit makes
//!   containerd report the terminated reason `OOMKilled` even when a child
//!   of PID 1 is the one killed (cgroups v1, `tests/pod_lifecycle_containerd.rs`).
//! - CRI `Exec`/`Attach`/`PortForward` return `http://127.0.0.1:<port>/…`
//!   URLs of containerd's streaming server, which accepts SPDY/3.1
//!   `v4.channel.k8s.io` / `portforward.k8s.io` upgrades and a header
//!   block compressed without the SPDY dictionary (`tests/tests/streams.rs`).
//!   Inside `kubectl exec -it`, busybox `stty size` fails on stdin ("No
//!   child processes"); `stty -F $(tty) size` shows the size kubectl sent.
//! - `sh` as PID 1 ignores SIGTERM, so a busybox pod is killed only when the
//!   grace period runs out: deletion takes `deletionGracePeriodSeconds`.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod cni;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod hollow;
pub mod images;
pub mod local_path;
pub mod logs;
pub mod metrics;
pub mod net;
pub mod node;
pub mod pod;
pub mod run;
pub mod server;
pub mod stats;
pub mod stream;
pub mod tls;

pub use config::AgentConfig;
pub use run::{cleanup_all_pods, run, AgentError};

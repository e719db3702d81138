//! Skiff's scheduler: places pending pods on nodes, packing them tightly.
//!
//! ```text
//!   API watches ──> run.rs State ──> Cluster (cluster.rs) ──> core.rs ──> actions.rs
//!   (nodes, pods,     (incremental)     nodes + pods        Filter        pods/binding
//!    priorityclasses,                                       Score         nominatedNodeName
//!    pdbs)                                                  Preempt       pods/eviction
//!                                                                         FailedScheduling
//!   leader.rs: Lease kube-system/skiff-scheduler ─ only the holder schedules
//! ```
//!
//! | module | role |
//! | --- | --- |
//! | [`model`] | the core's types: `NodeInfo`, `PendingPod`, `BoundPod`, `Placement` |
//! | [`cluster`] | nodes sorted by name, pods on them, free-room arrays; assume/forget |
//! | [`core`] | the pure pass: batch order, fast path, general path, FitError text |
//! | [`filter`], [`prefilter`], [`selector`] | Filter plugins with kube-scheduler's reason texts |
//! | [`score`] | Score plugins, weights, [`score::Config`] (MostAllocated / LeastAllocated) |
//! | [`preempt`] | DefaultPreemption: fewest, least important victims; PDBs |
//! | [`snapshot`] | `k8s-openapi` objects → the core's types (pure) |
//! | [`slim_pod`] | the pod as the scheduler watches it: only the fields it reads |
//! | [`volumes`] | VolumeBinding: claims, volume node affinity, `selected-node` |
//! | [`run`](mod@run), [`actions`], [`leader`] | the loop, its API writes, leader election |
//! | [`bench`](mod@bench), [`bench_e2e`], [`workload`] | `skiff bench scheduler`, seeded workloads |
//!
//! # Contracts
//! - [`core::schedule`] is pure and deterministic: no clock, no I/O; the same
//!   cluster and pods give the same placements (ties go to the smaller node
//!   name). Each placement is *assumed* in the cluster before the next pod.
//! - Filters (default-profile order, first failing plugin per node):
//!   NodeUnschedulable, NodeName, TaintToleration, NodeAffinity (nodeSelector
//!   and required terms), NodePorts, NodeResourcesFit (cpu, memory,
//!   ephemeral-storage, pods, extended resources such as `nvidia.com/gpu`),
//!   VolumeBinding (missing or unbound immediate claims; bound volumes' node
//!   affinity), PodTopologySpread, InterPodAffinity
//!   (including existing pods' anti-affinity). Node conditions act through
//!   the taints Kubernetes' node lifecycle controller would set.
//! - Scores: NodeResourcesFit MostAllocated over cpu and memory (weights
//!   configurable; LeastAllocated spreads), NodeAffinity preferred terms
//!   (×2), TaintToleration PreferNoSchedule (×3), InterPodAffinity preferred
//!   terms (×2), PodTopologySpread ScheduleAnyway (×2).
//! - Messages are Kubernetes 1.32's: `0/5 nodes are available: 3 Insufficient
//!   cpu, 2 node(s) had untolerated taint {k: v}. preemption: 0/5 nodes are
//!   available: 2 Preemption is not helpful for scheduling, 3 No preemption
//!   victims found for incoming pod.`
//! - The loop binds through `pods/<name>/binding`, up to 128 API writes in
//!   flight; sets `status.nominatedNodeName` and evicts victims through
//!   `pods/<name>/eviction` (delete when the API has none, or when a PDB
//!   refuses: preemption already preferred nodes that break no budget);
//!   reports `PodScheduled=False` and one `FailedScheduling` event per pod;
//!   retries unschedulable pods only when the cluster changed.
//! - Priority comes from `spec.priority`, else the pod's
//!   `priorityClassName` in the watched PriorityClasses, else the
//!   `globalDefault` class, else 0.
//! - Leader election: Lease `kube-system/skiff-scheduler`, 10 s duration,
//!   renewed every 2 s; a standby takes over within about 12 s of a
//!   leader's death, at once after a clean shutdown (the Lease is released).
//!
//! # Performance (measured with `bench_core`, release build, this 2-core VM)
//! 5,000 nodes and 50,000 mixed pods: 32,000–53,000 pods/s in the core,
//! 1.001× the lower bound in nodes used (FFD: 1.03×). The node-only
//! filters are evaluated once per pod *shape* and cached in the cluster
//! until its nodes change; resources are a scan over a compact array; pods
//! with inter-pod rules, spread constraints or host ports take a slower
//! general path (O(pods) per such pod).
//! End to end ([`bench_e2e`], 5,000 hollow nodes, profiling build, quiet
//! machine, medians of 3): 1,306 pods/s for 20,000 pods (session 10) and
//! 746 for 50,000 (session 11; 413–481 on the same machine before it),
//! 1.001× the lower bound; at 50,000 the `skiff server` process is
//! CPU-bound at ~1.4 cores in the API server and store (each pod costs a
//! create, a binding and a status write, each fanned out to the watchers),
//! so the 2,000 pods/s target is not met yet (NOTES.md, #6).
//!
//! # Caveats (what kube-scheduler does that Skiff does not, yet)
//! - No scheduling queue with back-off timers and no per-plugin "queueing
//!   hints": an unschedulable pod is retried after *any* relevant change.
//! - Within one priority the batch is placed in arrival order; there is no
//!   `percentageOfNodesToScore` sampling (every feasible node is scored).
//! - Nominated pods are not reserved across passes: the nominee is placed
//!   first only because it has the higher priority.
//! - Preemption ignores pod start times (no clock in the core) and
//!   kube-scheduler's victim "importance" beyond priority.
//! - `namespaceSelector` in affinity terms is understood only as `{}` (all
//!   namespaces); `matchLabelKeys`, `nodeAffinityPolicy`/`nodeTaintsPolicy`
//!   and the default system spread constraints are not implemented.
//! - VolumeBinding ([`volumes`]) knows bound claims and `WaitForFirstConsumer`
//!   claims that a provisioner will fill; it does not match unbound claims
//!   against existing PersistentVolumes per node (the PV controller binds
//!   static volumes before scheduling instead) and reserves nothing.
//! - One scheduler profile (`default-scheduler`); no extenders, no
//!   scheduling gates, no pod overhead beyond `spec.overhead` cpu/memory.
#![deny(missing_docs)]

pub mod actions;
pub mod bench;
pub mod bench_e2e;
pub mod cluster;
pub mod core;
pub mod filter;
pub mod leader;
pub mod model;
pub mod preempt;
pub mod prefilter;
pub mod quantity;
pub mod run;
pub mod score;
pub mod selector;
pub mod slim_pod;
pub mod snapshot;
pub mod volumes;
pub mod workload;

pub use bench::bench_core;
pub use bench_e2e::bench_end_to_end;
pub use run::{run, run_with, SchedulerError, SchedulerOptions};

//! Skiff's controllers: they turn what users declare (Deployments,
//! ReplicaSets, namespaces) into what runs, and keep it so when pods die and
//! nodes go silent. They run inside `skiff server`, on the one server that
//! holds the Lease `kube-system/kube-controller-manager`
//! ([`run_controllers_when_leading`], the elector of
//! `skiff_client::leader`), and talk to the API server over HTTPS with
//! kube-rs like any other client.
//!
//! ```text
//!          API server (watch)                          API server (writes)
//!               │                                             ▲
//!   Informer<SlimPod>, <ReplicaSet>, <Deployment>, …          │
//!     │ cache (Store)        │ handler → keys                 │
//!     │                      ▼                                │
//!     │              WorkQueue (de-duplicating, back-off)     │
//!     │                      │ key                            │
//!     └──── read ──> Reconciler::reconcile(key)               │
//!                      │ snapshot + clock                     │
//!                      ▼                                      │
//!                pure core: reconcile(Input) -> Plan ──> execute(Plan)
//! ```
//!
//! # Controllers
//! - [`replicaset`]: keeps `replicas` pods, named `<rs>-<5 chars>`, each
//!   with a controller `ownerReference` (`blockOwnerDeletion: true`); adopts
//!   orphans that match the selector and releases pods that stop matching;
//!   on scale-down deletes the least valuable pods first (Kubernetes'
//!   `ActivePodsWithRanks`); writes `replicas`, `fullyLabeledReplicas`,
//!   `readyReplicas`, `availableReplicas` (`minReadySeconds`) and
//!   `observedGeneration` through the status subresource. [`expectations`]
//!   stop a burst of creations being repeated before the watch shows them.
//! - [`deployment`]: one ReplicaSet per pod template, named
//!   `<deployment>-<pod-template-hash>`; `RollingUpdate` within
//!   `maxSurge` (rounded up) and `maxUnavailable` (rounded down), gated on
//!   the ReplicaSets' `availableReplicas`; `Recreate`; proportional scaling;
//!   `paused`; revisions in `deployment.kubernetes.io/revision` (and
//!   `revision-history` when `rollout undo` reuses a ReplicaSet);
//!   `revisionHistoryLimit`; conditions `Available` and `Progressing` with
//!   Kubernetes' reasons, including `ProgressDeadlineExceeded`.
//! - [`job`]: runs pods until `completions` succeed, `parallelism` at a
//!   time (NonIndexed and Indexed, with the completion-index annotation,
//!   label and `JOB_COMPLETION_INDEX`); `Failed` with `BackoffLimitExceeded`
//!   or `DeadlineExceeded`; pod-failure back-off (10 s doubling); deletes
//!   finished Jobs after `ttlSecondsAfterFinished`.
//! - [`cronjob`]: five-field cron schedules and `@hourly`-style macros in
//!   `spec.timeZone` (system zoneinfo via jiff); Jobs named
//!   `<cronjob>-<minutes since epoch>`; `concurrencyPolicy`,
//!   `startingDeadlineSeconds`, `suspend`, history limits, at most one
//!   catch-up run and the `TooManyMissedTimes` warning; injectable
//!   [`clock::Clock`].
//! - [`daemonset`]: one pod per eligible node (nodeSelector, required node
//!   affinity, taints against tolerations plus the default daemon
//!   tolerations), pinned by `matchFields metadata.name` and bound by the
//!   scheduler; `RollingUpdate` (`maxUnavailable`, `maxSurge`) and
//!   `OnDelete`; template history in [`revision`] ControllerRevisions.
//! - [`statefulset`]: pods `<sts>-<ordinal>` with hostname and subdomain
//!   (`serviceName`), labels `statefulset.kubernetes.io/pod-name` and
//!   `apps.kubernetes.io/pod-index`, and claims `<template>-<sts>-<ordinal>`
//!   created before the pod and kept on scale-down (`Retain`; `Delete` for
//!   `whenDeleted`/`whenScaled`); `OrderedReady` (one at a time, each
//!   Running and Ready first; reverse order on scale-down) and `Parallel`;
//!   `RollingUpdate` (highest ordinal first, `partition`, `maxUnavailable`)
//!   and `OnDelete`; revisions in [`revision`]; status with
//!   `currentRevision`/`updateRevision`.
//! - [`volume`]: the PV controller (claims bound to the smallest fitting
//!   static volume, or provisioned) and the local-path provisioner: the
//!   default StorageClass `local-path` (`WaitForFirstConsumer`), a
//!   `hostPath` PV per claim in the node the scheduler picked
//!   (`volume.kubernetes.io/selected-node`), pinned there by node
//!   affinity; reclaim `Delete` removes the PV (the agent removes the
//!   directory).
//! - [`disruption`]: PodDisruptionBudget status (`currentHealthy`,
//!   `desiredHealthy`, `expectedPods` from the pods' controllers' scale,
//!   `disruptionsAllowed`, `disruptedPods` left by evictions), which the
//!   API server's eviction check spends.
//! - [`gc`]: the garbage collector: background deletion of dependents whose
//!   owners are all gone; `orphan` and `foregroundDeletion` finalizers.
//! - [`hpa`]: HorizontalPodAutoscalers (autoscaling/v2): every 15 s, the
//!   target's `/scale` (Deployments, ReplicaSets, StatefulSets, custom
//!   resources), its pods' cpu/memory from `metrics.k8s.io`, Kubernetes'
//!   replica calculator (0.1 tolerance, missing and unready pods),
//!   `behavior` windows and policies, min/max; status with
//!   `AbleToScale`/`ScalingActive`/`ScalingLimited` and upstream's reasons;
//!   `SuccessfulRescale` events.
//! - [`quota`]: ResourceQuota `status.hard` and `status.used` (pods and
//!   their cpu/memory/ephemeral-storage requests and limits, services,
//!   node ports, load balancers, claims and storage per class,
//!   `count/<resource>.<group>` of any served kind; scopes and
//!   `scopeSelector`), recomputed when objects go away and every 5 min;
//!   the API server's admission charges creates.
//! - [`serviceaccount`]: a `default` ServiceAccount in every namespace.
//! - [`rootca`]: a ConfigMap `kube-root-ca.crt` with the API server's CA
//!   in every namespace (what pods' token volumes project as `ca.crt`).
//! - [`namespace`]: empties a Terminating namespace (every namespaced
//!   resource discovery finds, custom resources included; pods through
//!   their graceful deletion), reports the `NamespaceContentRemaining`,
//!   `NamespaceFinalizersRemaining` and deletion-failure conditions, and
//!   removes the `kubernetes` finalizer through `finalize` once nothing is
//!   left.
//! - [`nodelifecycle`]: a node whose Lease (`kube-node-lease`) and `Ready`
//!   heartbeat stop for `node_monitor_grace_period` (40 s) becomes
//!   `Unknown` and gets the `node.kubernetes.io/unreachable:NoExecute`
//!   taint (`not-ready` when the agent reports `Ready=False`); its pods are
//!   marked not ready, then evicted when their `tolerationSeconds` (300 s by
//!   default) run out, and their ReplicaSets replace them elsewhere.
//! - [`podgc`]: every 20 s, force-deletes pods of nodes gone for 40 s
//!   (marked `Failed` with `DisruptionTarget` first), unscheduled pods
//!   being deleted, and the oldest finished pods beyond
//!   `--terminated-pod-gc-threshold` (12,500).
//! - [`endpoints`]: Endpoints and EndpointSlices for every Service with a
//!   selector: ready pods as ready addresses, the rest not ready,
//!   terminating pods out of rotation at once, named target ports resolved
//!   per pod, `publishNotReadyAddresses`.
//! - [`nodeipam`]: gives each node a pod CIDR (`spec.podCIDR`) from the
//!   cluster CIDR (`--cluster-cidr`, a /24 each by default), never the same
//!   one twice, and takes it back when the node goes.
//!
//! # Contracts
//! - Level-triggered: a reconcile reads only the current caches and the
//!   clock, so running it twice, late, or after a restart is harmless
//!   (the HPA also reads `/scale`, pods and metrics live, and keeps its
//!   recommendation windows in memory, as kube-controller-manager does). Each
//!   decision is a pure function (`core.rs`, `health.rs`, `eviction.rs`,
//!   `gc/core.rs`) tested table-driven on fixed inputs; the
//!   `controller.rs` files only do I/O.
//! - One reconcile per key at a time ([`runtime::WorkQueue`]); failures are
//!   retried with per-key exponential back-off; time-driven conditions
//!   (`minReadySeconds`, progress deadlines) requeue themselves.
//! - Workers start only after the caches they read have listed everything.
//! - Writes are conditional where a stale cache could do harm: pod and
//!   ReplicaSet deletions carry a uid precondition, ownerReference and
//!   finalizer patches carry the `resourceVersion` they were computed from,
//!   and the garbage collector confirms a missing owner with a live GET.
//! - [`run_controllers`] must run on one server at a time.
//! - Pods are cached as [`slim_pod::SlimPod`]s: metadata and only the spec
//!   and status fields some controller reads (its module doc has the
//!   table). A slim pod cannot be serialized, so it is never written back;
//!   pods are created from templates as full k8s-openapi `Pod`s, changed
//!   by PATCH, and deleted with a uid precondition.
//!
//! # Facts learned the hard way
//! - kube-rs 5's `Store::wait_until_ready` wakes only the last of several
//!   concurrent waiters; informers here expose their own
//!   [`runtime::informer::Synced`] flag instead.
//! - Skiff's API server rejects `generateName` values ending in `.` (as
//!   `<object>.`), so events are named `<object>.<unix-nanos-hex>`, the way
//!   Kubernetes' event recorder names them.
//! - Replacement pods stay off a silent node only because of the
//!   `NoSchedule` taint: pods tolerate `unreachable:NoExecute` for a while,
//!   and the scheduler honours that toleration.
//!
//! # Caveats (what Kubernetes does that Skiff does not, yet)
//! - A server that loses the controller Lease stops its controllers and
//!   stands by again (kube-controller-manager exits instead); a holder
//!   killed with -9 leaves the Lease for its 15 s before a standby takes it.
//! - The namespace controller deletes object by object (no
//!   `deletecollection`) and re-checks a Terminating namespace every
//!   second instead of estimating the pods' remaining grace periods.
//! - `pod-template-hash` is FNV-1a of the template's JSON, not of Go's
//!   `spew` dump: values differ from Kubernetes', names are still stable.
//! - The scale-down rank counts co-located pods of the same ReplicaSet, not
//!   of all ReplicaSets of the Deployment.
//! - The ReplicaSet controller does not set the `ReplicaFailure` condition
//!   (it records `FailedCreate` events); `terminatingReplicas` is not
//!   computed.
//! - The garbage collector watches every discovered resource with full
//!   objects (Kubernetes uses metadata-only watches); it needs the API
//!   server to add the `orphan`/`foregroundDeletion` finalizers for
//!   `propagationPolicy=Orphan`/`Foreground` and to keep such objects until
//!   the finalizer is removed.
//! - Node lifecycle: no zone-aware rate limiting of evictions, no
//!   `NoSchedule` condition taints (`TaintNodesByCondition`), and pods
//!   without `not-ready`/`unreachable` tolerations get the 300 s default
//!   here rather than at admission.
//! - Job: no job-tracking finalizer, so `succeeded`/`failed` count the
//!   terminated pods that still exist (never counting down); no
//!   `podFailurePolicy`, `backoffLimitPerIndex`, `successPolicy`; orphan
//!   pods matching a Job's selector are not adopted.
//! - CronJob: the `MissSchedule` check cannot fire once the look-back is
//!   clipped to `startingDeadlineSeconds` (as in Kubernetes); `status.active`
//!   is rebuilt from the Jobs each time.
//! - DaemonSet: pods on nodes that no longer exist are deleted by this
//!   controller (Kubernetes leaves that to the pod GC); no failed-pod
//!   back-off; `pod-template-hash` of revisions is Skiff's FNV hash.
//! - StatefulSet: orphan pods are not adopted; a pod whose identity or
//!   claims drifted is not patched back (only missing claims are made);
//!   `maxUnavailable` is honoured without Kubernetes' feature gate; no
//!   `collisionCount` bumps on hash collisions; `currentRevision` also
//!   advances for `OnDelete` once every pod is updated.
//! - Volumes: the API server serves no `storage.k8s.io` StorageClasses
//!   yet, so `local-path` is also built in; no `pvc-protection` finalizer
//!   (a claim in use can be deleted); no capacity accounting.
//! - HPA: only `Resource` metrics; repeated warnings are recorded as new
//!   events, not counted up.
//! - ResourceQuota: counts of kinds other than pods, services and claims
//!   (configmaps, secrets, `count/deployments.apps`, …) go down at the
//!   next 5-minute resync after a deletion, not at once (upstream watches
//!   every kind); a recount that races an admission charge can give a
//!   charge back until the next trigger (upstream has the same window).
//! - Events expire in the API server (`skiff_apiserver::event_ttl`), not
//!   through a controller.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod error;
pub mod events;
pub mod expectations;
pub mod gc;
pub mod hpa;
pub mod job;
pub mod names;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owner;
pub mod pod_util;
pub mod podgc;
pub mod quota;
pub mod replicaset;
pub mod revision;
pub mod rootca;
pub mod run;
pub mod runtime;
pub mod selector;
pub mod serviceaccount;
pub mod slim_pod;
pub mod statefulset;
pub mod status;
pub mod volume;

#[cfg(test)]
mod slim_pod_test;
#[cfg(test)]
mod test_fixtures;

pub use config::ControllersConfig;
pub use error::ControllerError;
pub use run::{run_controllers, run_controllers_when_leading};

//! The life of a pod on the node, as kubelet's pod workers see it
//! (`pkg/kubelet/pod_workers.go`): a pod is first *syncing* (run toward its
//! spec), then *terminating* (its containers are being stopped), then
//! *terminated* (nothing of it is left in the runtime). It only moves
//! forward; the legal transitions are spelled out in [`PodLifecycle::on`].

/// Where a pod is in its life on this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodLifecycle {
    /// Run the pod toward its spec: sandbox, containers, restarts, status.
    Syncing,
    /// Stop and remove everything of the pod in CRI.
    Terminating {
        /// Seconds each container gets between SIGTERM and SIGKILL.
        grace_period_seconds: i64,
        /// Whether the pod object still exists, so that the agent must make
        /// the final `DELETE` with `gracePeriodSeconds: 0` once done
        /// (kubelet's status manager does this for gracefully deleted pods).
        delete_from_api: bool,
    },
    /// Nothing left in the runtime; the worker ends.
    Terminated,
}

/// What can happen to a pod's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// The API server set `deletionTimestamp` (graceful deletion).
    DeletionRequested {
        /// `metadata.deletionGracePeriodSeconds`.
        grace_period_seconds: i64,
    },
    /// The pod object is gone (force-deleted, or the watch no longer lists it).
    Removed {
        /// Grace period to use for the kill.
        grace_period_seconds: i64,
    },
    /// Every container and sandbox of the pod has been removed from CRI.
    TeardownComplete,
}

/// A transition that the life of a pod does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("illegal pod lifecycle transition: {event:?} in {from:?}")]
pub struct IllegalTransition {
    /// State before.
    pub from: PodLifecycle,
    /// The event.
    pub event: LifecycleEvent,
}

impl PodLifecycle {
    /// The state after `event`.
    ///
    /// A second deletion request may only shorten the grace period (the API
    /// server allows lowering it, never raising it); an object that vanished
    /// needs no final delete.
    pub fn on(self, event: LifecycleEvent) -> Result<PodLifecycle, IllegalTransition> {
        use LifecycleEvent::*;
        use PodLifecycle::*;
        let next = match (self, event) {
            (
                Syncing,
                DeletionRequested {
                    grace_period_seconds,
                },
            ) => Terminating {
                grace_period_seconds: grace_period_seconds.max(0),
                delete_from_api: true,
            },
            (
                Syncing,
                Removed {
                    grace_period_seconds,
                },
            ) => Terminating {
                grace_period_seconds: grace_period_seconds.max(0),
                delete_from_api: false,
            },
            (
                Terminating {
                    grace_period_seconds: g0,
                    delete_from_api,
                },
                DeletionRequested {
                    grace_period_seconds,
                },
            ) => Terminating {
                grace_period_seconds: g0.min(grace_period_seconds.max(0)),
                delete_from_api,
            },
            (
                Terminating {
                    grace_period_seconds: g0,
                    ..
                },
                Removed {
                    grace_period_seconds,
                },
            ) => Terminating {
                grace_period_seconds: g0.min(grace_period_seconds.max(0)),
                delete_from_api: false,
            },
            (Terminating { .. }, TeardownComplete) => Terminated,
            (Terminated, DeletionRequested { .. } | Removed { .. }) => Terminated,
            (from @ (Syncing | Terminated), TeardownComplete) => {
                return Err(IllegalTransition { from, event })
            }
        };
        Ok(next)
    }

    /// Whether the pod should still be run toward its spec.
    pub fn is_syncing(self) -> bool {
        self == PodLifecycle::Syncing
    }
}

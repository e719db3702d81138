//! [`Store`]'s lease service ([`Lease`]), the leader's expiry loop, and the
//! node status the etcd API reports.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::Instant;

use async_trait::async_trait;

use super::{from_mvcc, unexpected, Inner, Route, Store};
use crate::error::StoreError;
use crate::kv::{
    Lease, LeaseGrantRequest, LeaseGrantResponse, LeaseId, LeaseKeepAliveResponse,
    LeaseRevokeResponse, LeaseTimeToLiveResponse, Revision,
};
use crate::lease_apply::MAX_LEASE_TTL_SECS;
use crate::lessor::LEASE_CHECK_INTERVAL;
use crate::mvcc::{MvccError, Overlay};
use crate::peer::{PeerReply, PeerRequest};
use crate::raft_types::{Command, CommandResponse};

/// A node's view of itself, for etcd's `Status` and response headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreStatus {
    /// The cluster's id (a hash of the data directory marker's cluster id).
    pub cluster_id: u64,
    /// This node's raft id (etcd's member id).
    pub member_id: u64,
    /// The leader's raft id, 0 if none is known.
    pub leader: u64,
    /// The current raft term.
    pub raft_term: u64,
    /// The index of the last raft log entry.
    pub raft_index: u64,
    /// The index of the last applied raft log entry.
    pub raft_applied_index: u64,
    /// The latest revision applied on this node.
    pub revision: Revision,
    /// Bytes the state machine's database takes on disk.
    pub db_size_bytes: u64,
}

impl Store {
    /// Give every stored lease a fresh TTL (on becoming leader); returns the
    /// raft term this was done for.
    pub(super) fn promote_leases(&self) -> Result<u64, StoreError> {
        let term = self.inner.raft.metrics().borrow().current_term;
        let mvcc = self.mvcc()?;
        self.inner.lessor.promote(|| {
            mvcc.read_view(|m| m.leases())
                .map(|ls| ls.into_iter().map(|l| (l.id, l.ttl)).collect())
                .map_err(from_mvcc)
        })?;
        Ok(term)
    }

    /// The cluster id, member id and raft term, for etcd response headers.
    pub fn header_ids(&self) -> (u64, u64, u64) {
        let term = self.inner.raft.metrics().borrow().current_term;
        (self.inner.cluster_id, self.inner.node_id, term)
    }

    /// This node's status (raft position, leader, database size).
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        self.check_running()?;
        let m = self.inner.raft.metrics().borrow().clone();
        let revision = self.mvcc()?.revision().map_err(from_mvcc)?;
        let db_size_bytes = self
            .inner
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|db| db.size_on_disk().ok())
            .unwrap_or(0);
        Ok(StoreStatus {
            cluster_id: self.inner.cluster_id,
            member_id: self.inner.node_id,
            leader: m.current_leader.unwrap_or(0),
            raft_term: m.current_term,
            raft_index: m.last_log_index.unwrap_or(0),
            raft_applied_index: m.last_applied.map_or(0, |l| l.index),
            revision,
            db_size_bytes,
        })
    }
}

/// Every [`LEASE_CHECK_INTERVAL`], while this node leads, propose a revoke
/// for each expired lease. A new term of leadership first restarts every
/// TTL. Ends when the store is shut down or dropped (it holds only a weak
/// handle, so it does not keep the store alive).
pub(super) async fn expiry_loop(weak: Weak<Inner>, mut led_term: Option<u64>) {
    let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let store = Store { inner };
        let (leading, term) = {
            let m = store.inner.raft.metrics();
            let m = m.borrow();
            (
                m.current_leader == Some(store.inner.node_id),
                m.current_term,
            )
        };
        if !leading {
            led_term = None;
            continue;
        }
        if led_term != Some(term) {
            // A new leader: make sure followers can reach it.
            let s = store.clone();
            tokio::spawn(async move { s.publish_own_address().await });
            match store.promote_leases() {
                Ok(t) => led_term = Some(t),
                Err(e) => {
                    tracing::warn!(error = %e, "restarting lease TTLs");
                    continue;
                }
            }
        }
        for id in store.inner.lessor.expired(Instant::now()) {
            let s = store.clone();
            tokio::spawn(async move {
                match s.write(Command::LeaseRevoke(id)).await {
                    Ok(_) => tracing::debug!(lease = id, "lease expired and revoked"),
                    // Revoked meanwhile by a client.
                    Err(StoreError::LeaseNotFound(_)) => {}
                    Err(e) => tracing::debug!(lease = id, error = %e, "revoking an expired lease"),
                }
            });
        }
    }
}

#[async_trait]
impl Lease for Store {
    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError> {
        if req.ttl > MAX_LEASE_TTL_SECS {
            return Err(StoreError::LeaseTtlTooLarge(req.ttl));
        }
        match self
            .write(Command::LeaseGrant {
                id: req.id,
                ttl: req.ttl,
            })
            .await?
        {
            CommandResponse::LeaseGrant(r) => Ok(r),
            other => Err(unexpected("lease grant", &other)),
        }
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<LeaseRevokeResponse, StoreError> {
        match self.write(Command::LeaseRevoke(id)).await? {
            CommandResponse::LeaseRevoke(r) => Ok(r),
            other => Err(unexpected("lease revoke", &other)),
        }
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse, StoreError> {
        // Only the leader's deadlines count (etcd forwards keep-alives to
        // the leader).
        self.check_running()?;
        let ttl = match self.route().await? {
            Route::Local => {
                self.linearize().await?;
                self.inner.lessor.keep_alive(id)
            }
            Route::Leader(addr) => {
                match self.call_leader(&addr, &PeerRequest::KeepAlive(id)).await? {
                    PeerReply::Ttl(ttl) => ttl,
                    other => {
                        return Err(StoreError::Storage(format!(
                            "unexpected answer to a keep-alive: {other:?}"
                        )))
                    }
                }
            }
        };
        let ttl = ttl.ok_or(StoreError::LeaseNotFound(id))?;
        Ok(LeaseKeepAliveResponse { id, ttl })
    }

    async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, StoreError> {
        self.linearize().await?;
        let mvcc = self.mvcc()?;
        let (revision, lease, attached) = mvcc
            .read_view(|m| -> Result<_, MvccError> {
                let lease = m.lease(id)?;
                let attached = if keys && lease.is_some() {
                    m.attached_keys(&Overlay::default(), id)?
                } else {
                    Vec::new()
                };
                Ok((m.revision()?, lease, attached))
            })
            .map_err(from_mvcc)?;
        let lease = lease.ok_or(StoreError::LeaseNotFound(id))?;
        // Time left is the leader's to say.
        let remaining = match self.route().await? {
            Route::Local => self.inner.lessor.remaining(id),
            Route::Leader(addr) => {
                match self
                    .call_leader(&addr, &PeerRequest::LeaseRemaining(id))
                    .await
                {
                    Ok(PeerReply::Ttl(ttl)) => ttl,
                    _ => None,
                }
            }
        };
        Ok(LeaseTimeToLiveResponse {
            revision,
            id,
            ttl: remaining.unwrap_or(lease.ttl),
            granted_ttl: lease.ttl,
            keys: attached,
        })
    }

    async fn lease_leases(&self) -> Result<Vec<LeaseId>, StoreError> {
        self.linearize().await?;
        let leases = self.mvcc()?.read_view(|m| m.leases()).map_err(from_mvcc)?;
        Ok(leases.into_iter().map(|l| l.id).collect())
    }
}

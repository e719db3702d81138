//! [`RemoteStore`]: the [`Kv`] and [`Lease`] contracts over an external etcd
//! cluster (`skiff server --datastore-endpoint http://HOST:2379`), for users
//! who outgrow the embedded store.
//!
//! ```text
//!  API server ── Arc<dyn Kv> ──► RemoteStore ── gRPC (h2c, tonic) ──► etcd 3.4+
//!                                  │ range/put/delete/txn/compact   KV
//!                                  │ watch: one Watch stream each   Watch      (remote_watch.rs)
//!                                  │ leases                         Lease
//!                                  └ conversions and errors         remote_convert.rs
//! ```
//!
//! The same behaviour tests run against this and [`crate::Store`]
//! (`tests/kv_test.rs`, `watch_test.rs`, `lease_test.rs`). Where etcd's wire
//! answer carries less than [`StoreError`] does, this fills it in with a
//! second request on the error path: a compacted read learns the
//! compaction point from a watch at the requested revision (etcd answers it
//! with `compact_revision`), a future read asks for the current revision.
//!
//! Caveats: one endpoint, or several balanced by tonic (no member discovery,
//! no TLS or auth); a value of the full 1.5 MiB needs etcd's
//! `--max-request-bytes` above its 1.5 MiB default, which counts the key and
//! the message framing too; lease ids chosen by etcd are random, not
//! 1, 2, …; a `Txn` may not name a key twice (etcd refuses it).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tonic::transport::{Channel, Endpoint};

use crate::error::StoreError;
use crate::etcd::pb::etcdserverpb as pb;
use crate::etcd::pb::etcdserverpb::kv_client::KvClient;
use crate::etcd::pb::etcdserverpb::lease_client::LeaseClient;
use crate::etcd::pb::etcdserverpb::watch_client::WatchClient;
use crate::kv::*;
use crate::remote_convert::{self as convert, error_from_status, lease_error};
use crate::remote_watch;
use crate::store::check_put;

/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings on idle connections, so a dead etcd member is noticed (and
/// its watches end) even when nothing is being written.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Largest answer accepted: a full list of a big cluster's pods can exceed
/// tonic's 4 MiB default (etcd itself sends up to 2 GiB).
const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// An external etcd cluster as a Skiff store. Cheap to clone; clones share
/// the connection.
#[derive(Clone)]
pub struct RemoteStore {
    inner: Arc<Inner>,
}

struct Inner {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    watch: WatchClient<Channel>,
    /// Turns true at [`RemoteStore::shutdown`]; open watches end on it.
    stop: watch::Receiver<bool>,
    stop_tx: watch::Sender<bool>,
}

fn endpoint(url: &str) -> Result<Endpoint, StoreError> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    if url.starts_with("https://") {
        return Err(StoreError::InvalidRequest(format!(
            "{url}: TLS to etcd is not supported yet; use http:// on a trusted network"
        )));
    }
    Ok(Endpoint::from_shared(url.clone())
        .map_err(|e| StoreError::InvalidRequest(format!("etcd endpoint {url}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_while_idle(true))
}

impl RemoteStore {
    /// Connect to etcd at `endpoints` (`http://HOST:2379`, or several
    /// separated by commas, which are then balanced), and check that it
    /// answers.
    pub async fn connect(endpoints: &str) -> Result<RemoteStore, StoreError> {
        let list: Vec<&str> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let channel = match list.as_slice() {
            [] => {
                return Err(StoreError::InvalidRequest(
                    "no etcd endpoint given".to_string(),
                ))
            }
            [one] => endpoint(one)?.connect().await.map_err(|e| {
                StoreError::NoLeader(format!("cannot connect to etcd at {one}: {e:?}"))
            })?,
            many => Channel::balance_list(
                many.iter()
                    .map(|u| endpoint(u))
                    .collect::<Result<Vec<_>, _>>()?
                    .into_iter(),
            ),
        };
        let (stop_tx, stop) = watch::channel(false);
        let store = RemoteStore {
            inner: Arc::new(Inner {
                kv: KvClient::new(channel.clone()).max_decoding_message_size(MAX_RESPONSE_BYTES),
                lease: LeaseClient::new(channel.clone()),
                watch: WatchClient::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES),
                stop,
                stop_tx,
            }),
        };
        tokio::time::timeout(CONNECT_TIMEOUT * 2, store.current_revision())
            .await
            .map_err(|_| StoreError::NoLeader(format!("etcd at {endpoints} does not answer")))??;
        Ok(store)
    }

    /// End every open watch (with [`StoreError::Stopped`]); later watches
    /// fail the same way. Unary calls still work until the last clone is
    /// dropped; etcd itself is untouched.
    pub async fn shutdown(&self) {
        let _ = self.inner.stop_tx.send(true);
    }

    fn check_running(&self) -> Result<(), StoreError> {
        if *self.inner.stop.borrow() {
            return Err(StoreError::Stopped("remote store was shut down".into()));
        }
        Ok(())
    }

    /// The store's error for etcd's answer `s` to a request at `requested`,
    /// with the revisions etcd's status leaves out filled in.
    async fn revision_error(&self, s: tonic::Status, requested: Revision) -> StoreError {
        match error_from_status(s) {
            StoreError::Compacted { .. } => StoreError::Compacted {
                requested,
                compact_revision: remote_watch::compact_revision(
                    self.inner.watch.clone(),
                    requested,
                )
                .await
                .unwrap_or(0),
            },
            StoreError::FutureRevision { .. } => StoreError::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            other => other,
        }
    }
}

#[async_trait]
impl Kv for RemoteStore {
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let requested = req.revision;
        match self.inner.kv.clone().range(convert::range_to_pb(req)).await {
            Ok(r) => Ok(convert::range_from_pb(r.into_inner())),
            Err(s) => Err(self.revision_error(s, requested).await),
        }
    }

    async fn put(&self, req: PutRequest) -> Result<PutResponse, StoreError> {
        check_put(&req)?;
        let lease = req.lease;
        let r = self.inner.kv.clone().put(convert::put_to_pb(req)).await;
        r.map(|r| convert::put_from_pb(r.into_inner()))
            .map_err(|s| lease_error(s, lease))
    }

    async fn delete_range(
        &self,
        req: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, StoreError> {
        let r = self
            .inner
            .kv
            .clone()
            .delete_range(convert::delete_to_pb(req))
            .await;
        r.map(|r| convert::delete_from_pb(r.into_inner()))
            .map_err(error_from_status)
    }

    async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, StoreError> {
        let mut lease = 0;
        for op in req.success.iter().chain(&req.failure) {
            if let RequestOp::Put(p) = op {
                check_put(p)?;
                lease = if p.lease != 0 { p.lease } else { lease };
            }
        }
        match self.inner.kv.clone().txn(convert::txn_to_pb(req)).await {
            Ok(r) => Ok(convert::txn_from_pb(r.into_inner())),
            // A txn's only lease error is a put naming a missing lease; with
            // several, etcd does not say which (neither is reported here).
            Err(s) => Err(lease_error(s, lease)),
        }
    }

    async fn watch(&self, req: WatchRequest) -> Result<WatchStream, StoreError> {
        self.check_running()?;
        // etcd accepts a watch below the compaction point and cancels it a
        // moment later; the embedded store refuses it at once. A range at
        // that revision gives the same answer as the embedded store.
        if req.start_revision > 0 {
            let probe = RangeRequest {
                key: req.key.clone(),
                revision: req.start_revision,
                count_only: true,
                ..Default::default()
            };
            match self.range(probe).await {
                Err(e @ StoreError::Compacted { .. }) => return Err(e),
                Ok(_) | Err(StoreError::FutureRevision { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        remote_watch::start(self.inner.watch.clone(), req, self.inner.stop.clone()).await
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let req = pb::CompactionRequest {
            revision,
            physical: false,
        };
        match self.inner.kv.clone().compact(req).await {
            Ok(_) => Ok(()),
            Err(s) => Err(self.revision_error(s, revision).await),
        }
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        // Any answer's header carries the current revision; a count of one
        // key is the cheapest linearizable read.
        let req = pb::RangeRequest {
            key: vec![0],
            count_only: true,
            ..Default::default()
        };
        let r = self
            .inner
            .kv
            .clone()
            .range(req)
            .await
            .map_err(error_from_status)?;
        Ok(convert::revision(&r.into_inner().header))
    }
}

#[async_trait]
impl Lease for RemoteStore {
    async fn lease_grant(&self, req: LeaseGrantRequest) -> Result<LeaseGrantResponse, StoreError> {
        let r = self
            .inner
            .lease
            .clone()
            .lease_grant(pb::LeaseGrantRequest {
                ttl: req.ttl,
                id: req.id,
            })
            .await
            .map_err(|s| match lease_error(s, req.id) {
                StoreError::LeaseTtlTooLarge(_) => StoreError::LeaseTtlTooLarge(req.ttl),
                other => other,
            })?
            .into_inner();
        if !r.error.is_empty() {
            return Err(StoreError::InvalidRequest(format!("etcd: {}", r.error)));
        }
        Ok(LeaseGrantResponse {
            revision: convert::revision(&r.header),
            id: r.id,
            ttl: r.ttl,
        })
    }

    async fn lease_revoke(&self, id: LeaseId) -> Result<LeaseRevokeResponse, StoreError> {
        let r = self
            .inner
            .lease
            .clone()
            .lease_revoke(pb::LeaseRevokeRequest { id })
            .await
            .map_err(|s| lease_error(s, id))?;
        Ok(LeaseRevokeResponse {
            revision: convert::revision(&r.into_inner().header),
        })
    }

    async fn lease_keep_alive(&self, id: LeaseId) -> Result<LeaseKeepAliveResponse, StoreError> {
        // One short stream per keep-alive: the API server refreshes a lease
        // every few seconds at most, so a long-lived stream buys nothing.
        let req = pb::LeaseKeepAliveRequest { id };
        let mut answers = self
            .inner
            .lease
            .clone()
            .lease_keep_alive(futures::stream::iter([req]))
            .await
            .map_err(|s| lease_error(s, id))?
            .into_inner();
        let r = answers
            .message()
            .await
            .map_err(|s| lease_error(s, id))?
            .ok_or_else(|| StoreError::Transport("etcd ended the keep-alive stream".into()))?;
        // etcd answers a keep-alive of an unknown lease with TTL 0.
        if r.ttl <= 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        Ok(LeaseKeepAliveResponse { id, ttl: r.ttl })
    }

    async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse, StoreError> {
        let r = self
            .inner
            .lease
            .clone()
            .lease_time_to_live(pb::LeaseTimeToLiveRequest { id, keys })
            .await
            .map_err(|s| lease_error(s, id))?
            .into_inner();
        // etcd answers an unknown lease with TTL -1.
        if r.ttl < 0 {
            return Err(StoreError::LeaseNotFound(id));
        }
        Ok(LeaseTimeToLiveResponse {
            revision: convert::revision(&r.header),
            id,
            ttl: r.ttl,
            granted_ttl: r.granted_ttl,
            keys: r.keys,
        })
    }

    async fn lease_leases(&self) -> Result<Vec<LeaseId>, StoreError> {
        let r = self
            .inner
            .lease
            .clone()
            .lease_leases(pb::LeaseLeasesRequest {})
            .await
            .map_err(error_from_status)?;
        Ok(r.into_inner().leases.into_iter().map(|l| l.id).collect())
    }
}

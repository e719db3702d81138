//! The RBAC [`Authorizer`]: a [`Policy`] built from the watch cache's
//! Roles, ClusterRoles, RoleBindings and ClusterRoleBindings, rebuilt only
//! when one of them changed (kube-apiserver's RBAC authorizer reads the
//! same objects from informers).
//!
//! ```text
//!  request ─► snapshot: built at revision R, and no RBAC bucket of the
//!             watch cache changed after R? ─ yes ─► reuse
//!                                           └ no ─► rebuild from memory
//!          ─► Policy::allows ─ deny ─► wait until the cache has the store's
//!             current revision, rebuild if RBAC changed, ask again
//! ```
//!
//! The second look on a deny makes a binding written just before the
//! request count (read-your-writes for `kubectl create rolebinding` then a
//! request), at the cost of one store revision read per denied request.
//! Until the watch cache has loaded, the policy is read from the store.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use serde_json::Value;
use skiff_store::Revision;

use crate::auth::{Authorizer, UserInfo};
use crate::error::ApiError;
use crate::rbac::{Attributes, Policy, PolicyRule, RoleRef};
use crate::registry::Registry;
use crate::resources::{find, ResourceInfo};

/// The four RBAC resources, in [`Policy::new`]'s argument order.
const RBAC_PLURALS: [&str; 4] = [
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

fn rbac_resources() -> Vec<&'static ResourceInfo> {
    RBAC_PLURALS
        .iter()
        .filter_map(|p| find("rbac.authorization.k8s.io", "v1", p))
        .collect()
}

/// RBAC over the server's registry. See the module doc.
pub struct RbacAuthorizer {
    registry: Registry,
    /// The last policy and the cache revision it was built at.
    snapshot: RwLock<Option<(Revision, Arc<Policy>)>>,
    /// Held while a new policy is built.
    rebuild: tokio::sync::Mutex<()>,
}

impl RbacAuthorizer {
    /// An authorizer reading roles and bindings through `registry` (from
    /// its watch cache when it has one).
    pub fn new(registry: Registry) -> RbacAuthorizer {
        RbacAuthorizer {
            registry,
            snapshot: RwLock::new(None),
            rebuild: tokio::sync::Mutex::new(()),
        }
    }

    /// The current policy.
    pub async fn policy(&self) -> Result<Arc<Policy>, ApiError> {
        let Some(cache) = self.registry.watch_cache().filter(|c| c.is_ready()) else {
            return self.policy_from_store().await;
        };
        let resources = rbac_resources();
        let current = || {
            let snapshot = self.snapshot.read().unwrap_or_else(|e| e.into_inner());
            snapshot
                .as_ref()
                .filter(|(rev, _)| resources.iter().all(|r| cache.unchanged_since(r, *rev)))
                .map(|(_, p)| p.clone())
        };
        if let Some(p) = current() {
            return Ok(p);
        }
        // One rebuild at a time: requests arriving meanwhile wait for it
        // and then find it current.
        let _rebuilding = self.rebuild.lock().await;
        if let Some(p) = current() {
            return Ok(p);
        }
        // Read the revision first: anything changed after it forces the
        // next request to rebuild again, so no change is ever missed.
        let revision = cache.revision();
        let mut lists: Vec<Vec<Value>> = Vec::new();
        for r in &resources {
            let prefix = r.storage_prefix();
            match cache.list(r, &prefix, &prefix, 0, |_| true) {
                Some(page) => lists.push(page.items.iter().map(|o| o.to_value()).collect()),
                None => return self.policy_from_store().await,
            }
        }
        let policy = Arc::new(build(&lists));
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) =
            Some((revision, policy.clone()));
        Ok(policy)
    }

    async fn policy_from_store(&self) -> Result<Arc<Policy>, ApiError> {
        let mut lists: Vec<Vec<Value>> = Vec::new();
        for r in rbac_resources() {
            let page = self
                .registry
                .list_from_store(r, None, &crate::registry::ListOptions::default(), |_| true)
                .await?;
            lists.push(page.values());
        }
        Ok(Arc::new(build(&lists)))
    }
}

/// The policy from the decoded roles, cluster roles and their bindings
/// (the cache holds them encoded; the policy is this reader's own index).
fn build(lists: &[Vec<Value>]) -> Policy {
    let of = |i: usize| lists.get(i).into_iter().flatten();
    Policy::new(of(0), of(1), of(2), of(3))
}

#[async_trait]
impl Authorizer for RbacAuthorizer {
    async fn allows(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Result<bool, ApiError> {
        if self.policy().await?.allows(user, attrs) {
            return Ok(true);
        }
        // A deny may be a binding the cache has not seen yet.
        if let Some(cache) = self.registry.watch_cache().filter(|c| c.is_ready()) {
            if cache.wait_fresh().await.unwrap_or(false) {
                return Ok(self.policy().await?.allows(user, attrs));
            }
        }
        Ok(false)
    }

    async fn rules_for(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
    ) -> Result<Vec<PolicyRule>, ApiError> {
        if let Some(cache) = self.registry.watch_cache().filter(|c| c.is_ready()) {
            // Rules reviews and escalation checks are rare: read fresh.
            let _ = cache.wait_fresh().await;
        }
        Ok(self.policy().await?.rules_for(user, namespace))
    }

    async fn role_rules(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Vec<PolicyRule>, ApiError> {
        if let Some(cache) = self.registry.watch_cache().filter(|c| c.is_ready()) {
            let _ = cache.wait_fresh().await;
        }
        let role_ref = RoleRef {
            kind: kind.to_string(),
            name: name.to_string(),
        };
        Ok(self
            .policy()
            .await?
            .role_rules(&role_ref, namespace)
            .to_vec())
    }
}

//! The request pipeline's security hooks: authentication, authorization and
//! admission (kube-apiserver's `authenticator.Request`,
//! `authorizer.Authorizer` and `admission.Interface`).
//!
//! Authentication: two static bearer tokens (the admin token → `admin` in
//! `system:masters`; the node token → `system:node` in `system:nodes`) and
//! ServiceAccount JWTs ([`crate::serviceaccount_token`]). Authorization:
//! RBAC by default ([`crate::rbac_authorizer`]), or [`AllowAll`] for
//! embedders that want none. Admission: [`NoAdmission`] changes nothing;
//! plugins plug in behind the trait.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ApiError;
use crate::rbac::{Attributes, PolicyRule, ResourceAttributes};
use crate::registry::Registry;
use crate::resources::ResourceInfo;
use crate::serviceaccount_token::{self as sa_token, TokenError, TokenSigner};

/// Who made a request (Kubernetes' `user.Info`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name, e.g. `admin`, `system:node`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
    /// A unique id (a ServiceAccount's uid), or empty.
    pub uid: String,
    /// Extra attributes, e.g. the pod a token is bound to.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// Turns a request's bearer token into a user.
#[derive(Clone)]
pub struct TokenAuthenticator {
    admin_token: String,
    node_token: String,
    service_accounts: Option<Arc<TokenSigner>>,
}

/// Compares in time independent of where the strings differ, so a token
/// cannot be guessed byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenAuthenticator {
    /// An authenticator for the admin and node tokens.
    pub fn new(admin_token: &str, node_token: &str) -> Self {
        TokenAuthenticator {
            admin_token: admin_token.to_string(),
            node_token: node_token.to_string(),
            service_accounts: None,
        }
    }

    /// Also accepts ServiceAccount tokens signed by `signer`.
    pub fn with_service_accounts(mut self, signer: Arc<TokenSigner>) -> Self {
        self.service_accounts = Some(signer);
        self
    }

    /// The ServiceAccount token signer, if ServiceAccount tokens are on.
    pub fn token_signer(&self) -> Option<&Arc<TokenSigner>> {
        self.service_accounts.as_ref()
    }

    /// The user behind an `Authorization` header value; 401 when absent or
    /// unknown (kube-apiserver also answers 401 to a bad token even where
    /// anonymous access would be allowed).
    pub async fn authenticate(
        &self,
        registry: &Registry,
        authorization: Option<&str>,
    ) -> Result<UserInfo, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        self.review(registry, token, &[sa_token::ISSUER])
            .await
            .map_err(|e| {
                tracing::debug!(error = %e, "authentication failed");
                ApiError::Unauthorized
            })
    }

    /// The user behind a bearer token, accepting ServiceAccount tokens for
    /// one of `audiences` (a TokenReview's check; requests use the API
    /// server's own audience).
    pub async fn review(
        &self,
        registry: &Registry,
        token: &str,
        audiences: &[&str],
    ) -> Result<UserInfo, TokenError> {
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Ok(UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
                ..Default::default()
            });
        }
        if constant_time_eq(token.as_bytes(), self.node_token.as_bytes()) {
            return Ok(UserInfo {
                name: "system:node".into(),
                groups: vec!["system:nodes".into(), "system:authenticated".into()],
                ..Default::default()
            });
        }
        let signer = self
            .service_accounts
            .as_ref()
            .filter(|_| sa_token::is_jwt(token))
            .ok_or(TokenError::Malformed)?;
        let claims = signer.verify(token, chrono::Utc::now().timestamp(), audiences)?;
        sa_token::check_not_revoked(registry, &claims).await?;
        Ok(sa_token::user_of(&claims))
    }
}

/// What a request wants to do, for authorization (Kubernetes'
/// `authorizer.Attributes`).
#[derive(Clone, Debug)]
pub struct RequestAttributes<'a> {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`; for non-resource paths the lower-case HTTP method.
    pub verb: &'a str,
    /// The resource, if the path names one.
    pub resource: Option<&'a ResourceInfo>,
    /// The subresource, if any.
    pub subresource: Option<&'a str>,
    /// The namespace, if any.
    pub namespace: Option<&'a str>,
    /// The object name, if any.
    pub name: Option<&'a str>,
    /// The URL path.
    pub path: &'a str,
}

impl RequestAttributes<'_> {
    /// The attributes in the strings RBAC compares. kube-apiserver's
    /// `RequestInfo` names a Namespace object's own namespace as the
    /// request's namespace, so a RoleBinding in `ns` can grant `get` on
    /// the Namespace `ns`.
    pub fn rbac(&self) -> Attributes<'_> {
        // Opening exec/attach/portforward by a WebSocket upgrade is a GET,
        // but it needs `create` as the SPDY POST does (kube-apiserver 1.32,
        // AuthorizePodWebsocketUpgradeCreatePermission, KEP-4006).
        let stream = matches!(self.subresource, Some("exec" | "attach" | "portforward"));
        Attributes {
            verb: if stream && self.verb == "get" {
                "create"
            } else {
                self.verb
            },
            resource: self.resource.map(|r| ResourceAttributes {
                group: r.group,
                resource: r.plural,
                subresource: self.subresource,
                name: self.name,
                namespace: match (r.group, r.plural) {
                    ("", "namespaces") => self.name.or(self.namespace),
                    _ => self.namespace,
                },
            }),
            path: self.path,
        }
    }
}

/// Decides whether a user may do something.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// Whether `user` may do what `attrs` describe (a
    /// SubjectAccessReview's question).
    async fn allows(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Result<bool, ApiError>;

    /// Every rule that applies to `user` cluster-wide and in `namespace`
    /// (for SelfSubjectRulesReview and the RBAC escalation check).
    async fn rules_for(
        &self,
        user: &UserInfo,
        namespace: Option<&str>,
    ) -> Result<Vec<PolicyRule>, ApiError>;

    /// The rules of the Role (in `namespace`) or ClusterRole `name`,
    /// aggregation resolved; empty when it does not exist.
    async fn role_rules(
        &self,
        _kind: &str,
        _namespace: Option<&str>,
        _name: &str,
    ) -> Result<Vec<PolicyRule>, ApiError> {
        Ok(Vec::new())
    }

    /// `Ok(())` to allow, 403 Forbidden with kube-apiserver's message to
    /// deny.
    async fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Result<(), ApiError> {
        if self.allows(user, attrs).await? {
            Ok(())
        } else {
            Err(ApiError::Forbidden(attrs.forbidden_message(&user.name)))
        }
    }
}

/// Allows every request from an authenticated user.
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    async fn allows(&self, _user: &UserInfo, _attrs: &Attributes<'_>) -> Result<bool, ApiError> {
        Ok(true)
    }

    async fn rules_for(
        &self,
        _user: &UserInfo,
        _namespace: Option<&str>,
    ) -> Result<Vec<PolicyRule>, ApiError> {
        Ok(PolicyRule::all())
    }
}

/// The operation admission sees (Kubernetes' `admission.Operation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// POST.
    Create,
    /// PUT or PATCH.
    Update,
    /// DELETE.
    Delete,
}

/// Mutating and validating admission, run after defaulting and validation
/// and before the store write.
#[async_trait]
pub trait Admission: Send + Sync {
    /// May change `obj`; an error rejects the request.
    async fn admit(
        &self,
        user: &UserInfo,
        op: Operation,
        resource: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError>;
}

/// No admission plugins.
pub struct NoAdmission;

#[async_trait]
impl Admission for NoAdmission {
    async fn admit(
        &self,
        _user: &UserInfo,
        _op: Operation,
        _resource: &ResourceInfo,
        _obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_map_to_users() {
        let a = TokenAuthenticator::new("admintok", "SK10abc::node:def");
        let dir = tempfile::tempdir().unwrap();
        let config = skiff_store::StoreConfig::new(dir.path().join("s"));
        let store = skiff_store::Store::open(config).await.unwrap();
        let r = Registry::new(Arc::new(store));
        let admin = a.authenticate(&r, Some("Bearer admintok")).await.unwrap();
        assert_eq!(admin.name, "admin");
        assert!(admin.groups.contains(&"system:masters".to_string()));
        let node = a
            .authenticate(&r, Some("Bearer SK10abc::node:def"))
            .await
            .unwrap();
        assert_eq!(node.name, "system:node");
        assert!(node.groups.contains(&"system:nodes".to_string()));
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Basic YWRtaW4="),
            Some("Bearer "),
        ] {
            assert_eq!(
                a.authenticate(&r, bad).await.unwrap_err().status_code(),
                401,
                "{bad:?}"
            );
        }
    }
}

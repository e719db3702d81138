//! The request pipeline's security hooks: authentication, authorization and
//! admission (kube-apiserver's `authenticator.Request`,
//! `authorizer.Authorizer` and `admission.Interface`).
//!
//! Today: two static bearer tokens authenticate (the admin token →
//! `admin` in `system:masters`; the node token → `system:node` in
//! `system:nodes`), [`AllowAll`] authorizes everything and [`NoAdmission`]
//! changes nothing. RBAC and admission plugins plug in behind the traits.

use async_trait::async_trait;
use serde_json::Value;

use crate::error::ApiError;
use crate::resources::ResourceInfo;

/// Who made a request (Kubernetes' `user.Info`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    /// The user name, e.g. `admin`, `system:node`.
    pub name: String,
    /// Groups, e.g. `system:masters`.
    pub groups: Vec<String>,
}

/// Turns a request's bearer token into a user.
#[derive(Clone)]
pub struct TokenAuthenticator {
    admin_token: String,
    node_token: String,
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
        }
    }

    /// The user behind an `Authorization` header value; 401 when absent or
    /// unknown (kube-apiserver also answers 401 to a bad token even where
    /// anonymous access would be allowed).
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<UserInfo, ApiError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(ApiError::Unauthorized)?;
        if constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            Ok(UserInfo {
                name: "admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            })
        } else if constant_time_eq(token.as_bytes(), self.node_token.as_bytes()) {
            Ok(UserInfo {
                name: "system:node".into(),
                groups: vec!["system:nodes".into(), "system:authenticated".into()],
            })
        } else {
            Err(ApiError::Unauthorized)
        }
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

/// Decides whether a user may do something.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// `Ok(())` to allow, `Err(ApiError::Forbidden(..))` to deny.
    async fn authorize(
        &self,
        user: &UserInfo,
        attrs: &RequestAttributes<'_>,
    ) -> Result<(), ApiError>;
}

/// Allows every request from an authenticated user (until RBAC).
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    async fn authorize(
        &self,
        _user: &UserInfo,
        _attrs: &RequestAttributes<'_>,
    ) -> Result<(), ApiError> {
        Ok(())
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

    #[test]
    fn tokens_map_to_users() {
        let a = TokenAuthenticator::new("admintok", "SK10abc::node:def");
        let admin = a.authenticate(Some("Bearer admintok")).unwrap();
        assert_eq!(admin.name, "admin");
        assert!(admin.groups.contains(&"system:masters".to_string()));
        let node = a.authenticate(Some("Bearer SK10abc::node:def")).unwrap();
        assert_eq!(node.name, "system:node");
        assert!(node.groups.contains(&"system:nodes".to_string()));
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Basic YWRtaW4="),
            Some("Bearer "),
        ] {
            assert_eq!(
                a.authenticate(bad).unwrap_err().status_code(),
                401,
                "{bad:?}"
            );
        }
    }
}

//! Service-account tokens for `serviceAccountToken` sources of projected
//! volumes: kubelet's token manager (`pkg/kubelet/token/token_manager.go`).
//!
//! ```text
//!  projected source {audience, expirationSeconds, path}   (one TokenKey per pod and source)
//!    │  TokenManager::get(source, key, now)
//!    ├─ cached and fresh ───────────────────────────────► cached token
//!    └─ none, or requires_refresh ── TokenSource::request ─► POST serviceaccounts/<sa>/token
//!          {audiences, expirationSeconds, boundObjectRef: the Pod (name, uid)}
//!          refresh failed: keep the cached token until it expires
//! ```
//!
//! A token is refreshed once 80% of its lifetime has passed, or 24 h after
//! it was issued, whichever is first, less up to 10 s of jitter (so that
//! the pods of a node do not all ask at once). The volume writer puts the
//! new token in place atomically on the worker's next sync.
//!
//! [`TokenSource`] is the API server behind a trait; the rules are tested
//! over a fake source and explicit clock values.

use std::collections::HashMap;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::PostParams;
use kube::Api;

/// `expirationSeconds` of a source that sets none (the API default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// A token older than this is refreshed whatever its lifetime
/// (kubelet's `maxTTL`, 24 h).
pub const MAX_TTL_SECONDS: i64 = 24 * 3600;

/// The share of its lifetime after which a token is refreshed, in percent
/// (kubelet refreshes with 20% left).
pub const REFRESH_AT_PERCENT: i64 = 80;

/// Up to this much earlier, at random (kubelet's `maxJitter`, 10 s).
pub const MAX_JITTER_SECONDS: i64 = 10;

/// One token a pod needs: kubelet's cache key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenKey {
    /// The pod's ServiceAccount.
    pub service_account: String,
    /// The audience; empty for the API server's own.
    pub audience: String,
    /// Requested lifetime.
    pub expiration_seconds: i64,
    /// The pod the token is bound to.
    pub pod_name: String,
    /// Its uid.
    pub pod_uid: String,
}

impl TokenKey {
    /// The key of a pod's `serviceAccountToken` source.
    pub fn for_source(pod: &Pod, t: &ServiceAccountTokenProjection) -> TokenKey {
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into());
        TokenKey {
            service_account: account,
            audience: t.audience.clone().unwrap_or_default(),
            expiration_seconds: t.expiration_seconds.unwrap_or(DEFAULT_EXPIRATION_SECONDS),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        }
    }

    /// The keys of every `serviceAccountToken` source of `pod`'s volumes.
    pub fn of_pod(pod: &Pod) -> Vec<TokenKey> {
        pod.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.projected.as_ref())
            .flat_map(|p| p.sources.iter().flatten())
            .filter_map(|s| s.service_account_token.as_ref())
            .map(|t| TokenKey::for_source(pod, t))
            .collect()
    }
}

/// A token the API server issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The JWT.
    pub token: String,
    /// Its lifetime as granted (`spec.expirationSeconds` of the answer).
    pub expiration_seconds: i64,
    /// When it expires, seconds since the epoch.
    pub expires_at: i64,
}

impl IssuedToken {
    /// Whether it must be refreshed at `now` (kubelet's `requiresRefresh`):
    /// more than [`MAX_TTL_SECONDS`] after issue, or with less than
    /// 100 − [`REFRESH_AT_PERCENT`] percent of its lifetime left, each
    /// brought forward by `jitter` seconds.
    pub fn requires_refresh(&self, now: i64, jitter: i64) -> bool {
        let issued_at = self.expires_at - self.expiration_seconds;
        if now > issued_at + MAX_TTL_SECONDS - jitter {
            return true;
        }
        let left = self.expiration_seconds * (100 - REFRESH_AT_PERCENT) / 100;
        now > self.expires_at - left - jitter
    }

    /// Whether it has expired at `now`.
    pub fn expired(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// Where tokens come from: the API server's TokenRequest, or a fake in
/// tests.
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    /// Asks for a token for `key` in `namespace`.
    async fn request(&self, namespace: &str, key: &TokenKey) -> Result<IssuedToken, String>;
}

/// The API server's `POST …/serviceaccounts/<sa>/token`.
pub struct ApiTokenSource<'a>(pub &'a kube::Client);

#[async_trait::async_trait]
impl TokenSource for ApiTokenSource<'_> {
    async fn request(&self, namespace: &str, key: &TokenKey) -> Result<IssuedToken, String> {
        let api: Api<ServiceAccount> = Api::namespaced(self.0.clone(), namespace);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: (!key.audience.is_empty()).then(|| vec![key.audience.clone()]),
                expiration_seconds: Some(key.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(key.pod_name.clone()),
                    uid: Some(key.pod_uid.clone()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let answer = api
            .create_token_request(&key.service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| e.to_string())?;
        let status = answer.status.unwrap_or_default();
        let (Some(token), Some(expires)) = (status.token, status.expiration_timestamp) else {
            return Err("the TokenRequest answer has no token".into());
        };
        Ok(IssuedToken {
            token,
            expiration_seconds: answer
                .spec
                .and_then(|s| s.expiration_seconds)
                .unwrap_or(key.expiration_seconds),
            expires_at: expires.0.as_second(),
        })
    }
}

/// A pod's tokens, kept for as long as its worker lives.
#[derive(Default)]
pub struct TokenManager {
    tokens: HashMap<TokenKey, IssuedToken>,
}

impl TokenManager {
    /// The token for `key` at `now` (seconds since the epoch), asking
    /// `source` when there is none or it needs a refresh. A failed refresh
    /// keeps serving the cached token until it expires; the errors are
    /// kubelet's.
    pub async fn get(
        &mut self,
        source: &dyn TokenSource,
        namespace: &str,
        key: &TokenKey,
        now: i64,
        jitter: i64,
    ) -> Result<String, String> {
        let cached = self.tokens.get(key);
        if let Some(t) = cached.filter(|t| !t.requires_refresh(now, jitter)) {
            return Ok(t.token.clone());
        }
        match source.request(namespace, key).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                self.tokens.insert(key.clone(), fresh);
                Ok(token)
            }
            Err(e) => match cached {
                None => Err(format!("failed to fetch token: {e}")),
                Some(t) if t.expired(now) => Err(format!(
                    "token for serviceaccount {namespace}/{} expired and refresh failed: {e}",
                    key.service_account
                )),
                Some(t) => {
                    tracing::warn!(pod = %key.pod_name, "couldn't update token: {e}");
                    Ok(t.token.clone())
                }
            },
        }
    }

    /// Forgets the tokens of keys the pod no longer has.
    pub fn retain(&mut self, keys: &[TokenKey]) {
        self.tokens.retain(|k, _| keys.contains(k));
    }
}

/// A jitter in `0..MAX_JITTER_SECONDS`, from the clock's nanoseconds.
pub fn jitter() -> i64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    i64::from(nanos) % MAX_JITTER_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Issues numbered tokens at the time it is set to, or fails.
    struct FakeSource {
        now: Mutex<i64>,
        issued: Mutex<u32>,
        fail: Mutex<bool>,
    }

    #[async_trait::async_trait]
    impl TokenSource for FakeSource {
        async fn request(&self, _ns: &str, key: &TokenKey) -> Result<IssuedToken, String> {
            if *self.fail.lock().unwrap() {
                return Err("connection refused".into());
            }
            let mut n = self.issued.lock().unwrap();
            *n += 1;
            Ok(IssuedToken {
                token: format!("t{n}"),
                expiration_seconds: key.expiration_seconds,
                expires_at: *self.now.lock().unwrap() + key.expiration_seconds,
            })
        }
    }

    fn key(seconds: i64) -> TokenKey {
        TokenKey {
            service_account: "default".into(),
            audience: String::new(),
            expiration_seconds: seconds,
            pod_name: "p".into(),
            pod_uid: "u".into(),
        }
    }

    #[test]
    fn refresh_at_80_percent_or_after_a_day() {
        let t = |seconds: i64| IssuedToken {
            token: "x".into(),
            expiration_seconds: seconds,
            expires_at: 1_000 + seconds,
        };
        // 600 s: refreshed after 480 s (less jitter).
        assert!(!t(600).requires_refresh(1_480, 0));
        assert!(t(600).requires_refresh(1_481, 0));
        assert!(t(600).requires_refresh(1_475, 10));
        // kube-api-access's 3607 s: with 721 s left, after 2886 s.
        assert!(!t(3607).requires_refresh(1_000 + 2_886, 0));
        assert!(t(3607).requires_refresh(1_000 + 2_887, 0));
        // A week-long token is refreshed after a day.
        let week = 7 * 24 * 3600;
        assert!(!t(week).requires_refresh(1_000 + MAX_TTL_SECONDS, 0));
        assert!(t(week).requires_refresh(1_001 + MAX_TTL_SECONDS, 0));
    }

    #[tokio::test]
    async fn tokens_rotate_and_survive_a_failed_refresh_until_expiry() {
        let src = FakeSource {
            now: Mutex::new(1_000),
            issued: Mutex::new(0),
            fail: Mutex::new(false),
        };
        let mut m = TokenManager::default();
        let k = key(600);
        assert_eq!(m.get(&src, "ns", &k, 1_000, 0).await.unwrap(), "t1");
        // Fresh: no new request.
        assert_eq!(m.get(&src, "ns", &k, 1_400, 0).await.unwrap(), "t1");
        assert_eq!(*src.issued.lock().unwrap(), 1);
        // Past 80%: a new token.
        *src.now.lock().unwrap() = 1_500;
        assert_eq!(m.get(&src, "ns", &k, 1_500, 0).await.unwrap(), "t2");
        // The API is down: the old token is served until it expires…
        *src.fail.lock().unwrap() = true;
        assert_eq!(m.get(&src, "ns", &k, 1_990, 0).await.unwrap(), "t2");
        // …then the volume fails.
        let err = m.get(&src, "ns", &k, 2_100, 0).await.unwrap_err();
        assert!(err.contains("expired and refresh failed"), "{err}");
        // A key never fetched fails with kubelet's message.
        let err = m.get(&src, "ns", &key(3607), 2_100, 0).await.unwrap_err();
        assert_eq!(err, "failed to fetch token: connection refused");
        m.retain(&[]);
        assert!(m.tokens.is_empty());
    }

    #[test]
    fn keys_come_from_projected_sources() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u1"},
            "spec": {
                "serviceAccountName": "builder",
                "containers": [],
                "volumes": [{"name": "v", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 7200}},
                    {"configMap": {"name": "kube-root-ca.crt"}},
                ]}}],
            }
        }))
        .unwrap();
        let keys = TokenKey::of_pod(&pod);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].service_account, "builder");
        assert_eq!(keys[0].expiration_seconds, 3600);
        assert_eq!(keys[0].pod_uid, "u1");
        assert_eq!(keys[1].audience, "vault");
        assert_eq!(keys[1].expiration_seconds, 7200);
    }
}

//! ServiceAccount tokens: signed JWTs (RFC 7519, ES256) issued by
//! `POST …/serviceaccounts/<name>/token` (`TokenRequest`, what
//! `kubectl create token` calls) and accepted as bearer tokens.
//!
//! ```text
//!  TokenRequest{audiences, expirationSeconds, boundObjectRef}
//!    → claims {iss, sub: system:serviceaccount:<ns>:<name>, aud, exp, iat, nbf, jti,
//!              kubernetes.io: {namespace, serviceaccount{name,uid}, pod{name,uid}?}}
//!    → base64url(header).base64url(claims).base64url(ES256 signature)
//!  bearer token → verify signature, exp/nbf, audience → the ServiceAccount
//!    (and the bound pod) must still exist with the same uid → user
//! ```
//!
//! The key is `DATA_DIR/pki/sa.key`, made at first start ([`crate::pki`]).
//! The issuer and the API server's audience are [`ISSUER`] (kube-apiserver's
//! `--service-account-issuer` as kubeadm sets it).
//!
//! Caveats: no JWKS / OIDC discovery endpoints; no legacy Secret-based
//! tokens; bound objects are Pods and Secrets only (not Nodes).

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chrono::{DateTime, Utc};
use hyper::Response;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::rbac::service_account_user;
use crate::registry::Registry;
use crate::request::RequestContext;
use crate::resources::{find, ResourceInfo};
use crate::response::{self, Body};
use crate::strategy::timestamp;
use crate::validation::FieldError;

/// The tokens' issuer, and the audience the API server accepts.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// `expirationSeconds` when a TokenRequest leaves it out (kubectl sends
/// none unless `--duration` is given).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// The shortest lifetime a TokenRequest may ask for (kube-apiserver
/// refuses less than 10 minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;

/// The longest (kube-apiserver's limit: 2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// Why a token was not accepted. Every variant is a 401 to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not three base64url parts with JSON header and claims.
    #[error("malformed token")]
    Malformed,
    /// Not signed by this server's key.
    #[error("invalid signature")]
    BadSignature,
    /// Past `exp`.
    #[error("token has expired")]
    Expired,
    /// Before `nbf`.
    #[error("token is not valid yet")]
    NotYetValid,
    /// No audience the verifier accepts.
    #[error("token audiences {0:?} are invalid for the target audiences")]
    Audience(Vec<String>),
    /// The ServiceAccount or bound object is gone or was recreated.
    #[error("{0}")]
    Revoked(String),
}

/// A named object with its uid, as in the `kubernetes.io` claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The name.
    pub name: String,
    /// The uid.
    pub uid: String,
}

/// The `kubernetes.io` private claim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaim {
    /// The ServiceAccount's namespace.
    pub namespace: String,
    /// The ServiceAccount.
    pub serviceaccount: ObjectRef,
    /// The Pod the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    /// The Secret the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
}

/// A ServiceAccount token's claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    pub iss: String,
    /// Subject: `system:serviceaccount:<ns>:<name>`.
    pub sub: String,
    /// Audiences.
    pub aud: Vec<String>,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    #[serde(default)]
    pub jti: String,
    /// Namespace, ServiceAccount and bound object.
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaim,
}

/// Signs and verifies tokens with the server's ES256 key.
pub struct TokenSigner {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl TokenSigner {
    /// The signer for a PKCS#8 P-256 key in PEM (`pki/sa.key`).
    pub fn from_pem(pem: &str) -> Result<TokenSigner, String> {
        let der = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| format!("service account key: {e}"))?
            .serialize_der();
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|e| format!("service account key: {e}"))?;
        // The key id is a hash of the public key, as kube-apiserver's.
        let kid = B64.encode(Sha256::digest(key.public_key().as_ref()));
        Ok(TokenSigner { key, kid, rng })
    }

    /// Encodes and signs `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let claims = serde_json::to_vec(claims).map_err(|e| ApiError::Internal(e.to_string()))?;
        let mut token = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims));
        let sig = self
            .key
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| ApiError::Internal("signing the token failed".into()))?;
        token.push('.');
        token.push_str(&B64.encode(sig.as_ref()));
        Ok(token)
    }

    /// Checks the signature, the validity window at `now` (seconds since
    /// the epoch) and that one audience is in `audiences`.
    pub fn verify(&self, token: &str, now: i64, audiences: &[&str]) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(TokenError::BadSignature);
        }
        let sig = B64.decode(s).map_err(|_| TokenError::Malformed)?;
        let signed = &token[..h.len() + 1 + c.len()];
        signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        )
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| TokenError::BadSignature)?;
        let claims: Claims = B64
            .decode(c)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed)?;
        if now >= claims.exp {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf {
            return Err(TokenError::NotYetValid);
        }
        if !claims.aud.iter().any(|a| audiences.contains(&a.as_str())) {
            return Err(TokenError::Audience(claims.aud));
        }
        Ok(claims)
    }
}

/// Whether a bearer token looks like a JWT (rather than a static token).
pub fn is_jwt(token: &str) -> bool {
    token.starts_with("eyJ") && token.matches('.').count() == 2
}

/// Checks that the token's ServiceAccount (and bound object) still exist
/// with the uids it was issued for (kube-apiserver's legacy and bound
/// token validators).
pub async fn check_not_revoked(registry: &Registry, claims: &Claims) -> Result<(), TokenError> {
    let k = &claims.kubernetes;
    let checks = [
        ("serviceaccounts", Some(&k.serviceaccount)),
        ("pods", k.pod.as_ref()),
        ("secrets", k.secret.as_ref()),
    ];
    for (plural, object) in checks {
        let (Some(object), Some(res)) = (object, find("", "v1", plural)) else {
            continue;
        };
        let live = registry
            .get(res, Some(&k.namespace), &object.name)
            .await
            .map_err(|e| TokenError::Revoked(e.to_string()))?;
        let uid = live
            .as_ref()
            .and_then(|s| s.obj.pointer("/metadata/uid"))
            .and_then(Value::as_str);
        if uid != Some(object.uid.as_str()) {
            return Err(TokenError::Revoked(format!(
                "{} {}/{} has been deleted",
                res.singular, k.namespace, object.name
            )));
        }
    }
    Ok(())
}

/// The user a verified token stands for.
pub fn user_of(claims: &Claims) -> crate::auth::UserInfo {
    let k = &claims.kubernetes;
    let mut extra = std::collections::BTreeMap::new();
    if let Some(pod) = &k.pod {
        extra.insert(
            "authentication.kubernetes.io/pod-name".to_string(),
            vec![pod.name.clone()],
        );
        extra.insert(
            "authentication.kubernetes.io/pod-uid".to_string(),
            vec![pod.uid.clone()],
        );
    }
    if !claims.jti.is_empty() {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec![format!("JTI={}", claims.jti)],
        );
    }
    crate::auth::UserInfo {
        name: service_account_user(&k.namespace, &k.serviceaccount.name),
        uid: k.serviceaccount.uid.clone(),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", k.namespace),
            "system:authenticated".into(),
        ],
        extra,
    }
}

/// The uid of an existing object; 404 when absent.
async fn uid_of(
    registry: &Registry,
    res: &ResourceInfo,
    namespace: &str,
    name: &str,
) -> Result<String, ApiError> {
    let stored = registry.get_required(res, Some(namespace), name).await?;
    let uid = stored.obj.pointer("/metadata/uid").and_then(Value::as_str);
    Ok(uid.unwrap_or("").to_string())
}

/// `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`: issues a
/// token for the ServiceAccount (201 with the TokenRequest and
/// `status.token`).
pub async fn create_token(
    ctx: &mut RequestContext,
    signer: &Arc<TokenSigner>,
    namespace: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let sa_res = find("", "v1", "serviceaccounts").ok_or(ApiError::PathNotFound)?;
    let mut req = ctx.body_object()?;
    let sa_uid = uid_of(&ctx.state.registry, sa_res, namespace, name).await?;
    let spec = req.get("spec").cloned().unwrap_or(json!({}));
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            ApiError::BadRequest("spec.expirationSeconds must be an integer".into())
        })?,
    };
    let mut errors = Vec::new();
    if seconds < MIN_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            seconds.to_string(),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        errors.push(FieldError::invalid(
            "spec.expirationSeconds",
            seconds.to_string(),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let audiences: Vec<String> = match spec.get("audiences").and_then(Value::as_array) {
        Some(a) if !a.is_empty() => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => vec![ISSUER.to_string()],
    };
    let mut claim = KubernetesClaim {
        namespace: namespace.to_string(),
        serviceaccount: ObjectRef {
            name: name.to_string(),
            uid: sa_uid.to_string(),
        },
        ..Default::default()
    };
    if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
        let kind = bound.get("kind").and_then(Value::as_str).unwrap_or("");
        let bname = bound.get("name").and_then(Value::as_str).unwrap_or("");
        let plural = match kind {
            "Pod" => "pods",
            "Secret" => "secrets",
            _ => {
                errors.push(FieldError::invalid(
                    "spec.boundObjectRef.kind",
                    format!("{kind:?}"),
                    "supported values: \"Pod\", \"Secret\"",
                ));
                ""
            }
        };
        if let Some(res) = find("", "v1", plural) {
            let uid = uid_of(&ctx.state.registry, res, namespace, bname).await?;
            let want = bound.get("uid").and_then(Value::as_str).unwrap_or("");
            if !want.is_empty() && want != uid {
                return Err(ApiError::Conflict {
                    target: crate::error::Target::new(res, bname),
                    detail: format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
                });
            }
            let r = Some(ObjectRef {
                name: bname.to_string(),
                uid: uid.to_string(),
            });
            if kind == "Pod" {
                claim.pod = r;
            } else {
                claim.secret = r;
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Invalid {
            kind: "TokenRequest".into(),
            group: "authentication.k8s.io".into(),
            name: name.to_string(),
            causes: errors,
        });
    }
    let now = Utc::now();
    let claims = Claims {
        iss: ISSUER.to_string(),
        sub: service_account_user(namespace, name),
        aud: audiences.clone(),
        exp: now.timestamp() + seconds,
        iat: now.timestamp(),
        nbf: now.timestamp(),
        jti: uuid::Uuid::new_v4().to_string(),
        kubernetes: claim,
    };
    let token = signer.sign(&claims)?;
    let expires = DateTime::from_timestamp(claims.exp, 0).unwrap_or(now);
    let obj = req.as_object_mut().ok_or_else(|| {
        ApiError::BadRequest("the body of a TokenRequest must be an object".into())
    })?;
    obj.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    obj.insert("kind".into(), json!("TokenRequest"));
    obj.insert(
        "metadata".into(),
        json!({"name": name, "namespace": namespace, "creationTimestamp": timestamp(now)}),
    );
    let spec = obj.entry("spec").or_insert(json!({}));
    spec["audiences"] = json!(audiences);
    spec["expirationSeconds"] = json!(seconds);
    obj.insert(
        "status".into(),
        json!({"token": token, "expirationTimestamp": timestamp(expires)}),
    );
    Ok(response::object(201, &req, ctx.output, &ctx.warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TokenSigner {
        TokenSigner::from_pem(&rcgen::KeyPair::generate().unwrap().serialize_pem()).unwrap()
    }

    fn claims(now: i64) -> Claims {
        Claims {
            iss: ISSUER.into(),
            sub: "system:serviceaccount:ns:sa".into(),
            aud: vec![ISSUER.into()],
            exp: now + 600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaim {
                namespace: "ns".into(),
                serviceaccount: ObjectRef {
                    name: "sa".into(),
                    uid: "u1".into(),
                },
                ..Default::default()
            },
        }
    }

    #[test]
    fn tokens_round_trip_and_are_checked() {
        let s = signer();
        let now = 1_700_000_000;
        let t = s.sign(&claims(now)).unwrap();
        assert!(is_jwt(&t));
        assert_eq!(s.verify(&t, now + 1, &[ISSUER]).unwrap(), claims(now));
        let user = user_of(&claims(now));
        assert_eq!(user.name, "system:serviceaccount:ns:sa");
        assert!(user
            .groups
            .contains(&"system:serviceaccounts:ns".to_string()));
        assert_eq!(s.verify(&t, now + 600, &[ISSUER]), Err(TokenError::Expired));
        assert_eq!(
            s.verify(&t, now - 1, &[ISSUER]),
            Err(TokenError::NotYetValid)
        );
        assert!(matches!(
            s.verify(&t, now, &["other"]),
            Err(TokenError::Audience(_))
        ));
        // Another key's signature, a changed claim, garbage.
        assert_eq!(
            signer().verify(&t, now, &[ISSUER]),
            Err(TokenError::BadSignature)
        );
        let mut parts: Vec<String> = t.split('.').map(String::from).collect();
        let mut forged = claims(now);
        forged.kubernetes.serviceaccount.name = "admin".into();
        parts[1] = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            s.verify(&parts.join("."), now, &[ISSUER]),
            Err(TokenError::BadSignature)
        );
        assert_eq!(s.verify("a.b", now, &[ISSUER]), Err(TokenError::Malformed));
        assert_eq!(
            s.verify("eyJ.x.y", now, &[ISSUER]),
            Err(TokenError::Malformed)
        );
    }

    /// `cargo test -p skiff-apiserver --lib token_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement: prints the cost of signing and verifying a token"]
    fn token_cost() {
        let s = signer();
        let now = 1_700_000_000;
        let t = s.sign(&claims(now)).unwrap();
        const N: u32 = 200;
        let (mut sign, mut verify) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let start = std::time::Instant::now();
            for _ in 0..N {
                s.sign(&claims(now)).unwrap();
            }
            sign.push(start.elapsed() / N);
            let start = std::time::Instant::now();
            for _ in 0..N {
                s.verify(&t, now, &[ISSUER]).unwrap();
            }
            verify.push(start.elapsed() / N);
        }
        sign.sort();
        verify.sort();
        println!(
            "ES256 token ({} bytes): sign median {:?}, verify median {:?}",
            t.len(),
            sign[2],
            verify[2]
        );
    }
}

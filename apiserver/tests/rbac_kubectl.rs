//! RBAC, ServiceAccount tokens and the review APIs, driven with the real
//! kubectl against a real server: a ServiceAccount's token is refused
//! with kube-apiserver's 403 message until a Role and RoleBinding allow
//! it, `kubectl auth can-i`/`whoami` answer, escalation is refused, and
//! tokens of deleted ServiceAccounts or past their expiry get 401.

mod common;

use common::{with_server, Harness};
use serde_json::{json, Value};
use skiff_apiserver::serviceaccount_token::{
    Claims, KubernetesClaim, ObjectRef, TokenSigner, ISSUER,
};

/// kubectl as the holder of `token`.
async fn as_token(h: &Harness, token: &str, name: &str, args: &[&str]) -> common::Out {
    let path = h.dir.path().join(format!("{name}.kubeconfig"));
    let ca = std::fs::read_to_string(&h.ca_path).unwrap();
    std::fs::write(&path, skiff_apiserver::pki::kubeconfig(&h.url, &ca, token)).unwrap();
    let mut all = vec!["--kubeconfig", path.to_str().unwrap()];
    all.extend_from_slice(args);
    h.kubectl(&all, None).await
}

/// A request with a chosen bearer token: (status, body).
async fn call_with(
    h: &Harness,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
    let auth = format!("Authorization: Bearer {token}");
    let (code, text, _) = h
        .curl_full(
            method,
            path,
            bytes.as_deref().map(|b| ("application/json", b)),
            false,
            &["-H", &auth],
        )
        .await;
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_account_token_rbac_and_reviews_with_kubectl() {
    with_server(async |h: &Harness| {
        h.kubectl_ok(&["create", "namespace", "team"], None).await;
        h.kubectl_ok(&["create", "serviceaccount", "bot", "-n", "team"], None).await;
        let token = h.kubectl_ok(&["create", "token", "bot", "-n", "team"], None).await;
        let token = token.trim().to_string();
        assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

        // Authenticated, but nothing granted yet: kube-apiserver's message.
        let out = as_token(h, &token, "bot", &["get", "pods", "-n", "team"]).await;
        assert!(!out.ok);
        assert!(
            out.stderr.contains(r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:team:bot" cannot list resource "pods" in API group "" in the namespace "team""#),
            "{}",
            out.stderr
        );
        let whoami = as_token(h, &token, "bot", &["auth", "whoami", "-o", "json"]).await;
        assert!(whoami.ok, "{}", whoami.stderr);
        let who: Value = serde_json::from_str(&whoami.stdout).unwrap();
        assert_eq!(who["status"]["userInfo"]["username"], "system:serviceaccount:team:bot");
        let groups = who["status"]["userInfo"]["groups"].to_string();
        for g in ["system:serviceaccounts", "system:serviceaccounts:team", "system:authenticated"] {
            assert!(groups.contains(g), "{groups}");
        }
        let no = as_token(h, &token, "bot", &["auth", "can-i", "list", "pods", "-n", "team"]).await;
        assert_eq!((no.ok, no.stdout.trim()), (false, "no"));

        // Grant reading pods in team.
        h.kubectl_ok(&["create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", "team"], None).await;
        h.kubectl_ok(&["create", "rolebinding", "bot-reads", "--role=pod-reader", "--serviceaccount=team:bot", "-n", "team"], None).await;
        let out = as_token(h, &token, "bot", &["get", "pods", "-n", "team"]).await;
        assert!(out.ok, "{}", out.stderr);
        let yes = as_token(h, &token, "bot", &["auth", "can-i", "list", "pods", "-n", "team"]).await;
        assert_eq!((yes.ok, yes.stdout.trim()), (true, "yes"));
        let other_ns = as_token(h, &token, "bot", &["auth", "can-i", "list", "pods", "-n", "default"]).await;
        assert_eq!(other_ns.stdout.trim(), "no");
        let delete = as_token(h, &token, "bot", &["auth", "can-i", "delete", "pods", "-n", "team"]).await;
        assert_eq!(delete.stdout.trim(), "no");
        let list = as_token(h, &token, "bot", &["auth", "can-i", "--list", "-n", "team"]).await;
        assert!(list.ok, "{}", list.stderr);
        let pods_line = list.stdout.lines().find(|l| l.starts_with("pods ")).unwrap_or_default();
        assert!(pods_line.contains("[get list watch]"), "{}", list.stdout);
        assert!(list.stdout.contains("selfsubjectaccessreviews.authorization.k8s.io"), "{}", list.stdout);
        let admin = h.kubectl_ok(&["auth", "can-i", "delete", "nodes"], None).await;
        assert_eq!(admin.trim(), "yes");

        // Escalation: allowed to write roles and bindings, but only with
        // permissions it holds.
        h.kubectl_ok(&["create", "role", "role-writer", "--verb=create,update,patch,get", "--resource=roles,rolebindings", "-n", "team"], None).await;
        h.kubectl_ok(&["create", "rolebinding", "bot-writes", "--role=role-writer", "--serviceaccount=team:bot", "-n", "team"], None).await;
        let ok = as_token(h, &token, "bot", &["create", "role", "small", "--verb=get", "--resource=pods", "-n", "team"]).await;
        assert!(ok.ok, "{}", ok.stderr);
        let big = as_token(h, &token, "bot", &["create", "role", "big", "--verb=get", "--resource=secrets", "-n", "team"]).await;
        assert!(!big.ok);
        assert!(
            big.stderr.contains(r#"roles.rbac.authorization.k8s.io "big" is forbidden: user "system:serviceaccount:team:bot""#)
                && big.stderr.contains("is attempting to grant RBAC permissions not currently held"),
            "{}",
            big.stderr
        );
        let bind = as_token(h, &token, "bot", &["create", "rolebinding", "grab", "--clusterrole=admin", "--serviceaccount=team:bot", "-n", "team"]).await;
        assert!(!bind.ok && bind.stderr.contains(r#"rolebindings.rbac.authorization.k8s.io "grab" is forbidden"#), "{}", bind.stderr);
        let bind_small = as_token(h, &token, "bot", &["create", "rolebinding", "ok", "--role=small", "--user=someone", "-n", "team"]).await;
        assert!(bind_small.ok, "{}", bind_small.stderr);

        // TokenReview (as admin): the token is the ServiceAccount; junk is not.
        let review = |t: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": t}});
        let (code, body) = h.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(review(&token))).await;
        assert_eq!(code, 201, "{body}");
        assert_eq!(body["status"]["authenticated"], true, "{body}");
        assert_eq!(body["status"]["user"]["username"], "system:serviceaccount:team:bot");
        let (_, body) = h.call("POST", "/apis/authentication.k8s.io/v1/tokenreviews", Some(review("nope"))).await;
        assert_eq!(body["status"]["authenticated"], false, "{body}");

        // The same with `kubectl create -f` and validation on: the review
        // kinds have no PATCH, so kubectl validates them itself against
        // /openapi/v2 (protobuf), and catches an unknown field.
        let created = h
            .kubectl_ok(&["create", "-f", "-", "-o", "jsonpath={.status.user.username}"], Some(&review(&token).to_string()))
            .await;
        assert_eq!(created, "system:serviceaccount:team:bot");
        let typo = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"tokn": "x"}});
        let refused = h.kubectl(&["create", "-f", "-"], Some(&typo.to_string())).await;
        assert!(
            !refused.ok && refused.stderr.contains(r#"unknown field "tokn" in io.k8s.api.authentication.v1.TokenReviewSpec"#),
            "{}",
            refused.stderr
        );
        let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"}}});
        let allowed = h.kubectl_ok(&["create", "-f", "-", "-o", "jsonpath={.status.allowed}"], Some(&ssar.to_string())).await;
        assert_eq!(allowed, "true");

        // A SubjectAccessReview about the ServiceAccount.
        let sar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
            "spec": {"user": "system:serviceaccount:team:bot", "groups": ["system:serviceaccounts"],
                     "resourceAttributes": {"namespace": "team", "verb": "get", "resource": "pods"}}});
        let (code, body) = h.call("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", Some(sar)).await;
        assert_eq!((code, &body["status"]["allowed"]), (201, &json!(true)), "{body}");

        // Too short a lifetime is refused.
        let short = h.kubectl(&["create", "token", "bot", "-n", "team", "--duration=5m"], None).await;
        assert!(!short.ok && short.stderr.contains("may not specify a duration less than 10 minutes"), "{}", short.stderr);

        // An expired token (signed with the server's own key) is 401.
        let sa = h.kubectl_ok(&["get", "sa", "bot", "-n", "team", "-o", "jsonpath={.metadata.uid}"], None).await;
        let key = std::fs::read_to_string(h.dir.path().join("server/pki/sa.key")).unwrap();
        let signer = TokenSigner::from_pem(&key).unwrap();
        let now = chrono::Utc::now().timestamp();
        let expired = signer
            .sign(&Claims {
                iss: ISSUER.into(),
                sub: "system:serviceaccount:team:bot".into(),
                aud: vec![ISSUER.into()],
                exp: now - 10,
                iat: now - 700,
                nbf: now - 700,
                jti: String::new(),
                kubernetes: KubernetesClaim {
                    namespace: "team".into(),
                    serviceaccount: ObjectRef { name: "bot".into(), uid: sa.clone() },
                    ..Default::default()
                },
            })
            .unwrap();
        let (code, _) = call_with(h, &expired, "GET", "/api/v1/namespaces/team/pods", None).await;
        assert_eq!(code, 401);
        let (code, _) = call_with(h, &token, "GET", "/api/v1/namespaces/team/pods", None).await;
        assert_eq!(code, 200);

        // A token bound to a pod names it, and dies with it.
        let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "team"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}"#;
        h.kubectl_ok(&["create", "-f", "-"], Some(pod)).await;
        let bound = h
            .kubectl_ok(&["create", "token", "bot", "-n", "team", "--bound-object-kind=Pod", "--bound-object-name=p"], None)
            .await;
        let bound = bound.trim().to_string();
        let claims = bound.split('.').nth(1).unwrap();
        use base64::Engine;
        let claims: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "p", "{claims}");
        assert_eq!(claims["sub"], "system:serviceaccount:team:bot");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
        let (code, _) = call_with(h, &bound, "GET", "/api/v1/namespaces/team/pods", None).await;
        assert_eq!(code, 200);
        h.kubectl_ok(&["delete", "pod", "p", "-n", "team", "--grace-period=0", "--force"], None).await;
        let (code, _) = call_with(h, &bound, "GET", "/api/v1/namespaces/team/pods", None).await;
        assert_eq!(code, 401);

        // Deleting the ServiceAccount revokes its tokens, also when it is
        // recreated under the same name (another uid).
        h.kubectl_ok(&["delete", "serviceaccount", "bot", "-n", "team"], None).await;
        let gone = as_token(h, &token, "bot", &["get", "pods", "-n", "team"]).await;
        assert!(!gone.ok && gone.stderr.contains("Unauthorized"), "{}", gone.stderr);
        h.kubectl_ok(&["create", "serviceaccount", "bot", "-n", "team"], None).await;
        let (code, _) = call_with(h, &token, "GET", "/api/v1/namespaces/team/pods", None).await;
        assert_eq!(code, 401);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_policy_node_identity_and_discovery() {
    with_server(async |h: &Harness| {
        // The default policy is in place and listed like any object.
        let roles = h.kubectl_ok(&["get", "clusterroles", "-o", "name"], None).await;
        for r in ["cluster-admin", "admin", "edit", "view", "system:discovery", "system:basic-user", "system:public-info-viewer", "system:node"] {
            assert!(roles.lines().any(|l| l == format!("clusterrole.rbac.authorization.k8s.io/{r}")), "{r}: {roles}");
        }
        // The node token is system:node in system:nodes: it may do what
        // the agent does, not more.
        let node = h.server.as_ref().unwrap().node_token().to_string();
        let (code, body) = call_with(h, &node, "GET", "/api/v1/pods", None).await;
        assert_eq!(code, 200, "{body}");
        let (code, body) = call_with(h, &node, "GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles", None).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"clusterroles.rbac.authorization.k8s.io is forbidden: User "system:node" cannot list resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope"#
        );
        // metrics.k8s.io is authorized like any resource.
        let (code, body) = call_with(h, &node, "GET", "/apis/metrics.k8s.io/v1beta1/nodes", None).await;
        assert_eq!(code, 403, "{body}");
        assert_eq!(
            body["message"],
            r#"nodes.metrics.k8s.io is forbidden: User "system:node" cannot list resource "nodes" in API group "metrics.k8s.io" at the cluster scope"#
        );
        // The review APIs are in discovery, create only.
        let resources = h.kubectl_ok(&["api-resources", "--api-group=authorization.k8s.io", "-o", "wide"], None).await;
        for r in ["selfsubjectaccessreviews", "selfsubjectrulesreviews", "subjectaccessreviews", "localsubjectaccessreviews"] {
            assert!(resources.contains(r), "{resources}");
        }
        let (code, _) = h.call("GET", "/apis/authorization.k8s.io/v1/subjectaccessreviews", None).await;
        assert_eq!(code, 405);
        // A write without fieldManager is owned by the User-Agent's product.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "b"}});
        let bytes = serde_json::to_vec(&cm).unwrap();
        let (code, body, _) = h
            .curl_full("POST", "/api/v1/namespaces/default/configmaps", Some(("application/json", &bytes)), true, &["-A", "my-tool/1.2 (linux)"])
            .await;
        assert_eq!(code, 201, "{body}");
        let managers = h.kubectl_ok(&["get", "configmap", "c", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].manager}"], None).await;
        assert_eq!(managers.trim(), "my-tool");
    })
    .await;
}

//! The default RBAC policy, created at start when missing
//! (kube-apiserver's `rbac/bootstrappolicy`, reconciled by its
//! `rbac/bootstrap-roles` post-start hook).
//!
//! | ClusterRole | bound by ClusterRoleBinding to |
//! |---|---|
//! | `cluster-admin`: everything | group `system:masters` |
//! | `system:discovery`: `GET /api*`, `/openapi*`, `/version` … | group `system:authenticated` |
//! | `system:basic-user`: self-subject reviews | group `system:authenticated` |
//! | `system:public-info-viewer`: `GET /healthz`, `/version` … | `system:authenticated`, `system:unauthenticated` |
//! | `system:node`: what the agent reads and writes | group `system:nodes` |
//! | `admin`, `edit`, `view`: aggregated (`aggregate-to-*` labels) | (for RoleBindings) |
//!
//! Differences from Kubernetes: the `system:node` ClusterRole is bound to
//! the `system:nodes` group (Kubernetes leaves that binding empty and uses
//! the Node authorizer, which Skiff does not have); `admin`, `edit` and
//! `view` are stored with the rules aggregated at creation; the rule lists are
//! Kubernetes' trimmed to the resources Skiff serves. Reconciling only
//! creates missing objects: it does not add rules back to a changed role.

use serde_json::{json, Value};

use crate::error::ApiError;
use crate::rbac::{Policy, RoleRef};
use crate::registry::Registry;
use crate::resources::find;

const GROUP: &str = "rbac.authorization.k8s.io";
const READ: [&str; 3] = ["get", "list", "watch"];
const WRITE: [&str; 5] = ["create", "delete", "deletecollection", "patch", "update"];
const ALL: &[&str] = crate::resources::STANDARD_VERBS;

fn rule(verbs: &[&str], group: &str, resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": [group], "resources": resources})
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn metadata(name: &str, labels: Value) -> Value {
    let mut l = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let (Some(l), Some(extra)) = (l.as_object_mut(), labels.as_object()) {
        l.extend(extra.clone());
    }
    json!({
        "name": name,
        "labels": l,
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": metadata(name, labels),
        "rules": rules,
    })
}

fn aggregated(name: &str, to: &str, labels: Value) -> Value {
    let mut r = cluster_role(name, labels, Vec::new());
    r["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {format!("{GROUP}/aggregate-to-{to}"): "true"}}
    ]});
    r
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"kind": "Group", "apiGroup": GROUP, "name": g}))
        .collect();
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": metadata(name, json!({})),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    })
}

fn label(to: &str) -> Value {
    json!({format!("{GROUP}/aggregate-to-{to}"): "true"})
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let view = vec![
        rule(
            &READ,
            "",
            &[
                "pods",
                "pods/log",
                "pods/status",
                "services",
                "services/status",
                "endpoints",
                "configmaps",
                "serviceaccounts",
                "events",
                "limitranges",
                "resourcequotas",
                "resourcequotas/status",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "replicationcontrollers",
                "bindings",
                "namespaces",
                "namespaces/status",
            ],
        ),
        rule(
            &READ,
            "apps",
            &[
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
                "daemonsets",
                "daemonsets/status",
                "controllerrevisions",
            ],
        ),
        rule(
            &READ,
            "batch",
            &["jobs", "jobs/status", "cronjobs", "cronjobs/status"],
        ),
        rule(
            &READ,
            "autoscaling",
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            &READ,
            "policy",
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            &READ,
            "networking.k8s.io",
            &["networkpolicies", "ingresses"],
        ),
        rule(&READ, "discovery.k8s.io", &["endpointslices"]),
        rule(&READ, "events.k8s.io", &["events"]),
        rule(&READ, "metrics.k8s.io", &["pods", "nodes"]),
    ];
    let edit = vec![
        rule(
            &WRITE,
            "",
            &[
                "pods",
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "secrets",
                "serviceaccounts",
                "services",
            ],
        ),
        rule(
            &READ,
            "",
            &[
                "secrets",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(
            &["create"],
            "",
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/eviction",
                "serviceaccounts/token",
            ],
        ),
        rule(&["impersonate"], "", &["serviceaccounts"]),
        rule(
            &WRITE,
            "apps",
            &[
                "deployments",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
                "daemonsets",
            ],
        ),
        rule(&WRITE, "batch", &["jobs", "cronjobs"]),
        rule(&WRITE, "autoscaling", &["horizontalpodautoscalers"]),
        rule(&WRITE, "policy", &["poddisruptionbudgets"]),
        rule(
            &WRITE,
            "networking.k8s.io",
            &["networkpolicies", "ingresses"],
        ),
        rule(&WRITE, "discovery.k8s.io", &["endpointslices"]),
    ];
    let admin = vec![
        rule(ALL, GROUP, &["roles", "rolebindings"]),
        rule(
            &["create"],
            "authorization.k8s.io",
            &["localsubjectaccessreviews"],
        ),
    ];
    // What the agent (kubelet, proxy, DNS) reads and writes.
    let node = vec![
        rule(ALL, "", &["nodes", "nodes/status"]),
        rule(
            &[
                "get", "list", "watch", "create", "delete", "patch", "update",
            ],
            "",
            &["pods"],
        ),
        rule(&["update", "patch"], "", &["pods/status"]),
        // Skiff-specific: the agent's service proxy is also the load
        // balancer, and writes `status.loadBalancer` of LoadBalancer
        // Services (kube-proxy never does; a cloud controller would).
        rule(&["update", "patch"], "", &["services/status"]),
        rule(&["create"], "", &["pods/eviction", "serviceaccounts/token"]),
        rule(&["create", "update", "patch"], "", &["events"]),
        rule(&["create", "update", "patch"], "events.k8s.io", &["events"]),
        rule(
            &READ,
            "",
            &[
                "configmaps",
                "secrets",
                "services",
                "endpoints",
                "namespaces",
                "serviceaccounts",
                "persistentvolumes",
                "persistentvolumeclaims",
            ],
        ),
        rule(&READ, "discovery.k8s.io", &["endpointslices"]),
        rule(&READ, "networking.k8s.io", &["networkpolicies"]),
        rule(ALL, "coordination.k8s.io", &["leases"]),
        rule(&["create"], "authentication.k8s.io", &["tokenreviews"]),
        rule(
            &["create"],
            "authorization.k8s.io",
            &["subjectaccessreviews"],
        ),
    ];
    let basic_user = vec![
        rule(
            &["create"],
            "authorization.k8s.io",
            &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
        ),
        rule(
            &["create"],
            "authentication.k8s.io",
            &["selfsubjectreviews"],
        ),
    ];
    let mut roles = vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            vec![rule(&["*"], "*", &["*"]), urls(&["*"], &["*"])],
        ),
        aggregated("admin", "admin", json!({})),
        aggregated("edit", "edit", label("admin")),
        aggregated("view", "view", label("edit")),
        cluster_role("system:aggregate-to-admin", label("admin"), admin),
        cluster_role("system:aggregate-to-edit", label("edit"), edit),
        cluster_role("system:aggregate-to-view", label("view"), view),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/readyz",
                    "/openapi",
                    "/openapi/*",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role("system:basic-user", json!({}), basic_user),
        cluster_role("system:node", json!({}), node),
    ];
    // Store admin/edit/view with their aggregated rules filled in, as the
    // clusterrole-aggregation controller would (the authorizer also
    // resolves aggregation itself, so later labelled roles count).
    let none: [Value; 0] = [];
    let policy = Policy::new(&none, &roles, &none, &none);
    for r in &mut roles {
        if r.get("aggregationRule").is_some() {
            let role_ref = RoleRef {
                kind: "ClusterRole".into(),
                name: r["metadata"]["name"].as_str().unwrap_or("").into(),
            };
            r["rules"] = json!(policy.role_rules(&role_ref, None));
        }
    }
    roles
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &["system:masters"]),
        binding(
            "system:discovery",
            "system:discovery",
            &["system:authenticated"],
        ),
        binding(
            "system:basic-user",
            "system:basic-user",
            &["system:authenticated"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &["system:authenticated", "system:unauthenticated"],
        ),
        binding("system:node", "system:node", &["system:nodes"]),
    ]
}

/// Creates every default role and binding that does not exist.
pub async fn ensure(registry: &Registry) -> Result<(), ApiError> {
    let now = chrono::Utc::now();
    let sets = [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
    ];
    for (plural, objects) in sets {
        let Some(res) = find(GROUP, "v1", plural) else {
            continue;
        };
        for mut obj in objects {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            crate::strategy::prepare_for_create(res, &mut obj, now);
            registry.ensure(res, None, &name, obj).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::UserInfo;
    use crate::rbac::{Attributes, ResourceAttributes};

    #[test]
    fn default_policy_grants_what_kubernetes_does() {
        let roles: Vec<Value> = Vec::new();
        let crs = cluster_roles();
        let crbs = cluster_role_bindings();
        let binding = json!({"metadata": {"namespace": "team", "name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "name": "eve"}]});
        let p = Policy::new(&roles, &crs, [&binding], &crbs);
        let user = |name: &str, groups: &[&str]| UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        };
        let authed = user("someone", &["system:authenticated"]);
        let eve = user("eve", &["system:authenticated"]);
        let node = user("system:node", &["system:nodes", "system:authenticated"]);
        let at = |verb, group, resource, ns| Attributes {
            verb,
            resource: Some(ResourceAttributes {
                group,
                resource,
                subresource: None,
                name: None,
                namespace: ns,
            }),
            path: "/",
        };
        let path = |p| Attributes {
            verb: "get",
            resource: None,
            path: p,
        };
        assert!(p.allows(&authed, &path("/apis/apps/v1")));
        assert!(p.allows(
            &authed,
            &at(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                None
            )
        ));
        assert!(!p.allows(&authed, &at("list", "", "pods", Some("team"))));
        // edit, aggregated from system:aggregate-to-edit and (via view) system:aggregate-to-view.
        assert!(p.allows(&eve, &at("create", "apps", "deployments", Some("team"))));
        assert!(p.allows(&eve, &at("list", "", "pods", Some("team"))));
        assert!(!p.allows(&eve, &at("create", GROUP, "rolebindings", Some("team"))));
        assert!(!p.allows(&eve, &at("list", "", "pods", Some("other"))));
        assert!(p.allows(&node, &at("watch", "", "pods", None)));
        assert!(p.allows(
            &node,
            &at(
                "update",
                "coordination.k8s.io",
                "leases",
                Some("kube-node-lease")
            )
        ));
        assert!(!p.allows(&node, &at("create", GROUP, "clusterrolebindings", None)));
        // admin is stored with what it aggregates (edit's and view's rules too).
        let admin = crs
            .iter()
            .find(|r| r["metadata"]["name"] == "admin")
            .unwrap();
        let stored = admin["rules"].to_string();
        for r in ["rolebindings", "deployments/scale", "pods/log"] {
            assert!(stored.contains(&format!("\"{r}\"")), "{r}: {stored}");
        }
    }
}

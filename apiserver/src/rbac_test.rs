use serde_json::json;

use super::*;

fn rule(v: serde_json::Value) -> PolicyRule {
    serde_json::from_value(v).unwrap()
}

fn res<'a>(
    verb: &'a str,
    group: &'a str,
    resource: &'a str,
    sub: Option<&'a str>,
    name: Option<&'a str>,
    ns: Option<&'a str>,
) -> Attributes<'a> {
    Attributes {
        verb,
        resource: Some(ResourceAttributes {
            group,
            resource,
            subresource: sub,
            name,
            namespace: ns,
        }),
        path: "/x",
    }
}

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        uid: String::new(),
        extra: Default::default(),
    }
}

#[test]
fn rule_matching_table() {
    let pods_read =
        rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}));
    let any_status = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/status"]}));
    let pod_log = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]}));
    let named = rule(
        json!({"verbs": ["get", "update"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"]}),
    );
    let healthz = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/api/*"]}));
    let cases: Vec<(&PolicyRule, Attributes, bool)> = vec![
        (
            &pods_read,
            res("get", "", "pods", None, Some("a"), Some("d")),
            true,
        ),
        (&pods_read, res("list", "", "pods", None, None, None), true),
        (
            &pods_read,
            res("watch", "", "pods", None, None, None),
            false,
        ),
        (
            &pods_read,
            res("get", "apps", "pods", None, None, None),
            false,
        ),
        (
            &pods_read,
            res("get", "", "pods", Some("log"), Some("a"), None),
            false,
        ),
        (
            &pods_read,
            res("get", "", "services", None, None, None),
            false,
        ),
        (
            &pod_log,
            res("get", "", "pods", Some("log"), Some("a"), None),
            true,
        ),
        (
            &pod_log,
            res("get", "", "pods", None, Some("a"), None),
            false,
        ),
        (
            &any_status,
            res(
                "update",
                "apps",
                "deployments",
                Some("status"),
                Some("x"),
                None,
            ),
            true,
        ),
        (
            &any_status,
            res(
                "update",
                "apps",
                "deployments",
                Some("scale"),
                Some("x"),
                None,
            ),
            false,
        ),
        (
            &any_status,
            res("update", "apps", "deployments", None, Some("x"), None),
            false,
        ),
        (
            &named,
            res("get", "apps", "deployments", None, Some("web"), None),
            true,
        ),
        (
            &named,
            res("get", "apps", "deployments", None, Some("db"), None),
            false,
        ),
        (
            &named,
            res("list", "apps", "deployments", None, None, None),
            false,
        ),
        (
            &healthz,
            Attributes {
                verb: "get",
                resource: None,
                path: "/healthz",
            },
            true,
        ),
        (
            &healthz,
            Attributes {
                verb: "get",
                resource: None,
                path: "/api/v1",
            },
            true,
        ),
        (
            &healthz,
            Attributes {
                verb: "get",
                resource: None,
                path: "/apis",
            },
            false,
        ),
        (
            &healthz,
            Attributes {
                verb: "post",
                resource: None,
                path: "/healthz",
            },
            false,
        ),
        (
            &pods_read,
            Attributes {
                verb: "get",
                resource: None,
                path: "/healthz",
            },
            false,
        ),
    ];
    for (i, (r, a, want)) in cases.iter().enumerate() {
        assert_eq!(r.allows(a), *want, "case {i}: {r:?} {a:?}");
    }
}

#[test]
fn forbidden_messages_match_kube_apiserver() {
    assert_eq!(
        res("list", "", "pods", None, None, Some("default")).forbidden_message("x"),
        r#"pods is forbidden: User "x" cannot list resource "pods" in API group "" in the namespace "default""#
    );
    assert_eq!(
        res("get", "apps", "deployments", None, Some("web"), None).forbidden_message("x"),
        r#"deployments.apps "web" is forbidden: User "x" cannot get resource "deployments" in API group "apps" at the cluster scope"#
    );
    assert_eq!(
        res("get", "", "pods", Some("log"), Some("p"), Some("d")).forbidden_message("x"),
        r#"pods "p" is forbidden: User "x" cannot get resource "pods/log" in API group "" in the namespace "d""#
    );
    let a = Attributes {
        verb: "get",
        resource: None,
        path: "/apis",
    };
    assert_eq!(
        a.forbidden_message("x"),
        r#"forbidden: User "x" cannot get path "/apis""#
    );
}

fn policy() -> Policy {
    let roles = [json!({"metadata": {"namespace": "team", "name": "reader"},
        "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]})];
    let cluster_roles = [
        json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"]}]}),
        json!({"metadata": {"name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [{"verbs": ["list"], "apiGroups": ["example.com"], "resources": ["widgets"]}]}),
        json!({"metadata": {"name": "nodes-read"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["nodes"]},
                      {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}]}),
    ];
    let bindings = [
        json!({"metadata": {"namespace": "team", "name": "a"},
            "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "bot"}]}),
        json!({"metadata": {"namespace": "team", "name": "b"},
            "roleRef": {"kind": "ClusterRole", "name": "nodes-read"},
            "subjects": [{"kind": "User", "name": "alice"}]}),
        json!({"metadata": {"namespace": "team", "name": "c"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "viewers"}]}),
    ];
    let cluster_bindings = [json!({"metadata": {"name": "n"},
        "roleRef": {"kind": "ClusterRole", "name": "nodes-read"},
        "subjects": [{"kind": "Group", "name": "ops"}]})];
    Policy::new(&roles, &cluster_roles, &bindings, &cluster_bindings)
}

#[test]
fn bindings_apply_by_subject_and_scope() {
    let p = policy();
    let alice = user("alice", &[]);
    let bot = user(
        "system:serviceaccount:team:bot",
        &["system:serviceaccounts"],
    );
    let other_bot = user("system:serviceaccount:other:bot", &[]);
    let ops = user("bob", &["ops"]);
    let viewer = user("carol", &["viewers"]);
    let root = user("root", &[MASTERS_GROUP]);
    let metrics = Attributes {
        verb: "get",
        resource: None,
        path: "/metrics",
    };
    let cases: Vec<(&UserInfo, Attributes, bool)> = vec![
        (
            &alice,
            res("list", "", "pods", None, None, Some("team")),
            true,
        ),
        (
            &alice,
            res("list", "", "pods", None, None, Some("other")),
            false,
        ),
        (&alice, res("list", "", "pods", None, None, None), false),
        // A ClusterRole bound by a RoleBinding only applies in its namespace.
        (
            &alice,
            res("get", "", "nodes", None, Some("n1"), Some("team")),
            true,
        ),
        (
            &alice,
            res("get", "", "nodes", None, Some("n1"), None),
            false,
        ),
        (&alice, metrics, false),
        (
            &bot,
            res("get", "", "pods", None, Some("p"), Some("team")),
            true,
        ),
        (
            &other_bot,
            res("get", "", "pods", None, Some("p"), Some("team")),
            false,
        ),
        (&ops, res("get", "", "nodes", None, Some("n1"), None), true),
        (&ops, metrics, true),
        (
            &ops,
            res("delete", "", "nodes", None, Some("n1"), None),
            false,
        ),
        (
            &viewer,
            res("get", "", "configmaps", None, Some("c"), Some("team")),
            true,
        ),
        // Aggregated into view from a labelled ClusterRole.
        (
            &viewer,
            res("list", "example.com", "widgets", None, None, Some("team")),
            true,
        ),
        (
            &viewer,
            res("list", "example.com", "widgets", None, None, Some("x")),
            false,
        ),
        (
            &root,
            res("delete", "", "nodes", None, Some("n1"), None),
            true,
        ),
    ];
    for (i, (u, a, want)) in cases.iter().enumerate() {
        assert_eq!(p.allows(u, a), *want, "case {i}: {} {a:?}", u.name);
    }
    assert_eq!(p.rules_for(&alice, Some("team")).len(), 3);
    assert_eq!(p.rules_for(&alice, Some("other")).len(), 0);
    assert_eq!(p.rules_for(&root, None), PolicyRule::all());
}

#[test]
fn covers_is_the_escalation_check() {
    let owner = vec![
        rule(
            json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]}),
        ),
        rule(
            json!({"verbs": ["*"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"]}),
        ),
        rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api/*"]})),
    ];
    let yes = [
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}),
        json!({"verbs": ["list", "get"], "apiGroups": [""], "resources": ["pods/log"]}),
        json!({"verbs": ["delete"], "apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["web"]}),
        json!({"verbs": ["get"], "nonResourceURLs": ["/api/v1"]}),
    ];
    let no = [
        json!({"verbs": ["delete"], "apiGroups": [""], "resources": ["pods"]}),
        json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}),
        json!({"verbs": ["get"], "apiGroups": ["*"], "resources": ["pods"]}),
        json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
        json!({"verbs": ["delete"], "apiGroups": ["apps"], "resources": ["deployments"]}),
        json!({"verbs": ["get"], "nonResourceURLs": ["/metrics"]}),
    ];
    for r in yes {
        assert!(covers(&owner, &[rule(r.clone())]), "{r}");
    }
    for r in no {
        assert!(!covers(&owner, &[rule(r.clone())]), "{r}");
    }
    assert!(covers(
        &PolicyRule::all(),
        &[rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})
        )]
    ));
}

/// `cargo test -p skiff-apiserver --lib rbac_cost -- --ignored --nocapture`
#[test]
#[ignore = "measurement: prints the cost of a policy rebuild and of one check"]
fn rbac_cost() {
    const NAMESPACES: usize = 1000;
    let crs = crate::rbac_bootstrap::cluster_roles();
    let crbs = crate::rbac_bootstrap::cluster_role_bindings();
    let roles: Vec<serde_json::Value> = (0..NAMESPACES)
        .map(|i| json!({"metadata": {"namespace": format!("ns{i}"), "name": "r"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "configmaps"]}]}))
        .collect();
    let bindings: Vec<serde_json::Value> = (0..NAMESPACES)
        .flat_map(|i| {
            [
                json!({"metadata": {"namespace": format!("ns{i}"), "name": "b"},
                    "roleRef": {"kind": "Role", "name": "r"},
                    "subjects": [{"kind": "ServiceAccount", "name": "sa"}]}),
                json!({"metadata": {"namespace": format!("ns{i}"), "name": "e"},
                    "roleRef": {"kind": "ClusterRole", "name": "edit"},
                    "subjects": [{"kind": "User", "name": format!("u{i}")}]}),
            ]
        })
        .collect();
    let median = |mut v: Vec<std::time::Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut builds = Vec::new();
    let mut policy = Policy::default();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        policy = Policy::new(&roles, &crs, &bindings, &crbs);
        builds.push(t.elapsed());
    }
    let sa = user(
        "system:serviceaccount:ns500:sa",
        &["system:serviceaccounts", "system:authenticated"],
    );
    let denied = res(
        "delete",
        "apps",
        "deployments",
        None,
        Some("x"),
        Some("ns500"),
    );
    let allowed = res("list", "", "configmaps", None, None, Some("ns500"));
    const CHECKS: u32 = 10_000;
    let (mut allow_t, mut deny_t) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..CHECKS {
            assert!(policy.allows(&sa, &allowed));
        }
        allow_t.push(t.elapsed() / CHECKS);
        let t = std::time::Instant::now();
        for _ in 0..CHECKS {
            assert!(!policy.allows(&sa, &denied));
        }
        deny_t.push(t.elapsed() / CHECKS);
    }
    println!(
        "rbac: {NAMESPACES} namespaces ({} roles, {} bindings): rebuild median {:?}; allowed check median {:?}; denied check median {:?}",
        roles.len(),
        bindings.len() + crbs.len(),
        median(builds),
        median(allow_t),
        median(deny_t)
    );
}

//! Role-based access control: the pure core of kube-apiserver's RBAC
//! authorizer (`plugin/pkg/auth/authorizer/rbac`, `pkg/apis/rbac/v1`
//! helpers). No I/O: a [`Policy`] is built from Role, ClusterRole,
//! RoleBinding and ClusterRoleBinding objects, and answers
//! "may this user do this?" ([`Policy::allows`]), "what may this user do
//! here?" ([`Policy::rules_for`]) and "do these rules cover those?"
//! ([`covers`], the escalation check).
//!
//! ```text
//!  user + groups ──► bindings whose subjects name them
//!                      ClusterRoleBinding → ClusterRole rules, everywhere
//!                      RoleBinding in ns  → Role/ClusterRole rules, in ns only
//!                    ──► any rule matches the attributes? allow : deny
//! ```
//!
//! Rule matching follows `RuleAllows`: verbs, API groups and resources
//! match exactly or by `*`; a resource `*/status` matches the `status`
//! subresource of any resource; `resourceNames` restricts to named objects
//! (so a rule with names never allows `list` or `create`); a non-resource
//! URL matches exactly or by a trailing `*` prefix. There is no deny:
//! permissions only add up.
//!
//! ClusterRoles with an `aggregationRule` get, besides their own rules, the
//! rules of every ClusterRole whose labels match one of its selectors
//! (kube-controller-manager's clusterrole-aggregation controller writes
//! them into the object; Skiff resolves them when the policy is built and
//! does not write them back).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::auth::UserInfo;
use crate::validation::workload::selector_matches;

/// The group every user in `system:masters` is in: allowed everything,
/// without looking at the policy (kube-apiserver's privileged group).
pub const MASTERS_GROUP: &str = "system:masters";

/// One rule of a Role or ClusterRole (`rbac/v1.PolicyRule`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    /// Verbs, `*` for all.
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups (`""` is core), `*` for all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources, `resource/subresource`, `*`, or `*/subresource`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Object names; empty means every object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_names: Vec<String>,
    /// Non-resource paths, exact or ending in `*`.
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

impl PolicyRule {
    /// The rule that allows everything (what `system:masters` holds).
    pub fn all() -> Vec<PolicyRule> {
        let star = || vec!["*".to_string()];
        vec![
            PolicyRule {
                verbs: star(),
                api_groups: star(),
                resources: star(),
                ..Default::default()
            },
            PolicyRule {
                verbs: star(),
                non_resource_urls: star(),
                ..Default::default()
            },
        ]
    }

    /// Whether this rule allows the request (`RuleAllows`).
    pub fn allows(&self, a: &Attributes<'_>) -> bool {
        if !self.verbs.iter().any(|v| v == "*" || v == a.verb) {
            return false;
        }
        match &a.resource {
            None => self.non_resource_urls.iter().any(|u| {
                u == "*"
                    || u == a.path
                    || u.strip_suffix('*').is_some_and(|p| a.path.starts_with(p))
            }),
            Some(r) => {
                self.api_groups.iter().any(|g| g == "*" || g == r.group)
                    && self.matches_resource(r.resource, r.subresource)
                    && (self.resource_names.is_empty()
                        || r.name
                            .is_some_and(|n| self.resource_names.iter().any(|x| x == n)))
            }
        }
    }

    /// `ResourceMatches`: `*`, the exact `resource[/subresource]`, or
    /// `*/subresource`.
    fn matches_resource(&self, resource: &str, subresource: Option<&str>) -> bool {
        self.resources.iter().any(|r| {
            if r == "*" {
                return true;
            }
            match subresource {
                None => r == resource,
                Some(sub) => {
                    r.strip_prefix("*/") == Some(sub) || r.split_once('/') == Some((resource, sub))
                }
            }
        })
    }
}

/// The resource part of a request's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceAttributes<'a> {
    /// API group, `""` for core.
    pub group: &'a str,
    /// Plural resource, e.g. `pods`.
    pub resource: &'a str,
    /// Subresource, e.g. `log`.
    pub subresource: Option<&'a str>,
    /// Object name, if the request names one.
    pub name: Option<&'a str>,
    /// Namespace; `None` for cluster-scoped or all-namespace requests.
    pub namespace: Option<&'a str>,
}

/// What a request wants, in the strings RBAC compares (kube-apiserver's
/// `authorizer.Attributes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attributes<'a> {
    /// `get`, `list`, `watch`, `create`, …; for non-resource paths the
    /// lower-case HTTP method.
    pub verb: &'a str,
    /// `None` for a non-resource request (`/api`, `/healthz`).
    pub resource: Option<ResourceAttributes<'a>>,
    /// The URL path (what non-resource rules match).
    pub path: &'a str,
}

impl Attributes<'_> {
    /// The namespace the request is in, if any.
    pub fn namespace(&self) -> Option<&str> {
        self.resource.and_then(|r| r.namespace)
    }

    /// kube-apiserver's 403 message: `pods is forbidden: User "x" cannot
    /// list resource "pods" in API group "" in the namespace "default"`.
    pub fn forbidden_message(&self, user: &str) -> String {
        let Some(r) = &self.resource else {
            return format!(
                "forbidden: User {user:?} cannot {} path {:?}",
                self.verb, self.path
            );
        };
        let qualified = if r.group.is_empty() {
            r.resource.to_string()
        } else {
            format!("{}.{}", r.resource, r.group)
        };
        let subject = match r.name {
            Some(n) => format!("{qualified} {n:?}"),
            None => qualified,
        };
        let resource = match r.subresource {
            Some(s) => format!("{}/{s}", r.resource),
            None => r.resource.to_string(),
        };
        let scope = match r.namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_string(),
        };
        format!(
            "{subject} is forbidden: User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            self.verb, r.group
        )
    }
}

/// Whether `owner` holds every permission of `requested` (`validation.Covers`,
/// the escalation check): each verb × group × resource × name of each
/// requested rule must be allowed by some owner rule. A requested `*` is
/// only covered by an owner `*`.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> bool {
    requested.iter().all(|req| {
        let names: Vec<Option<&str>> = if req.resource_names.is_empty() {
            vec![None]
        } else {
            req.resource_names
                .iter()
                .map(|n| Some(n.as_str()))
                .collect()
        };
        req.verbs.iter().all(|verb| {
            let resources_ok = req.api_groups.iter().all(|group| {
                req.resources.iter().all(|resource| {
                    names.iter().all(|name| {
                        owner.iter().any(|o| {
                            o.verbs.iter().any(|v| v == "*" || v == verb)
                                && o.api_groups.iter().any(|g| g == "*" || g == group)
                                && o.resources.iter().any(|r| {
                                    r == "*"
                                        || r == resource
                                        || resource.split_once('/').is_some_and(|(_, sub)| {
                                            r.strip_prefix("*/") == Some(sub)
                                        })
                                })
                                && (o.resource_names.is_empty()
                                    || name
                                        .is_some_and(|n| o.resource_names.iter().any(|x| x == n)))
                        })
                    })
                })
            });
            let urls_ok = req.non_resource_urls.iter().all(|url| {
                owner.iter().any(|o| {
                    o.verbs.iter().any(|v| v == "*" || v == verb)
                        && o.non_resource_urls.iter().any(|u| {
                            u == "*"
                                || u == url
                                || u.strip_suffix('*').is_some_and(|p| url.starts_with(p))
                        })
                })
            });
            resources_ok && urls_ok
        })
    })
}

/// A binding's subject (`rbac/v1.Subject`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    #[serde(default)]
    pub kind: String,
    /// The name.
    #[serde(default)]
    pub name: String,
    /// For ServiceAccounts: their namespace (default: the binding's).
    #[serde(default)]
    pub namespace: String,
}

impl Subject {
    /// `appliesToUser`: whether the subject names this user or one of
    /// its groups. `binding_namespace` is the RoleBinding's namespace.
    fn applies_to(&self, user: &UserInfo, binding_namespace: Option<&str>) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_namespace.unwrap_or("")
                } else {
                    &self.namespace
                };
                !ns.is_empty() && user.name == service_account_user(ns, &self.name)
            }
            _ => false,
        }
    }
}

/// The user name of a ServiceAccount: `system:serviceaccount:<ns>:<name>`.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

/// A binding's `roleRef`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoleRef {
    /// `Role` or `ClusterRole`.
    #[serde(default)]
    pub kind: String,
    /// The role's name.
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BindingObject {
    #[serde(default)]
    role_ref: RoleRef,
    #[serde(default)]
    subjects: Vec<Subject>,
}

#[derive(Clone, Debug)]
struct Binding {
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn from_object(obj: &Value) -> Option<Binding> {
        let b: BindingObject = serde_json::from_value(obj.clone()).ok()?;
        Some(Binding {
            role_ref: b.role_ref,
            subjects: b.subjects,
        })
    }
}

/// The rules of a Role or ClusterRole object; unparsable rules are
/// skipped (they can only ever allow less).
pub fn rules_of(obj: &Value) -> Vec<PolicyRule> {
    obj.get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

fn meta<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Every role and binding, indexed for authorization. Immutable: a new
/// one is built when the objects change.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// `(namespace, name)` → rules.
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    /// name → rules (aggregation resolved).
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    cluster_bindings: Vec<Binding>,
    /// namespace → its RoleBindings.
    bindings: HashMap<String, Vec<Binding>>,
}

impl Policy {
    /// Builds the policy from the four kinds' objects.
    pub fn new<'a>(
        roles: impl IntoIterator<Item = &'a Value>,
        cluster_roles: impl IntoIterator<Item = &'a Value>,
        role_bindings: impl IntoIterator<Item = &'a Value>,
        cluster_role_bindings: impl IntoIterator<Item = &'a Value>,
    ) -> Policy {
        let mut p = Policy::default();
        for r in roles {
            p.roles.insert(
                (
                    meta(r, "namespace").to_string(),
                    meta(r, "name").to_string(),
                ),
                rules_of(r),
            );
        }
        let cluster_roles: Vec<&Value> = cluster_roles.into_iter().collect();
        for cr in &cluster_roles {
            p.cluster_roles
                .insert(meta(cr, "name").to_string(), rules_of(cr));
        }
        // Aggregation chains (view → edit → admin): repeat until no role
        // gains a rule; each round adds at least one, so it ends.
        let aggregating: Vec<(&str, &Vec<Value>)> = cluster_roles
            .iter()
            .filter_map(|cr| {
                let sels = cr
                    .pointer("/aggregationRule/clusterRoleSelectors")
                    .and_then(Value::as_array)?;
                Some((meta(cr, "name"), sels))
            })
            .collect();
        loop {
            let mut changed = false;
            for (name, selectors) in &aggregating {
                let mut rules = p.cluster_roles.get(*name).cloned().unwrap_or_default();
                for other in &cluster_roles {
                    let other_name = meta(other, "name");
                    let Some(labels) = other.pointer("/metadata/labels").and_then(Value::as_object)
                    else {
                        continue;
                    };
                    if other_name == *name || !selectors.iter().any(|s| selector_matches(s, labels))
                    {
                        continue;
                    }
                    for rule in p.cluster_roles.get(other_name).into_iter().flatten() {
                        if !rules.contains(rule) {
                            rules.push(rule.clone());
                            changed = true;
                        }
                    }
                }
                p.cluster_roles.insert(name.to_string(), rules);
            }
            if !changed {
                break;
            }
        }
        for b in role_bindings {
            if let Some(binding) = Binding::from_object(b) {
                p.bindings
                    .entry(meta(b, "namespace").to_string())
                    .or_default()
                    .push(binding);
            }
        }
        p.cluster_bindings = cluster_role_bindings
            .into_iter()
            .filter_map(Binding::from_object)
            .collect();
        p
    }

    /// The rules of the role `role_ref` names (a Role in `namespace`, or
    /// a ClusterRole); empty when it does not exist.
    pub fn role_rules(&self, role_ref: &RoleRef, namespace: Option<&str>) -> &[PolicyRule] {
        let rules = match (role_ref.kind.as_str(), namespace) {
            ("ClusterRole", _) => self.cluster_roles.get(&role_ref.name),
            ("Role", Some(ns)) => self.roles.get(&(ns.to_string(), role_ref.name.clone())),
            _ => None,
        };
        rules.map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every rule that applies to `user`, cluster-wide and, with a
    /// namespace, in it (`VisitRulesFor`).
    pub fn rules_for(&self, user: &UserInfo, namespace: Option<&str>) -> Vec<PolicyRule> {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return PolicyRule::all();
        }
        let mut out: Vec<PolicyRule> = Vec::new();
        let mut add = |rules: &[PolicyRule]| {
            for r in rules {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        };
        for b in &self.cluster_bindings {
            if b.subjects.iter().any(|s| s.applies_to(user, None)) {
                add(self.role_rules(&b.role_ref, None));
            }
        }
        if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
            for b in self.bindings.get(ns).into_iter().flatten() {
                if b.subjects.iter().any(|s| s.applies_to(user, Some(ns))) {
                    add(self.role_rules(&b.role_ref, Some(ns)));
                }
            }
        }
        out
    }

    /// Whether `user` may do what `attrs` describe.
    pub fn allows(&self, user: &UserInfo, attrs: &Attributes<'_>) -> bool {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return true;
        }
        let any = |b: &Binding, ns: Option<&str>| {
            b.subjects.iter().any(|s| s.applies_to(user, ns))
                && self
                    .role_rules(&b.role_ref, ns)
                    .iter()
                    .any(|r| r.allows(attrs))
        };
        if self.cluster_bindings.iter().any(|b| any(b, None)) {
            return true;
        }
        // Non-resource requests are only ever allowed cluster-wide.
        match attrs.namespace().filter(|_| attrs.resource.is_some()) {
            Some(ns) => self
                .bindings
                .get(ns)
                .is_some_and(|bs| bs.iter().any(|b| any(b, Some(ns)))),
            None => false,
        }
    }
}

#[cfg(test)]
#[path = "rbac_test.rs"]
mod tests;

//! RBAC's escalation prevention (kube-apiserver's `rbac/*/policybased`
//! storage wrappers): a user may only write a Role or ClusterRole whose
//! rules they hold themselves, unless they may `escalate` it, and may only
//! bind a role whose rules they hold, unless they may `bind` it. Without
//! this, permission to edit roles or bindings would be permission to do
//! anything.
//!
//! A Role's rules are compared with the writer's rules in its namespace,
//! a ClusterRole's with their cluster-wide rules ([`crate::rbac::covers`]).

use serde_json::Value;

use crate::auth::UserInfo;
use crate::error::ApiError;
use crate::rbac::{self, Attributes, PolicyRule, ResourceAttributes, MASTERS_GROUP};
use crate::request::RequestContext;
use crate::resources::ResourceInfo;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// 403 unless `ctx.user` may write `obj` (a Role, ClusterRole, RoleBinding
/// or ClusterRoleBinding; anything else passes).
pub async fn check(ctx: &RequestContext, res: &ResourceInfo, obj: &Value) -> Result<(), ApiError> {
    let user = &ctx.user;
    if res.group != RBAC_GROUP || user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    let meta = |f: &str| {
        obj.pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (name, namespace) = (meta("name").unwrap_or(""), meta("namespace"));
    let authz = &ctx.state.authz;
    // The verb that lifts the check, on the role itself or the referenced role.
    let (verb, role_plural, role_name, requested) = match res.plural {
        "roles" | "clusterroles" => ("escalate", res.plural, name, rbac::rules_of(obj)),
        "rolebindings" | "clusterrolebindings" => {
            let kind = obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role = obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let plural = if kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            let rules = authz.role_rules(kind, namespace, role).await?;
            ("bind", plural, role, rules)
        }
        _ => return Ok(()),
    };
    let lift = Attributes {
        verb,
        resource: Some(ResourceAttributes {
            group: RBAC_GROUP,
            resource: role_plural,
            subresource: None,
            name: Some(role_name),
            namespace,
        }),
        path: "",
    };
    if authz.allows(user, &lift).await? {
        return Ok(());
    }
    let held = authz.rules_for(user, namespace).await?;
    let missing: Vec<&PolicyRule> = requested
        .iter()
        .filter(|r| !rbac::covers(&held, std::slice::from_ref(*r)))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::Forbidden(message(res, name, user, &missing)))
}

/// kube-apiserver's wording: `roles.rbac.authorization.k8s.io "x" is
/// forbidden: user "u" (groups=["g"]) is attempting to grant RBAC
/// permissions not currently held:` and the rules, one a line.
fn message(res: &ResourceInfo, name: &str, user: &UserInfo, missing: &[&PolicyRule]) -> String {
    let quoted = |v: &[String]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rules: Vec<String> = missing
        .iter()
        .map(|r| {
            let mut parts = Vec::new();
            for (label, v) in [
                ("APIGroups", &r.api_groups),
                ("Resources", &r.resources),
                ("ResourceNames", &r.resource_names),
                ("NonResourceURLs", &r.non_resource_urls),
                ("Verbs", &r.verbs),
            ] {
                if !v.is_empty() || label == "Verbs" {
                    parts.push(format!("{label}:[{}]", quoted(v)));
                }
            }
            format!("{{{}}}", parts.join(", "))
        })
        .collect();
    format!(
        "{}.{RBAC_GROUP} {name:?} is forbidden: user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        res.plural,
        user.name,
        quoted(&user.groups),
        rules.join("\n")
    )
}

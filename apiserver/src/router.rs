//! URL paths → what they name ([`Route`]), as kube-apiserver's installer
//! lays them out:
//!
//! ```text
//! /api, /api/v1, /apis, /apis/<g>, /apis/<g>/<v>            discovery
//! /api/v1/<plural>[/<name>[/<sub>]]                            cluster-scoped, or all namespaces
//! /api/v1/namespaces/<ns>/<plural>[/<name>[/<sub>]]            namespaced
//! /apis/<g>/<v>/…                                              the same for a group
//! /api/v1/watch/…                                              deprecated watch prefix
//! /openapi/v2, /openapi/v3[/<path>], /version, /healthz, /livez, /readyz, /cacerts
//! ```
//!
//! `namespaces/<ns>/status` is the namespace's status subresource, while
//! `namespaces/<ns>/pods` is a collection: a third segment that is a
//! namespaced plural of the group-version wins, as in Kubernetes.

use crate::error::ApiError;
use crate::resources::{find, group_versions, ResourceInfo};

/// A path into one served resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourcePath {
    /// The resource.
    pub resource: &'static ResourceInfo,
    /// The namespace from the path, if any.
    pub namespace: Option<String>,
    /// The object name, if the path names one.
    pub name: Option<String>,
    /// The subresource (`status`, `binding`, `log`), if any.
    pub subresource: Option<String>,
    /// Reached through the deprecated `/watch/` prefix.
    pub watch_prefix: bool,
}

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/healthz`, `/livez`, `/readyz` (and their sub-checks).
    Health,
    /// `/readyz`: like health, but also asks the store.
    Ready,
    /// `/version`.
    Version,
    /// `/cacerts`: the CA bundle, for agents joining with a node token.
    CaCerts,
    /// `/api`.
    CoreVersions,
    /// `/apis`.
    GroupList,
    /// `/apis/<group>`.
    Group(String),
    /// `/api/v1` or `/apis/<g>/<v>`.
    ResourceList {
        /// Group, `""` for core.
        group: String,
        /// Version.
        version: String,
    },
    /// `/openapi/v3`.
    OpenApiIndex,
    /// `/openapi/v3/<path>`.
    OpenApiDocument(String),
    /// `/openapi/v2` (JSON or protobuf, by `Accept`).
    OpenApiV2,
    /// `/api/v1/namespaces/<ns>/bindings` (the older way to bind a pod).
    Bindings {
        /// The namespace.
        namespace: String,
    },
    /// A resource, collection or object path.
    Resource(ResourcePath),
    /// `/api/v1/nodes/<node>/proxy/<path>`: a GET passed to the node's
    /// agent (its `/metrics`, `/healthz`, `/stats/summary`).
    NodeProxy {
        /// The node's name.
        node: String,
        /// The path on the agent, without the leading `/`.
        path: String,
    },
}

impl Route {
    /// Whether the route is served without authentication (Kubernetes'
    /// `system:public-info-viewer` role: health, version; plus `/cacerts`,
    /// which agents fetch before they trust the server).
    pub fn is_public(&self) -> bool {
        matches!(
            self,
            Route::Health | Route::Ready | Route::Version | Route::CaCerts
        )
    }
}

/// Parses a request path (without the query string).
pub fn parse(path: &str) -> Result<Route, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["healthz" | "livez", ..] => Ok(Route::Health),
        ["readyz", ..] => Ok(Route::Ready),
        ["version"] => Ok(Route::Version),
        ["cacerts"] => Ok(Route::CaCerts),
        ["openapi", "v2"] => Ok(Route::OpenApiV2),
        ["openapi", "v3"] => Ok(Route::OpenApiIndex),
        ["openapi", "v3", rest @ ..] => Ok(Route::OpenApiDocument(rest.join("/"))),
        ["api"] => Ok(Route::CoreVersions),
        ["api", v] => served("", v).map(|_| Route::ResourceList {
            group: String::new(),
            version: v.to_string(),
        }),
        ["api", v, rest @ ..] => resource_route("", v, rest),
        ["apis"] => Ok(Route::GroupList),
        ["apis", g] => Ok(Route::Group(g.to_string())),
        ["apis", g, v] => served(g, v).map(|_| Route::ResourceList {
            group: g.to_string(),
            version: v.to_string(),
        }),
        ["apis", g, v, rest @ ..] => resource_route(g, v, rest),
        _ => Err(ApiError::PathNotFound),
    }
}

fn served(group: &str, version: &str) -> Result<(), ApiError> {
    if group_versions()
        .iter()
        .any(|(g, v)| *g == group && *v == version)
    {
        Ok(())
    } else {
        Err(ApiError::PathNotFound)
    }
}

fn resource_route(group: &str, version: &str, rest: &[&str]) -> Result<Route, ApiError> {
    served(group, version)?;
    resource_route_in(group, rest, &|p| find(group, version, p))
}

/// The route for the path segments after `/apis/<group>/<version>/`,
/// with `find` naming the group-version's resources by plural (the static
/// table, or the custom resources of `crd_registry`).
pub fn resource_route_in(
    group: &str,
    rest: &[&str],
    find: &dyn Fn(&str) -> Option<&'static ResourceInfo>,
) -> Result<Route, ApiError> {
    let (watch_prefix, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let namespaced_plural = |p: &str| find(p).filter(|r| r.namespaced);
    let (resource, namespace, name, sub) = match rest {
        ["nodes", node, "proxy", path @ ..] if group.is_empty() && !watch_prefix => {
            return Ok(Route::NodeProxy {
                node: node.to_string(),
                path: path.join("/"),
            })
        }
        ["namespaces", ns, "bindings"] if group.is_empty() && !watch_prefix => {
            return Ok(Route::Bindings {
                namespace: ns.to_string(),
            })
        }
        ["namespaces", ns, plural, tail @ ..] if namespaced_plural(plural).is_some() => {
            if tail.len() > 2 {
                return Err(ApiError::PathNotFound);
            }
            let r = namespaced_plural(plural).ok_or(ApiError::PathNotFound)?;
            (r, Some(ns.to_string()), tail.first(), tail.get(1))
        }
        [plural, tail @ ..] => {
            if tail.len() > 2 {
                return Err(ApiError::PathNotFound);
            }
            let r = find(plural).ok_or(ApiError::PathNotFound)?;
            if r.namespaced && !tail.is_empty() {
                // A namespaced object needs its namespace in the path.
                return Err(ApiError::PathNotFound);
            }
            (r, None, tail.first(), tail.get(1))
        }
        [] => return Err(ApiError::PathNotFound),
    };
    if let Some(s) = sub {
        if watch_prefix || !resource.subresources.contains(s) {
            return Err(ApiError::PathNotFound);
        }
    }
    Ok(Route::Resource(ResourcePath {
        resource,
        namespace,
        name: name.map(|s| s.to_string()),
        subresource: sub.map(|s| s.to_string()),
        watch_prefix,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(path: &str) -> ResourcePath {
        match parse(path).unwrap() {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn discovery_and_public_paths() {
        assert_eq!(parse("/api").unwrap(), Route::CoreVersions);
        assert_eq!(parse("/apis/").unwrap(), Route::GroupList);
        assert_eq!(
            parse("/apis/coordination.k8s.io").unwrap(),
            Route::Group("coordination.k8s.io".into())
        );
        assert_eq!(
            parse("/api/v1").unwrap(),
            Route::ResourceList {
                group: String::new(),
                version: "v1".into()
            }
        );
        assert_eq!(
            parse("/openapi/v3/api/v1").unwrap(),
            Route::OpenApiDocument("api/v1".into())
        );
        assert!(parse("/healthz").unwrap().is_public());
        assert!(parse("/readyz").unwrap().is_public());
        assert!(parse("/version").unwrap().is_public());
        assert!(!parse("/api").unwrap().is_public());
        assert!(parse("/api/v2").is_err());
        assert!(parse("/nope").is_err());
    }

    #[test]
    fn resource_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = res("/api/v1/pods");
        assert_eq!((r.namespace, r.name), (None, None));

        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));

        let r = res("/api/v1/namespaces/x/status");
        assert_eq!(r.resource.plural, "namespaces");
        assert_eq!(r.subresource.as_deref(), Some("status"));

        let r = res("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1");
        assert_eq!(r.resource.kind, "Lease");

        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_prefix);

        assert_eq!(
            parse("/api/v1/namespaces/default/bindings").unwrap(),
            Route::Bindings {
                namespace: "default".into()
            }
        );
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for p in [
            "/api/v1/widgets",
            "/api/v1/namespaces/default/widgets",
            "/api/v1/pods/x",
            "/api/v1/namespaces/default/pods/x/proxy",
            "/api/v1/namespaces/default/configmaps/x/status",
            "/api/v1/namespaces/default/pods/x/status/more",
            "/apis/apps/v1/widgets",
        ] {
            assert_eq!(parse(p).unwrap_err().status_code(), 404, "{p}");
        }
    }
}

//! The `paths` section of an OpenAPI v3 document: for each resource the
//! collection, the all-namespaces list, the item and its subresources, with
//! the operation ids, tags, `x-kubernetes-action` and
//! `x-kubernetes-group-version-kind` (an object here, an array on schemas)
//! that Kubernetes' own documents carry. Query parameters are written inline
//! on each operation because cli-runtime's `supportsQueryParamV3` reads
//! `parameters[].name` of the patch operation itself.

use super::{gvk, schema_ref, DELETE_OPTIONS, PATCH, STATUS};
use crate::resources::ResourceInfo;
use serde_json::{json, Map, Value};

/// A query parameter, inline (cli-runtime reads `name` directly, not `$ref`s).
fn query(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query("dryRun", "string", "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed"),
        query("fieldManager", "string", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query("fieldValidation", "string", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict"),
    ]
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\"."),
        query("continue", "string", "The continue option should be set when retrieving more results from the server."),
        query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields."),
        query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels."),
        query("limit", "integer", "limit is a maximum number of responses to return for a list call."),
        query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from."),
        query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls."),
        query("timeoutSeconds", "integer", "Timeout for the list/watch call."),
        query("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications."),
    ]
}

fn json_content(name: &str) -> Value {
    json!({"application/json": {"schema": schema_ref(name)}, "application/yaml": {"schema": schema_ref(name)}})
}

/// One operation object.
fn operation(
    r: &ResourceInfo,
    id: &str,
    action: &str,
    description: String,
    params: Vec<Value>,
    responses: Value,
) -> Value {
    json!({
        "tags": [tag(r)],
        "description": description,
        "operationId": id,
        "parameters": params,
        "responses": responses,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(r.group, r.version, r.kind),
    })
}

/// `core_v1`, `coordination_v1` (Kubernetes' operation tags).
fn tag(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    format!("{group}_{}", r.version)
}

/// `CoreV1`, `CoordinationV1`: the group part of operation ids.
fn id_prefix(r: &ResourceInfo) -> String {
    let group = if r.group.is_empty() {
        "core"
    } else {
        r.group.split('.').next().unwrap_or(r.group)
    };
    let mut chars = group.chars();
    let cap: String = chars
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(chars)
        .collect();
    let mut v = r.version.chars();
    let ver: String = v
        .next()
        .map(|c| c.to_ascii_uppercase())
        .into_iter()
        .chain(v)
        .collect();
    format!("{cap}{ver}")
}

fn ok(name: &str) -> Value {
    json!({"description": "OK", "content": json_content(name)})
}

/// Adds the collection, item and subresource paths of one resource.
pub(super) fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, name: &str) {
    let root = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let base = if r.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{root}/{}", r.plural)
    };
    let prefix = id_prefix(r);
    let kind = r.kind;
    let list_name = format!("{name}List");
    let mut scope_params = vec![query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed.",
    )];
    if r.namespaced {
        scope_params.push(path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    let body = |schema: &str| json!({"content": {"*/*": {"schema": schema_ref(schema)}}, "required": true});
    let created = json!({"200": ok(name), "201": {"description": "Created", "content": json_content(name)}, "202": {"description": "Accepted", "content": json_content(name)}});

    // Collection: list, create, deletecollection.
    let mut post = operation(
        r,
        &format!("create{prefix}{scope}{kind}"),
        "post",
        format!("create a {kind}"),
        write_params(),
        created.clone(),
    );
    post["requestBody"] = body(name);
    if r.is_create_only() {
        // The review APIs: POST on the collection is all there is.
        paths.insert(base, json!({"post": post, "parameters": scope_params}));
        return;
    }
    let collection = json!({
        "get": operation(r, &format!("list{prefix}{scope}{kind}"), "list", format!("list or watch objects of kind {kind}"), list_params(), json!({"200": ok(&list_name)})),
        "post": post,
        "delete": operation(r, &format!("deletecollection{prefix}{scope}{kind}"), "deletecollection", format!("delete collection of {kind}"), list_params(), json!({"200": ok(STATUS)})),
        "parameters": scope_params.clone(),
    });
    paths.insert(base.clone(), collection);

    // All namespaces: list only.
    if r.namespaced {
        paths.insert(
            format!("{root}/{}", r.plural),
            json!({
                "get": operation(r, &format!("list{prefix}{kind}ForAllNamespaces"), "list", format!("list or watch objects of kind {kind}"), list_params(), json!({"200": ok(&list_name)})),
                "parameters": [query("pretty", "string", "If 'true', then the output is pretty printed.")],
            }),
        );
    }

    // Item: read, replace, patch, delete.
    let mut item_params = scope_params.clone();
    item_params.insert(0, path_param("name", &format!("name of the {kind}")));
    paths.insert(
        format!("{base}/{{name}}"),
        item_ops(
            r,
            name,
            &format!("{prefix}{scope}{kind}"),
            "",
            item_params.clone(),
            true,
        ),
    );

    for sub in r.subresources {
        let sub_path = format!("{base}/{{name}}/{sub}");
        let cap_sub: String = {
            let mut c = sub.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase())
                .into_iter()
                .chain(c)
                .collect()
        };
        let id = format!("{prefix}{scope}{kind}{cap_sub}");
        match *sub {
            "status" => {
                paths.insert(
                    sub_path,
                    item_ops(r, name, &id, "status of ", item_params.clone(), false),
                );
            }
            "scale" => {
                let scale = "io.k8s.api.autoscaling.v1.Scale";
                let mut ops = item_ops(r, scale, &id, "scale of ", item_params.clone(), false);
                for verb in ["get", "put", "patch"] {
                    ops[verb]["x-kubernetes-group-version-kind"] =
                        gvk("autoscaling", "v1", "Scale");
                }
                paths.insert(sub_path, ops);
            }
            // Subresources that take one object of another kind by POST.
            "eviction" | "token" | "binding" => {
                let (schema, group, sub_kind) = match *sub {
                    "eviction" => ("io.k8s.api.policy.v1.Eviction", "policy", "Eviction"),
                    "token" => (
                        "io.k8s.api.authentication.v1.TokenRequest",
                        "authentication.k8s.io",
                        "TokenRequest",
                    ),
                    _ => ("io.k8s.api.core.v1.Binding", "", "Binding"),
                };
                let mut post = operation(
                    r,
                    &format!("create{id}"),
                    "post",
                    format!("create {sub} of a {kind}"),
                    write_params(),
                    json!({"200": ok(schema), "201": {"description": "Created", "content": json_content(schema)}}),
                );
                post["requestBody"] = body(schema);
                post["x-kubernetes-group-version-kind"] = gvk(group, "v1", sub_kind);
                paths.insert(
                    sub_path,
                    json!({"post": post, "parameters": item_params.clone()}),
                );
            }
            "log" => {
                let params = vec![
                    query("container", "string", "The container for which to stream logs."),
                    query("follow", "boolean", "Follow the log stream of the pod."),
                    query("previous", "boolean", "Return previous terminated container logs."),
                    query("sinceSeconds", "integer", "A relative time in seconds before the current time from which to show logs."),
                    query("tailLines", "integer", "The number of lines from the end of the logs to show."),
                    query("timestamps", "boolean", "If true, add an RFC3339 timestamp at the beginning of every line of log output."),
                ];
                let mut get = operation(
                    r,
                    &format!("read{id}"),
                    "get",
                    format!("read log of the specified {kind}"),
                    params,
                    json!({"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
                );
                get["x-kubernetes-group-version-kind"] = gvk(r.group, r.version, r.kind);
                paths.insert(
                    sub_path,
                    json!({"get": get, "parameters": item_params.clone()}),
                );
            }
            _ => {}
        }
    }
}

/// The item (or `/status`) path: get, put, patch (and delete on the item).
fn item_ops(
    r: &ResourceInfo,
    name: &str,
    id: &str,
    what: &str,
    params: Vec<Value>,
    with_delete: bool,
) -> Value {
    let kind = r.kind;
    let body = json!({"content": {"*/*": {"schema": schema_ref(name)}}, "required": true});
    let mut put = operation(
        r,
        &format!("replace{id}"),
        "put",
        format!("replace {what}the specified {kind}"),
        write_params(),
        json!({"200": ok(name), "201": {"description": "Created", "content": json_content(name)}}),
    );
    put["requestBody"] = body;
    let mut patch_params = write_params();
    patch_params.push(query(
        "force",
        "boolean",
        "Force is going to \"force\" Apply requests.",
    ));
    let mut patch = operation(
        r,
        &format!("patch{id}"),
        "patch",
        format!("partially update {what}the specified {kind}"),
        patch_params,
        json!({"200": ok(name), "201": {"description": "Created", "content": json_content(name)}}),
    );
    let patch_body = json!({"schema": schema_ref(PATCH)});
    patch["requestBody"] = json!({
        "content": {
            "application/apply-patch+yaml": patch_body.clone(),
            "application/json-patch+json": patch_body.clone(),
            "application/merge-patch+json": patch_body.clone(),
            "application/strategic-merge-patch+json": patch_body,
        },
        "required": true,
    });
    let mut ops = json!({
        "get": operation(r, &format!("read{id}"), "get", format!("read {what}the specified {kind}"), vec![], json!({"200": ok(name)})),
        "put": put,
        "patch": patch,
        "parameters": params,
    });
    if with_delete {
        let mut params = vec![query(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted.",
        )];
        params.push(query(
            "gracePeriodSeconds",
            "integer",
            "The duration in seconds before the object should be deleted.",
        ));
        params.push(query(
            "propagationPolicy",
            "string",
            "Whether and how garbage collection will be performed.",
        ));
        let mut delete = operation(
            r,
            &format!("delete{id}"),
            "delete",
            format!("delete a {kind}"),
            params,
            json!({"200": ok(name), "202": {"description": "Accepted", "content": json_content(name)}}),
        );
        delete["requestBody"] = json!({"content": {"*/*": {"schema": schema_ref(DELETE_OPTIONS)}}});
        ops["delete"] = delete;
    }
    ops
}

//! Server-side printing: `meta.k8s.io/v1` `Table` responses.
//!
//! kubectl asks for lists with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io,application/json`
//! and prints the columns the server chose; `-o wide` shows the priority-1
//! columns too. Columns and cell rules follow Kubernetes'
//! pkg/printers/internalversion/printers.go so `kubectl get` looks the same
//! as against kube-apiserver. Printed kinds: pods, nodes, namespaces,
//! configmaps, secrets, serviceaccounts, events, leases, deployments and
//! replicasets here; the other workloads (statefulsets, daemonsets, jobs,
//! cronjobs, HPAs, PDBs, controllerrevisions) in `schema_printers_workloads.rs`;
//! services, endpoints, endpointslices, PVs, PVCs, quotas, limit ranges,
//! priority classes and RBAC in `schema_printers_core.rs`. Others get NAME
//! and AGE (kube-apiserver's default convertor prints NAME and CREATED AT).
//!
//! Custom resources print NAME and their CRD's
//! `additionalPrinterColumns` (NAME and AGE without any; [`crate::crd`]).
//!
//! Each row carries the object as `includeObject` asks (`?includeObject=`):
//! nothing, a `PartialObjectMetadata` (the default, which kubectl uses for
//! `--show-labels` and namespaces), or the whole object.

#[path = "schema_duration.rs"]
pub mod duration;
#[path = "schema_printers.rs"]
mod printers;
#[path = "schema_printers_core.rs"]
mod printers_core;
#[path = "schema_printers_workloads.rs"]
mod printers_workloads;

use crate::resources::ResourceInfo;
use chrono::{DateTime, Utc};
use printers::{at, text};
use serde_json::{json, Value};

/// What each row's `object` holds (`?includeObject=`, metav1.IncludeObjectPolicy).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum IncludeObject {
    /// No object (`None`).
    None,
    /// `PartialObjectMetadata`: kind, apiVersion, metadata (`Metadata`, the default).
    #[default]
    Metadata,
    /// The full object (`Object`).
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value; anything unknown or absent is
    /// `Metadata`, Kubernetes' default.
    pub fn from_query(value: Option<&str>) -> IncludeObject {
        match value {
            Some("None") => IncludeObject::None,
            Some("Object") => IncludeObject::Object,
            _ => IncludeObject::Metadata,
        }
    }
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// One column: (name, type, format, priority, description).
pub(crate) type Column = (&'static str, &'static str, &'static str, u8, &'static str);

pub(crate) const NAME: Column = ("Name", "string", "name", 0, NAME_DESC);
pub(crate) const AGE: Column = ("Age", "string", "", 0, AGE_DESC);
const CONTAINERS: Column = (
    "Containers",
    "string",
    "",
    1,
    "Names of each container in the template.",
);
const IMAGES: Column = (
    "Images",
    "string",
    "",
    1,
    "Images referenced by each container in the template.",
);

/// The columns of a resource, in printers.go's order.
fn columns(resource: &ResourceInfo) -> Vec<Column> {
    if let Some(custom) = resource.custom {
        return custom.table_columns();
    }
    let (group, kind) = (resource.group, resource.kind);
    if let Some(c) =
        printers_workloads::columns(group, kind).or_else(|| printers_core::columns(group, kind))
    {
        return c;
    }
    match (resource.group, resource.kind) {
        ("", "Pod") => vec![
            NAME,
            ("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
            ("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            AGE,
            ("IP", "string", "", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
            ("Node", "string", "", 1, "NodeName indicates in which node this pod is scheduled."),
            ("Nominated Node", "string", "", 1, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
            ("Readiness Gates", "string", "", 1, "If specified, all readiness gates will be evaluated for pod readiness."),
        ],
        ("", "Node") => vec![
            NAME,
            ("Status", "string", "", 0, "The status of the node"),
            ("Roles", "string", "", 0, "The roles of the node"),
            AGE,
            ("Version", "string", "", 0, "Kubelet Version reported by the node."),
            ("Internal-IP", "string", "", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
            ("External-IP", "string", "", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
            ("OS-Image", "string", "", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
            ("Kernel-Version", "string", "", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
            ("Container-Runtime", "string", "", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
        ],
        ("", "Namespace") => vec![NAME, ("Status", "string", "", 0, "The status of the namespace"), AGE],
        ("", "ConfigMap") => vec![NAME, ("Data", "string", "", 0, "Data contains the configuration data."), AGE],
        ("", "Secret") => vec![
            NAME,
            ("Type", "string", "", 0, "Used to facilitate programmatic handling of secret data."),
            ("Data", "string", "", 0, "Data contains the secret data."),
            AGE,
        ],
        ("", "ServiceAccount") => vec![NAME, ("Secrets", "string", "", 0, "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use."), AGE],
        ("", "Event") => vec![
            ("Last Seen", "string", "", 0, "The time at which the most recent occurrence of this event was recorded."),
            ("Type", "string", "", 0, "Type of this event (Normal, Warning), new types could be added in the future"),
            ("Reason", "string", "", 0, "This should be a short, machine understandable string that gives the reason for the transition into the object's current status."),
            ("Object", "string", "", 0, "The object that this event is about."),
            ("Subobject", "string", "", 1, "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement."),
            ("Source", "string", "", 1, "The component reporting this event."),
            ("Message", "string", "", 0, "A human-readable description of the status of this operation."),
            ("First Seen", "string", "", 1, "The time at which the event was first recorded."),
            ("Count", "string", "", 1, "The number of times this event has occurred."),
            ("Name", "string", "name", 1, NAME_DESC),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            ("Ready", "string", "", 0, "Number of the pod with ready state"),
            ("Up-to-date", "string", "", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
            ("Available", "string", "", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", "string", "", 1, "Label selector for pods."),
        ],
        ("apps", "ReplicaSet") => vec![
            NAME,
            ("Desired", "integer", "", 0, "Replicas is the number of desired replicas."),
            ("Current", "integer", "", 0, "Replicas is the most recently observed number of replicas."),
            ("Ready", "integer", "", 0, "The number of ready replicas for this replica set."),
            AGE,
            CONTAINERS,
            IMAGES,
            ("Selector", "string", "", 1, "Selector is a label query over pods that should match the replica count."),
        ],
        ("coordination.k8s.io", "Lease") => vec![NAME, ("Holder", "string", "", 0, "holderIdentity contains the identity of the holder of a current lease."), AGE],
        _ => vec![NAME, AGE],
    }
}

fn len_of(v: &Value) -> usize {
    v.as_object().map_or(0, |m| m.len())
}

/// The cells (and row conditions) of one object.
fn cells(resource: &ResourceInfo, obj: &Value, now: DateTime<Utc>) -> (Vec<Value>, Option<Value>) {
    if let Some(custom) = resource.custom {
        return (custom.table_row(obj, now), None);
    }
    let name = json!(text(obj, &["metadata", "name"]));
    let age = json!(duration::since(
        at(obj, &["metadata", "creationTimestamp"]),
        now
    ));
    let (group, kind) = (resource.group, resource.kind);
    if let Some(row) = printers_workloads::row(group, kind, obj, now)
        .or_else(|| printers_core::row(group, kind, obj, now))
    {
        return (row, None);
    }
    let row = match (resource.group, resource.kind) {
        ("", "Pod") => return printers::pod_row(obj, now),
        ("", "Node") => printers::node_row(obj, now),
        ("", "Event") => printers::event_row(obj, now),
        ("apps", "Deployment") => printers::deployment_row(obj, now),
        ("apps", "ReplicaSet") => printers::replica_set_row(obj, now),
        ("", "Namespace") => vec![name, json!(text(obj, &["status", "phase"])), age],
        ("", "ConfigMap") => {
            vec![
                name,
                json!(len_of(at(obj, &["data"])) + len_of(at(obj, &["binaryData"]))),
                age,
            ]
        }
        ("", "Secret") => vec![
            name,
            json!(text(obj, &["type"])),
            json!(len_of(at(obj, &["data"]))),
            age,
        ],
        ("", "ServiceAccount") => {
            vec![
                name,
                json!(at(obj, &["secrets"]).as_array().map_or(0, Vec::len)),
                age,
            ]
        }
        ("coordination.k8s.io", "Lease") => {
            vec![name, json!(text(obj, &["spec", "holderIdentity"])), age]
        }
        _ => vec![name, age],
    };
    (row, None)
}

/// A `metav1.LabelSelector` (JSON) as `LabelSelectorAsSelector(…).String()`
/// prints it, e.g. `app=web,tier in (a,b)` (also the `Scale` status selector).
pub fn selector_string(selector: &Value) -> String {
    printers::selector_string(selector)
}

/// Builds the `Table` for `items` of `resource`. `list_metadata` becomes the
/// table's `metadata` (resourceVersion, continue); `now` dates the AGE cells.
pub fn to_table(
    resource: &ResourceInfo,
    items: impl IntoIterator<Item = impl std::borrow::Borrow<Value>>,
    list_metadata: Value,
    include_object: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let column_definitions: Vec<Value> = columns(resource)
        .into_iter()
        .map(|(name, ty, format, priority, description)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect();
    // Items may be decoded one at a time by the iterator: a row keeps
    // only its cells (and the metadata kubectl asks for), so a table of
    // 50,000 pods never holds 50,000 decoded pods.
    let rows: Vec<Value> = items
        .into_iter()
        .map(|obj| {
            let obj: &Value = obj.borrow();
            let (cells, conditions) = cells(resource, obj, now);
            let object = match include_object {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => {
                    crate::codec::partial_object_metadata(at(obj, &["metadata"]).clone())
                }
                IncludeObject::Object => obj.clone(),
            };
            let mut row = json!({"cells": cells, "object": object});
            if let (Some(c), Some(m)) = (conditions, row.as_object_mut()) {
                m.insert("conditions".into(), c);
            }
            row
        })
        .collect();
    let metadata = if list_metadata.is_object() {
        list_metadata
    } else {
        json!({})
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions,
        "rows": rows,
    })
}

#[cfg(test)]
#[path = "schema_table_test.rs"]
mod tests;

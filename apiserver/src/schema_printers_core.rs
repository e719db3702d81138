//! Columns and rows of the service, storage, policy and RBAC kinds:
//! Service, Endpoints, EndpointSlice, PersistentVolume(Claim),
//! ResourceQuota, LimitRange, PriorityClass, Role(Binding),
//! ClusterRole(Binding), and events.k8s.io Events, following
//! kubernetes/pkg/printers/internalversion/printers.go as of 1.32.

use super::printers::{at, event_row, items, or_none, text};
use super::printers_workloads::format_labels;
use super::{Column, AGE, AGE_DESC, NAME};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

const CREATED_AT: Column = ("Created At", "date", "", 0, AGE_DESC);
const VOLUME_MODE: Column = (
    "VolumeMode",
    "string",
    "",
    1,
    "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
);
const STORAGE_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

/// The columns of a kind printed here, `None` for other kinds.
pub fn columns(group: &str, kind: &str) -> Option<Vec<Column>> {
    let binding = || {
        vec![
            NAME,
            (
                "Role",
                "string",
                "",
                0,
                "Role is the role this binding grants.",
            ),
            AGE,
            ("Users", "string", "", 1, "Users in the binding"),
            ("Groups", "string", "", 1, "Groups in the binding"),
            (
                "ServiceAccounts",
                "string",
                "",
                1,
                "ServiceAccounts in the binding",
            ),
        ]
    };
    let cols = match (group, kind) {
        ("", "Service") => vec![
            NAME,
            ("Type", "string", "", 0, "type determines how the Service is exposed."),
            ("Cluster-IP", "string", "", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
            ("External-IP", "string", "", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
            ("Port(s)", "string", "", 0, "The list of ports that are exposed by this service."),
            AGE,
            ("Selector", "string", "", 1, "Route service traffic to pods with label keys and values matching this selector."),
        ],
        ("", "Endpoints") => vec![
            NAME,
            ("Endpoints", "string", "", 0, "Endpoints of the service"),
            AGE,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            ("AddressType", "string", "", 0, "addressType specifies the type of address carried by this EndpointSlice."),
            ("Ports", "string", "", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
            ("Endpoints", "string", "", 0, "endpoints is a list of unique endpoints in this slice."),
            AGE,
        ],
        ("", "PersistentVolume") => vec![
            NAME,
            ("Capacity", "string", "", 0, "capacity is the description of the persistent volume's resources and capacity."),
            ("Access Modes", "string", "", 0, "accessModes contains all ways the volume can be mounted."),
            ("Reclaim Policy", "string", "", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim."),
            ("Status", "string", "", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim."),
            ("Claim", "string", "", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim."),
            ("StorageClass", "string", "", 0, "storageClassName is the name of StorageClass to which this persistent volume belongs."),
            ("VolumeAttributesClass", "string", "", 0, "Name of VolumeAttributesClass to which this persistent volume belongs."),
            ("Reason", "string", "", 0, "reason is a brief CamelCase string that describes any failure."),
            AGE,
            VOLUME_MODE,
        ],
        ("", "PersistentVolumeClaim") => vec![
            NAME,
            ("Status", "string", "", 0, "phase represents the current phase of PersistentVolumeClaim."),
            ("Volume", "string", "", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
            ("Capacity", "string", "", 0, "capacity represents the actual resources of the underlying volume."),
            ("Access Modes", "string", "", 0, "accessModes contains the desired access modes the volume should have."),
            ("StorageClass", "string", "", 0, "storageClassName is the name of the StorageClass required by the claim."),
            ("VolumeAttributesClass", "string", "", 0, "volumeAttributesClassName may be used to set the VolumeAttributesClass used by this claim."),
            AGE,
            VOLUME_MODE,
        ],
        ("", "ResourceQuota") => vec![
            NAME,
            AGE,
            ("Request", "string", "", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
            ("Limit", "string", "", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
        ],
        ("", "LimitRange") => vec![NAME, CREATED_AT],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            NAME,
            ("Value", "integer", "", 0, "value represents the integer value of this priority class."),
            ("Global-Default", "boolean", "", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority."),
            AGE,
            ("PreemptionPolicy", "string", "", 0, "preemptionPolicy is the Policy for preempting pods with lower priority."),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            NAME,
            ("Provisioner", "string", "", 0, "provisioner indicates the type of the provisioner."),
            ("ReclaimPolicy", "string", "", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class."),
            ("VolumeBindingMode", "string", "", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound."),
            ("AllowVolumeExpansion", "string", "", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
            AGE,
        ],
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => vec![NAME, CREATED_AT],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => binding(),
        _ => return None,
    };
    Some(cols)
}

/// The cells of one object of a kind printed here, `None` for other kinds.
pub fn row(group: &str, kind: &str, obj: &Value, now: DateTime<Utc>) -> Option<Vec<Value>> {
    let name = json!(text(obj, &["metadata", "name"]));
    let age = json!(super::duration::since(
        at(obj, &["metadata", "creationTimestamp"]),
        now
    ));
    let created_at = || {
        json!(
            super::duration::parse_time(at(obj, &["metadata", "creationTimestamp"]))
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
                .unwrap_or_default()
        )
    };
    let cells = match (group, kind) {
        ("", "Service") => vec![
            name,
            json!(text(obj, &["spec", "type"])),
            json!(or_none(text(obj, &["spec", "clusterIP"]))),
            json!(service_external_ip(obj)),
            json!(service_ports(items(obj, &["spec", "ports"]))),
            age,
            json!(format_labels(at(obj, &["spec", "selector"]))),
        ],
        ("", "Endpoints") => vec![name, json!(format_endpoints(obj)), age],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = items(obj, &["ports"])
                .iter()
                .map(|p| match at(p, &["port"]).as_i64() {
                    Some(n) => n.to_string(),
                    None if !text(p, &["name"]).is_empty() => text(p, &["name"]).to_string(),
                    None => "*".to_string(),
                })
                .collect();
            let addresses: Vec<String> = items(obj, &["endpoints"])
                .iter()
                .flat_map(|e| items(e, &["addresses"]).iter())
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            vec![
                name,
                json!(text(obj, &["addressType"])),
                json!(list_with_more(ports, 3)),
                json!(list_with_more(addresses, 3)),
                age,
            ]
        }
        ("", "PersistentVolume") => {
            let claim = at(obj, &["spec", "claimRef"]);
            let claim = if claim.is_object() {
                format!("{}/{}", text(claim, &["namespace"]), text(claim, &["name"]))
            } else {
                String::new()
            };
            let class = annotation(obj, STORAGE_CLASS_ANNOTATION)
                .unwrap_or_else(|| text(obj, &["spec", "storageClassName"]));
            vec![
                name,
                json!(quantity_or_zero(at(obj, &["spec", "capacity", "storage"]))),
                json!(access_modes(items(obj, &["spec", "accessModes"]))),
                json!(text(obj, &["spec", "persistentVolumeReclaimPolicy"])),
                json!(terminating_or(obj, text(obj, &["status", "phase"]))),
                json!(claim),
                json!(class),
                json!(unset_or(at(obj, &["spec", "volumeAttributesClassName"]))),
                json!(text(obj, &["status", "reason"])),
                age,
                json!(unset_or(at(obj, &["spec", "volumeMode"]))),
            ]
        }
        ("", "PersistentVolumeClaim") => {
            let bound = !text(obj, &["spec", "volumeName"]).is_empty();
            let (capacity, modes) = if bound {
                (
                    quantity_or_zero(at(obj, &["status", "capacity", "storage"])),
                    access_modes(items(obj, &["status", "accessModes"])),
                )
            } else {
                (String::new(), String::new())
            };
            let class = annotation(obj, STORAGE_CLASS_ANNOTATION)
                .unwrap_or_else(|| text(obj, &["spec", "storageClassName"]));
            vec![
                name,
                json!(terminating_or(obj, text(obj, &["status", "phase"]))),
                json!(text(obj, &["spec", "volumeName"])),
                json!(capacity),
                json!(modes),
                json!(class),
                json!(unset_or(at(obj, &["spec", "volumeAttributesClassName"]))),
                age,
                json!(unset_or(at(obj, &["spec", "volumeMode"]))),
            ]
        }
        ("", "ResourceQuota") => {
            let (request, limit) = quota_columns(obj);
            vec![name, age, json!(request), json!(limit)]
        }
        ("", "LimitRange") => vec![name, created_at()],
        ("scheduling.k8s.io", "PriorityClass") => vec![
            name,
            json!(at(obj, &["value"]).as_i64().unwrap_or(0)),
            json!(at(obj, &["globalDefault"]).as_bool().unwrap_or(false)),
            age,
            json!(text(obj, &["preemptionPolicy"])),
        ],
        ("storage.k8s.io", "StorageClass") => {
            // kubectl marks the default class after its name.
            let default = at(
                obj,
                &[
                    "metadata",
                    "annotations",
                    "storageclass.kubernetes.io/is-default-class",
                ],
            )
            .as_str()
                == Some("true");
            let shown = match name.as_str() {
                Some(n) if default => json!(format!("{n} (default)")),
                _ => name,
            };
            vec![
                shown,
                json!(text(obj, &["provisioner"])),
                json!(text(obj, &["reclaimPolicy"])),
                json!(text(obj, &["volumeBindingMode"])),
                json!(at(obj, &["allowVolumeExpansion"])
                    .as_bool()
                    .unwrap_or(false)),
                age,
            ]
        }
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => vec![name, created_at()],
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let subjects = items(obj, &["subjects"]);
            let of_kind = |k: &str| -> String {
                subjects
                    .iter()
                    .filter(|s| text(s, &["kind"]) == k)
                    .map(|s| match k {
                        "ServiceAccount" => {
                            format!("{}/{}", text(s, &["namespace"]), text(s, &["name"]))
                        }
                        _ => text(s, &["name"]).to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    text(obj, &["roleRef", "kind"]),
                    text(obj, &["roleRef", "name"])
                )),
                age,
                json!(of_kind("User")),
                json!(of_kind("Group")),
                json!(of_kind("ServiceAccount")),
            ]
        }
        ("events.k8s.io", "Event") => event_row(&as_core_event(obj), now),
        _ => return None,
    };
    Some(cells)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    at(obj, &["metadata", "annotations", key]).as_str()
}

fn unset_or(v: &Value) -> String {
    v.as_str().unwrap_or("<unset>").to_string()
}

fn terminating_or<'a>(obj: &Value, phase: &'a str) -> &'a str {
    if at(obj, &["metadata", "deletionTimestamp"]).is_null() {
        phase
    } else {
        "Terminating"
    }
}

fn quantity_or_zero(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

/// `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order, once each.
fn access_modes(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// `listWithMoreString`: the first `max` entries, then `+ N more...`;
/// `<unset>` when empty.
fn list_with_more(list: Vec<String>, max: usize) -> String {
    if list.is_empty() {
        return "<unset>".to_string();
    }
    let count = list.len();
    if count > max {
        return format!("{} + {} more...", list[..max].join(","), count - max);
    }
    list.join(",")
}

/// `loadBalancerStatusStringer`: ingress IPs or hostnames; longer than 16
/// characters is cut to 13 and `...` (the server prints the wide form only
/// in the wide column, so the short form is used here).
fn load_balancer_ingress(svc: &Value) -> String {
    let ingress: Vec<&str> = items(svc, &["status", "loadBalancer", "ingress"])
        .iter()
        .map(|i| {
            let ip = text(i, &["ip"]);
            if ip.is_empty() {
                text(i, &["hostname"])
            } else {
                ip
            }
        })
        .filter(|s| !s.is_empty())
        .collect();
    let r = ingress.join(",");
    if r.len() > 16 {
        format!("{}...", &r[..13])
    } else {
        r
    }
}

/// `getServiceExternalIP`.
fn service_external_ip(svc: &Value) -> String {
    let external: Vec<&str> = items(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    match text(svc, &["spec", "type"]) {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let lb = load_balancer_ingress(svc);
            let mut all: Vec<String> = Vec::new();
            if !lb.is_empty() {
                all.extend(lb.split(',').map(str::to_string));
            }
            all.extend(external.iter().map(|s| s.to_string()));
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(svc, &["spec", "externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    }
}

/// `makePortString`: `port/PROTO` or `port:nodePort/PROTO`, comma-joined.
fn service_ports(ports: &[Value]) -> String {
    let list: Vec<String> = ports
        .iter()
        .map(|p| {
            let port = at(p, &["port"]).as_i64().unwrap_or(0);
            let protocol = text(p, &["protocol"]);
            match at(p, &["nodePort"]).as_i64().filter(|n| *n != 0) {
                Some(node) => format!("{port}:{node}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    if list.is_empty() {
        "<none>".to_string()
    } else {
        list.join(",")
    }
}

/// `formatEndpoints`: `ip:port` pairs, at most three, then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = items(ep, &["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut count = 0usize;
    for ss in subsets {
        let addresses: Vec<&str> = items(ss, &["addresses"])
            .iter()
            .map(|a| text(a, &["ip"]))
            .collect();
        let ports = items(ss, &["ports"]);
        if ports.is_empty() {
            count += addresses.len();
            list.extend(addresses.iter().map(|a| a.to_string()));
            continue;
        }
        for p in ports {
            let port = at(p, &["port"]).as_i64().unwrap_or(0);
            count += addresses.len();
            for a in &addresses {
                // net.JoinHostPort brackets IPv6 addresses.
                list.push(if a.contains(':') {
                    format!("[{a}]:{port}")
                } else {
                    format!("{a}:{port}")
                });
            }
        }
    }
    if count > MAX {
        list.truncate(MAX);
        return format!("{} + {} more...", list.join(","), count - MAX);
    }
    list.join(",")
}

/// The REQUEST and LIMIT cells: `resource: used/hard` per hard limit,
/// sorted by name; `limits.*` resources go to LIMIT.
fn quota_columns(quota: &Value) -> (String, String) {
    let empty = Map::new();
    let hard = at(quota, &["status", "hard"]).as_object().unwrap_or(&empty);
    let used = at(quota, &["status", "used"]);
    let mut request = Vec::new();
    let mut limit = Vec::new();
    let mut names: Vec<&String> = hard.keys().collect();
    names.sort();
    for resource in names {
        let h = &hard[resource.as_str()];
        let cell = format!(
            "{resource}: {}/{}",
            quantity_or_zero(at(used, &[resource])),
            quantity_or_zero(h)
        );
        if resource.split('.').next() == Some("limits") && resource.contains('.') {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    (request.join(", "), limit.join(", "))
}

/// An events.k8s.io/v1 Event in core/v1's field names, for `event_row`
/// (Kubernetes prints both from its internal Event).
fn as_core_event(ev: &Value) -> Value {
    let mut out = ev.clone();
    let renames = [
        ("regarding", "involvedObject"),
        ("note", "message"),
        ("deprecatedSource", "source"),
        ("deprecatedFirstTimestamp", "firstTimestamp"),
        ("deprecatedLastTimestamp", "lastTimestamp"),
        ("deprecatedCount", "count"),
        ("reportingController", "reportingComponent"),
    ];
    if let Some(m) = out.as_object_mut() {
        for (from, to) in renames {
            if let Some(v) = m.remove(from) {
                m.insert(to.to_string(), v);
            }
        }
    }
    out
}

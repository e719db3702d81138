//! What the server itself sets on objects, per operation and kind (the
//! `PrepareForCreate`/`PrepareForUpdate` halves of Kubernetes'
//! `rest.RESTCreateStrategy`/`RESTUpdateStrategy`).
//!
//! - create: `uid`, `creationTimestamp`, `generation: 1`; `generateName`
//!   expanded; server-owned fields cleared; pods start `Pending` with a QoS
//!   class, namespaces `Active`; other kinds with a `status` subresource
//!   (nodes excepted) start with no status; Jobs get their generated
//!   selector and pod-template labels (`batch.kubernetes.io/controller-uid`).
//! - update: identity and server-owned metadata copied from the stored
//!   object; `generation` bumped only when the defaulted `spec` changes
//!   (for custom objects: anything outside metadata and status)
//!   (a PUT leaving out defaulted fields is no change); for kinds with a
//!   `status` subresource the main resource cannot change `status` and the
//!   `status` subresource changes only `status`; CustomResourceDefinitions
//!   get their status from [`crate::crd::set_status`] on every write.

use chrono::{DateTime, SecondsFormat, Utc};
use rand::Rng;
use serde_json::{json, Map, Value};

use crate::resources::ResourceInfo;

/// Characters `generateName` suffixes use: apimachinery's
/// `utilrand.String` alphabet (no vowels, no confusable digits).
const GENERATE_NAME_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// Length of the random `generateName` suffix, as Kubernetes.
const GENERATE_NAME_SUFFIX_LEN: usize = 5;

/// An RFC 3339 timestamp with seconds precision, as `metav1.Time`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `metadata` of an object, created if missing or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    match obj.get_mut("metadata").and_then(Value::as_object_mut) {
        Some(m) => m,
        // Just set to an object above.
        None => unreachable!("metadata was just set to an object"),
    }
}

/// A string field of `metadata`.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Whether a kind has a `status` subresource (and so split status writes).
pub fn has_status(resource: &ResourceInfo) -> bool {
    resource.subresources.contains(&"status")
}

/// Whether PUT on a missing object creates it (Kubernetes'
/// `AllowCreateOnUpdate`: true for leases and events, whose writers
/// upsert; false for the rest).
pub fn allow_create_on_update(resource: &ResourceInfo) -> bool {
    matches!(resource.kind, "Lease" | "Event")
}

/// Expands `generateName` when `name` is empty.
pub fn expand_generate_name(obj: &mut Value) {
    let meta = meta_mut(obj);
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if has_name {
        return;
    }
    if let Some(prefix) = meta
        .get("generateName")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
    {
        let name = format!("{prefix}{}", random_name_suffix());
        meta.insert("name".into(), Value::String(name));
    }
}

/// Five random characters for a generated name (Kubernetes'
/// `SimpleNameGenerator`: no vowels, no confusable digits).
pub fn random_name_suffix() -> String {
    let mut rng = rand::rng();
    (0..GENERATE_NAME_SUFFIX_LEN)
        .map(|_| GENERATE_NAME_ALPHABET[rng.random_range(0..GENERATE_NAME_ALPHABET.len())] as char)
        .collect()
}

/// Sets the server-owned metadata of a new object and the kind's initial
/// state.
pub fn prepare_for_create(resource: &ResourceInfo, obj: &mut Value, now: DateTime<Utc>) {
    let meta = meta_mut(obj);
    meta.insert(
        "uid".into(),
        Value::String(uuid::Uuid::new_v4().to_string()),
    );
    meta.insert("creationTimestamp".into(), Value::String(timestamp(now)));
    meta.insert("generation".into(), json!(1));
    for f in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(f);
    }
    match (resource.group, resource.kind) {
        ("batch", "Job") => generate_job_selector(obj),
        // A node may register with its status (kubelet does); pods and
        // namespaces get theirs below.
        ("", "Node" | "Pod" | "Namespace") => {}
        // Every other kind with a status subresource starts with an empty
        // status: its controller writes it (the strategies'
        // `PrepareForCreate`, e.g. `deployment.Status = DeploymentStatus{}`).
        _ if has_status(resource) => {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
        _ => {}
    }
    if crate::crd::is_crd(resource) {
        crate::crd::apply_defaults(obj);
        crate::crd::set_status(obj, None, now);
    }
    match resource.kind {
        "Pod" => {
            // A new pod's status is the server's: Pending, plus its QoS class
            // (Kubernetes' podStrategy.PrepareForCreate).
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        "Namespace" => {
            obj["status"] = json!({"phase": "Active"});
        }
        _ => {}
    }
}

/// The label the generated selector of a Job matches on, with the job's uid.
pub const JOB_CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
/// The label a Job's pods carry with the job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";

/// Kubernetes' job strategy `generateSelector`: unless
/// `spec.manualSelector` is true, a new Job's pod template gets the
/// `job-name` and `controller-uid` labels (legacy and
/// `batch.kubernetes.io/` forms) and its selector matches on the uid.
/// Labels the user already set are kept; validation rejects conflicts.
fn generate_job_selector(job: &mut Value) {
    if job.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = meta_str(job, "name").unwrap_or_default().to_string();
    let uid = meta_str(job, "uid").unwrap_or_default().to_string();
    let Some(spec) = job.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    let Some(template) = object_child(spec, "template") else {
        return;
    };
    let Some(labels) = object_child(template, "metadata").and_then(|m| object_child(m, "labels"))
    else {
        return;
    };
    if let Some(labels) = labels.as_object_mut() {
        for key in ["job-name", JOB_NAME_LABEL] {
            labels.entry(key).or_insert_with(|| json!(name));
        }
        for key in ["controller-uid", JOB_CONTROLLER_UID_LABEL] {
            labels.entry(key).or_insert_with(|| json!(uid));
        }
    }
    let Some(match_labels) =
        object_child(spec, "selector").and_then(|s| object_child(s, "matchLabels"))
    else {
        return;
    };
    if let Some(m) = match_labels.as_object_mut() {
        m.entry(JOB_CONTROLLER_UID_LABEL)
            .or_insert_with(|| json!(uid));
    }
}

/// `obj[key]`, created as `{}` when absent or null; `None` when it holds
/// something other than an object (validation reports that).
fn object_child<'a>(obj: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    let map = obj.as_object_mut()?;
    let slot = map.entry(key).or_insert_with(|| json!({}));
    if slot.is_null() {
        *slot = json!({});
    }
    Some(slot).filter(|v| v.is_object())
}

/// Prepares `new` (the client's desired object) for writing over `old`.
/// `status_only` is true on the `status` subresource.
pub fn prepare_for_update(
    resource: &ResourceInfo,
    new: &mut Value,
    old: &Value,
    status_only: bool,
) {
    if status_only {
        // Only status changes: start from the stored object.
        let status = new.get("status").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        return;
    }
    if has_status(resource) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(o) = new.as_object_mut() {
                    o.remove("status");
                }
            }
        }
    }
    let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let meta = meta_mut(new);
    for f in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
    ] {
        match old_meta.get(f) {
            Some(v) => meta.insert(f.into(), v.clone()),
            None => meta.remove(f),
        };
    }
    meta.remove("selfLink");
    if (resource.group, resource.kind) == ("", "Namespace") {
        // Only the `finalize` subresource changes a namespace's finalizers.
        match old.pointer("/spec/finalizers") {
            Some(f) => {
                let f = f.clone();
                if let Some(spec) = object_child(new, "spec") {
                    spec["finalizers"] = f;
                }
            }
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("finalizers");
                }
            }
        }
    }
    if crate::crd::is_crd(resource) {
        crate::defaults::apply_defaults(resource, new);
        crate::crd::set_status(new, Some(old), Utc::now());
    }
    // Compare defaulted specs: Kubernetes defaults while decoding, so a
    // PUT that leaves out defaulted fields does not change the spec.
    crate::defaults::apply_defaults(resource, new);
    let changed = match resource.custom {
        // A custom object's generation follows everything but metadata
        // (and status, with a status subresource): the CR strategy's
        // PrepareForUpdate.
        Some(_) => crate::crd::spec_changed(new, old, has_status(resource)),
        None => new.get("spec") != old.get("spec"),
    };
    if changed {
        let g = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(new).insert("generation".into(), json!(g + 1));
    }
}

/// A pod's QoS class (Kubernetes' `qos.GetPodQOS`, for cpu and memory):
/// BestEffort with no requests or limits; Guaranteed when every container
/// limits cpu and memory and requests (if given) equal the limits;
/// Burstable otherwise.
pub fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod.pointer(&format!("/spec/{f}")).and_then(Value::as_array))
        .flatten()
        .collect();
    let res =
        |c: &Value, kind: &str, r: &str| c.pointer(&format!("/resources/{kind}/{r}")).cloned();
    let any = containers.iter().any(|c| {
        ["requests", "limits"]
            .iter()
            .any(|k| ["cpu", "memory"].iter().any(|r| res(c, k, r).is_some()))
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"]
            .iter()
            .all(|r| match (res(c, "limits", r), res(c, "requests", r)) {
                (Some(l), Some(q)) => l == q,
                (Some(_), None) => true,
                _ => false,
            })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn create_sets_identity_and_pod_status() {
        let pods = find("", "v1", "pods").unwrap();
        let mut p = json!({"metadata": {"generateName": "web-", "resourceVersion": "9"},
                           "spec": {"containers": [{"name": "a", "image": "i"}]},
                           "status": {"phase": "Running"}});
        expand_generate_name(&mut p);
        prepare_for_create(pods, &mut p, Utc::now());
        let name = meta_str(&p, "name").unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert!(meta_str(&p, "uid").is_some());
        assert!(meta_str(&p, "resourceVersion").is_none());
        assert_eq!(p["metadata"]["generation"], 1);
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn update_keeps_identity_status_and_bumps_generation_on_spec() {
        let pods = find("", "v1", "pods").unwrap();
        let spec = json!({"containers": [{"name": "a", "image": "i:1"}]});
        let mut old = json!({"metadata": {"name": "p", "uid": "u1", "generation": 1, "creationTimestamp": "t"},
                         "spec": spec, "status": {"phase": "Running"}});
        crate::defaults::apply_defaults(pods, &mut old);
        // The same spec without its defaults is no spec change.
        let mut new = json!({"metadata": {"name": "p", "uid": "other", "labels": {"x": "y"}},
                             "spec": spec, "status": {"phase": "Failed"}});
        prepare_for_update(pods, &mut new, &old, false);
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["labels"]["x"], "y");
        assert_eq!(new["metadata"]["generation"], 1);
        assert_eq!(new["status"]["phase"], "Running");

        let mut new = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "i:2"}]}});
        prepare_for_update(pods, &mut new, &old, false);
        assert_eq!(new["metadata"]["generation"], 2);

        let mut new = json!({"metadata": {"name": "p", "labels": {"x": "y"}}, "spec": {"a": 9}, "status": {"phase": "Succeeded"}});
        prepare_for_update(pods, &mut new, &old, true);
        assert_eq!(new["spec"], old["spec"]);
        assert_eq!(new["status"]["phase"], "Succeeded");
        assert!(new["metadata"].get("labels").is_none());
    }

    #[test]
    fn workload_generation_and_status_on_create() {
        let deployments = find("apps", "v1", "deployments").unwrap();
        let spec = json!({"selector": {"matchLabels": {"app": "a"}},
                          "template": {"metadata": {"labels": {"app": "a"}},
                                       "spec": {"containers": [{"name": "c", "image": "i:1"}]}}});
        let mut d = json!({"metadata": {"name": "d"}, "spec": spec, "status": {"replicas": 5}});
        prepare_for_create(deployments, &mut d, Utc::now());
        // The controller owns a new object's status.
        assert!(d.get("status").is_none());
        crate::defaults::apply_defaults(deployments, &mut d);
        d["status"] = json!({"replicas": 1});

        // A PUT of the manifest as written (no defaults) keeps generation.
        let mut same = json!({"metadata": {"name": "d"}, "spec": spec});
        prepare_for_update(deployments, &mut same, &d, false);
        assert_eq!(same["metadata"]["generation"], 1);
        assert_eq!(same["status"]["replicas"], 1);

        // A status write never bumps it.
        let mut status = d.clone();
        status["status"]["replicas"] = json!(3);
        prepare_for_update(deployments, &mut status, &d, true);
        assert_eq!(status["metadata"]["generation"], 1);

        // A label change does not bump it; a spec change does.
        let mut labelled = d.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        prepare_for_update(deployments, &mut labelled, &d, false);
        assert_eq!(labelled["metadata"]["generation"], 1);
        let mut scaled = d.clone();
        scaled["spec"]["replicas"] = json!(3);
        prepare_for_update(deployments, &mut scaled, &d, false);
        assert_eq!(scaled["metadata"]["generation"], 2);
    }

    #[test]
    fn job_selector_is_generated() {
        let jobs = find("batch", "v1", "jobs").unwrap();
        let mut j = json!({"metadata": {"name": "pi"},
                           "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "Never"}}}});
        prepare_for_create(jobs, &mut j, Utc::now());
        let uid = meta_str(&j, "uid").unwrap().to_string();
        assert_eq!(
            j["spec"]["selector"],
            json!({"matchLabels": {JOB_CONTROLLER_UID_LABEL: uid}})
        );
        let labels = &j["spec"]["template"]["metadata"]["labels"];
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels["job-name"], "pi");
        assert_eq!(labels["controller-uid"], json!(uid));

        let mut manual =
            json!({"metadata": {"name": "m"}, "spec": {"manualSelector": true, "template": {}}});
        prepare_for_create(jobs, &mut manual, Utc::now());
        assert!(manual["spec"].get("selector").is_none());
    }

    #[test]
    fn qos_classes() {
        let c = |res: Value| json!({"spec": {"containers": [{"name": "a", "resources": res}]}});
        assert_eq!(qos_class(&c(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&c(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&c(json!({"requests": {"cpu": "1"}}))),
            "Burstable"
        );
    }
}

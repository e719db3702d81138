//! ControllerRevisions (apps/v1): the template history of DaemonSets and
//! StatefulSets, which `kubectl rollout history|undo` read
//! (`pkg/controller/history`). Each distinct pod template is one revision,
//! named `<owner>-<hash>`, holding `{"spec":{"template":…}}` with
//! `"$patch": "replace"` as Kubernetes stores it; pods carry the hash in the
//! `controller-revision-hash` label (the hash for DaemonSets, the
//! revision's name for StatefulSets, as in Kubernetes).
//!
//! [`plan_revisions`] is the pure decision; [`sync_revisions`] carries it
//! out through the API for either owner kind.

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::Store;
use kube::{Api, Client};
use serde_json::json;

use crate::deployment::hash::compute_hash;
use crate::error::{is_status, ControllerError};
use crate::owner::{controller_ref, new_controller_ref};

/// The pod label with the revision's hash (`ControllerRevisionHashLabelKey`).
pub const CONTROLLER_REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// The revision data of a template: a strategic-merge patch that replaces
/// the owner's template (`getPatch` of the DaemonSet and StatefulSet
/// controllers).
pub fn revision_data(template: &PodTemplateSpec) -> serde_json::Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(obj) = t.as_object_mut() {
        obj.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The hash naming a template's revision.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    compute_hash(template, collision_count)
}

/// The template stored in a revision, if it holds one.
pub fn revision_template(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.0.pointer("/spec/template")?.clone();
    if let Some(obj) = t.as_object_mut() {
        obj.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

/// A new revision of `owner` (`apps/v1` `kind`) for `template`.
pub fn new_revision(
    kind: &str,
    owner: &ObjectMeta,
    template: &PodTemplateSpec,
    hash: &str,
    revision: i64,
    labels: Option<std::collections::BTreeMap<String, String>>,
) -> ControllerRevision {
    let mut labels = labels.unwrap_or_default();
    labels.insert(CONTROLLER_REVISION_HASH_LABEL.into(), hash.to_string());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!(
                "{}-{hash}",
                owner.name.as_deref().unwrap_or_default()
            )),
            namespace: owner.namespace.clone(),
            labels: Some(labels),
            owner_references: new_controller_ref("apps/v1", kind, owner).map(|r| vec![r]),
            ..Default::default()
        },
        data: RawExtension(revision_data(template)),
        revision: Some(revision),
    }
}

/// What to do about revisions for the current template.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionPlan {
    /// The name of the current template's revision.
    pub current_name: String,
    /// The revision number it has or gets.
    pub current_revision: i64,
    /// Create it (it does not exist yet).
    pub create: bool,
    /// It exists with an older number (a rollback): renumber it.
    pub renumber: bool,
    /// Old revisions beyond `revisionHistoryLimit` that no pod uses.
    pub delete: Vec<String>,
}

/// Plans the revisions of an owner whose current template hashes to
/// `hash`. `in_use` holds the hashes pods still carry; those revisions are
/// kept whatever the limit.
pub fn plan_revisions(
    owner_name: &str,
    revisions: &[&ControllerRevision],
    hash: &str,
    history_limit: i32,
    in_use: &[&str],
) -> RevisionPlan {
    let name = format!("{owner_name}-{hash}");
    let max = revisions
        .iter()
        .map(|r| r.revision.unwrap_or(0))
        .max()
        .unwrap_or(0);
    let existing = revisions
        .iter()
        .find(|r| r.metadata.name.as_deref() == Some(name.as_str()));
    let (current_revision, create, renumber) = match existing {
        Some(r) if r.revision.unwrap_or(0) == max => (max, false, false),
        Some(_) => (max + 1, false, true),
        None => (max + 1, true, false),
    };
    let mut old: Vec<&&ControllerRevision> = revisions
        .iter()
        .filter(|r| r.metadata.name.as_deref() != Some(name.as_str()))
        .filter(|r| {
            let h = r
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(CONTROLLER_REVISION_HASH_LABEL));
            !h.is_some_and(|h| in_use.contains(&h.as_str()))
        })
        .collect();
    old.sort_by_key(|r| r.revision.unwrap_or(0));
    let extra = old
        .len()
        .saturating_sub(usize::try_from(history_limit.max(0)).unwrap_or(0));
    RevisionPlan {
        current_name: name,
        current_revision,
        create,
        renumber,
        delete: old
            .into_iter()
            .take(extra)
            .filter_map(|r| r.metadata.name.clone())
            .collect(),
    }
}

/// The owner whose template history [`sync_revisions`] keeps.
pub struct Owner<'a> {
    /// `DaemonSet` or `StatefulSet` (apps/v1).
    pub kind: &'static str,
    /// Its metadata (name, namespace, uid).
    pub meta: &'a ObjectMeta,
    /// Its current pod template.
    pub template: &'a PodTemplateSpec,
    /// `status.collisionCount`.
    pub collision_count: Option<i32>,
    /// `spec.revisionHistoryLimit` (10 by default).
    pub history_limit: i32,
}

/// The owner's ControllerRevisions, from the informer cache.
pub fn owned_revisions(
    store: &Store<ControllerRevision>,
    meta: &ObjectMeta,
) -> Vec<std::sync::Arc<ControllerRevision>> {
    let uid = meta.uid.as_deref().unwrap_or_default();
    store
        .state()
        .into_iter()
        .filter(|r| r.metadata.namespace == meta.namespace)
        .filter(|r| controller_ref(&r.metadata).is_some_and(|c| c.uid == uid))
        .collect()
}

/// Brings the owner's ControllerRevisions up to date: creates (or, after
/// a rollback, renumbers) the current template's revision and trims the
/// history beyond the limit, keeping the hashes in `in_use`. Returns the
/// current template's hash.
pub async fn sync_revisions(
    client: &Client,
    store: &Store<ControllerRevision>,
    owner: &Owner<'_>,
    in_use: &[&str],
) -> Result<String, ControllerError> {
    let ns = owner.meta.namespace.clone().unwrap_or_default();
    let hash = template_hash(owner.template, owner.collision_count);
    let all = owned_revisions(store, owner.meta);
    let owned: Vec<&ControllerRevision> = all.iter().map(|r| r.as_ref()).collect();
    let plan = plan_revisions(
        owner.meta.name.as_deref().unwrap_or_default(),
        &owned,
        &hash,
        owner.history_limit,
        in_use,
    );
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    if plan.create {
        let rev = new_revision(
            owner.kind,
            owner.meta,
            owner.template,
            &hash,
            plan.current_revision,
            owner
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone()),
        );
        match api.create(&PostParams::default(), &rev).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 409) => {}
            Err(e) => {
                return Err(ControllerError::api(
                    format!("creating controllerrevision {ns}/{}", plan.current_name),
                    e,
                ))
            }
        }
    } else if plan.renumber {
        let patch = json!({"revision": plan.current_revision});
        api.patch(
            &plan.current_name,
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| {
            ControllerError::api(
                format!("renumbering controllerrevision {ns}/{}", plan.current_name),
                e,
            )
        })?;
    }
    for name in &plan.delete {
        if let Err(e) = api.delete(name, &DeleteParams::default()).await {
            if !is_status(&e, 404) {
                tracing::debug!(revision = %name, error = %e, "could not trim revision history");
            }
        }
    }
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::{labels, template};

    fn rev(name: &str, hash: &str, n: i64) -> ControllerRevision {
        ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some(labels(&[(CONTROLLER_REVISION_HASH_LABEL, hash)])),
                ..Default::default()
            },
            data: RawExtension(serde_json::Value::Null),
            revision: Some(n),
        }
    }

    #[test]
    fn revisions_are_created_renumbered_and_trimmed() {
        let (a, b, c) = (
            rev("ds-a", "a", 1),
            rev("ds-b", "b", 2),
            rev("ds-c", "c", 3),
        );
        let all = [&a, &b, &c];
        // New template: revision 4; with limit 1, the oldest unused go.
        let p = plan_revisions("ds", &all, "d", 1, &["b"]);
        assert_eq!((p.current_revision, p.create, p.renumber), (4, true, false));
        assert_eq!(p.delete, ["ds-a"]);
        // Back to template a (a rollback): renumbered to 4.
        let p = plan_revisions("ds", &all, "a", 10, &[]);
        assert_eq!(
            (
                p.current_name.as_str(),
                p.current_revision,
                p.create,
                p.renumber
            ),
            ("ds-a", 4, false, true)
        );
        // Current already newest: nothing.
        let p = plan_revisions("ds", &all, "c", 10, &[]);
        assert_eq!(
            (p.current_revision, p.create, p.renumber),
            (3, false, false)
        );
        assert!(p.delete.is_empty());
    }

    #[test]
    fn revision_data_round_trips_the_template() {
        let t = template("busybox:2");
        let owner = ObjectMeta {
            name: Some("ds".into()),
            uid: Some("u".into()),
            namespace: Some("default".into()),
            ..Default::default()
        };
        let r = new_revision("DaemonSet", &owner, &t, "h", 1, None);
        assert_eq!(r.metadata.name.as_deref(), Some("ds-h"));
        assert_eq!(r.data.0["spec"]["template"]["$patch"], "replace");
        assert_eq!(revision_template(&r), Some(t));
    }
}

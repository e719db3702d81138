//! `ownerReferences`: the controller reference that ties a ReplicaSet to
//! its Deployment and a Pod to its ReplicaSet, and adoption/release
//! (apimachinery's `ControllerRefManager`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The owner reference with `controller: true`, if any.
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta` is controlled by the object with `uid`.
pub fn is_controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_ref(meta).is_some_and(|r| r.uid == uid)
}

/// A controller reference to an owner (`controller: true`,
/// `blockOwnerDeletion: true`, as `metav1.NewControllerRef` makes).
pub fn new_controller_ref(
    api_version: &str,
    kind: &str,
    owner: &ObjectMeta,
) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: owner.name.clone()?,
        uid: owner.uid.clone()?,
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// What a controller should do about one candidate dependent
/// (`ClaimObject` in apimachinery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and still selected: keep.
    Owned,
    /// Ours but no longer selected: remove our reference.
    Release,
    /// Nobody's and selected: add our controller reference.
    Adopt,
    /// Not ours (someone else controls it, or it is not selected).
    Ignore,
}

/// Decides a claim. `owner_deleting` and `dependent_deleting` stop
/// adoption, as in Kubernetes (an owner being deleted adopts nothing, and a
/// dependent being deleted is not adopted).
pub fn claim(
    owner_uid: &str,
    owner_deleting: bool,
    dependent: &ObjectMeta,
    selected: bool,
) -> Claim {
    match controller_ref(dependent) {
        Some(r) if r.uid == owner_uid => {
            // Kubernetes releases only while the owner is not being
            // deleted (then the garbage collector owns the outcome).
            if selected || owner_deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None => {
            if selected && !owner_deleting && dependent.deletion_timestamp.is_none() {
                Claim::Adopt
            } else {
                Claim::Ignore
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(owner: Option<(&str, bool)>) -> ObjectMeta {
        ObjectMeta {
            owner_references: owner.map(|(uid, controller)| {
                vec![OwnerReference {
                    uid: uid.into(),
                    controller: Some(controller),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }
    }

    #[test]
    fn claims() {
        let cases = [
            (meta(Some(("me", true))), true, false, Claim::Owned),
            (meta(Some(("me", true))), false, false, Claim::Release),
            (meta(Some(("me", true))), false, true, Claim::Owned),
            (meta(Some(("other", true))), true, false, Claim::Ignore),
            (meta(Some(("other", false))), true, false, Claim::Adopt),
            (meta(None), true, false, Claim::Adopt),
            (meta(None), true, true, Claim::Ignore),
            (meta(None), false, false, Claim::Ignore),
        ];
        for (m, selected, owner_deleting, want) in cases {
            assert_eq!(claim("me", owner_deleting, &m, selected), want, "{m:?}");
        }
    }
}

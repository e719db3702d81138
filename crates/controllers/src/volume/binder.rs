//! The PV controller's decisions (`pkg/controller/volume/persistentvolume`,
//! `syncClaim` and `syncVolume`), pure: one claim or one volume and the
//! objects it may meet in, an action out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::volume::local_path::{
    node_root, provision, storage_class, CLASS_NAME, DEFAULT_CLASS_ANNOTATION, PROVISIONER,
    SELECTED_NODE_ANNOTATION,
};

/// What to do about one claim.
#[derive(Clone, Debug, PartialEq)]
pub enum ClaimAction {
    /// Nothing now (bound, or waiting for its first consumer).
    Nothing,
    /// Waiting for something the controller cannot do; the reason goes
    /// into an event and the claim is looked at again later.
    Wait(String),
    /// The claim names no class: give it the default class (retroactive
    /// default StorageClass assignment, Kubernetes 1.28+).
    SetClass(String),
    /// Reserve this existing volume for the claim (its `claimRef`).
    Reserve(String),
    /// Create this volume for the claim (already reserved for it).
    Provision(Box<PersistentVolume>),
    /// Finish the binding: the claim's `volumeName`, both phases `Bound`.
    Bind {
        /// The volume's name.
        volume: String,
        /// The volume's capacity, copied into the claim's status.
        capacity: BTreeMap<String, Quantity>,
        /// The volume's access modes, likewise.
        access_modes: Vec<String>,
    },
}

/// What to do about one volume.
#[derive(Clone, Debug, PartialEq)]
pub enum VolumeAction {
    /// Nothing now.
    Nothing,
    /// Write this `status.phase`.
    Phase(&'static str),
    /// Its claim is gone and its reclaim policy is `Delete`.
    Delete,
}

fn class_of(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.storage_class_name.as_deref()
}

fn volume_class(pv: &PersistentVolume) -> &str {
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or_default()
}

fn claim_ref_uid(pv: &PersistentVolume) -> Option<&str> {
    pv.spec.as_ref()?.claim_ref.as_ref()?.uid.as_deref()
}

fn pv_phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// A storage quantity in bytes (binary and decimal suffixes), for
/// matching sizes; `None` when it cannot be read.
pub fn bytes(q: &Quantity) -> Option<u128> {
    let s = q.0.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    let mult: u128 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    // Sizes are far below f64's exact range in practice; round up.
    Some((n * mult as f64).ceil() as u128)
}

fn storage(map: Option<&BTreeMap<String, Quantity>>) -> Option<u128> {
    map?.get("storage").and_then(bytes)
}

fn bind(pv: &PersistentVolume) -> ClaimAction {
    let spec = pv.spec.clone().unwrap_or_default();
    ClaimAction::Bind {
        volume: pv.metadata.name.clone().unwrap_or_default(),
        capacity: spec.capacity.unwrap_or_default(),
        access_modes: spec.access_modes.unwrap_or_default(),
    }
}

/// Decides for one claim, given every volume, class and node.
pub fn claim_action(
    claim: &PersistentVolumeClaim,
    volumes: &[&PersistentVolume],
    classes: &[&StorageClass],
    nodes: &[&Node],
) -> ClaimAction {
    if claim.metadata.deletion_timestamp.is_some() {
        return ClaimAction::Nothing;
    }
    // The local-path class is built in: without an object of that name
    // (or without the StorageClass API at all) its defaults apply.
    let builtin = storage_class();
    let mut classes = classes.to_vec();
    if !classes
        .iter()
        .any(|c| c.metadata.name.as_deref() == Some(CLASS_NAME))
    {
        classes.push(&builtin);
    }
    let uid = claim.metadata.uid.as_deref().unwrap_or_default();
    let spec = claim.spec.clone().unwrap_or_default();
    let bound_phase = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if let Some(name) = spec.volume_name.as_deref().filter(|n| !n.is_empty()) {
        let Some(pv) = volumes
            .iter()
            .find(|v| v.metadata.name.as_deref() == Some(name))
        else {
            return ClaimAction::Wait(format!("Bound claim has lost its PersistentVolume {name}"));
        };
        return match claim_ref_uid(pv) {
            None => ClaimAction::Reserve(name.to_string()),
            Some(u) if u == uid && (!bound_phase || pv_phase(pv) != "Bound") => bind(pv),
            Some(u) if u == uid => ClaimAction::Nothing,
            Some(_) => {
                ClaimAction::Wait(format!("volume {name} is already bound to another claim"))
            }
        };
    }
    // A volume already reserved for this claim (provisioned or pre-bound).
    if let Some(pv) = volumes.iter().find(|v| claim_ref_uid(v) == Some(uid)) {
        return bind(pv);
    }
    let Some(class_name) = class_of(claim) else {
        let default = classes.iter().find(|c| {
            c.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DEFAULT_CLASS_ANNOTATION))
                .is_some_and(|v| v == "true")
        });
        return match default.and_then(|c| c.metadata.name.clone()) {
            Some(name) => ClaimAction::SetClass(name),
            None => static_match(claim, volumes, ""),
        };
    };
    let class = classes
        .iter()
        .find(|c| c.metadata.name.as_deref() == Some(class_name));
    let Some(class) = class.filter(|c| c.provisioner == PROVISIONER) else {
        return static_match(claim, volumes, class_name);
    };
    if let ClaimAction::Reserve(v) = static_match(claim, volumes, class_name) {
        return ClaimAction::Reserve(v);
    }
    let Some(node) = claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SELECTED_NODE_ANNOTATION))
    else {
        // WaitForFirstConsumer (and Immediate, which a node-local volume
        // cannot honour): the scheduler picks the node.
        return ClaimAction::Nothing;
    };
    let root = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node.as_str()))
        .and_then(|n| node_root(n));
    match root {
        Some(root) => ClaimAction::Provision(Box::new(provision(claim, class, node, root))),
        None => ClaimAction::Wait(format!(
            "node {node:?} does not advertise a local-path directory ({})",
            crate::volume::local_path::ROOT_ANNOTATION
        )),
    }
}

/// The smallest available volume of the class that fits the claim.
fn static_match(
    claim: &PersistentVolumeClaim,
    volumes: &[&PersistentVolume],
    class: &str,
) -> ClaimAction {
    let spec = claim.spec.clone().unwrap_or_default();
    let want = storage(spec.resources.as_ref().and_then(|r| r.requests.as_ref())).unwrap_or(0);
    let modes = spec.access_modes.unwrap_or_default();
    let best = volumes
        .iter()
        .filter(|v| v.metadata.deletion_timestamp.is_none())
        .filter(|v| v.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
        .filter(|v| volume_class(v) == class)
        .filter(|v| {
            let have = v
                .spec
                .as_ref()
                .and_then(|s| s.access_modes.clone())
                .unwrap_or_default();
            modes.iter().all(|m| have.contains(m))
        })
        .filter_map(|v| {
            let size = storage(v.spec.as_ref()?.capacity.as_ref())?;
            (size >= want).then_some((size, v.metadata.name.clone()?))
        })
        .min();
    match best {
        Some((_, name)) => ClaimAction::Reserve(name),
        None => ClaimAction::Wait(
            "no persistent volumes available for this claim and no storage class is set".into(),
        ),
    }
}

/// Decides for one volume, given the claim its `claimRef` names (if that
/// claim exists).
pub fn volume_action(pv: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeAction {
    if pv.metadata.deletion_timestamp.is_some() {
        return VolumeAction::Nothing;
    }
    let phase = pv_phase(pv);
    let set = |p: &'static str| {
        if phase == p {
            VolumeAction::Nothing
        } else {
            VolumeAction::Phase(p)
        }
    };
    let spec = pv.spec.clone().unwrap_or_default();
    let Some(r) = spec.claim_ref.as_ref() else {
        return set("Available");
    };
    let Some(ref_uid) = r.uid.as_deref() else {
        // Pre-bound by a user to a claim by name: the claim side binds it.
        return set("Available");
    };
    match claim {
        Some(c) if c.metadata.uid.as_deref() == Some(ref_uid) => {
            let bound = c.spec.as_ref().and_then(|s| s.volume_name.as_deref())
                == pv.metadata.name.as_deref();
            if bound {
                set("Bound")
            } else {
                VolumeAction::Nothing
            }
        }
        _ => match spec.persistent_volume_reclaim_policy.as_deref() {
            Some("Delete") => VolumeAction::Delete,
            _ => set("Released"),
        },
    }
}

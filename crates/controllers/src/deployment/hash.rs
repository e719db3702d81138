//! The `pod-template-hash`: a stable name for a pod template, put in the
//! name, selector and pod labels of the ReplicaSet made from it, so that
//! ReplicaSets of one Deployment never select each other's pods.
//!
//! Kubernetes hashes the template with FNV-1a (32 bit) over a `spew` dump of
//! the Go struct, then adds `collisionCount`. Skiff hashes the template's
//! JSON (k8s-openapi serialises fields in a fixed order and maps sorted, so
//! the bytes are stable) the same way. Values differ from Kubernetes', which
//! only matters when a ReplicaSet made by Kubernetes is adopted: it is then
//! treated like any other ReplicaSet whose template matches (by content,
//! not by hash).

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::names::safe_encode;

/// The label carrying the hash (`apps/v1.DefaultDeploymentUniqueLabelKey`).
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

const FNV_OFFSET_BASIS: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

/// FNV-1a, 32 bit.
pub fn fnv1a32(bytes: &[u8], mut h: u32) -> u32 {
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The hash of `template` with `collision_count` (`controller.ComputeHash`),
/// rendered as a label value.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    // Serialising a k8s-openapi struct cannot fail (no maps with non-string
    // keys, no custom serialisers that error); an empty input is still a
    // stable hash if it ever did.
    let json = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv1a32(&json, FNV_OFFSET_BASIS);
    if let Some(c) = collision_count {
        // As Kubernetes: 8 bytes, the count as little-endian u32 first.
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv1a32(&bytes, h);
    }
    safe_encode(h)
}

/// A copy of `template` without the hash label (`EqualIgnoreHash`'s view).
fn without_hash(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    if let Some(m) = t.metadata.as_mut() {
        if m.labels.as_ref().is_some_and(|l| l.is_empty()) {
            m.labels = None;
        }
    }
    t
}

/// Whether two templates are equal apart from the hash label
/// (`EqualIgnoreHash`).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_fixtures::template;

    #[test]
    fn fnv_matches_reference_vectors() {
        // FNV-1a 32 test vectors (Fowler/Noll/Vo reference).
        assert_eq!(fnv1a32(b"", FNV_OFFSET_BASIS), 0x811c9dc5);
        assert_eq!(fnv1a32(b"a", FNV_OFFSET_BASIS), 0xe40c292c);
        assert_eq!(fnv1a32(b"foobar", FNV_OFFSET_BASIS), 0xbf9cf968);
    }

    #[test]
    fn hash_is_stable_and_tracks_content() {
        let a = template("busybox:1");
        assert_eq!(compute_hash(&a, None), compute_hash(&a.clone(), None));
        assert_ne!(
            compute_hash(&a, None),
            compute_hash(&template("busybox:2"), None)
        );
        assert_ne!(compute_hash(&a, None), compute_hash(&a, Some(1)));
    }

    #[test]
    fn equality_ignores_only_the_hash_label() {
        let a = template("busybox:1");
        let mut b = a.clone();
        b.metadata
            .as_mut()
            .and_then(|m| m.labels.as_mut())
            .map(|l| l.insert(POD_TEMPLATE_HASH_LABEL.into(), "xyz".into()));
        assert!(equal_ignore_hash(&a, &b));
        assert!(!equal_ignore_hash(&a, &template("busybox:2")));
    }
}

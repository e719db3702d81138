use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::binder::{bytes, claim_action, volume_action, ClaimAction, VolumeAction};
use super::local_path::{storage_class, ROOT_ANNOTATION, SELECTED_NODE_ANNOTATION};

fn claim(class: Option<&str>, node: Option<&str>) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data-web-0".into()),
            namespace: Some("default".into()),
            uid: Some("c1".into()),
            annotations: node
                .map(|n| BTreeMap::from([(SELECTED_NODE_ANNOTATION.to_string(), n.to_string())])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            storage_class_name: class.map(str::to_string),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity("1Gi".into()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn node(name: &str, root: Option<&str>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: root
                .map(|r| BTreeMap::from([(ROOT_ANNOTATION.to_string(), r.to_string())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn static_pv(name: &str, class: &str, size: &str, claim_uid: Option<&str>) -> PersistentVolume {
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            storage_class_name: Some(class.into()),
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(size.into()),
            )])),
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            claim_ref: claim_uid.map(|u| ObjectReference {
                namespace: Some("default".into()),
                name: Some("data-web-0".into()),
                uid: Some(u.into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

#[test]
fn a_claim_without_a_class_gets_the_default_class() {
    let sc = storage_class();
    let a = claim_action(&claim(None, None), &[], &[&sc], &[]);
    assert_eq!(a, ClaimAction::SetClass("local-path".into()));
    // Built in: also without any StorageClass object.
    let a = claim_action(&claim(None, None), &[], &[], &[]);
    assert_eq!(a, ClaimAction::SetClass("local-path".into()));
}

#[test]
fn local_path_waits_for_the_first_consumer_then_provisions_on_its_node() {
    let sc = storage_class();
    let n = node("n1", Some("/var/lib/skiff/local-path"));
    assert_eq!(
        claim_action(&claim(Some("local-path"), None), &[], &[&sc], &[&n]),
        ClaimAction::Nothing
    );
    let ClaimAction::Provision(pv) =
        claim_action(&claim(Some("local-path"), Some("n1")), &[], &[&sc], &[&n])
    else {
        panic!("expected a provisioned volume")
    };
    let spec = pv.spec.unwrap();
    assert_eq!(pv.metadata.name.as_deref(), Some("pvc-c1"));
    assert_eq!(
        spec.host_path.unwrap().path,
        "/var/lib/skiff/local-path/pvc-c1_default_data-web-0"
    );
    let term = &spec
        .node_affinity
        .unwrap()
        .required
        .unwrap()
        .node_selector_terms[0];
    assert_eq!(
        term.match_expressions.as_ref().unwrap()[0].values,
        Some(vec!["n1".to_string()])
    );
    assert_eq!(spec.claim_ref.unwrap().uid.as_deref(), Some("c1"));
    assert_eq!(spec.capacity.unwrap()["storage"], Quantity("1Gi".into()));
    // A node that advertises no directory: wait, with a reason.
    let bare = node("n1", None);
    let a = claim_action(
        &claim(Some("local-path"), Some("n1")),
        &[],
        &[&sc],
        &[&bare],
    );
    assert!(matches!(a, ClaimAction::Wait(_)), "{a:?}");
}

#[test]
fn a_reserved_volume_is_bound_then_left_alone() {
    let sc = storage_class();
    let pv = static_pv("pvc-c1", "local-path", "1Gi", Some("c1"));
    let c = claim(Some("local-path"), Some("n1"));
    let a = claim_action(&c, &[&pv], &[&sc], &[]);
    assert!(
        matches!(&a, ClaimAction::Bind { volume, .. } if volume == "pvc-c1"),
        "{a:?}"
    );
    let mut bound = c.clone();
    bound.spec.as_mut().unwrap().volume_name = Some("pvc-c1".into());
    bound.status = Some(k8s_openapi::api::core::v1::PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        ..Default::default()
    });
    let mut pv_bound = pv.clone();
    pv_bound.status = Some(k8s_openapi::api::core::v1::PersistentVolumeStatus {
        phase: Some("Bound".into()),
        ..Default::default()
    });
    assert_eq!(
        claim_action(&bound, &[&pv_bound], &[&sc], &[]),
        ClaimAction::Nothing
    );
    assert_eq!(
        volume_action(&pv_bound, Some(&bound)),
        VolumeAction::Nothing
    );
    assert_eq!(
        volume_action(&pv, Some(&bound)),
        VolumeAction::Phase("Bound")
    );
}

#[test]
fn static_volumes_match_by_class_modes_and_the_smallest_size_that_fits() {
    let (small, big, other, tiny) = (
        static_pv("small", "manual", "2Gi", None),
        static_pv("big", "manual", "10Gi", None),
        static_pv("other", "fast", "1Gi", None),
        static_pv("tiny", "manual", "500Mi", None),
    );
    let c = claim(Some("manual"), None);
    assert_eq!(
        claim_action(&c, &[&big, &small, &other, &tiny], &[], &[]),
        ClaimAction::Reserve("small".into())
    );
    assert!(matches!(
        claim_action(&c, &[&other, &tiny], &[], &[]),
        ClaimAction::Wait(_)
    ));
}

#[test]
fn a_volume_whose_claim_is_gone_is_deleted_or_released() {
    let pv = static_pv("pvc-c1", "local-path", "1Gi", Some("c1"));
    assert_eq!(volume_action(&pv, None), VolumeAction::Delete);
    // A new claim of the same name is not the old one.
    let mut newer = claim(Some("local-path"), None);
    newer.metadata.uid = Some("c2".into());
    assert_eq!(volume_action(&pv, Some(&newer)), VolumeAction::Delete);
    let mut retain = pv.clone();
    retain
        .spec
        .as_mut()
        .unwrap()
        .persistent_volume_reclaim_policy = Some("Retain".into());
    assert_eq!(
        volume_action(&retain, None),
        VolumeAction::Phase("Released")
    );
    let free = static_pv("free", "manual", "1Gi", None);
    assert_eq!(volume_action(&free, None), VolumeAction::Phase("Available"));
}

#[test]
fn quantities_read_as_bytes() {
    for (q, want) in [
        ("1Gi", 1 << 30),
        ("500Mi", 500 << 20),
        ("2G", 2_000_000_000),
        ("1.5Ki", 1536),
        ("7", 7),
    ] {
        assert_eq!(bytes(&Quantity(q.into())), Some(want), "{q}");
    }
    assert_eq!(bytes(&Quantity("1Zi".into())), None);
}

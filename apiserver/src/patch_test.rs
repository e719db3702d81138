use super::*;
use serde_json::json;

fn pod() -> Value {
    json!({
        "metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x"]},
        "spec": {
            "containers": [
                {"name": "app", "image": "busybox:1", "env": [{"name": "A", "value": "1"}],
                 "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                {"name": "side", "image": "side:1"}
            ],
            "volumes": [{"name": "v", "emptyDir": {}}]
        },
        "status": {"conditions": [{"type": "Ready", "status": "False"}]}
    })
}

#[test]
fn merge_patch_replaces_lists_and_deletes_nulls() {
    let out = apply(
        PatchType::Merge,
        &pod(),
        &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "spec": {"containers": [{"name": "only"}]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    assert_eq!(out["spec"]["containers"], json!([{"name": "only"}]));
}

#[test]
fn json_patch_ops_and_failures() {
    let out = apply(
        PatchType::Json,
        &pod(),
        &json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "busybox:2"},
                {"op": "add", "path": "/metadata/labels/c", "value": "3"}]),
    )
    .unwrap();
    assert_eq!(out["spec"]["containers"][0]["image"], "busybox:2");
    assert_eq!(out["metadata"]["labels"]["c"], "3");

    let e = apply(
        PatchType::Json,
        &pod(),
        &json!([{"op": "test", "path": "/metadata/name", "value": "q"}]),
    )
    .unwrap_err();
    assert_eq!(e.status_code(), 422);
    let e = apply(PatchType::Json, &pod(), &json!({"op": "nonsense"})).unwrap_err();
    assert_eq!(e.status_code(), 400);
}

#[test]
fn strategic_merge_merges_containers_by_name() {
    let out = apply(
        PatchType::StrategicMerge,
        &pod(),
        &json!({"spec": {"containers": [{"name": "app", "image": "busybox:2",
                                          "env": [{"name": "B", "value": "2"}]}]}}),
    )
    .unwrap();
    let cs = out["spec"]["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 2, "side container kept");
    assert_eq!(cs[0]["image"], "busybox:2");
    assert_eq!(
        cs[0]["env"],
        json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    );
    assert_eq!(cs[0]["ports"][0]["containerPort"], 80);
}

#[test]
fn strategic_merge_directives() {
    // $patch: delete removes one list item; $setElementOrder reorders.
    let out = apply(
        PatchType::StrategicMerge,
        &pod(),
        &json!({"spec": {
            "$setElementOrder/containers": [{"name": "side"}, {"name": "new"}],
            "containers": [{"name": "app", "$patch": "delete"}, {"name": "new", "image": "n"}]
        }}),
    )
    .unwrap();
    let names: Vec<&str> = out["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["side", "new"]);

    // $patch: replace on a list replaces it.
    let out = apply(
        PatchType::StrategicMerge,
        &pod(),
        &json!({"spec": {"volumes": [{"$patch": "replace"}, {"name": "w", "emptyDir": {}}]}}),
    )
    .unwrap();
    assert_eq!(
        out["spec"]["volumes"],
        json!([{"name": "w", "emptyDir": {}}])
    );

    // Conditions merge by type; finalizers merge as a set;
    // $deleteFromPrimitiveList removes from it.
    let out = apply(
        PatchType::StrategicMerge,
        &pod(),
        &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}]},
                "metadata": {"finalizers": ["y"], "$deleteFromPrimitiveList/finalizers": ["x"]}}),
    )
    .unwrap();
    assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
    assert_eq!(out["status"]["conditions"][0]["status"], "True");
    assert_eq!(out["metadata"]["finalizers"], json!(["y"]));

    // $retainKeys keeps only the listed keys before merging.
    let out = apply(
        PatchType::StrategicMerge,
        &json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
        &json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    )
    .unwrap();
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn patch_types_from_content_type() {
    assert_eq!(
        PatchType::from_content_type("application/merge-patch+json").unwrap(),
        PatchType::Merge
    );
    assert_eq!(
        PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8")
            .unwrap(),
        PatchType::StrategicMerge
    );
    assert_eq!(
        PatchType::from_content_type("application/json-patch+json").unwrap(),
        PatchType::Json
    );
    assert_eq!(
        PatchType::from_content_type("application/apply-patch+yaml")
            .unwrap_err()
            .status_code(),
        415
    );
    assert_eq!(
        PatchType::from_content_type("text/plain")
            .unwrap_err()
            .status_code(),
        415
    );
}

/// json-patch 5's `patch` undoes the ops applied before a failing one and
/// panics (`unreachable!`) when an undo itself fails. The fuzz test
/// (`tests/fuzz_bodies.rs`, seed 77) found these; a failing patch must be
/// a 422 and leave the object as it was.
#[test]
fn json_patch_whose_undo_fails_is_422_not_a_panic() {
    let doc = json!({
        "metadata": {"name": "n"},
        "spec": {"ports": [{"name": "p", "port": 80, "targetPort": 8080}],
                 "template": {"spec": {"containers": [{"name": "c"}]}}}
    });
    for ops in [
        json!([{"op": "copy", "from": "/spec/template/spec", "path": "/spec/template/spec/containers/0"},
               {"op": "move", "from": "/spec/template/spec", "path": "/spec/containers/01"}]),
        json!([{"op": "move", "from": "/spec/ports/0/targetPort", "path": ""},
               {"op": "move", "from": "/spec/ports/0/name", "path": "/spec/ports"}]),
        json!([{"op": "copy", "from": "/metadata/name", "path": "/spec/ports/0/port"},
               {"op": "move", "from": "/spec/ports", "path": "/metadata/labels/x~1y"}]),
    ] {
        let err = apply(PatchType::Json, &doc, &ops).unwrap_err();
        assert_eq!(err.status_code(), 422, "{ops}: {err}");
    }
}
